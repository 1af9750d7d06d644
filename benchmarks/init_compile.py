"""The sweep's initial state: parameters drawn per seed by one unbatched program (`Sweep.init`,
since session 9) against the vmapped draw it replaced, per task: seconds to the first state
(compile included: that is what a sweep, a resume's first build, or a test pays) and whether the
two give the same bits.

Each task uses its shipped flagfile's model (the modular task: the mainline), R runs with seeds
0..R-1. The new path runs first (neither path can reuse the other's compiled program).

Prints progress to stderr and, as its LAST stdout line, one JSON object.

  python benchmarks/init_compile.py               # every task, 4 runs: ~1 min on 2 cores
  python benchmarks/init_compile.py --tasks add --runs 8
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import bench_env  # noqa: E402
from grokjax import config, sweep, train  # noqa: E402

MODELS = {  # the shipped flagfiles' models (experiments/flags/)
    "add": dict(),
    "digit_addition": dict(task="digit_addition"),
    "repeated_subsequence": dict(task="repeated_subsequence", attn_only=True, num_layers=2,
                                 d_model=48, embed_std=1.0),
    "skip_trigram": dict(task="skip_trigram", attn_only=True),
}


def measure(task: str, runs: int) -> dict:
  cfg = config.make_config(seed=tuple(range(runs)), **MODELS[task])
  sw = sweep.Sweep(cfg)
  t0 = time.perf_counter()
  new = jax.block_until_ready(sw.init())
  t_new = time.perf_counter() - t0
  vmapped = jax.jit(jax.vmap(lambda r: train.init_state(sw.prog, r)))
  t0 = time.perf_counter()
  with train.x64(cfg):
    old = jax.block_until_ready(vmapped(sw.run_data))
  t_old = time.perf_counter() - t0
  same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)))
  return dict(runs=runs, per_seed_s=round(t_new, 2), vmapped_s=round(t_old, 2),
              speedup=round(t_old / t_new, 2), same_bits=same)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", nargs="+", default=list(MODELS), choices=list(MODELS))
  ap.add_argument("--runs", type=int, default=4)
  args = ap.parse_args()
  out = {}
  for task in args.tasks:
    out[task] = measure(task, args.runs)
    print(f"{task}: {out[task]}", file=sys.stderr, flush=True)
  print(json.dumps(dict(benchmark="init_compile", env=bench_env.environment(), results=out)))
  if not all(r["same_bits"] for r in out.values()):
    sys.exit("the two initial states differ")


if __name__ == "__main__":
  main()
