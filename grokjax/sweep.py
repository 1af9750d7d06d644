"""A sweep: the grid of runs trained as one jit(vmap(scan(step))) program, in chunks.

The run axis is sharded over all visible devices (padded to a multiple of the device count by
repeating the last run; padded lanes are never written out). Between chunks the host writes
metrics and orbax checkpoints; rerunning on the same workdir resumes from the newest complete
state checkpoint and reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grokjax import data, train
from grokjax.config import Config


def grid(cfg: Config) -> list[dict[str, Any]]:
  """The cartesian product of the swept values, in (seed, wd, frac, split_seed) order."""
  s = cfg.sweep
  runs = []
  for i, (seed, wd, frac, ss) in enumerate(itertools.product(
      s.seed, s.weight_decay, s.frac_train, s.split_seed)):
    mask = data.train_mask(cfg.p, frac, ss)
    runs.append(dict(run=i, seed=seed, weight_decay=wd, frac_train=frac, split_seed=ss,
                     n_train=int(mask.sum()), split_fingerprint=data.split_fingerprint(mask)))
  return runs


def build_data(cfg: Config, runs: list[dict[str, Any]],
               num_lanes: int) -> tuple[train.RunData, train.Shared]:
  """Stacked per-run arrays; each run's train set gathered and padded to the largest one."""
  p = cfg.p
  idx = [data.train_indices(p, r["frac_train"], r["split_seed"]) for r in runs]
  n_max = max(len(i) for i in idx)
  lanes = [min(i, len(runs) - 1) for i in range(num_lanes)]  # pad by repeating the last run
  train_idx = np.zeros((num_lanes, n_max), np.int32)
  train_w = np.zeros((num_lanes, n_max), np.float32)
  train_mask = np.zeros((num_lanes, p * p), bool)
  for lane, r in enumerate(lanes):
    train_idx[lane, :len(idx[r])] = idx[r]
    train_w[lane, :len(idx[r])] = 1.0
    train_mask[lane, idx[r]] = True
  run_data = train.RunData(
      seed=np.array([runs[r]["seed"] for r in lanes], np.int32),
      weight_decay=np.array([runs[r]["weight_decay"] for r in lanes], np.float32),
      train_idx=train_idx, train_w=train_w, train_mask=train_mask)
  shared = train.Shared(tokens=data.all_tokens(p), labels=data.labels(cfg.task, p))
  return run_data, shared


def _at_precision(cfg: Config, fn: Callable) -> Callable:
  """`fn` traced under the config's matmul precision ("highest" = true float32 by default)."""
  def wrapped(*args):
    with jax.default_matmul_precision(cfg.train.matmul_precision):
      return fn(*args)
  return wrapped


class Sweep:
  """The compiled programs of one sweep, with the run axis sharded over `devices`."""

  def __init__(self, cfg: Config, devices: list[Any] | None = None):
    self.cfg = cfg
    self.runs = grid(cfg)
    devices = devices or jax.devices()
    self.num_lanes = -(-len(self.runs) // len(devices)) * len(devices)
    mesh = Mesh(np.array(devices), ("runs",))
    self.lane_sharding = NamedSharding(mesh, P("runs"))
    self.replicated = NamedSharding(mesh, P())
    run_data, shared = build_data(cfg, self.runs, self.num_lanes)
    self.run_data = jax.device_put(run_data, self.lane_sharding)
    self.shared = jax.device_put(shared, self.replicated)
    chunk = cfg.train.checkpoint_every
    vchunk = _at_precision(cfg, jax.vmap(lambda s, r, sh: train.train_chunk(cfg, s, r, sh, chunk),
                                         in_axes=(0, 0, None)))
    # Outputs keep the run-axis sharding, so chunk n+1 sees chunk n's output exactly as it saw
    # the init: one compile for the whole sweep.
    self.chunk_fn = jax.jit(vchunk, donate_argnums=0, out_shardings=self.lane_sharding)
    veval = _at_precision(cfg, jax.vmap(lambda s, r, sh: train.evaluate(cfg, s.params, r, sh),
                                        in_axes=(0, 0, None)))
    self.eval_fn = jax.jit(veval, out_shardings=self.lane_sharding)
    self.init_fn = jax.jit(jax.vmap(lambda r: train.init_state(cfg, r)),
                           out_shardings=self.lane_sharding)

  def init(self) -> train.TrainState:
    return self.init_fn(self.run_data)

  def abstract_state(self) -> train.TrainState:
    shapes = jax.eval_shape(self.init_fn, self.run_data)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                       sharding=self.lane_sharding), shapes)

  def metric_rows(self, metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows (run-major within each epoch) from chunk metrics shaped (lanes, blocks)."""
    rows = []
    epochs = np.asarray(metrics["epoch"])
    for b in range(epochs.shape[1]):
      for r in self.runs:
        i = r["run"]
        rows.append(dict(
            run=i, epoch=int(epochs[i, b]), seed=r["seed"], weight_decay=r["weight_decay"],
            frac_train=r["frac_train"], split_seed=r["split_seed"],
            train_loss=float(metrics["train_loss"][i, b]),
            test_loss=float(metrics["test_loss"][i, b]),
            train_acc=float(metrics["train_acc"][i, b]),
            test_acc=float(metrics["test_acc"][i, b]),
            halted_at=int(metrics["halted_at"][i, b])))
    return rows
