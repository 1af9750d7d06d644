"""Skip trigram (paper App. D.3, Figs 33–34; SPEC §2).

Tokens 0–19; a sequence holds exactly one token >= 10, at a uniformly random position, and the
target, read from the logits at the last position, is that token (10 output classes: token
− 10). The paper does not give the sequence length: `n_ctx` defaults to 10, a documented choice.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from grokjax.tasks.base import Batch, SequenceTask

LOW, HIGH = 10, 10  # tokens 0..9 are filler, 10..19 are the "special" tokens


@dataclasses.dataclass(frozen=True)
class SkipTrigram(SequenceTask):

  @classmethod
  def make(cls, n_ctx: int, num_data: int, batch_size: int, eval_size: int) -> "SkipTrigram":
    return cls(name="skip_trigram", d_vocab=LOW + HIGH, d_vocab_out=HIGH, n_ctx=n_ctx,
               loss_pos=(n_ctx - 1,), num_data=num_data, batch_size=batch_size,
               eval_size=eval_size)

  def sample(self, key: jax.Array, n: int) -> Batch:
    L = self.n_ctx
    k_fill, k_pos, k_val = jax.random.split(key, 3)
    filler_NxL = jax.random.randint(k_fill, (n, L), 0, LOW, dtype=jnp.int32)
    pos_N = jax.random.randint(k_pos, (n,), 0, L)
    val_N = jax.random.randint(k_val, (n,), 0, HIGH, dtype=jnp.int32)
    tokens = jnp.where(jnp.arange(L)[None] == pos_N[:, None], LOW + val_N[:, None], filler_NxL)
    return Batch(tokens, val_N[:, None], jnp.ones((n, 1), jnp.float32),
                 jnp.zeros((n, 1), jnp.int32))
