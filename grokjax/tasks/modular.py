"""Modular arithmetic on the p² grid of pairs `[a, b, =]` (the paper's main task, SPEC §1.1).

Finite data only: each run trains full-batch on its authors' split (a per-run, padded gather of
the grid's rows) and is evaluated on all p² pairs, split by its train mask. The grid and labels
are shared by every run of a sweep.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import data
from grokjax.tasks.base import Batch, Task


@dataclasses.dataclass(frozen=True)
class Modular(Task):
  p: int = 113

  @classmethod
  def make(cls, op: str, p: int) -> "Modular":
    return cls(name=op, d_vocab=p + 1, d_vocab_out=p + 1, n_ctx=3, loss_pos=(2,), p=p)

  @property
  def infinite(self) -> bool:
    return False

  def sample(self, key: jax.Array, n: int) -> Batch:
    """n uniformly drawn pairs of the grid (with replacement)."""
    rows = jax.random.randint(key, (n,), 0, self.p * self.p)
    a, b = rows // self.p, rows % self.p
    tokens = jnp.stack([a, b, jnp.full_like(a, self.p)], axis=1).astype(jnp.int32)
    labels = jnp.asarray(data.labels(self.name, self.p))[rows]
    ones = jnp.ones((n, 1), jnp.float32)
    return Batch(tokens, labels[:, None], ones, jnp.zeros((n, 1), jnp.int32))

  def describe(self, run: dict[str, Any]) -> dict[str, Any]:
    mask = data.train_mask(self.p, run["frac_train"], run["split_seed"])
    return dict(n_train=int(mask.sum()), split_fingerprint=data.split_fingerprint(mask))

  def build(self, lanes: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Each lane's train rows, gathered and padded to the largest train set of the sweep."""
    p = self.p
    idx = [data.train_indices(p, r["frac_train"], r["split_seed"]) for r in lanes]
    n_max = max(len(i) for i in idx)
    train_idx = np.zeros((len(lanes), n_max), np.int32)
    train_w = np.zeros((len(lanes), n_max), np.float32)
    train_mask = np.zeros((len(lanes), p * p), bool)
    for lane, i in enumerate(idx):
      train_idx[lane, :len(i)] = i
      train_w[lane, :len(i)] = 1.0
      train_mask[lane, i] = True
    per_lane = dict(train_idx=train_idx, train_w=train_w, train_mask=train_mask)
    shared = dict(tokens=data.all_tokens(p), labels=data.labels(self.name, p))
    return per_lane, shared

  def train_batch(self, d, shared, key, step):
    idx = d["train_idx"]
    return Batch(shared["tokens"][idx], shared["labels"][idx][:, None], d["train_w"][:, None],
                 jnp.zeros((idx.shape[0], 1), jnp.int32))

  def eval_batch(self, d, shared, key, step):
    n = self.p * self.p
    batch = Batch(shared["tokens"], shared["labels"][:, None], jnp.ones((n, 1), jnp.float32),
                  jnp.zeros((n, 1), jnp.int32))
    train = d["train_mask"][:, None].astype(jnp.float32)
    return batch, train, 1.0 - train

  def eval_examples(self) -> int:
    return self.p * self.p

  def train_sample(self, d, shared, key, n):
    """n of the run's training pairs, drawn with replacement (padding rows never drawn)."""
    rows = d["train_idx"][jax.random.randint(key, (n,), 0, self.num_train(d))]
    return Batch(shared["tokens"][rows], shared["labels"][rows][:, None],
                 jnp.ones((n, 1), jnp.float32), jnp.zeros((n, 1), jnp.int32))

  def num_train(self, d):
    return jnp.sum(d["train_w"] > 0).astype(jnp.int32)
