"""The LLC flags of `experiments.analyze` (--llc and its settings) and the step they run.

  python -m experiments.analyze --workdir=D --llc [--llc_every=1] [--llc_chains=4]
      [--llc_draws=400] [--llc_burnin=100] [--llc_epsilon=...] [--llc_nbeta=...]
      [--llc_gamma=...] [--llc_batch_size=256] [--llc_seed=0] [--llc_runs=0,2]

adds llc, llc_std, llc_loss_init to every run's analysis/run_NNNN.csv (grokjax/llc_analysis.py).
For a workdir of a non-modular task, `experiments.analyze` skips the modular (Fourier) analysis
and writes the per-checkpoint tables from metrics.jsonl (and the LLC with --llc).
"""
from __future__ import annotations

import dataclasses

from absl import flags

flags.DEFINE_bool("llc", False, "With --workdir: also the local learning coefficient (SGLD) of "
                  "every (--llc_every-th) checkpoint of every run: columns llc, llc_std.")
flags.DEFINE_integer("llc_every", 1, "LLC of every k-th checkpoint (and the last).")
flags.DEFINE_integer("llc_chains", None, "SGLD chains per checkpoint (default: "
                     "llc_analysis.DEFAULT).")
flags.DEFINE_integer("llc_draws", None, "Draws per chain after the burn-in.")
flags.DEFINE_integer("llc_burnin", None, "Burn-in steps per chain.")
flags.DEFINE_float("llc_epsilon", None, "SGLD step size ε (calibrate: experiments.llc_calibrate).")
flags.DEFINE_float("llc_nbeta", None, "Inverse temperature nβ (default: n / log n per run).")
flags.DEFINE_float("llc_gamma", None, "Localisation strength γ.")
flags.DEFINE_integer("llc_batch_size", None, "SGLD minibatch size.")
flags.DEFINE_list("llc_runs", None, "Run ids whose LLC is estimated (default: every run), "
                  "e.g. --llc_runs=0 for the plain run of a sweep.")
flags.DEFINE_integer("llc_seed", 0, "PRNG seed of the LLC (keys fold in run and epoch).")
FLAGS = flags.FLAGS


def settings():
  from grokjax import llc_analysis
  over = dict(num_chains=FLAGS.llc_chains, num_draws=FLAGS.llc_draws,
              num_burnin=FLAGS.llc_burnin, epsilon=FLAGS.llc_epsilon, nbeta=FLAGS.llc_nbeta,
              gamma=FLAGS.llc_gamma, batch_size=FLAGS.llc_batch_size)
  return dataclasses.replace(llc_analysis.DEFAULT,
                             **{k: v for k, v in over.items() if v is not None})


def _runs() -> list[int] | None:
  if FLAGS.llc_runs is None:
    return None
  try:
    return [int(r) for r in FLAGS.llc_runs]
  except ValueError:
    raise SystemExit(f"--llc_runs: run ids are integers, got {','.join(FLAGS.llc_runs)}")


def run(workdir: str, tables_only: bool = False) -> dict | None:
  """The LLC step (when --llc); with tables_only (non-modular tasks) the per-checkpoint tables
  are written even without --llc."""
  if not (FLAGS.llc or tables_only):
    return None
  from grokjax import llc_analysis
  out = llc_analysis.analyze_workdir(workdir, settings(), every=FLAGS.llc_every,
                                     seed=FLAGS.llc_seed, with_llc=FLAGS.llc,
                                     runs=_runs())
  if FLAGS.llc:
    print(f"llc: {len(out['epochs'])} checkpoints per run; {out['computed']} estimates computed, "
          f"{out['reused']} reused; columns llc, llc_std in {workdir}/analysis/run_*.csv")
  return out


def not_modular(workdir: str) -> str | None:
  """The task of a non-modular workdir (None for a modular one)."""
  from grokjax import results, tasks
  task = results.load_config(workdir).task
  return None if tasks.is_modular(task) else task
