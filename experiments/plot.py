"""Draw every figure a workdir supports, and write its report.

  python -m experiments.plot --workdir=DIR

Writes DIR/figures/*.png, DIR/figures/manifest.json (what was drawn, what was skipped and why)
and DIR/report.md. Reads only the workdir's plain files (no training code is imported).
"""
from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("workdir", None, "The sweep's workdir (config.json, metrics.jsonl, analysis/).")
flags.DEFINE_integer("dpi", 110, "Resolution of the PNG figures.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import os
  if not os.path.exists(os.path.join(FLAGS.workdir, "config.json")):
    raise app.UsageError(f"--workdir={FLAGS.workdir}: no config.json there (not a sweep's "
                         "workdir; train one with experiments.sweep)")
  from grokjax import report
  manifest = report.render_figures(FLAGS.workdir, dpi=FLAGS.dpi)
  print(f"wrote {report.write_report(FLAGS.workdir, manifest)}")


if __name__ == "__main__":
  app.run(main)
