"""Draw every figure a workdir supports, and write its report.

  python -m experiments.plot --workdir=DIR

Writes DIR/figures/*.png, DIR/figures/manifest.json (what was drawn, what was skipped and why)
and DIR/report.md. Reads only the workdir's plain files (no training code is imported).
"""
from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("workdir", None, "The sweep's workdir (config.json, metrics.jsonl, analysis/).")
flags.DEFINE_integer("dpi", 110, "Resolution of the PNG figures.")
flags.DEFINE_list("figures", None, "Draw only these figures (names as in "
                  "figures/manifest.json); the others keep their last drawing.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import os
  from grokjax.results import CONFIG, WorkdirError
  wd = FLAGS.workdir
  if not os.path.isdir(wd):
    raise WorkdirError(f"--workdir: {wd} " + ("is a file, not a workdir" if os.path.exists(wd)
                                              else "does not exist"))
  if not os.path.exists(os.path.join(wd, CONFIG)):
    raise WorkdirError(f"--workdir: {wd} has no {CONFIG} (not a sweep's workdir; train one "
                       "with experiments.sweep)")
  from grokjax import report, results
  from grokjax.lock import WorkdirLock
  prog = results.progress(wd)
  if not prog.finished:
    print(f"note: {wd}: {prog.text()}")
  with WorkdirLock(wd, "analysis"):
    manifest = report.render_figures(wd, dpi=FLAGS.dpi, only=FLAGS.figures)
    print(f"wrote {report.write_report(wd, manifest)}")


if __name__ == "__main__":
  from grokjax import console
  console.run_app(main, resumable=False)
