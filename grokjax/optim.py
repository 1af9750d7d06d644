"""AdamW exactly as the authors' PyTorch setup (SPEC §1.4), with per-run hyperparameters.

Decoupled weight decay on every parameter (no mask), betas (0.9, 0.98), eps 1e-8, and the
warm-up `lr · min(step / 10, 1)` counted from optimizer step 0, so the first step uses lr 0:
it moves no parameter but advances Adam's moments and bias-correction counter, as in PyTorch.

The transform is built once per sweep. Every swept optimizer value (peak lr, weight decay, and
the Grokfast α, λ when `--grokfast` is on) lives in the optimizer *state*
(`optax.inject_hyperparams`): `init` writes the run's values there, so a vmapped sweep carries
one value per run, one compiled program serves every value, and checkpoints record them.
A Grokfast filter's output reaches AdamW through memory (`_fenced`), so a λ = 0 run equals the
same run of a plain sweep of as many runs bit for bit.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from grokjax.config import TrainConfig


def warmup_lr(peak: jax.Array | float, count: jax.Array, warmup_steps: int) -> jax.Array:
  """The lr of optimizer step `count`: `peak · min(count / warmup_steps, 1)` (step 0: lr 0)."""
  if warmup_steps == 0:
    return jnp.asarray(peak, jnp.float32)
  return peak * jnp.minimum(count.astype(jnp.float32) / warmup_steps, 1.0)


def _adamw_warmup(warmup_steps: int):
  """optax.adamw with the warm-up schedule of a (traced, per-run) peak learning rate."""
  def factory(learning_rate, weight_decay, b1, b2, eps):
    schedule = lambda count: warmup_lr(learning_rate, count, warmup_steps)
    return optax.adamw(learning_rate=schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  return factory


def make_optimizer(cfg: TrainConfig, hyper: Any = None) -> optax.GradientTransformation:
  """The sweep's transform. `hyper` (a run's `train.Hyper`) only matters for `init`; updates
  read every per-run value from the state."""
  lr = 1e-3 if hyper is None else hyper.lr
  wd = 1.0 if hyper is None else hyper.weight_decay
  adamw = optax.inject_hyperparams(_adamw_warmup(cfg.warmup_steps),
                                   hyperparam_dtype=jnp.float32)(
      learning_rate=lr, weight_decay=wd, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  if cfg.grokfast == "none":
    return adamw
  from grokjax import grokfast
  alpha = 0.98 if hyper is None else hyper.grokfast_alpha
  lamb = 2.0 if hyper is None else hyper.grokfast_lamb
  if cfg.grokfast == "ema":
    gf = grokfast.grokfast_ema(alpha=alpha, lamb=lamb)
  else:
    gf = grokfast.grokfast_ma(window=cfg.grokfast_window, lamb=lamb)
  return optax.chain(_fenced(gf), adamw)


def _materialize(tree: Any, runtime_one: jax.Array) -> Any:
  """`tree`, bit for bit, as buffers that no later XLA fusion can look through.

  A while loop whose trip count is known only at run time (`runtime_one` is always 1, XLA cannot
  prove it) outputs materialised buffers; its body is an exact select. `optimization_barrier`
  does not do this on XLA:CPU (it is expanded before fusion).
  """
  body = lambda i, t: jax.tree.map(lambda x: jnp.where(i < 0, -x, x), t)
  return jax.lax.fori_loop(0, runtime_one, body, tree)


def _fenced(gf: optax.GradientTransformation) -> optax.GradientTransformation:
  """`gf` whose output AdamW reads from memory, as plain AdamW reads the raw gradient.

  Why: XLA:CPU contracts multiply-adds into FMAs per fused loop, and which product it contracts
  in AdamW's `(1 − β1)·g + β1·m` depends on what is fused in front of it. With the filter's
  select fused into AdamW's loops, a λ = 0 run drifted from the plain run by float32 rounding
  from step 1 on; fenced, a λ = 0 run of a Grokfast sweep equals
  the same run of a plain sweep of as many runs bit for bit (tests/grokfast_sweep_test.py). The
  state is `gf`'s own, so checkpoints are unchanged.
  """
  def update_fn(updates, state, params=None):
    updates, state = gf.update(updates, state, params)
    return _materialize(updates, jnp.minimum(state.count, 1)), state
  return optax.GradientTransformation(gf.init, update_fn)
