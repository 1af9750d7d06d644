"""Progress measures and mechanistic evidence for a sweep's checkpoints, or for weights files.

  python -m experiments.analyze --workdir=DIR
      every checkpoint of every run → DIR/analysis/ (run_XXXX.csv, run_XXXX_final.{json,npz},
      summary.csv); incremental: a rerun analyses only new checkpoints.
  python -m experiments.analyze --authors_weights=FILE.npz --frac_train=0.3 --split_seed=1 \
      --out=FILE.json
      one JSON object with the final-checkpoint evidence of the authors' weights (PyTorch
      state-dict names; .npz, or .pth with torch installed); p is read from the shapes.
  python -m experiments.analyze --workdir=DIR --llc
      also the local learning coefficient of every checkpoint (flags: experiments/llc_flags.py).
      A workdir of a non-modular task gets its per-checkpoint tables (and the LLC) only.
"""
from __future__ import annotations

import json
import sys

from absl import app, flags

from experiments import llc_flags  # --llc, --llc_every, ...: the local learning coefficient

flags.DEFINE_string("workdir", None, "A sweep's workdir (config.json, checkpoints/).")
flags.DEFINE_string("authors_weights", None, "A weights file in the authors' state-dict format.")
flags.DEFINE_float("frac_train", 0.3, "With --authors_weights: the run's training fraction.")
flags.DEFINE_integer("split_seed", 0, "With --authors_weights: the run's split seed.")
flags.DEFINE_string("task", "add", "With --authors_weights: the task (labels).")
flags.DEFINE_string("out", None, "With --authors_weights: output JSON path (default: stdout).")
flags.DEFINE_integer("ckpt_batch", 32, "With --workdir: checkpoints read per step.")
flags.DEFINE_integer("vmap_batch", 1, "With --workdir: checkpoints per vmapped call "
                     "(memory grows with p²·d_mlp per checkpoint).")
flags.DEFINE_bool("detect_per_checkpoint", False, "With --workdir: also detect each checkpoint's "
                  "own key frequencies (columns *_detected), besides the final checkpoint's.")
FLAGS = flags.FLAGS


def _num(x) -> str:
  return "—" if x is None else f"{x:.3g}"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if (FLAGS.workdir is None) == (FLAGS.authors_weights is None):
    raise app.UsageError("give exactly one of --workdir or --authors_weights")
  if FLAGS.workdir is not None:
    import os
    from grokjax.results import CHECKPOINTS, CONFIG, WorkdirError
    wd = FLAGS.workdir
    if not os.path.isdir(wd):
      raise WorkdirError(f"--workdir: {wd} " + ("is a file, not a workdir"
                                                if os.path.exists(wd) else "does not exist"))
    if not any(os.path.exists(os.path.join(wd, *p)) for p in ([CONFIG], [CHECKPOINTS, CONFIG])):
      raise WorkdirError(f"--workdir: {wd} has no {CONFIG} (not a sweep's workdir; train one "
                         "with experiments.sweep)")
  from grokjax import analysis, interop, results
  if FLAGS.workdir is not None and (task := llc_flags.not_modular(FLAGS.workdir)):
    print(f"note: task {task}: the modular (Fourier) analysis does not apply; writing the "
          "per-checkpoint tables" + (" and the LLC" if FLAGS.llc else ""))
    llc_flags.run(FLAGS.workdir, tables_only=True)
    return
  if FLAGS.workdir is not None:
    finals = analysis.analyze_workdir(FLAGS.workdir, ckpt_batch=FLAGS.ckpt_batch,
                                      vmap_batch=FLAGS.vmap_batch,
                                      detect_per_checkpoint=FLAGS.detect_per_checkpoint)
    llc_flags.run(FLAGS.workdir)
    for i, f in sorted(finals.items()):
      print(analysis.final_line(i, f))
    prog = results.progress(FLAGS.workdir)
    if not prog.finished:
      print(f"note: {prog.text()}: these are the values at epoch {prog.final_epoch}")
    return
  try:
    rec = analysis.analyze_weights(FLAGS.authors_weights, FLAGS.frac_train, FLAGS.split_seed,
                                   task=FLAGS.task)
  except (interop.WeightsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if FLAGS.out:
    results.write_json(FLAGS.out, rec)
    print(f"wrote {FLAGS.out}: key freqs {rec['key_freqs']}, "
          f"test loss {_num(rec.get('loss_test'))}")
  else:
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
  from grokjax import console
  console.run_app(main, resumable=False)
