"""Training throughput per task: model-epochs/s for 1 and 8 vmapped runs, and the share of a
step spent generating infinite data.

Each task uses its shipped flagfile's model (`experiments/flags/<task>_infinite.flags`; the
modular task: the mainline). For R runs (seeds 0..R-1) a `grokjax.sweep.Sweep` is compiled, one
chunk is a warm-up, then `--repeats` chunks of `--epochs` epochs are timed (evaluation every 10
epochs included, as `run_sweep` runs them). The data share is the time of the same R·epochs
batches drawn alone (`task.sample`, vmapped over runs and scanned over steps, jitted) over the
time of the timed chunk.

Prints progress to stderr and, as its LAST stdout line, one JSON object.

  python benchmarks/task_throughput.py                 # all tasks, R = 1 and 8: ~5 min on 2 cores
  python benchmarks/task_throughput.py --tasks skip_trigram --runs 1
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
from experiments import sweep as sweep_cli  # noqa: E402
from grokjax import sweep, tasks, train  # noqa: E402

TASKS = ("add", "digit_addition", "repeated_subsequence", "skip_trigram")


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def task_config(task: str, runs: int, epochs: int):
  """The shipped flagfile's config with `runs` seeds and `epochs`-epoch chunks."""
  flagfile = "mainline.flags" if task == "add" else f"{task}_infinite.flags"
  argv = sweep_cli.resolve_flagfiles(["x", f"--flagfile={flagfile}", "--workdir=unused",
                                      f"--seed={','.join(map(str, range(runs)))}",
                                      "--lr=1e-3", "--weight_decay=1.0",
                                      f"--num_epochs={epochs}", f"--checkpoint_every={epochs}",
                                      "--eval_every=10"])
  sweep_cli.FLAGS.unparse_flags()
  sweep_cli.FLAGS(argv)
  return sweep_cli.config_from_flags()


def _timed(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def time_task(task: str, runs: int, epochs: int, repeats: int) -> dict:
  cfg = task_config(task, runs, epochs)
  sw = sweep.Sweep(cfg)
  state = [sw.init()]

  def chunk():
    state[0], metrics = sw.chunk_fn(state[0], sw.run_data, sw.shared)
    return metrics

  jax.block_until_ready(chunk())  # compile + warm-up
  sec = _timed(chunk, repeats)
  out = {"task": task, "runs": runs, "model_epochs_per_s": runs * epochs / sec,
         "ms_per_model_epoch": sec * 1e3 / (runs * epochs)}
  t = train.program(cfg).task
  if isinstance(t, tasks.SequenceTask) and t.infinite:
    keys = jax.random.split(jax.random.key(0), runs)

    @jax.jit
    def draw(keys):
      def one(key):
        step = lambda c, i: (c, t.sample(jax.random.fold_in(key, i), t.batch_size).tokens[0, 0])
        return jax.lax.scan(step, 0, np.arange(epochs))[1]
      return jax.vmap(one)(keys)

    jax.block_until_ready(draw(keys))
    out["data_share"] = _timed(lambda: draw(keys), repeats) / sec
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", default=",".join(TASKS))
  ap.add_argument("--runs", default="1,8")
  ap.add_argument("--epochs", type=int, default=50)
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()
  env = bench_env.environment()
  load_start = bench_env.loadavg()
  log(f"task_throughput: {env['device']} x{env['jax_devices']}, load {load_start}")
  results = []
  for task in args.tasks.split(","):
    for r in (int(x) for x in args.runs.split(",")):
      res = time_task(task, r, args.epochs, args.repeats)
      results.append(res)
      share = f"  data {100 * res['data_share']:.1f} %" if "data_share" in res else ""
      log(f"{task:22s} {r:2d} runs: {res['model_epochs_per_s']:8.1f} model-epochs/s "
          f"({res['ms_per_model_epoch']:.2f} ms/model-epoch){share}")
  print(json.dumps({"results": results, "epochs_per_chunk": args.epochs,
                    "repeats": args.repeats, "loadavg_start": load_start,
                    "loadavg_end": bench_env.loadavg(), **env}))


if __name__ == "__main__":
  main()
