"""Frozen, validated configuration: the paper's defaults (SPEC §1) in one place.

A *run* is one model; a *sweep* is the cartesian grid of runs over the values in
`SweepConfig`. Everything that sets an array shape (p, widths, epochs) lives in
`ModelConfig`/`TrainConfig` and is shared by every run of a sweep.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

TASKS = ("add", "subtract", "x2xyy2", "rand")
ACTS = ("relu", "gelu")
LOSS_DTYPES = ("float64", "float32")
# jax_default_matmul_precision values. "highest" is true float32 on every backend; the backend
# default ("default") is TF32 on recent NVIDIA GPUs and bfloat16 passes on TPUs, which changes
# the numerics of the paper's float32 model: faster, but opt-in.
MATMUL_PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "bfloat16", "default")


class ConfigError(ValueError):
  """A bad flag or config value; the message names the flag and what is allowed."""


def _check(ok: bool, flag: str, msg: str) -> None:
  if not ok:
    raise ConfigError(f"--{flag}: {msg}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  d_vocab: int = 114          # p + 1 (the '=' token is id p)
  d_vocab_out: int = 114      # training logits cover all p + 1 classes (SPEC §1.5)
  n_ctx: int = 3
  d_model: int = 128
  num_heads: int = 4
  d_mlp: int = 512
  num_layers: int = 1
  act: str = "relu"
  use_mlp: bool = True
  dropout: float = 0.0        # on MLP neurons after the activation; 0 = off (paper)

  @property
  def d_head(self) -> int:
    return self.d_model // self.num_heads


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  num_epochs: int = 40_000
  lr: float = 1e-3
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-8
  warmup_steps: int = 10      # lr(step) = lr * min(step / warmup_steps, 1): step 0 uses lr 0
  l1: float = 0.0             # L1 penalty added to the loss (not decoupled)
  loss_dtype: str = "float64"
  matmul_precision: str = "highest"
  eval_every: int = 10
  checkpoint_every: int = 100


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  seed: tuple[int, ...] = (0,)            # model init (and dropout) seed
  weight_decay: tuple[float, ...] = (1.0,)
  frac_train: tuple[float, ...] = (0.3,)
  split_seed: tuple[int, ...] = (0,)

  @property
  def num_runs(self) -> int:
    return (len(self.seed) * len(self.weight_decay) * len(self.frac_train)
            * len(self.split_seed))


@dataclasses.dataclass(frozen=True)
class Config:
  task: str = "add"
  p: int = 113
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  sweep: SweepConfig = SweepConfig()

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    sw = {k: tuple(v) for k, v in d["sweep"].items()}
    return cls(task=d["task"], p=d["p"], model=ModelConfig(**d["model"]),
               train=TrainConfig(**d["train"]), sweep=SweepConfig(**sw))


def make_config(*, task: str = "add", p: int = 113, d_model: int = 128,
                num_heads: int = 4, d_mlp: int | None = None, num_layers: int = 1,
                act: str = "relu", dropout: float = 0.0, num_epochs: int = 40_000,
                lr: float = 1e-3, l1: float = 0.0, loss_dtype: str = "float64",
                matmul_precision: str = "highest", eval_every: int = 10,
                checkpoint_every: int = 100,
                seed=(0,), weight_decay=(1.0,), frac_train=(0.3,),
                split_seed=(0,)) -> Config:
  """Builds and validates a Config; sizes are derived from p and d_model (SPEC §7.4)."""
  _check(task in TASKS, "task", f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
  _check(isinstance(p, int) and p >= 2, "p", f"must be an integer >= 2, got {p!r}")
  _check(d_model >= 1, "d_model", f"must be >= 1, got {d_model}")
  _check(num_heads >= 1, "num_heads", f"must be >= 1, got {num_heads}")
  _check(d_model % num_heads == 0, "d_model",
         f"must be divisible by --num_heads={num_heads}, got {d_model}")
  d_mlp = 4 * d_model if d_mlp is None else d_mlp
  _check(d_mlp >= 1, "d_mlp", f"must be >= 1, got {d_mlp}")
  _check(num_layers >= 1, "num_layers", f"must be >= 1, got {num_layers}")
  _check(act in ACTS, "act", f"unknown activation {act!r}; allowed: {', '.join(ACTS)}")
  _check(0.0 <= dropout < 1.0, "dropout", f"must be in [0, 1), got {dropout}")
  _check(num_epochs >= 0, "num_epochs", f"must be >= 0, got {num_epochs}")
  _check(lr > 0, "lr", f"must be > 0, got {lr}")
  _check(l1 >= 0, "l1", f"must be >= 0, got {l1}")
  _check(loss_dtype in LOSS_DTYPES, "loss_dtype",
         f"unknown {loss_dtype!r}; allowed: {', '.join(LOSS_DTYPES)}")
  _check(matmul_precision in MATMUL_PRECISIONS, "matmul_precision",
         f"unknown {matmul_precision!r}; allowed: {', '.join(MATMUL_PRECISIONS)}")
  _check(eval_every >= 1, "eval_every", f"must be >= 1, got {eval_every}")
  _check(checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {checkpoint_every}")
  _check(checkpoint_every % eval_every == 0, "checkpoint_every",
         f"must be a multiple of --eval_every={eval_every}, got {checkpoint_every}")
  _check(num_epochs % checkpoint_every == 0, "num_epochs",
         f"must be a multiple of --checkpoint_every={checkpoint_every}, got {num_epochs}")
  seed, weight_decay = tuple(int(s) for s in seed), tuple(float(w) for w in weight_decay)
  frac_train, split_seed = tuple(float(f) for f in frac_train), tuple(int(s) for s in split_seed)
  for name, vals in (("seed", seed), ("weight_decay", weight_decay),
                     ("frac_train", frac_train), ("split_seed", split_seed)):
    _check(len(vals) >= 1, name, "needs at least one value")
    _check(len(set(vals)) == len(vals), name, f"has repeated values {list(vals)}")
  _check(all(w >= 0 for w in weight_decay), "weight_decay", f"must be >= 0, got {list(weight_decay)}")
  _check(all(0 < f < 1 for f in frac_train), "frac_train",
         f"every value must be in (0, 1), got {list(frac_train)}")
  for f in frac_train:
    n = int(f * p * p)
    _check(1 <= n < p * p, "frac_train",
           f"{f} gives {n} training pairs of {p * p}; need at least one train and one test pair")
  _check(all(s >= 0 for s in seed + split_seed), "seed",
         "seeds (--seed, --split_seed) must be >= 0")
  model = ModelConfig(d_vocab=p + 1, d_vocab_out=p + 1, n_ctx=3, d_model=d_model,
                      num_heads=num_heads, d_mlp=d_mlp, num_layers=num_layers, act=act,
                      dropout=dropout)
  train = TrainConfig(num_epochs=num_epochs, lr=lr, l1=l1, loss_dtype=loss_dtype,
                      matmul_precision=matmul_precision, eval_every=eval_every,
                      checkpoint_every=checkpoint_every)
  sweep = SweepConfig(seed=seed, weight_decay=weight_decay, frac_train=frac_train,
                      split_seed=split_seed)
  return Config(task=task, p=p, model=model, train=train, sweep=sweep)
