"""Frozen, validated configuration: the paper's defaults (SPEC §1) in one place.

A *run* is one model; a *sweep* is the cartesian grid of runs over the values of the swept axes
(`AXES`, the one list of them: every other module iterates it). Everything that sets an array
shape (the task's sizes, widths, epochs) lives in `ModelConfig`/`TrainConfig`/`Config` and is
shared by every run of a sweep; swept values become per-run arrays of one compiled program.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

MODULAR_TASKS = ("add", "subtract", "x2xyy2", "rand", "multiply")
SEQUENCE_TASKS = ("digit_addition", "repeated_subsequence", "skip_trigram")
TASKS = MODULAR_TASKS + SEQUENCE_TASKS
ACTS = ("relu", "gelu")
LOSS_DTYPES = ("float64", "float32", "float32_stable")
GROKFAST = ("none", "ema", "ma")
# jax_default_matmul_precision values. "highest" is true float32 on every backend; the backend
# default ("default") is TF32 on recent NVIDIA GPUs and bfloat16 passes on TPUs, which changes
# the numerics of the paper's float32 model: faster, but opt-in.
MATMUL_PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "bfloat16", "default")
INT32_MAX = 2**31 - 1


class ConfigError(ValueError):
  """A bad flag or config value; the message names the flag and what is allowed."""


def _check(ok: bool, flag: str, msg: str) -> None:
  if not ok:
    raise ConfigError(f"--{flag}: {msg}")


@dataclasses.dataclass(frozen=True)
class Axis:
  """One swept per-run value: its flag, type, default and where it applies."""
  name: str
  cast: type
  default: Any
  doc: str
  lo: float = -math.inf           # allowed range [lo, hi) or (lo, hi) when lo_open
  hi: float = math.inf
  lo_open: bool = False
  modular_only: bool = False
  grokfast_only: bool = False

  def applies(self, cfg: "Config") -> bool:
    return ((not self.modular_only or cfg.task in MODULAR_TASKS)
            and (not self.grokfast_only or cfg.train.grokfast != "none"))


# Grid order: runs are the cartesian product in this order (the first axis varies slowest).
AXES = (
    Axis("seed", int, 0, "model-init (and dropout) seed", lo=0, hi=INT32_MAX + 1),
    Axis("weight_decay", float, 1.0, "AdamW decoupled weight decay λ", lo=0),
    Axis("frac_train", float, 0.3, "fraction of the p² pairs used for training", lo=0, hi=1,
         lo_open=True, modular_only=True),
    Axis("split_seed", int, 0, "data seed: the authors' random.shuffle split (modular tasks), "
         "the fixed train/test sets and the infinite stream (sequence tasks)",
         lo=0, hi=INT32_MAX + 1),
    Axis("lr", float, 1e-3, "peak learning rate", lo=0, lo_open=True),
    Axis("dropout", float, 0.0, "dropout rate on MLP neurons", lo=0, hi=1),
    Axis("l1", float, 0.0, "L1 penalty coefficient added to the loss", lo=0),
    Axis("grokfast_alpha", float, 0.98, "Grokfast EMA momentum α", lo=0, hi=1,
         grokfast_only=True),
    Axis("grokfast_lamb", float, 2.0, "Grokfast amplification λ", lo=0, grokfast_only=True),
)
AXIS_NAMES = tuple(a.name for a in AXES)
_AXIS = {a.name: a for a in AXES}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  d_vocab: int = 114          # modular: p + 1 (the '=' token is id p)
  d_vocab_out: int = 114      # modular: training logits cover all p + 1 classes (SPEC §1.5)
  n_ctx: int = 3
  d_model: int = 128
  num_heads: int = 4
  d_mlp: int = 512
  num_layers: int = 1
  act: str = "relu"
  use_mlp: bool = True        # False: attention-only blocks (`--attn_only`)
  embed_std: float | None = None  # init std of W_E; None: the authors' 1/sqrt(d_model)

  @property
  def d_head(self) -> int:
    return self.d_model // self.num_heads


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  num_epochs: int = 40_000
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-8
  warmup_steps: int = 10      # lr(step) = lr * min(step / warmup_steps, 1): step 0 uses lr 0
  loss_dtype: str = "float64"
  matmul_precision: str = "highest"
  eval_every: int = 10
  checkpoint_every: int = 100
  grokfast: str = "none"      # "ema" or "ma": a Grokfast gradient filter before AdamW
  grokfast_window: int = 100  # MA window (a shape: not swept)
  x64: bool = True            # 64-bit types in the sweep's programs (False: none, for TPUs)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The swept values, one tuple per axis of `AXES` (an empty tuple: the axis does not apply)."""
  seed: tuple[int, ...] = (0,)
  weight_decay: tuple[float, ...] = (1.0,)
  frac_train: tuple[float, ...] = (0.3,)
  split_seed: tuple[int, ...] = (0,)
  lr: tuple[float, ...] = (1e-3,)
  dropout: tuple[float, ...] = (0.0,)
  l1: tuple[float, ...] = (0.0,)
  grokfast_alpha: tuple[float, ...] = ()
  grokfast_lamb: tuple[float, ...] = ()

  def axes(self) -> list[tuple[str, tuple]]:
    """(name, values) of the axes that apply, in grid order."""
    return [(a.name, getattr(self, a.name)) for a in AXES if getattr(self, a.name)]

  @property
  def num_runs(self) -> int:
    return math.prod(len(v) for _, v in self.axes())


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = "add"
  p: int = 113                # modular tasks: the modulus
  num_data: int = 0           # sequence tasks: fixed training examples; 0 = infinite data
  batch_size: int = 0         # sequence tasks with infinite data: fresh examples per step
  eval_size: int = 0          # sequence tasks: fixed held-out examples evaluated
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  sweep: SweepConfig = SweepConfig()

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    """Reads config.json, including files written before lr/dropout/l1 became swept axes."""
    d = json.loads(json.dumps(d))
    model, train, sweep = d["model"], d["train"], d["sweep"]
    for name, old in (("lr", train), ("l1", train), ("dropout", model)):
      if name in old and name not in sweep:
        sweep[name] = [old.pop(name)]
      old.pop(name, None)
    sw = {k: tuple(v) for k, v in sweep.items()}
    top = {k: d[k] for k in ("num_data", "batch_size", "eval_size") if k in d}
    return cls(task=d["task"], p=d["p"], model=ModelConfig(**model),
               train=TrainConfig(**train), sweep=SweepConfig(**sw), **top)


