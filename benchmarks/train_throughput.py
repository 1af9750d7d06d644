"""Training throughput of vmapped mainline runs: model-epochs per second vs the number of runs.

For each number of runs R (1, 4, 16; 64 too with `--max_runs 64`) a sweep of R mainline runs
(p = 113 default model, seeds 0..R-1 as the run axis, frac 0.3, wd 1) is compiled through
`grokjax.sweep.Sweep`, one chunk is run as warm-up (compile excluded from the timing), then
`--repeats` chunks of `--epochs` epochs are timed: train steps with the default evaluation every
10 epochs, i.e. the program `run_sweep` executes between checkpoints (minus the file writing).

Prints progress to stderr and, as its LAST stdout line, one JSON object.

  python benchmarks/train_throughput.py                  # R = 1, 4, 16: a few minutes on 2 cores
  python benchmarks/train_throughput.py --max_runs 64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from grokjax import config as gconfig
from grokjax import sweep

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

RUN_COUNTS = (1, 4, 16, 64)


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def time_runs(num_runs: int, epochs: int, repeats: int, eval_every: int,
              matmul_precision: str = "highest") -> dict[str, float]:
  cfg = gconfig.make_config(seed=tuple(range(num_runs)), eval_every=eval_every,
                            checkpoint_every=epochs, num_epochs=epochs,
                            matmul_precision=matmul_precision)
  t0 = time.perf_counter()
  sw = sweep.Sweep(cfg)
  state = sw.init()
  state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)  # compile + warm-up
  jax.block_until_ready((state, metrics))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  sec = float(np.median(times))
  return {"runs": num_runs, "lanes": sw.num_lanes,
          "model_epochs_per_s": num_runs * epochs / sec,
          "ms_per_model_epoch": sec * 1e3 / (num_runs * epochs),
          "ms_per_epoch": sec * 1e3 / epochs,  # wall time of one epoch of all R runs
          "compile_and_warmup_s": compile_s,
          "all_chunk_s": [round(t, 3) for t in times]}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--max_runs", type=int, default=16,
                  help=f"largest number of runs to time, from {RUN_COUNTS}")
  ap.add_argument("--runs", default="",
                  help="comma-separated run counts (overrides --max_runs), e.g. 1,8")
  ap.add_argument("--epochs", type=int, default=20, help="epochs per timed chunk")
  ap.add_argument("--repeats", type=int, default=3, help="timed chunks; the median is used")
  ap.add_argument("--eval_every", type=int, default=10, help="10 = grokjax's default")
  ap.add_argument("--matmul_precision", default="highest", choices=gconfig.MATMUL_PRECISIONS,
                  help="highest = true float32 (default, the paper's numerics); "
                       "tensorfloat32 / default = the faster GPU modes")
  args = ap.parse_args()
  if args.epochs % args.eval_every:
    ap.error(f"--epochs must be a multiple of --eval_every={args.eval_every}")
  counts = ([int(r) for r in args.runs.split(",")] if args.runs
            else [r for r in RUN_COUNTS if r <= args.max_runs])

  env = bench_env.environment()
  load_start = bench_env.loadavg()
  log(f"train_throughput: {env['device']} x{env['jax_devices']}, {env['cpu_count']} CPUs, "
      f"load {load_start}")
  results = []
  for r in counts:
    res = time_runs(r, args.epochs, args.repeats, args.eval_every, args.matmul_precision)
    results.append(res)
    log(f"{r:3d} runs: {res['model_epochs_per_s']:8.1f} model-epochs/s  "
        f"{res['ms_per_model_epoch']:7.2f} ms/model-epoch  "
        f"(compile+warm-up {res['compile_and_warmup_s']:.1f} s)")
  print(json.dumps({
      "model_epochs_per_s": {str(r["runs"]): r["model_epochs_per_s"] for r in results},
      "ms_per_model_epoch": {str(r["runs"]): r["ms_per_model_epoch"] for r in results},
      "results": results, "epochs_per_chunk": args.epochs, "repeats": args.repeats,
      "eval_every": args.eval_every, "matmul_precision": args.matmul_precision,
      "model": "p=113 d_model=128 heads=4 d_mlp=512 1 layer",
      "loadavg_start": load_start, "loadavg_end": bench_env.loadavg(), **env}))


if __name__ == "__main__":
  main()
