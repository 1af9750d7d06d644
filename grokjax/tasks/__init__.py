"""The task registry: every task of the paper behind one interface (`base.Task`).

| task | data | loss positions |
|---|---|---|
| `add`, `subtract`, `x2xyy2`, `rand`, `multiply` | the p² grid, the authors' split (finite) | the `=` token |
| `digit_addition` | 5-digit sums, finite (`--num_data`) or infinite | the 6 answer digits |
| `repeated_subsequence` | 85 tokens with a subsequence repeated 3× | the 2nd and 3rd copies |
| `skip_trigram` | tokens 0–9 with one token 10–19 | the last position |

A new task is one module with a `Task` subclass plus one entry in `_DEFAULTS` and `from_config`.
"""
from __future__ import annotations

from typing import Any

from grokjax.config import MODULAR_TASKS, Config, ConfigError
from grokjax.tasks.base import Batch, SequenceTask, Task
from grokjax.tasks.digit_addition import DigitAddition
from grokjax.tasks.modular import Modular
from grokjax.tasks.repeated_subsequence import REPEATS, SUBSEQ, RepeatedSubsequence
from grokjax.tasks.skip_trigram import SkipTrigram

__all__ = ["Batch", "Task", "SequenceTask", "Modular", "DigitAddition", "RepeatedSubsequence",
           "SkipTrigram", "resolve", "from_config", "is_modular"]

# Per sequence task: (default n_ctx, smallest n_ctx or None if fixed, default batch_size,
# default eval_size). Batch sizes are the authors' (5-digit 64, repeated subsequence 128); the
# skip trigram's is a choice (the paper gives none): 512, the size of its finite set.
_DEFAULTS = {
    "digit_addition": (18, None, 64, 1024),
    "repeated_subsequence": (85, REPEATS * SUBSEQ + 1, 128, 512),
    "skip_trigram": (10, 2, 512, 1024),
}


def is_modular(task: str) -> bool:
  return task in MODULAR_TASKS


def resolve(task: str, *, p: int | None, num_data: int | None, batch_size: int | None,
            eval_size: int | None, n_ctx: int | None, frac_train: tuple[float, ...]
            ) -> dict[str, Any]:
  """Validated task sizes (flags left None take the task's defaults; flags that do not apply
  to the task are errors naming the flag)."""
  def refuse(flag: str, value: Any, why: str) -> None:
    if value is not None:
      raise ConfigError(f"--{flag}: {why} (got --task={task})")

  if is_modular(task):
    for flag, v in (("num_data", num_data), ("batch_size", batch_size),
                    ("eval_size", eval_size), ("n_ctx", n_ctx)):
      refuse(flag, v, "applies to sequence tasks only; modular tasks train full-batch on "
             "the authors' split of the p² pairs (--frac_train)")
    p = 113 if p is None else p
    if not isinstance(p, int) or p < 3 or p % 2 == 0:
      raise ConfigError(f"--p: must be an odd integer >= 3 (the analysis's real Fourier basis "
                        f"over Z_p needs odd p; the paper's moduli are primes), got {p!r}")
    for f in frac_train:
      n = int(f * p * p)
      if not 1 <= n < p * p:
        raise ConfigError(f"--frac_train: {f} gives {n} training pairs of {p * p}; need at "
                          "least one train and one test pair")
    t = Modular.make(task, p)
    return dict(p=p, num_data=0, batch_size=0, eval_size=0, d_vocab=t.d_vocab,
                d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
  refuse("p", p, "is the modulus of the modular tasks")
  ctx_default, ctx_min, bs_default, ev_default = _DEFAULTS[task]
  if n_ctx is not None and ctx_min is None and n_ctx != ctx_default:
    raise ConfigError(f"--n_ctx: {task} sequences have exactly {ctx_default} tokens, got {n_ctx}")
  n_ctx = ctx_default if n_ctx is None else n_ctx
  if ctx_min is not None and n_ctx < ctx_min:
    raise ConfigError(f"--n_ctx: {task} needs at least {ctx_min} tokens, got {n_ctx}")
  num_data = 0 if num_data is None else num_data
  if num_data < 0:
    raise ConfigError(f"--num_data: must be >= 0 (0 = infinite data), got {num_data}")
  if num_data > 0:
    refuse("batch_size", batch_size, f"finite data trains full-batch on the --num_data="
           f"{num_data} examples; --batch_size is for infinite data (--num_data=0)")
  batch_size = bs_default if batch_size is None else batch_size
  eval_size = ev_default if eval_size is None else eval_size
  if batch_size < 1:
    raise ConfigError(f"--batch_size: must be >= 1, got {batch_size}")
  if eval_size < 1:
    raise ConfigError(f"--eval_size: must be >= 1, got {eval_size}")
  t = _sequence(task, n_ctx, num_data, batch_size, eval_size)
  return dict(p=0, num_data=num_data, batch_size=batch_size, eval_size=eval_size,
              d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)


def _sequence(task: str, n_ctx: int, num_data: int, batch_size: int,
              eval_size: int) -> SequenceTask:
  if task == "digit_addition":
    return DigitAddition.make(num_data, batch_size, eval_size)
  if task == "repeated_subsequence":
    return RepeatedSubsequence.make(n_ctx, num_data, batch_size, eval_size)
  if task == "skip_trigram":
    return SkipTrigram.make(n_ctx, num_data, batch_size, eval_size)
  raise ConfigError(f"--task: unknown task {task!r}")


def from_config(cfg: Config) -> Task:
  """The Task of a validated Config."""
  if is_modular(cfg.task):
    return Modular.make(cfg.task, cfg.p)
  return _sequence(cfg.task, cfg.model.n_ctx, cfg.num_data, cfg.batch_size, cfg.eval_size)
