"""Training throughput of 16 mainline runs laid out three ways on one host, in one run.

  1x1: 1 process  × 1 device
  1x2: 1 process  × 2 devices (XLA_FLAGS=--xla_force_host_platform_device_count=2)
  2x1: 2 processes × 1 device (jax.distributed on 127.0.0.1, CPU collectives through gloo)

Each layout runs in fresh subprocesses (XLA_FLAGS and jax.distributed are per process). Each
builds the sweep (p = 113 mainline model, seeds 0..R-1 as the run axis, frac 0.3, wd 1) with
`grokjax.sweep.Sweep` — with two processes, each holds the lanes of its own device — runs one
chunk as warm-up (compile excluded), then times `--repeats` chunks of `--epochs` epochs, each
followed by gathering its metrics onto every process: what `run_sweep` does between
checkpoints, minus the files. Reported: model-epochs/s (median chunk) and each layout's ratio
to 1x1.

Prints progress to stderr and, as its LAST stdout line, one JSON object.

  python benchmarks/multiprocess_throughput.py                 # a few minutes on 2 cores
  python benchmarks/multiprocess_throughput.py --epochs 10 --repeats 1   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LAYOUTS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}  # name: (processes, devices each)


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def child(args) -> None:
  """One process of one layout: time the chunks; process 0 prints one JSON line."""
  sys.path.insert(0, ROOT)
  from grokjax import distributed
  if args.num_processes > 1:
    distributed.initialize("on", args.coordinator_address, args.num_processes,
                           args.process_id)
  import jax
  import numpy as np
  from grokjax import config as gconfig
  from grokjax import sweep
  cfg = gconfig.make_config(seed=tuple(range(args.runs)), eval_every=args.eval_every,
                            checkpoint_every=args.epochs, num_epochs=args.epochs)
  t0 = time.perf_counter()
  sw = sweep.Sweep(cfg)
  state = sw.init()
  state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)  # compile + warm-up
  distributed.gather(metrics)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)
    distributed.gather(metrics)  # waits for every process's part of the chunk
    times.append(time.perf_counter() - t0)
  sec = float(np.median(times))
  if distributed.is_primary():
    print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                      "lanes": sw.num_lanes,
                      "model_epochs_per_s": args.runs * args.epochs / sec,
                      "ms_per_epoch": sec * 1e3 / args.epochs,
                      "compile_and_warmup_s": round(compile_s, 2),
                      "all_chunk_s": [round(t, 3) for t in times]}), flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_layout(name: str, args) -> dict:
  procs, devices = LAYOUTS[name]
  env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                     f" --xla_force_host_platform_device_count={devices}")}
  base = [sys.executable, os.path.abspath(__file__), "--child", f"--runs={args.runs}",
          f"--epochs={args.epochs}", f"--repeats={args.repeats}",
          f"--eval_every={args.eval_every}", f"--num_processes={procs}"]
  port = _free_port()
  with tempfile.TemporaryDirectory() as tmp:
    paths = [os.path.join(tmp, f"p{i}.log") for i in range(procs)]
    children = []
    for i, path in enumerate(paths):
      with open(path, "w") as f:
        children.append(subprocess.Popen(
            base + [f"--coordinator_address=127.0.0.1:{port}", f"--process_id={i}"],
            cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, text=True))
    deadline = time.time() + args.timeout_s
    try:
      for c in children:
        c.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      pass
    finally:
      for c in children:  # a layout that failed or hung leaves nothing behind
        if c.poll() is None:
          c.kill()
          c.wait()
    outs = []
    for path in paths:
      with open(path) as f:
        outs.append(f.read())
  for c, out in zip(children, outs):
    if c.returncode != 0:
      raise SystemExit(f"layout {name}: a process exited with {c.returncode}:\n{out[-3000:]}")
  lines = [l for l in outs[0].splitlines() if l.startswith("{")]
  return json.loads(lines[-1])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--runs", type=int, default=16, help="mainline runs in the sweep")
  ap.add_argument("--epochs", type=int, default=20, help="epochs per timed chunk")
  ap.add_argument("--repeats", type=int, default=3, help="timed chunks; the median is used")
  ap.add_argument("--eval_every", type=int, default=10, help="10 = grokjax's default")
  ap.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated, of "
                  + ", ".join(LAYOUTS))
  ap.add_argument("--timeout_s", type=float, default=1800, help="per layout")
  ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--num_processes", type=int, default=1, help=argparse.SUPPRESS)
  ap.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
  ap.add_argument("--coordinator_address", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.epochs % args.eval_every:
    ap.error(f"--epochs must be a multiple of --eval_every={args.eval_every}")
  if args.child:
    return child(args)
  names = [n.strip() for n in args.layouts.split(",") if n.strip()]
  bad = [n for n in names if n not in LAYOUTS]
  if bad:
    ap.error(f"--layouts: unknown {bad}; allowed: {', '.join(LAYOUTS)}")
  sys.path.insert(0, HERE)
  import bench_env  # noqa: E402  (the parent only: where and with what it ran)
  load_before = bench_env.loadavg()
  results = {}
  for name in names:
    log(f"{name}: {LAYOUTS[name][0]} process(es) × {LAYOUTS[name][1]} device(s), "
        f"{args.runs} runs ...")
    results[name] = run_layout(name, args)
    log(f"{name}: {results[name]['model_epochs_per_s']:.1f} model-epochs/s "
        f"(compile + warm-up {results[name]['compile_and_warmup_s']} s)")
  ratios = ({n: round(r["model_epochs_per_s"] / results["1x1"]["model_epochs_per_s"], 3)
             for n, r in results.items()} if "1x1" in results else {})
  print(json.dumps({"benchmark": "multiprocess_throughput", "runs": args.runs,
                    "epochs_per_chunk": args.epochs, "repeats": args.repeats,
                    "eval_every": args.eval_every, "layouts": results,
                    "ratio_to_1x1": ratios, "loadavg_before": load_before,
                    "loadavg_after": bench_env.loadavg(), "env": bench_env.environment()}))


if __name__ == "__main__":
  main()
