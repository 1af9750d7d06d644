"""One run's training: the pure train step, the evaluation, and the scanned chunk.

Everything here is written for a single run of any task; `sweep.py` vmaps it over the run axis.
Semantics follow the authors' loop (SPEC §1.6): the losses logged at epoch e are computed with
the parameters after e optimizer steps, i.e. *before* update e; one optimizer step per epoch
(full batch for finite data, a fresh batch for infinite data).
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from grokjax import losses, model
from grokjax.config import Config
from grokjax.optim import make_optimizer
from grokjax.tasks import Batch, Task

PyTree = Any


class Hyper(NamedTuple):
  """A run's swept values as scalars (a leading run axis once stacked by the sweep)."""
  seed: jax.Array            # int32: model init and dropout
  split_seed: jax.Array      # int32: the task's data seed
  weight_decay: jax.Array    # float32
  lr: jax.Array              # float32 peak learning rate
  keep_prob: jax.Array       # float64: 1 − dropout rate (bernoulli draws in this dtype)
  l1: jax.Array              # float32
  grokfast_alpha: jax.Array  # float32
  grokfast_lamb: jax.Array   # float32


class RunData(NamedTuple):
  hyper: Hyper
  data: PyTree               # the task's per-run arrays (train split / fixed sets)


class TrainState(NamedTuple):
  params: PyTree
  opt_state: PyTree
  epoch: jax.Array          # () int32: optimizer steps taken so far
  halted_at: jax.Array      # () int32: epoch of the first non-finite loss, -1 if none


class Program(NamedTuple):
  """The static parts of a sweep's step: config, task, and the optimizer built once."""
  cfg: Config
  task: Task
  tx: optax.GradientTransformation


def x64(cfg: Config):
  """The 64-bit scope of a sweep's programs (`with train.x64(cfg):`): on, as the paper's float64
  loss needs (SPEC §1.5); off with `--nox64` (float32 losses only), whose programs then hold no
  64-bit type (what a TPU needs). The data a task draws and the dropout masks depend on it (the
  random draws take their dtypes from it), so it is part of the config. Jitted functions cache
  per scope: trace and call them inside it."""
  return jax.enable_x64(cfg.train.x64)


@functools.lru_cache(maxsize=16)
def program(cfg: Config) -> Program:
  from grokjax import tasks
  return Program(cfg, tasks.from_config(cfg), make_optimizer(cfg.train))


def init_state(prog: Program, run: RunData, params: PyTree | None = None) -> TrainState:
  """The state at epoch 0; `params` (drawn from the run's seed when not given) are the init."""
  if params is None:
    params = model.init_params(prog.cfg.model, jax.random.key(run.hyper.seed))
  opt_state = make_optimizer(prog.cfg.train, run.hyper).init(params)
  return TrainState(params, opt_state, jnp.int32(0), jnp.int32(-1))


def per_target_nll(prog: Program, params: PyTree, batch: Batch,
                   dropout: model.Dropout = None) -> tuple[jax.Array, jax.Array]:
  """(B·P,) cross-entropies and (B·P, C) logits at the task's loss positions, flattened."""
  logits = model.logits_at(prog.cfg.model, params, batch.tokens, prog.task.loss_pos, dropout)
  logits = logits.reshape(-1, logits.shape[-1])
  return (losses.cross_entropy(logits, batch.targets.reshape(-1), prog.cfg.train.loss_dtype),
          logits)


def loss_fn(params: PyTree, prog: Program, batch: Batch, hyper: Hyper,
            dropout: model.Dropout) -> jax.Array:
  nll, _ = per_target_nll(prog, params, batch, dropout)
  weights = batch.weights.reshape(-1)
  loss = jnp.sum(weights * nll) / jnp.sum(weights)
  if any(prog.cfg.sweep.l1):  # static: only sweeps with an L1 run pay for the penalty
    loss = loss + hyper.l1 * sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(params))
  return loss


def _data_key(run: RunData) -> jax.Array:
  return jax.random.key(run.hyper.split_seed)


def train_step(prog: Program, state: TrainState, run: RunData,
               shared: PyTree) -> tuple[TrainState, jax.Array]:
  """One AdamW step; returns the new state and the train loss before the update."""
  batch = prog.task.train_batch(run.data, shared, _data_key(run), state.epoch)
  dropout = None
  if any(prog.cfg.sweep.dropout):  # randomness from (seed, epoch) alone: nothing stored
    dropout = (run.hyper.keep_prob,
               jax.random.fold_in(jax.random.key(run.hyper.seed), state.epoch))
  loss, grads = jax.value_and_grad(loss_fn)(state.params, prog, batch, run.hyper, dropout)
  updates, opt_state = prog.tx.update(grads, state.opt_state, state.params)
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


def _split(nll: jax.Array, correct: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean loss and accuracy over the targets with weight 1 (weights are 0/1)."""
  sel = w > 0
  n = jnp.sum(sel)
  return jnp.sum(jnp.where(sel, nll, 0.0)) / n, jnp.sum(sel & correct) / n


def evaluate(prog: Program, params: PyTree, run: RunData, shared: PyTree,
             epoch: jax.Array) -> dict[str, jax.Array]:
  """Train/test loss (the training objective) and accuracy; per-group test losses.

  Modular tasks: all p² pairs split by the run's train mask. Sequence tasks: the fixed train
  set (finite) or the batch that epoch's step trains on (infinite), and the fixed test set.
  """
  batch, train_w, test_w = prog.task.eval_batch(run.data, shared, _data_key(run), epoch)
  nll, logits = per_target_nll(prog, params, batch)
  correct = jnp.argmax(logits, axis=-1) == batch.targets.reshape(-1)
  train_w, test_w = train_w.reshape(-1), test_w.reshape(-1)
  out = {}
  out["train_loss"], out["train_acc"] = _split(nll, correct, train_w)
  out["test_loss"], out["test_acc"] = _split(nll, correct, test_w)
  # Softmax collapse: training examples whose float32 softmax gives the label probability 1.
  collapsed = losses.softmax_collapsed(logits, batch.targets.reshape(-1))
  out["train_collapsed"] = _split(nll, collapsed, train_w)[1]
  groups = batch.groups.reshape(-1)
  for g, name in enumerate(prog.task.group_names):
    out[f"test_loss_{name}"], _ = _split(nll, correct, test_w * (groups == g))
  return out


def train_chunk(prog: Program, state: TrainState, run: RunData, shared: PyTree,
                num_epochs: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """`num_epochs` steps as a scan of eval blocks: evaluate, then `eval_every` train steps.

  Nesting the scans (instead of a `cond` inside one scan) matters under vmap, where a `cond`
  would become a `select` that evaluates on every epoch.
  """
  every = prog.cfg.train.eval_every

  def block(state, _):
    metrics = evaluate(prog, state.params, run, shared, state.epoch)
    metrics["epoch"] = state.epoch
    metrics["halted_at"] = state.halted_at  # as of this row's epoch, not the block's end
    state, step_losses = jax.lax.scan(
        lambda s, _: train_step(prog, s, run, shared), state, None, length=every)
    metrics["step_train_loss"] = step_losses
    return state, metrics

  return jax.lax.scan(block, state, None, length=num_epochs // every)
