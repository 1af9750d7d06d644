"""Cross-entropy in the forms grokjax uses: one definition each, shared by training and analysis.

* `log_softmax_ce(logits, labels, dtype)`: the authors' loss, a log-softmax in `dtype` (float64
  in the paper, SPEC §1.5; float32 reproduces the slingshots of App. D.2).
* `stable_ce(logits, labels, out_dtype)`: the same loss written as
  ℓ = M + log1p(expm1(−M) + Σ_{i≠y} exp(d_i − M)),  d_i = x_i − x_y,  M = max(0, max_{i≠y} d_i),
  i.e. log1p(Σ_{i≠y} exp(d_i)) when y is the top logit. Exact to the rounding of the logits even
  at ℓ ~ 1e-9 in float32, and free of overflow otherwise. Its gradient by autodiff is the exact
  one: ∂ℓ/∂x_y = −S/(1+S) with S = Σ_{i≠y} exp(d_i), never the p_y − 1 that a float32 softmax
  rounds to 0 once p_y rounds to 1 ("softmax collapse", Prieto et al. 2025): a float32 loss
  whose every example keeps its gradient (`--loss_dtype=float32_stable`).
* `softmax_collapsed(logits, labels)`: whether an example's float32 softmax gives its label
  probability exactly 1 (its float32 log-softmax gradient is then exactly 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def log_softmax_ce(logits_NxC: jax.Array, labels_N: jax.Array, dtype) -> jax.Array:
  logp = jax.nn.log_softmax(logits_NxC.astype(dtype), axis=-1)
  return -jnp.take_along_axis(logp, labels_N[:, None], axis=-1)[:, 0]


def stable_ce_and_correct(L_NxC: jax.Array, labels_N: jax.Array,
                          out_dtype=jnp.float64) -> tuple[jax.Array, jax.Array]:
  """Per-example cross-entropy (computed in the logits' dtype, returned as `out_dtype`) and
  correctness (x_y strictly above every other logit). The label is singled out by its index,
  never by comparing values, so XLA may recompute the logits inside fusions without harm."""
  is_y = jnp.arange(L_NxC.shape[-1]) == labels_N[:, None]
  x_y = jnp.take_along_axis(L_NxC, labels_N[:, None], axis=-1)  # (a gather: cheaper than a
  other = jnp.max(jnp.where(is_y, -jnp.inf, L_NxC), axis=-1, keepdims=True)  # masked sum)
  M = jnp.maximum(other - x_y, 0.0)
  rest = jnp.sum(jnp.where(is_y, 0.0, jnp.exp(L_NxC - x_y - M)), axis=-1, keepdims=True)
  loss = M.astype(out_dtype) + jnp.log1p(jnp.expm1(-M) + rest).astype(out_dtype)
  return loss[:, 0], (x_y > other)[:, 0]


def softmax_collapsed(logits_NxC: jax.Array, labels_N: jax.Array) -> jax.Array:
  """(N,) bool: the float32 softmax probability of the label is exactly 1."""
  p = jax.nn.softmax(logits_NxC.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(p, labels_N[:, None], axis=-1)[:, 0] == 1.0


def cross_entropy(logits_NxC: jax.Array, labels_N: jax.Array, loss_dtype: str) -> jax.Array:
  """The training objective's per-example loss for `--loss_dtype`."""
  if loss_dtype == "float32_stable":
    return stable_ce_and_correct(logits_NxC.astype(jnp.float32), labels_N, jnp.float32)[0]
  return log_softmax_ce(logits_NxC, labels_N, loss_dtype)
