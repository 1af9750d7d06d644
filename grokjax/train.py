"""One run's training: the pure train step, the evaluation, and the scanned chunk.

Everything here is written for a single run; `sweep.py` vmaps it over the run axis.
Semantics follow the authors' loop (SPEC §1.6): the losses logged at epoch e are computed with
the parameters after e optimizer steps, i.e. *before* update e; one full-batch step per epoch.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from grokjax import model
from grokjax.config import Config
from grokjax.optim import make_optimizer

PyTree = Any


class RunData(NamedTuple):
  """Per-run arrays (a leading run axis once stacked by the sweep)."""
  seed: jax.Array           # () int32, model init and dropout
  weight_decay: jax.Array   # () float32
  train_idx: jax.Array      # (N_max,) int32 rows of the p² grid, padded
  train_w: jax.Array        # (N_max,) float32, 1 for real training pairs, 0 for padding
  train_mask: jax.Array     # (p²,) bool over the a-major grid


class Shared(NamedTuple):
  """Arrays shared by every run: all p² inputs and their labels."""
  tokens: jax.Array         # (p², n_ctx) int32
  labels: jax.Array         # (p²,) int32


class TrainState(NamedTuple):
  params: PyTree
  opt_state: PyTree
  epoch: jax.Array          # () int32: optimizer steps taken so far
  halted_at: jax.Array      # () int32: epoch of the first non-finite loss, -1 if none


def init_state(cfg: Config, run: RunData) -> TrainState:
  params = model.init_params(cfg.model, jax.random.key(run.seed))
  opt_state = make_optimizer(cfg.train, run.weight_decay).init(params)
  return TrainState(params, opt_state, jnp.int32(0), jnp.int32(-1))


def cross_entropy(logits_BxC: jax.Array, labels_B: jax.Array, dtype: str) -> jax.Array:
  """Per-example CE with log-softmax in `dtype` (float64 is the paper's choice, SPEC §1.5)."""
  logp = jax.nn.log_softmax(logits_BxC.astype(dtype), axis=-1)
  return -jnp.take_along_axis(logp, labels_B[:, None], axis=-1)[:, 0]


def loss_fn(params: PyTree, cfg: Config, tokens: jax.Array, labels: jax.Array,
            weights: jax.Array, dropout_key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  logits = model.last_logits(cfg.model, params, tokens, dropout_key)
  nll = cross_entropy(logits, labels, cfg.train.loss_dtype)
  loss = jnp.sum(weights * nll) / jnp.sum(weights)
  if cfg.train.l1 > 0:
    loss = loss + cfg.train.l1 * sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(params))
  return loss, logits


def train_step(cfg: Config, state: TrainState, run: RunData,
               shared: Shared) -> tuple[TrainState, jax.Array]:
  """One full-batch AdamW step; returns the new state and the train loss before the update."""
  tokens, labels = shared.tokens[run.train_idx], shared.labels[run.train_idx]
  key = None
  if cfg.model.dropout > 0:  # randomness from (seed, epoch) alone: nothing stored to resume
    key = jax.random.fold_in(jax.random.key(run.seed), state.epoch)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, _), grads = grad_fn(state.params, cfg, tokens, labels, run.train_w, key)
  tx = make_optimizer(cfg.train, run.weight_decay)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.all(jnp.array(
      [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
  ok = finite & (state.halted_at < 0)
  # A run whose loss turns non-finite is frozen at its last finite state and flagged; the other
  # runs of the sweep (other vmap lanes) are unaffected.
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  halted_at = jnp.where((state.halted_at < 0) & ~finite, state.epoch, state.halted_at)
  new_state = TrainState(keep(params, state.params), keep(opt_state, state.opt_state),
                         state.epoch + 1, halted_at)
  return new_state, loss


def evaluate(cfg: Config, params: PyTree, run: RunData, shared: Shared) -> dict[str, jax.Array]:
  """Train/test loss (all p+1 classes, the training objective) and accuracy on the p² grid."""
  logits = model.last_logits(cfg.model, params, shared.tokens)
  nll = cross_entropy(logits, shared.labels, cfg.train.loss_dtype)
  correct = (jnp.argmax(logits, axis=-1) == shared.labels)
  tr = run.train_mask
  n_tr, n_te = jnp.sum(tr), jnp.sum(~tr)
  return {
      "train_loss": jnp.sum(jnp.where(tr, nll, 0.0)) / n_tr,
      "test_loss": jnp.sum(jnp.where(tr, 0.0, nll)) / n_te,
      "train_acc": jnp.sum(tr & correct) / n_tr,
      "test_acc": jnp.sum(~tr & correct) / n_te,
  }


def train_chunk(cfg: Config, state: TrainState, run: RunData, shared: Shared,
                num_epochs: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """`num_epochs` steps as a scan of eval blocks: evaluate, then `eval_every` train steps.

  Nesting the scans (instead of a `cond` inside one scan) matters under vmap, where a `cond`
  would become a `select` that evaluates on every epoch.
  """
  every = cfg.train.eval_every

  def block(state, _):
    metrics = evaluate(cfg, state.params, run, shared)
    metrics["epoch"] = state.epoch
    state, step_losses = jax.lax.scan(
        lambda s, _: train_step(cfg, s, run, shared), state, None, length=every)
    metrics["step_train_loss"] = step_losses
    metrics["halted_at"] = state.halted_at
    return state, metrics

  return jax.lax.scan(block, state, None, length=num_epochs // every)
