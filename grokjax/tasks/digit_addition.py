"""5-digit addition (paper App. D.3, Figs 29–30; SPEC §2).

Tokens: digits 0–9, `+` = 10, `=` = 11. A sequence is the 5 digits of x (most significant
first), `+`, the 5 digits of y, `=`, then the 6 digits of x + y (carry digit first): n_ctx 18.
The loss reads the logits at the 6 positions preceding each answer digit (10 output classes);
each answer digit is a group, so its loss is logged on its own (Fig 29 bottom).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from grokjax.tasks.base import Batch, SequenceTask

PLUS, EQUALS, DIGITS = 10, 11, 5


@dataclasses.dataclass(frozen=True)
class DigitAddition(SequenceTask):

  @classmethod
  def make(cls, num_data: int, batch_size: int, eval_size: int) -> "DigitAddition":
    n_ctx = 3 * DIGITS + 3
    answer = tuple(range(2 * DIGITS + 1, n_ctx - 1))  # positions 11..16 predict tokens 12..17
    return cls(name="digit_addition", d_vocab=12, d_vocab_out=10, n_ctx=n_ctx, loss_pos=answer,
               group_names=tuple(f"digit{j}" for j in range(DIGITS + 1)),
               num_data=num_data, batch_size=batch_size, eval_size=eval_size)

  def sample(self, key: jax.Array, n: int) -> Batch:
    xy_Nx2xD = jax.random.randint(key, (n, 2, DIGITS), 0, 10, dtype=jnp.int32)
    place = 10 ** jnp.arange(DIGITS - 1, -1, -1, dtype=jnp.int32)
    total_N = jnp.sum(xy_Nx2xD * place, axis=(1, 2))            # x + y <= 199 998
    place6 = 10 ** jnp.arange(DIGITS, -1, -1, dtype=jnp.int32)
    answer_Nx6 = (total_N[:, None] // place6) % 10
    tokens = jnp.concatenate([
        xy_Nx2xD[:, 0], jnp.full((n, 1), PLUS, jnp.int32), xy_Nx2xD[:, 1],
        jnp.full((n, 1), EQUALS, jnp.int32), answer_Nx6], axis=1)
    groups = jnp.broadcast_to(jnp.arange(DIGITS + 1, dtype=jnp.int32), (n, DIGITS + 1))
    return Batch(tokens, answer_Nx6, jnp.ones((n, DIGITS + 1), jnp.float32), groups)
