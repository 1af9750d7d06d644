"""Train a sweep (a grid of runs) as one compiled program.

  python -m experiments.sweep --flagfile=wd_sweep.flags --workdir=runs/wd

Swept flags (--seed, --weight_decay, --frac_train, --split_seed) take several values, repeated
or comma-separated; the sweep is their cartesian product. A bare flagfile name that is not in the
current directory is looked up in experiments/flags/. Rerunning on the same workdir resumes.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")

flags.DEFINE_string("workdir", None, "Output directory (created; rerun to resume).")
flags.DEFINE_enum("task", "add", ["add", "subtract", "x2xyy2", "rand"], "Modular task.")
flags.DEFINE_integer("p", 113, "Modulus (vocabulary p + 1, '=' is token p).")
flags.DEFINE_multi_string("seed", ["0"], "Model-init seeds (swept).")
flags.DEFINE_multi_string("weight_decay", ["1.0"], "AdamW weight decays λ (swept).")
flags.DEFINE_multi_string("frac_train", ["0.3"], "Fractions of the p² pairs used for training (swept).")
flags.DEFINE_multi_string("split_seed", ["0"], "Seeds of the authors' random.shuffle split (swept).")
flags.DEFINE_integer("num_epochs", 40_000, "Full-batch epochs (= optimizer steps).")
flags.DEFINE_float("lr", 1e-3, "Peak learning rate (10-step warm-up from 0).")
flags.DEFINE_integer("d_model", 128, "Residual width.")
flags.DEFINE_integer("num_heads", 4, "Attention heads (d_head = d_model / num_heads).")
flags.DEFINE_integer("d_mlp", None, "MLP width (default 4·d_model).")
flags.DEFINE_integer("num_layers", 1, "Transformer blocks.")
flags.DEFINE_string("act", "relu", "MLP activation: relu or gelu.")
flags.DEFINE_float("dropout", 0.0, "Dropout rate on MLP neurons (0 = off, the paper's mainline).")
flags.DEFINE_float("l1", 0.0, "L1 penalty coefficient added to the loss.")
flags.DEFINE_string("loss_dtype", "float64", "Log-softmax precision: float64 (paper) or float32.")
flags.DEFINE_string("matmul_precision", "highest",
                    "jax_default_matmul_precision of the sweep: highest (true float32, the "
                    "paper's numerics) or a faster one (tensorfloat32, bfloat16, default = the "
                    "backend's choice, TF32 on recent GPUs). No effect on CPUs.")
flags.DEFINE_integer("eval_every", 10, "Epochs between test-loss evaluations.")
flags.DEFINE_integer("checkpoint_every", 100, "Epochs between orbax checkpoints.")
flags.DEFINE_float("state_every_s", 30.0, "Seconds between full-state (resume) checkpoints; "
                   "parameters are still saved every --checkpoint_every epochs.")

FLAGS = flags.FLAGS


def _values(name: str, cast):
  out = []
  for item in FLAGS[name].value:
    for tok in str(item).split(","):
      tok = tok.strip()
      if not tok:
        continue
      try:
        out.append(cast(tok))
      except ValueError:
        from grokjax.config import ConfigError
        raise ConfigError(f"--{name}: {tok!r} is not a valid {cast.__name__}") from None
  return tuple(out)


def config_from_flags():
  """The validated Config for the parsed flags (raises ConfigError naming the flag)."""
  from grokjax.config import make_config
  return make_config(
      task=FLAGS.task, p=FLAGS.p, d_model=FLAGS.d_model, num_heads=FLAGS.num_heads,
      d_mlp=FLAGS.d_mlp, num_layers=FLAGS.num_layers, act=FLAGS.act, dropout=FLAGS.dropout,
      num_epochs=FLAGS.num_epochs, lr=FLAGS.lr, l1=FLAGS.l1, loss_dtype=FLAGS.loss_dtype,
      matmul_precision=FLAGS.matmul_precision, eval_every=FLAGS.eval_every,
      checkpoint_every=FLAGS.checkpoint_every,
      seed=_values("seed", int), weight_decay=_values("weight_decay", float),
      frac_train=_values("frac_train", float), split_seed=_values("split_seed", int))


SWEPT = ("seed", "weight_decay", "frac_train", "split_seed")


def _flagfile_path(path: str) -> str:
  shipped = os.path.join(FLAGS_DIR, path)
  if os.path.exists(path):
    return path
  if os.path.exists(shipped):
    return shipped
  sys.exit(f"error: --flagfile: {path} not found (nor in {FLAGS_DIR}); shipped: "
           + ", ".join(sorted(os.listdir(FLAGS_DIR))))


def _expand(args: list[str], from_file: bool) -> list[tuple[str, bool]]:
  out = []
  for arg in args:
    if arg.startswith("--flagfile="):
      with open(_flagfile_path(arg.split("=", 1)[1])) as f:
        lines = [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]
      out += _expand(lines, True)
    else:
      out.append((arg, from_file))
  return out


def resolve_flagfiles(argv: list[str]) -> list[str]:
  """Inlines flagfiles (a bare name not found here is looked up in experiments/flags/).

  Swept flags accumulate their values (repeated or comma-separated), but values given on the
  command line replace a flagfile's values of the same flag: `--flagfile=wd_sweep.flags
  --weight_decay=0.5` trains λ = 0.5 only.
  """
  args = _expand(argv[1:], False)
  name = lambda a: a[2:].split("=", 1)[0] if a.startswith("--") else None
  on_cli = {name(a) for a, ff in args if not ff and name(a) in SWEPT}
  return argv[:1] + [a for a, ff in args if not (ff and name(a) in on_cli)]


def run(main):
  """absl app.run with shipped-flagfile lookup and ConfigError turned into a clean exit."""
  def wrapped(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    from grokjax.config import ConfigError
    try:
      return main(argv)
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  app.run(wrapped, argv=resolve_flagfiles(sys.argv))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from grokjax.config import ConfigError
  if not FLAGS.workdir:
    raise ConfigError("--workdir: required (the directory to write or resume)")
  cfg = config_from_flags()
  from grokjax import runner
  status = runner.run_sweep(cfg, FLAGS.workdir, state_every_s=FLAGS.state_every_s)
  print(f"{status}: {FLAGS.workdir}")
  return 0


if __name__ == "__main__":
  run(main)