def _finite(x: float, flag: str) -> float:
  _check(isinstance(x, (int, float)) and math.isfinite(x), flag, f"must be finite, got {x}")
  return float(x)


def _axis_values(axis: Axis, values) -> tuple:
  flag = axis.name
  vals = tuple(values)
  _check(len(vals) >= 1, flag, "needs at least one value")
  out = []
  for v in vals:
    if axis.cast is int:
      _check(float(v) == int(v), flag, f"must be an integer, got {v}")
      v = int(v)
    else:
      v = _finite(float(v), flag)
    lo_ok = v > axis.lo if axis.lo_open else v >= axis.lo
    if not (lo_ok and v < axis.hi):
      lo = "(" if axis.lo_open else "["
      hi = "2^31" if axis.hi == INT32_MAX + 1 else axis.hi
      raise ConfigError(f"--{flag}: every value must be in {lo}{axis.lo:g}, {hi}), got {v}")
    out.append(v)
  _check(len(set(out)) == len(out), flag, f"has repeated values {out}")
  return tuple(out)


def make_config(*, task: str = "add", p: int | None = None, num_data: int | None = None,
                batch_size: int | None = None, eval_size: int | None = None,
                n_ctx: int | None = None, d_model: int = 128, num_heads: int = 4,
                d_mlp: int | None = None, num_layers: int = 1, act: str = "relu",
                attn_only: bool = False, embed_std: float | None = None, num_epochs: int = 40_000, b2: float = 0.98,
                loss_dtype: str = "float64", matmul_precision: str = "highest",
                eval_every: int = 10, checkpoint_every: int = 100, grokfast: str = "none",
                grokfast_window: int = 100, x64: bool = True, **swept) -> Config:
  """Builds and validates a Config; sizes are derived from the task (SPEC §7.4).

  `swept` takes one iterable (or a single value) per axis of `AXES`; an axis not given takes its
  default. Task-specific values left as None take the task's default; given for a task they do
  not apply to, they are an error that names the flag.
  """
  from grokjax import tasks  # the task registry knows each task's sizes and defaults
  _check(task in TASKS, "task", f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
  unknown = set(swept) - set(AXIS_NAMES)
  if unknown:
    raise TypeError(f"make_config got unknown arguments {sorted(unknown)}")
  for name, v in list(swept.items()):
    if v is not None and (isinstance(v, (int, float, str)) or not hasattr(v, "__iter__")):
      swept[name] = (v,)
  _check(grokfast in GROKFAST, "grokfast", f"unknown {grokfast!r}; allowed: {', '.join(GROKFAST)}")
  train = TrainConfig(num_epochs=num_epochs, b2=_finite(b2, "b2"), loss_dtype=loss_dtype,
                      matmul_precision=matmul_precision, eval_every=eval_every,
                      checkpoint_every=checkpoint_every, grokfast=grokfast,
                      grokfast_window=grokfast_window, x64=bool(x64))
  base = Config(task=task, train=train)
  sweep = {}
  for axis in AXES:
    given = swept.get(axis.name)
    if not axis.applies(base):
      why = ("modular tasks" if axis.modular_only else "--grokfast=ema or ma")
      _check(given is None, axis.name, f"applies to {why} only (got --task={task}, "
             f"--grokfast={grokfast})")
      sweep[axis.name] = ()
    else:
      sweep[axis.name] = _axis_values(axis, (axis.default,) if given is None else given)
  task_sizes = tasks.resolve(task, p=p, num_data=num_data, batch_size=batch_size,
                             eval_size=eval_size, n_ctx=n_ctx,
                             frac_train=sweep["frac_train"])
  _check(d_model >= 1, "d_model", f"must be >= 1, got {d_model}")
  _check(num_heads >= 1, "num_heads", f"must be >= 1, got {num_heads}")
  _check(d_model % num_heads == 0, "d_model",
         f"must be divisible by --num_heads={num_heads}, got {d_model}")
  d_mlp = 4 * d_model if d_mlp is None else d_mlp
  _check(d_mlp >= 1, "d_mlp", f"must be >= 1, got {d_mlp}")
  _check(num_layers >= 1, "num_layers", f"must be >= 1, got {num_layers}")
  _check(embed_std is None or (math.isfinite(embed_std) and embed_std > 0), "embed_std",
         f"must be a finite number > 0, got {embed_std}")
  _check(act in ACTS, "act", f"unknown activation {act!r}; allowed: {', '.join(ACTS)}")
  _check(not (attn_only and any(sweep["dropout"])), "dropout",
         "acts on MLP neurons; an --attn_only model has none")
  _check(0 <= num_epochs <= INT32_MAX, "num_epochs", f"must be in [0, 2^31), got {num_epochs}")
  _check(0 < b2 < 1, "b2", f"must be in (0, 1), got {b2}")
  _check(loss_dtype in LOSS_DTYPES, "loss_dtype",
         f"unknown {loss_dtype!r}; allowed: {', '.join(LOSS_DTYPES)}")
  _check(x64 or loss_dtype != "float64", "x64",
         "the float64 loss needs 64-bit types: --nox64 needs --loss_dtype=float32 or "
         "float32_stable")
  _check(matmul_precision in MATMUL_PRECISIONS, "matmul_precision",
         f"unknown {matmul_precision!r}; allowed: {', '.join(MATMUL_PRECISIONS)}")
  _check(eval_every >= 1, "eval_every", f"must be >= 1, got {eval_every}")
  _check(checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {checkpoint_every}")
  _check(checkpoint_every % eval_every == 0, "checkpoint_every",
         f"must be a multiple of --eval_every={eval_every}, got {checkpoint_every}")
  _check(num_epochs % checkpoint_every == 0, "num_epochs",
         f"must be a multiple of --checkpoint_every={checkpoint_every}, got {num_epochs}")
  _check(grokfast_window >= 1, "grokfast_window", f"must be >= 1, got {grokfast_window}")
  model = ModelConfig(d_vocab=task_sizes["d_vocab"], d_vocab_out=task_sizes["d_vocab_out"],
                      n_ctx=task_sizes["n_ctx"], d_model=d_model, num_heads=num_heads,
                      d_mlp=d_mlp, num_layers=num_layers, act=act, use_mlp=not attn_only,
                      embed_std=embed_std)
  return Config(task=task, p=task_sizes["p"], num_data=task_sizes["num_data"],
                batch_size=task_sizes["batch_size"], eval_size=task_sizes["eval_size"],
                model=model, train=train, sweep=SweepConfig(**sweep))
