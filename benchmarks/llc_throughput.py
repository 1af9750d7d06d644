"""LLC throughput: seconds for the LLC curve of a trained workdir, and the cost of one SGLD step
against one plain train step of the same model, measured in the same process.

  python benchmarks/llc_throughput.py [--workdir=/work/golden/quick_base] [--every=1]
      [--limit=0] [--ckpt_batch=1] [--chains --draws --burnin --epsilon ...]

The workdir's config.json, sweep.json, metrics.jsonl and checkpoints/ are copied to a temporary
directory (the source is only read), `llc_analysis.analyze_workdir` runs there with the default
settings (or the flags'), and its progress lines are timed: the first batch of checkpoints holds
the compile, the rest is the steady state. Then `--train_steps` plain train steps
(`train.train_step`: forward, backward and AdamW on the run's whole training set, under one
lax.scan) of the same model are timed after a warm-up. The SGLD step is one chain's step:
forward and backward on a minibatch, the Gaussian noise for every parameter, the update.

Prints progress to stderr and, as its LAST stdout line, one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import jax
import numpy as np

from grokjax import checkpoint, llc_analysis, results, sweep, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def copy_workdir(src: str, dst: str, limit: int) -> list[int]:
  """The training files of `src` in `dst`; with `limit`, only the first `limit` parameter
  checkpoints and the last (the final one)."""
  os.makedirs(dst)
  for name in ("config.json", "sweep.json", "metrics.jsonl"):
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), dst)
  shutil.copytree(os.path.join(src, "checkpoints"), os.path.join(dst, "checkpoints"),
                  ignore=shutil.ignore_patterns("state"))
  epochs = checkpoint.param_epochs(dst)
  if limit:
    keep = set(epochs[:limit]) | {epochs[-1]}
    for e in epochs:
      if e not in keep:
        shutil.rmtree(os.path.join(dst, "checkpoints", "params", str(e)))
    epochs = sorted(keep)
  return epochs


def time_train_steps(workdir: str, steps: int, repeats: int = 3) -> float:
  """Seconds per plain train step of run 0 from its final checkpoint (true float32 matmuls)."""
  cfg = results.load_config(workdir)
  prog = train.program(cfg)
  runs = sweep.grid(cfg)
  run_data, shared = sweep.build_data(cfg, runs, len(runs))
  run = jax.tree.map(lambda t: jax.numpy.asarray(t[0]), run_data)
  shared = jax.tree.map(jax.numpy.asarray, shared)
  params = jax.tree.map(lambda t: jax.numpy.asarray(t[0]),
                        checkpoint.load_params(workdir, checkpoint.param_epochs(workdir)[-1]))
  state = train.init_state(prog, run)._replace(params=params)

  @jax.jit
  def many(state, run, shared):
    with jax.default_matmul_precision("highest"):
      return jax.lax.scan(lambda s, _: train.train_step(prog, s, run, shared), state, None,
                          length=steps)
  jax.block_until_ready(many(state, run, shared))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(many(state, run, shared))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) / steps


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--workdir", default="/work/golden/quick_base")
  ap.add_argument("--every", type=int, default=1)
  ap.add_argument("--limit", type=int, default=0,
                  help="only the first LIMIT checkpoints (and the last); 0: all")
  ap.add_argument("--ckpt_batch", type=int, default=llc_analysis.CKPT_BATCH)
  ap.add_argument("--chains", type=int)
  ap.add_argument("--draws", type=int)
  ap.add_argument("--burnin", type=int)
  ap.add_argument("--epsilon", type=float)
  ap.add_argument("--batch_size", type=int)
  ap.add_argument("--train_steps", type=int, default=50)
  args = ap.parse_args()
  over = dict(num_chains=args.chains, num_draws=args.draws, num_burnin=args.burnin,
              epsilon=args.epsilon, batch_size=args.batch_size)
  s = dataclasses.replace(llc_analysis.DEFAULT, **{k: v for k, v in over.items() if v is not None})
  load0 = bench_env.loadavg()
  with tempfile.TemporaryDirectory() as tmp:
    wd = os.path.join(tmp, "w")
    epochs = copy_workdir(args.workdir, wd, args.limit)
    stamps = []

    def timed_log(msg: str) -> None:
      stamps.append((time.perf_counter(), msg))
      log(msg)
    t0 = time.perf_counter()
    out = llc_analysis.analyze_workdir(wd, s, every=args.every, ckpt_batch=args.ckpt_batch,
                                       log=timed_log)
    total = time.perf_counter() - t0
    done = [(t, int(m.split()[1].split("/")[0])) for t, m in stamps
            if m.startswith("llc: ") and "/" in m.split()[1]]
    num_runs = len(sweep.grid(results.load_config(wd)))
    n_ckpt = len(out["epochs"])
    first_t, first_n = done[0]
    steady = ((done[-1][0] - first_t) / (done[-1][1] - first_n)
              if len(done) > 1 else float("nan"))        # seconds per checkpoint
    chain_steps = num_runs * s.num_chains * s.num_steps
    ms_sgld = steady * 1e3 / chain_steps
    log(f"train steps: {args.train_steps} under one scan")
    ms_train = time_train_steps(wd, args.train_steps) * 1e3
    n_train = int(results.load_runs(wd)[0].get("n_train") or 0)
  rec = dict(
      benchmark="llc_throughput", workdir=os.path.abspath(args.workdir),
      checkpoints=n_ckpt, checkpoints_in_workdir=len(epochs), runs=num_runs,
      chains=s.num_chains, draws=s.num_draws, burnin=s.num_burnin,
      steps_per_chain=s.num_steps, sgld_batch=s.batch_size, epsilon=s.epsilon, gamma=s.gamma,
      ckpt_batch=args.ckpt_batch, llc_curve_s=round(total, 2),
      compile_and_first_batch_s=round(first_t - t0, 2),
      steady_s_per_checkpoint=round(steady, 3),
      # every checkpoint of the workdir at this rate (the compile counted once)
      llc_curve_every_checkpoint_est_s=round((first_t - t0) + (len(epochs) - 1) * steady, 1),
      ms_per_sgld_step=round(ms_sgld, 3), ms_per_train_step=round(ms_train, 3),
      sgld_over_train_step=round(ms_sgld / ms_train, 3), train_batch=n_train,
      sgld_over_train_per_example=(round(ms_sgld / s.batch_size / (ms_train / n_train), 2)
                                   if n_train else None),
      loadavg_before=load0, loadavg_after=bench_env.loadavg(), **bench_env.environment())
  print(json.dumps(rec))


if __name__ == "__main__":
  main()
