"""The task interface: what a sweep needs to know of a task, and nothing more.

A task fixes the token vocabulary, the context length and the positions whose logits the loss
reads; it turns a run's data seed into batches. Every batch is a `Batch`:

  tokens  (B, L) int32    the model's input
  targets (B, P) int32    the class predicted from the logits at each of the P loss positions
  weights (B, P) float32  1 where the loss reads that target, 0 elsewhere (or padding)
  groups  (B, P) int32    which named group a target belongs to (`group_names`: the per-position
                          losses a task logs, e.g. the six answer digits of 5-digit addition)

Data streams come from the run's data seed (`split_seed`) alone: the batch of step t of an
infinite-data run is `sample(fold_in(fold_in(key(split_seed), TRAIN_STREAM), t))`, so nothing
is stored and a resume recomputes the same stream; the fixed train and test sets are drawn from
other folds of the same key.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

TRAIN_STREAM, TEST_SET, TRAIN_SET = 0, 1, 2


class Batch(NamedTuple):
  tokens: jax.Array
  targets: jax.Array
  weights: jax.Array
  groups: jax.Array


def concat(a: Batch, b: Batch) -> Batch:
  return Batch(*(jnp.concatenate([x, y]) for x, y in zip(a, b)))


@dataclasses.dataclass(frozen=True)
class Task:
  """Static description of a task (hashable: it is a constant of the compiled programs)."""
  name: str
  d_vocab: int
  d_vocab_out: int
  n_ctx: int
  loss_pos: tuple[int, ...]         # static positions whose logits the loss reads
  group_names: tuple[str, ...] = ()

  # ------------------------------------------------------------------ what every task defines
  def sample(self, key: jax.Array, n: int) -> Batch:
    """n fresh i.i.d. examples (pure: jit/vmap-able)."""
    raise NotImplementedError

  @property
  def infinite(self) -> bool:
    raise NotImplementedError

  def describe(self, run: dict[str, Any]) -> dict[str, Any]:
    """Extra sweep.json fields of one run (e.g. its number of training examples)."""
    raise NotImplementedError

  def build(self, lanes: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Host side: (per-lane arrays stacked on a leading lane axis, arrays shared by all runs)."""
    raise NotImplementedError

  def train_batch(self, data: Any, shared: Any, key: jax.Array, step: jax.Array) -> Batch:
    """The batch of optimizer step `step` of one run (traced; `key` = key(split_seed))."""
    raise NotImplementedError

  def eval_batch(self, data: Any, shared: Any, key: jax.Array,
                 step: jax.Array) -> tuple[Batch, jax.Array, jax.Array]:
    """One batch evaluated at epoch `step`, with its (B, P) train and test weights."""
    raise NotImplementedError

  def eval_examples(self) -> int:
    """Examples one evaluation runs through the model (for the memory estimate)."""
    raise NotImplementedError

  def train_sample(self, data: Any, shared: Any, key: jax.Array, n: int) -> Batch:
    """n examples of the run's training distribution: drawn with replacement from its
    training set (finite data) or fresh (infinite data). For estimators such as the LLC."""
    raise NotImplementedError

  def num_train(self, data: Any) -> jax.Array:
    """The run's number of training examples (a traced scalar for finite data; for infinite
    data a nominal 10 · batch_size, since every step sees new examples)."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class SequenceTask(Task):
  """A task drawn from a generator: finite (`num_data` fixed examples, full batch each epoch)
  or infinite (`batch_size` fresh examples each step); evaluated on `eval_size` fixed held-out
  examples. Subclasses define `sample` only."""
  num_data: int = 0
  batch_size: int = 64
  eval_size: int = 1024

  @property
  def infinite(self) -> bool:
    return self.num_data == 0

  def _fixed(self, seed: int, fold: int, n: int) -> Batch:
    return _fixed_set(self, seed, fold, n)

  def describe(self, run: dict[str, Any]) -> dict[str, Any]:
    if self.infinite:
      return dict(n_train=None, data_fingerprint=None)
    train = self._fixed(run["split_seed"], TRAIN_SET, self.num_data)
    return dict(n_train=self.num_data, data_fingerprint=fingerprint(train.tokens))

  def build(self, lanes: list[dict[str, Any]]) -> tuple[Any, Any]:
    per_seed = {}
    for r in lanes:
      s = r["split_seed"]
      if s not in per_seed:
        test = self._fixed(s, TEST_SET, self.eval_size)
        train = None if self.infinite else self._fixed(s, TRAIN_SET, self.num_data)
        per_seed[s] = {"test": test} if train is None else {"test": test, "train": train}
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[per_seed[r["split_seed"]] for r in lanes])
    return stacked, None

  def train_batch(self, data, shared, key, step):
    if not self.infinite:
      return Batch(*data["train"])
    return self.sample(jax.random.fold_in(jax.random.fold_in(key, TRAIN_STREAM), step),
                       self.batch_size)

  def eval_batch(self, data, shared, key, step):
    # Finite data: the whole train set; infinite: the batch this epoch's step trains on.
    train, test = self.train_batch(data, shared, key, step), Batch(*data["test"])
    zeros = lambda b: jnp.zeros_like(b.weights)
    return (concat(train, test), jnp.concatenate([train.weights, zeros(test)]),
            jnp.concatenate([zeros(train), test.weights]))

  def eval_examples(self) -> int:
    return self.eval_size + (self.batch_size if self.infinite else self.num_data)

  def train_sample(self, data, shared, key, n):
    if self.infinite:
      return self.sample(key, n)
    rows = jax.random.randint(key, (n,), 0, self.num_data)
    return jax.tree.map(lambda x: x[rows], Batch(*data["train"]))

  def num_train(self, data):
    return jnp.int32(10 * self.batch_size if self.infinite else self.num_data)


def _fixed_set(task: SequenceTask, seed: int, fold: int, n: int) -> Batch:
  """A fixed data set (host numpy) drawn from fold `fold` of key(seed); cached per task and
  per jax_enable_x64 (draws without an explicit dtype follow it: grokjax/x64.py)."""
  return _draw_fixed_set(task, seed, fold, n, bool(jax.config.jax_enable_x64))


@functools.lru_cache(maxsize=64)
def _draw_fixed_set(task: SequenceTask, seed: int, fold: int, n: int, x64: bool) -> Batch:
  key = jax.random.fold_in(jax.random.key(seed), fold)
  return jax.tree.map(np.asarray, jax.jit(task.sample, static_argnums=1)(key, n))


def fingerprint(a: np.ndarray) -> str:
  """First 16 hex digits of sha256 of an array's bytes: identifies a fixed data set."""
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]
