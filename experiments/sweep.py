"""Train a sweep (a grid of runs) as one compiled program.

  python -m experiments.sweep --flagfile=wd_sweep.flags --workdir=runs/wd

Swept flags (--seed, --weight_decay, --frac_train, --split_seed, --lr, --dropout, --l1,
--grokfast_alpha, --grokfast_lamb: `config.AXES`) take several values, repeated or
comma-separated; the sweep is their cartesian product. A bare flagfile name that is not in the
current directory is looked up in experiments/flags/. Rerunning on the same workdir resumes.

Several hosts: run the same command on each, with --coordinator_address=HOST:PORT
--num_processes=N --process_id=I (or inside SLURM / a TPU pod slice, where they are detected).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")

from grokjax.config import AXES, TASKS  # noqa: E402

flags.DEFINE_string("workdir", None, "Output directory (created; rerun to resume).")
flags.DEFINE_enum("task", "add", list(TASKS), "Task (modular arithmetic or a sequence task).")
flags.DEFINE_integer("p", None, "Modular tasks: the modulus (default 113; vocabulary p + 1).")
flags.DEFINE_integer("num_data", None, "Sequence tasks: fixed training examples, trained "
                     "full-batch; 0 (default) = infinite data, a fresh batch every step.")
flags.DEFINE_integer("batch_size", None, "Sequence tasks with infinite data: examples per step "
                     "(default: the task's, e.g. 64 for digit_addition).")
flags.DEFINE_integer("eval_size", None, "Sequence tasks: fixed held-out examples evaluated.")
flags.DEFINE_integer("n_ctx", None, "Sequence length, where the task allows it "
                     "(repeated_subsequence: 85, skip_trigram: 10).")
for _axis in AXES:
  flags.DEFINE_multi_string(_axis.name, None, f"{_axis.doc} (swept; default {_axis.default}).")
flags.DEFINE_integer("num_epochs", 40_000, "Epochs (= optimizer steps).")
flags.DEFINE_float("b2", 0.98, "AdamW β2 (the paper's 0.98; the induction runs used 0.999).")
flags.DEFINE_integer("d_model", 128, "Residual width.")
flags.DEFINE_integer("num_heads", 4, "Attention heads (d_head = d_model / num_heads).")
flags.DEFINE_integer("d_mlp", None, "MLP width (default 4·d_model).")
flags.DEFINE_integer("num_layers", 1, "Transformer blocks.")
flags.DEFINE_bool("attn_only", False, "Attention-only blocks (no MLP).")
flags.DEFINE_float("embed_std", None, "Init std of the embedding W_E (default: the authors' "
                   "1/sqrt(d_model); the induction-head authors' model: 1, as nn.Embedding).")
flags.DEFINE_string("act", "relu", "MLP activation: relu or gelu.")
flags.DEFINE_string("loss_dtype", "float64", "Log-softmax precision: float64 (paper) or float32.")
flags.DEFINE_string("matmul_precision", "highest",
                    "jax_default_matmul_precision of the sweep: highest (true float32, the "
                    "paper's numerics) or a faster one (tensorfloat32, bfloat16, default = the "
                    "backend's choice, TF32 on recent GPUs). No effect on CPUs.")
flags.DEFINE_bool("x64", True, "64-bit types in the sweep's programs (the float64 loss needs "
                  "them); --nox64 with --loss_dtype=float32 or float32_stable runs with none "
                  "(TPUs). Data draws and dropout masks depend on it.")
flags.DEFINE_string("grokfast", "none", "Grokfast gradient filter before AdamW: none, ema, ma.")
flags.DEFINE_integer("grokfast_window", 100, "Grokfast-MA window (gradients averaged).")
flags.DEFINE_integer("eval_every", 10, "Epochs between test-loss evaluations.")
flags.DEFINE_integer("checkpoint_every", 100, "Epochs between orbax checkpoints.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Start JAX's multi-process runtime: auto = when --coordinator_address is given "
                  "or a multi-process SLURM job / TPU pod slice / JAX_COORDINATOR_ADDRESS is "
                  "detected; on = always (JAX detects the cluster); off = never.")
flags.DEFINE_string("coordinator_address", None, "Several processes: HOST:PORT of process 0 "
                    "(every process passes the same one).")
flags.DEFINE_integer("num_processes", None, "Several processes: how many (all run this command).")
flags.DEFINE_integer("process_id", None, "Several processes: this one's index, 0 .. N-1 "
                     "(process 0 writes the workdir's files).")
flags.DEFINE_integer("heartbeat_timeout_s", 100, "Several processes: seconds without a sign of "
                     "life after which a process is declared dead and the others stop.")
flags.DEFINE_float("state_every_s", 30.0, "Seconds between full-state (resume) checkpoints; "
                   "parameters are still saved every --checkpoint_every epochs.")

FLAGS = flags.FLAGS
SWEPT = tuple(a.name for a in AXES)


def _values(name: str, cast):
  if FLAGS[name].value is None:
    return None
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
        kind = "number" if cast is float else "integer"
        raise ConfigError(f"--{name}: {tok!r} is not a valid {kind}") from None
  return tuple(out)


def config_from_flags():
  """The validated Config for the parsed flags (raises ConfigError naming the flag)."""
  from grokjax.config import make_config
  swept = {a.name: _values(a.name, a.cast if a.cast is float else _int) for a in AXES}
  return make_config(
      task=FLAGS.task, p=FLAGS.p, num_data=FLAGS.num_data, batch_size=FLAGS.batch_size,
      eval_size=FLAGS.eval_size, n_ctx=FLAGS.n_ctx, d_model=FLAGS.d_model,
      num_heads=FLAGS.num_heads, d_mlp=FLAGS.d_mlp, num_layers=FLAGS.num_layers,
      attn_only=FLAGS.attn_only, embed_std=FLAGS.embed_std, act=FLAGS.act,
      num_epochs=FLAGS.num_epochs, b2=FLAGS.b2,
      loss_dtype=FLAGS.loss_dtype, matmul_precision=FLAGS.matmul_precision,
      eval_every=FLAGS.eval_every, checkpoint_every=FLAGS.checkpoint_every,
      grokfast=FLAGS.grokfast, grokfast_window=FLAGS.grokfast_window, x64=FLAGS.x64, **swept)


def _int(tok: str) -> int:
  """An integer flag value; '1e3'-style spellings of integers are accepted."""
  v = float(tok) if any(c in tok for c in ".eE") else int(tok)
  if v != int(v):
    raise ValueError(tok)
  return int(v)


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
  """absl app.run with shipped-flagfile lookup; a bad flag or workdir, a signal or a full disk
  end in one line (with the command that resumes), never a traceback (grokjax.console).

  With several processes a failed one exits at once (os._exit): JAX's orderly shutdown would
  wait for every peer, and a dead one never comes."""
  from grokjax import console  # light: a bad flag fails before jax is imported
  try:
    console.run_app(main, resolve_flagfiles)
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if code != 0 and "jax" in sys.modules and _process_count() > 1:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)
    raise


def _process_count() -> int:
  from grokjax import distributed
  return distributed.process_count_if_started()


def start_processes() -> None:
  """jax.distributed.initialize from the flags (nothing for a single process)."""
  from grokjax import distributed
  from grokjax.config import ConfigError
  try:
    distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes,
                           FLAGS.process_id, FLAGS.heartbeat_timeout_s)
  except ValueError as e:  # ours name the flag; JAX's own name a missing value
    raise ConfigError(str(e) if str(e).startswith("--") else f"--distributed: {e}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from grokjax.config import ConfigError
  if not FLAGS.workdir:
    raise ConfigError("--workdir: required (the directory to write or resume)")
  cfg = config_from_flags()
  start_processes()
  from grokjax import distributed, runner
  try:
    status = runner.run_sweep(cfg, FLAGS.workdir, state_every_s=FLAGS.state_every_s)
  except distributed.PeerLost as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return distributed.PEER_LOST_EXIT
  if distributed.is_primary():
    print(f"{status}: {FLAGS.workdir}")
  return 0


if __name__ == "__main__":
  run(main)
