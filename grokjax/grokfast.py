"""Grokfast (Lee et al. 2024, "Grokfast: Accelerated Grokking by Amplifying Slow Gradients").

Two optax transforms that add an amplified low-pass filter of the gradient history to the gradient,
`ĝ = g + λ·filter(g history)`, placed before the optimiser as in the authors' loop (their filter runs
between `loss.backward()` and `optimizer.step()`). Behaviour follows the authors' `grokfast.py`
(github.com/ironjr/grokfast, `gradfilter_ema` / `gradfilter_ma`):

* `grokfast_ema(alpha, lamb)`: h ← α·h + (1−α)·g, ĝ = g + λ·h. On the very first step the
  reference sets h to that step's gradient *before* the update, so h₁ = α·g₁ + (1−α)·g₁ (= g₁ up
  to rounding) and ĝ₁ = g₁ + λ·h₁; replicated here (no zero start, so no bias towards 0).
* `grokfast_ma(window, lamb, warmup=True, filter_type="mean")`: the raw gradient is appended to a
  buffer of the last `window` gradients FIRST, so the average includes the current gradient. With
  `warmup=True` (the reference's default) ĝ = g until the buffer is full, i.e. the filter acts from
  step `window` on; with `warmup=False` it acts from step 1, averaging the len(buffer) =
  min(step, window) gradients held. "sum" replaces the mean by the sum, as in the reference.
  Memory: `window` copies of the parameters per run.

Both filter the raw gradients only (the buffer / EMA never sees ĝ), as the reference does.

Hyperparameters live in the state (`alpha`, `lamb`: float32 scalars), so they are checkpointed
with it and may differ per run under `jax.vmap`; `update` reads them from the state only, never
from the constructor, whose values are just `init`'s defaults. `window`, `warmup` and
`filter_type` are static (shapes / program structure). λ = 0 returns g bit for bit (a select, not
`g + 0·h`, so −0.0 and non-finite h cannot leak in).

Intended wiring in a vmapped sweep (the transform is built ONCE, outside vmap):

    tx = optax.chain(grokfast_ema(), adamw_with_per_run_wd_and_lr)      # or grokfast_ma(100)
    def init(params, run):                                              # jax.vmap'ed over runs
      return set_hyperparams(tx.init(params), alpha=run.alpha, lamb=run.lamb)
    def step(params, opt_state, grads):                                 # jax.vmap'ed over runs
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

`set_hyperparams` finds every Grokfast state in any nested optax state (chain tuples,
`inject_hyperparams` states, ...) and replaces the values given. Building the transform inside the
vmapped init with traced values (`grokfast_ema(run.alpha, run.lamb).init(params)`) is equivalent.
Do not wrap these in `optax.inject_hyperparams`: their state already holds the hyperparameters.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["GrokfastEmaState", "GrokfastMaState", "grokfast_ema", "grokfast_ma", "set_hyperparams"]


class GrokfastEmaState(NamedTuple):
  count: jax.Array   # () int32: steps taken (saturating)
  alpha: jax.Array   # () float32: EMA momentum α
  lamb: jax.Array    # () float32: amplification λ
  ema: Any           # like params: h


class GrokfastMaState(NamedTuple):
  count: jax.Array   # () int32: steps taken (saturating)
  lamb: jax.Array    # () float32: amplification λ
  buffer: Any        # like params with a leading (window,) axis: ring buffer of raw gradients


def _scalar(x) -> jax.Array:
  return jnp.asarray(x, jnp.float32).reshape(())


def _amplify(g: jax.Array, slow: jax.Array, lamb: jax.Array, apply=True) -> jax.Array:
  lamb = lamb.astype(g.dtype)
  return jnp.where(jnp.logical_and(apply, lamb != 0), g + lamb * slow.astype(g.dtype), g)


def grokfast_ema(alpha: float | jax.Array = 0.98,
                 lamb: float | jax.Array = 2.0) -> optax.GradientTransformation:
  """Grokfast-EMA; defaults are the reference's (α = 0.98, λ = 2). See the module docstring."""

  def init_fn(params):
    return GrokfastEmaState(jnp.zeros((), jnp.int32), _scalar(alpha), _scalar(lamb),
                            jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    first = state.count == 0

    def ema(g, h):
      a = state.alpha.astype(g.dtype)
      h = jnp.where(first, g, h.astype(g.dtype))   # reference: h := g on the first call
      return h * a + g * (1 - a)

    new_ema = jax.tree.map(ema, updates, state.ema)
    out = jax.tree.map(lambda g, h: _amplify(g, h, state.lamb), updates, new_ema)
    new_ema = jax.tree.map(lambda h, old: h.astype(old.dtype), new_ema, state.ema)
    return out, state._replace(count=optax.safe_increment(state.count), ema=new_ema)

  return optax.GradientTransformation(init_fn, update_fn)


def grokfast_ma(window: int = 100, lamb: float | jax.Array = 5.0, warmup: bool = True,
                filter_type: Literal["mean", "sum"] = "mean") -> optax.GradientTransformation:
  """Grokfast-MA; defaults are the reference's (w = 100, λ = 5, warm-up, mean)."""
  window = int(window)
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  if filter_type not in ("mean", "sum"):
    raise ValueError(f"Unrecognized filter_type {filter_type!r}")

  def init_fn(params):
    return GrokfastMaState(jnp.zeros((), jnp.int32), _scalar(lamb),
                           jax.tree.map(lambda p: jnp.zeros((window,) + jnp.shape(p),
                                                            jnp.result_type(p)), params))

  def update_fn(updates, state, params=None):
    del params
    slot = state.count % window               # oldest entry once full
    held = jnp.minimum(state.count, window - 1) + 1   # len(buffer) after appending g
    apply = (held == window) if warmup else True
    new_buf = jax.tree.map(
        lambda g, b: jax.lax.dynamic_update_index_in_dim(b, g.astype(b.dtype), slot, 0),
        updates, state.buffer)

    def filtered(g, b):
      slow = jnp.sum(b, axis=0)                # empty slots are zeros
      if filter_type == "mean":
        slow = slow / held.astype(slow.dtype)
      return _amplify(g, slow, state.lamb, apply)

    out = jax.tree.map(filtered, updates, new_buf)
    return out, state._replace(count=optax.safe_increment(state.count), buffer=new_buf)

  return optax.GradientTransformation(init_fn, update_fn)


def set_hyperparams(opt_state: Any, *, alpha: float | jax.Array | None = None,
                    lamb: float | jax.Array | None = None) -> Any:
  """Returns `opt_state` with α and/or λ replaced in every Grokfast state nested in it.

  `alpha` applies to EMA states only (MA has none). Values may be traced (per-run under vmap).
  """
  def fix(s):
    if isinstance(s, GrokfastEmaState):
      return s._replace(alpha=s.alpha if alpha is None else _scalar(alpha),
                        lamb=s.lamb if lamb is None else _scalar(lamb))
    if isinstance(s, GrokfastMaState) and lamb is not None:
      return s._replace(lamb=_scalar(lamb))
    return s

  is_gf = lambda s: isinstance(s, (GrokfastEmaState, GrokfastMaState))
  return jax.tree.map(fix, opt_state, is_leaf=is_gf)
