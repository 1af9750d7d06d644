"""A sweep: the grid of runs trained as one jit(vmap(scan(step))) program, in chunks.

The run axis is sharded over all visible devices (padded to a multiple of the device count by
repeating the last run; padded lanes are never written out). Between chunks the host writes
metrics and orbax checkpoints; rerunning on the same workdir resumes from the newest complete
state checkpoint and reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grokjax import checkpoint, data, results, train
from grokjax.checkpoint import Checkpointer
from grokjax.config import Config, ConfigError


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


def prepare_workdir(cfg: Config, workdir: str, runs: list[dict[str, Any]]) -> None:
  """Writes config.json/sweep.json, or refuses a workdir that holds a different config."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, results.CONFIG)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    # Through Config: a config.json written before a field existed reads as that field's default.
    old = json.loads(Config.from_dict(old).to_json())
    new = json.loads(cfg.to_json())
    # The number of epochs may change: the trajectory does not depend on it (chunks are
    # `checkpoint_every` epochs), so a longer run continues the same runs bit for bit.
    old_total, new_total = old["train"].pop("num_epochs"), new["train"].pop("num_epochs")
    if old != new:
      raise ConfigError(f"--workdir: {workdir} holds a different sweep ({_diff(old, new)}); "
                        "use a new --workdir or delete this one")
    if new_total != old_total:
      done = max(checkpoint.state_epochs(workdir), default=0)
      if new_total < done:
        raise ConfigError(f"--num_epochs: {workdir} already holds a saved state at epoch {done}; "
                          f"ask for at least {done} epochs (it was started with {old_total})")
      results.write_json(path, cfg.to_dict())
    return
  results.write_json(os.path.join(workdir, results.SWEEP), {"runs": runs})
  results.write_json(path, cfg.to_dict())


def _diff(a: dict, b: dict, prefix: str = "") -> str:
  out = []
  for k in sorted(set(a) | set(b)):
    if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
      d = _diff(a[k], b[k], prefix + k + ".")
      if d:
        out.append(d)
    elif a.get(k) != b.get(k):
      out.append(f"{prefix}{k}: {a.get(k)} there, {b.get(k)} now")
  return "; ".join(out)


def _range(x: np.ndarray) -> str:
  return f"{np.nanmin(x):.3f}" if np.nanmin(x) == np.nanmax(x) else \
      f"{np.nanmin(x):.3f}-{np.nanmax(x):.3f}"


def run_sweep(cfg: Config, workdir: str, *, log: Callable[[str], None] | None = None,
              devices: list[Any] | None = None, stop_after_chunks: int | None = None,
              state_every_s: float = 30.0) -> str:
  """Trains (or resumes, or finds finished) the sweep in `workdir`. Returns a status word.

  Parameters are checkpointed every `checkpoint_every` epochs; the full state (for resuming) at
  the first chunk end after `state_every_s` seconds since the last one, and at the end. A resume
  recomputes the chunks after the newest state checkpoint, bit for bit.
  """
  log = log or (lambda s: print(s, file=sys.stderr, flush=True))
  sw = Sweep(cfg, devices)
  prepare_workdir(cfg, workdir, sw.runs)
  ckpt = Checkpointer(workdir)
  total, every = cfg.train.num_epochs, cfg.train.checkpoint_every
  try:
    start = ckpt.latest_state_epoch()
    if start is None:
      state, start = sw.init(), 0
      results.truncate_metrics(workdir, 0)
      ckpt.drop_params_after(-1)
      ckpt.save(0, state)
    else:
      done = {(r["run"], r["epoch"]) for r in results.read_metrics_rows(workdir)}
      if start == total and all((r["run"], total) in done for r in sw.runs):
        log(f"{workdir}: finished sweep ({len(sw.runs)} runs, {total} epochs); nothing to do")
        return "finished"
      state = ckpt.restore_state(start, sw.abstract_state())
      results.truncate_metrics(workdir, start)
      ckpt.drop_params_after(start)
      log(f"{workdir}: resuming {len(sw.runs)} runs at epoch {start}/{total}")
    t0, epoch, last_log, chunks = time.time(), start, 0.0, 0
    last_state = t0
    while epoch < total:
      state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)
      metrics = jax.device_get(metrics)
      epoch += every
      results.append_metrics(workdir, sw.metric_rows(metrics))
      now = time.time()
      save_state = epoch == total or now - last_state >= state_every_s
      ckpt.save(epoch, state, params_only=not save_state)
      last_state = now if save_state else last_state
      chunks += 1
      if now - last_log > 5 or epoch == total:
        rate = (epoch - start) / (now - t0)
        n = len(sw.runs)
        log(f"epoch {epoch}/{total}  {rate:.1f} epochs/s ({rate * n:.0f} model-epochs/s)  "
            f"ETA {(total - epoch) / rate:.0f}s  train_acc {_range(metrics['train_acc'][:n, -1])}"
            f"  test_acc {_range(metrics['test_acc'][:n, -1])}")
        last_log = now
      if stop_after_chunks is not None and chunks >= stop_after_chunks:
        return "stopped"
    final = jax.device_get(sw.eval_fn(state, sw.run_data, sw.shared))
    final = {k: np.asarray(v)[:, None] for k, v in final.items()}
    final["epoch"] = np.full((sw.num_lanes, 1), total)
    final["halted_at"] = np.asarray(jax.device_get(state.halted_at))[:, None]
    results.append_metrics(workdir, sw.metric_rows(final))
    return "trained"
  finally:
    ckpt.wait()
    ckpt.close()
