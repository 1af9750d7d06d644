"""Repeated subsequence: the induction-head task (paper App. D.3, Figs 31–32; SPEC §2).

A sequence is `n_ctx` (85) uniform random tokens of a vocabulary of 128 in which one random
subsequence of 16 tokens occurs 3 times, at uniformly random non-overlapping places. The loss
reads the next-token logits of the tokens of the 2nd and 3rd occurrences only ("train the model
to predict the repeated tokens"): each occurrence's first token is unpredictable (group
`first`), the other 15 can be copied by an induction head (group `rest`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from grokjax.tasks.base import Batch, SequenceTask

VOCAB, SUBSEQ, REPEATS = 128, 16, 3


@dataclasses.dataclass(frozen=True)
class RepeatedSubsequence(SequenceTask):

  @classmethod
  def make(cls, n_ctx: int, num_data: int, batch_size: int,
           eval_size: int) -> "RepeatedSubsequence":
    return cls(name="repeated_subsequence", d_vocab=VOCAB, d_vocab_out=VOCAB, n_ctx=n_ctx,
               loss_pos=tuple(range(n_ctx - 1)), group_names=("first", "rest"),
               num_data=num_data, batch_size=batch_size, eval_size=eval_size)

  def sample(self, key: jax.Array, n: int) -> Batch:
    L = self.n_ctx
    k_fill, k_sub, k_place = jax.random.split(key, 3)
    filler_NxL = jax.random.randint(k_fill, (n, L), 0, VOCAB, dtype=jnp.int32)
    sub_NxS = jax.random.randint(k_sub, (n, SUBSEQ), 0, VOCAB, dtype=jnp.int32)
    # A uniform arrangement of REPEATS blocks among the L − REPEATS·SUBSEQ filler tokens: choose
    # which REPEATS of the (fillers + blocks) items are blocks; block j (sorted) then starts at
    # its item index plus (SUBSEQ − 1) for each block before it.
    items = L - REPEATS * SUBSEQ + REPEATS
    order = jnp.argsort(jax.random.uniform(k_place, (n, items)), axis=1)[:, :REPEATS]
    start_NxR = jnp.sort(order, axis=1) + (SUBSEQ - 1) * jnp.arange(REPEATS)
    off_NxRxL = jnp.arange(L)[None, None, :] - start_NxR[:, :, None]
    inside_NxRxL = (off_NxRxL >= 0) & (off_NxRxL < SUBSEQ)
    off_NxL = jnp.sum(jnp.where(inside_NxRxL, off_NxRxL, 0), axis=1)
    block_NxL = jnp.sum(jnp.where(inside_NxRxL, jnp.arange(REPEATS)[None, :, None] + 1, 0), axis=1)
    tokens = jnp.where(block_NxL > 0, jnp.take_along_axis(sub_NxS, off_NxL, axis=1), filler_NxL)
    # Position t predicts token t + 1; the loss reads it where t + 1 is in a repeat (block >= 2).
    repeat = block_NxL[:, 1:] >= 2
    groups = jnp.where(off_NxL[:, 1:] == 0, 0, 1).astype(jnp.int32)
    return Batch(tokens, tokens[:, 1:], repeat.astype(jnp.float32), groups)
