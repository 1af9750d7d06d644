"""Sweep → analyze → plot → report, in one command; rerunning reuses the finished steps.

  python -m experiments.reproduce --workdir=DIR [--flagfile=phase_diagram.flags]

Takes every flag of `experiments.sweep` (a bare flagfile name is looked up in experiments/flags/).
Steps: (1) train or resume the sweep (a finished sweep is detected and left alone); (2) analyse the
checkpoints (incremental: only checkpoints not analysed yet); (3) draw the figures and (4) write
DIR/report.md (both cheap, always redone so that the report matches the files).
"""
from __future__ import annotations

import sys
import time

from absl import app, flags

from experiments import sweep as sweep_cli

flags.DEFINE_bool("skip_sweep", False, "Do not train: analyse / plot what the workdir holds.")
flags.DEFINE_bool("skip_analysis", False, "Do not run the analysis step.")
flags.DEFINE_integer("dpi", 110, "Resolution of the PNG figures.")
flags.DEFINE_list("figures", None, "Draw only these figures (names as in "
                  "figures/manifest.json); the others keep their last drawing.")
FLAGS = flags.FLAGS


def _say(msg: str) -> None:
  print(f"[reproduce] {msg}", file=sys.stderr, flush=True)


def run_analysis(workdir: str) -> str:
  """Analyses the checkpoints not analysed yet (the analysis library is incremental)."""
  from grokjax import analysis, llc_analysis, results, tasks
  log = lambda s: _say("2/4 " + s)
  if not tasks.is_modular(results.load_config(workdir).task):
    # Sequence tasks: the per-checkpoint tables (losses, per-group losses, weight norms); the
    # modular Fourier analysis does not apply. (`experiments.analyze --llc` adds the LLC.)
    llc_analysis.analyze_workdir(workdir, with_llc=False, log=log)
    return f"per-checkpoint tables of {len(results.load_runs(workdir))} runs"
  finals = analysis.analyze_workdir(workdir, log=log)
  return f"{len(finals)} runs analysed"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import os
  from grokjax.results import CONFIG, CHECKPOINTS, WorkdirError
  workdir = FLAGS.workdir
  if not workdir:
    raise WorkdirError("--workdir: required (the directory to write or resume)")
  if FLAGS.figures:  # checked before hours of training, not after
    from grokjax import figures
    from grokjax.config import ConfigError
    unknown = [n for n in FLAGS.figures if n not in figures.all_names()]
    if unknown:
      raise ConfigError(f"--figures: no figure {', '.join(unknown)}; the figures: "
                        + ", ".join(figures.all_names()))
  t0 = time.time()
  if FLAGS.skip_sweep:
    _say("1/4 sweep: skipped (--skip_sweep)")
    if not any(os.path.exists(os.path.join(workdir, *p))
               for p in ([CONFIG], [CHECKPOINTS, CONFIG])):
      raise WorkdirError(f"--workdir: {workdir} has no {CONFIG} (not a sweep's workdir)")
  else:
    cfg = sweep_cli.config_from_flags()
    from grokjax import runner
    _say(f"1/4 sweep: {cfg.sweep.num_runs} runs × {cfg.train.num_epochs} epochs, "
         f"task {cfg.task}")
    _say(f"1/4 sweep: {runner.run_sweep(cfg, workdir)} ({time.time() - t0:.0f}s)")
  from grokjax import report, results
  from grokjax.lock import WorkdirLock
  prog = results.progress(workdir)
  if not prog.finished:
    _say(f"note: {prog.text()}: the analysis and the report describe epoch {prog.final_epoch}")
  if FLAGS.skip_analysis:
    _say("2/4 analysis: skipped (--skip_analysis)")
  else:
    _say(f"2/4 analysis: {run_analysis(workdir)} ({time.time() - t0:.0f}s)")
  with WorkdirLock(workdir, "analysis", _say):
    manifest = report.render_figures(workdir, dpi=FLAGS.dpi, only=FLAGS.figures,
                                     echo=lambda s: _say("3/4 plot: " + s))
    path = report.write_report(workdir, manifest)
  n = sum("file" in e for e in manifest)
  _say(f"4/4 report: {path} ({n} figures, {len(manifest) - n} skipped; {time.time() - t0:.0f}s)")
  return 0


if __name__ == "__main__":
  sweep_cli.run(main)
