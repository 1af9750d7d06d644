"""AdamW exactly as the authors' PyTorch setup (SPEC §1.4).

Decoupled weight decay on every parameter (no mask), betas (0.9, 0.98), eps 1e-8, and the
warm-up `lr · min(step / 10, 1)` counted from optimizer step 0, so the first step uses lr 0:
it moves no parameter but advances Adam's moments and bias-correction counter, as in PyTorch.
The weight decay lives in the optimizer state (`inject_hyperparams`), so a vmapped sweep
carries one value per run and checkpoints record it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from grokjax.config import TrainConfig


def lr_schedule(cfg: TrainConfig):
  def schedule(count: jax.Array) -> jax.Array:
    if cfg.warmup_steps == 0:
      return jnp.float32(cfg.lr)
    return cfg.lr * jnp.minimum(count.astype(jnp.float32) / cfg.warmup_steps, 1.0)
  return schedule


def make_optimizer(cfg: TrainConfig, weight_decay: float | jax.Array) -> optax.GradientTransformation:
  return optax.inject_hyperparams(optax.adamw, hyperparam_dtype=jnp.float32)(
      learning_rate=lr_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
      weight_decay=weight_decay)
