"""Runs a suite: every sweep behind the paper's figures and tables, one after another.

  python -m experiments.suite --suite=paper_cpu --root=runs/paper_cpu [--dry_run] [--only=A,B]
                             [--nomeasure]

A bare suite name is looked up in experiments/suites/ (NAME.suite). Prints the plan (sweeps,
runs, epochs, estimated time) before training; finished sweeps are skipped and unfinished ones
resumed, so rerunning the same command continues an interrupted suite. Each sweep runs as
`python -m experiments.reproduce ARGS --workdir=ROOT/NAME`; at the end ROOT/suite_report.md
links every figure of every workdir (format: grokjax/suite.py).

The plan's estimate is measured (grokjax/suite_timing.py): a started sweep's own pace from its
checkpoints' times; each new sweep's compiled training program timed for a few seconds after its
compile (a line per sweep while measuring: about half a minute each on a 2-core CPU, minutes for
a whole suite), cached in ROOT/plan_timings.json per sweep config and machine so that a rerun
is instant. --nomeasure times nothing: new sweeps get the FLOP-count model's estimate, at once;
with --only, only those sweeps are timed. Each line of the plan says which source it used
(measured / own rate / model).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import reproduce  # noqa: F401 (a sweep line may carry its flags: --figures)
from experiments import sweep as sweep_cli  # defines the sweep flags parsed for the plan

flags.DEFINE_string("suite", None, "A suite file, or the name of one in experiments/suites/.")
flags.DEFINE_string("root", None, "Directory of the suite's workdirs (ROOT/NAME per sweep).")
flags.DEFINE_bool("dry_run", False, "Print the plan and stop.")
flags.DEFINE_list("only", None, "Run only these sweeps (names in the suite file); the rest of the "
                  "suite is left as it is and the suite report still lists every sweep.")
flags.DEFINE_bool("measure", True, "Time each new sweep's training program for the plan's "
                  "estimate (a few seconds after its compile; cached in ROOT/plan_timings.json). "
                  "--nomeasure: the FLOP-count model's estimate instead, instant (own rates and "
                  "cached timings are still used).")
FLAGS = flags.FLAGS
SUITES_DIR = os.path.join(os.path.dirname(__file__), "suites")


def suite_path(name: str) -> str:
  for path in (name, os.path.join(SUITES_DIR, name), os.path.join(SUITES_DIR, name + ".suite")):
    if os.path.isfile(path):
      return path
  sys.exit(f"error: --suite: {name} not found (nor in {SUITES_DIR}); shipped: "
           + ", ".join(sorted(os.listdir(SUITES_DIR))))


def config_of(sweep):
  """The validated Config of a sweep's arguments, parsed as `experiments.sweep` would."""
  from grokjax.config import ConfigError
  argv = sweep_cli.resolve_flagfiles(["suite", *sweep.args, "--workdir=plan"])
  FLAGS.unparse_flags()
  try:
    FLAGS(argv)
    return sweep_cli.config_from_flags()
  except (flags.Error, ConfigError) as e:
    sys.exit(f"error: sweep {sweep.name}: {e}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.suite or not FLAGS.root:
    raise app.UsageError("give --suite and --root")
  from grokjax import suite as suite_lib
  path, root, dry = suite_path(FLAGS.suite), FLAGS.root, FLAGS.dry_run
  only = tuple(FLAGS.only) if FLAGS.only else None
  measure = FLAGS.measure
  try:
    suite = suite_lib.parse(path)
  except suite_lib.SuiteError as e:
    sys.exit(f"error: {e}")
  from grokjax import suite_timing
  estimator = suite_timing.Estimator(root, measure=measure, only=only,
                                     log=lambda s: print(f"[plan] {s}", flush=True))
  steps = suite_lib.plan(suite, root, config_of, estimator)  # reparses the flags: read ours 1st
  if estimator.measured_s:
    print(f"[plan] measured in {estimator.measured_s:.0f} s (cached in "
          f"{estimator.path})", flush=True)
  print(suite_lib.plan_text(suite, steps), flush=True)
  if dry:
    return 0
  try:
    suite_lib.run(suite, root, steps, log=lambda s: print(f"[suite] {s}", flush=True),
                  only=only)
  except suite_lib.SuiteError as e:
    sys.exit(f"error: {e}")
  return 0


if __name__ == "__main__":
  app.run(main)
