"""A sweep: the grid of runs trained as one jit(vmap(scan(step))) program, in chunks.

The grid is the cartesian product of the swept axes (`config.AXES`, the one list of them);
each run's swept values become per-run arrays (`train.Hyper`), its data the task's per-run
arrays. The run axis is sharded over all devices — with several processes (`distributed.py`),
the global mesh of every process's devices: each process builds the same grid and holds the
lanes of its own devices — padded to a multiple of the device count by repeating the last run
(padded lanes are never written out); on one process a sweep of fewer runs than devices uses
one device per run. `runner.py` drives the compiled programs over a workdir.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grokjax import model, train
from grokjax.config import Config, ConfigError

# Per-run fields of sweep.json / metrics.jsonl that are not swept values.
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "train_collapsed")


def grid(cfg: Config) -> list[dict[str, Any]]:
  """One dict per run: its index, its value of every applicable axis, and the task's fields
  (e.g. n_train and the split fingerprint)."""
  task = train.program(cfg).task
  names, values = zip(*cfg.sweep.axes())
  runs = []
  for i, combo in enumerate(itertools.product(*values)):
    r = dict(run=i, **dict(zip(names, combo)))
    r.update(task.describe(r))
    runs.append(r)
  return runs


def build_data(cfg: Config, runs: list[dict[str, Any]],
               num_lanes: int) -> tuple[train.RunData, Any]:
  """Stacked per-run arrays (lanes beyond the runs repeat the last run) and the shared ones."""
  lanes = [runs[min(i, len(runs) - 1)] for i in range(num_lanes)]
  val = lambda r, name, default: r.get(name, default)
  f32 = lambda name, default=0.0: np.array([val(r, name, default) for r in lanes], np.float32)
  hyper = train.Hyper(
      seed=np.array([r["seed"] for r in lanes], np.int32),
      split_seed=np.array([r["split_seed"] for r in lanes], np.int32),
      weight_decay=f32("weight_decay"), lr=f32("lr"),
      keep_prob=np.array([1.0 - r["dropout"] for r in lanes], np.float64),
      l1=f32("l1"), grokfast_alpha=f32("grokfast_alpha"), grokfast_lamb=f32("grokfast_lamb"))
  per_lane, shared = train.program(cfg).task.build(lanes)
  return train.RunData(hyper, per_lane), shared


def _at_precision(cfg: Config, fn: Callable) -> Callable:
  """`fn` traced under the config's matmul precision ("highest" = true float32 by default)."""
  def wrapped(*args):
    with jax.default_matmul_precision(cfg.train.matmul_precision):
      return fn(*args)
  return wrapped


def estimate_bytes(cfg: Config, num_lanes: int) -> int:
  """A lower bound on the memory one evaluation needs (its logits and MLP activations)."""
  task, m = train.program(cfg).task, cfg.model
  per_example = len(task.loss_pos) * m.d_vocab_out * (4 + 8 + 8)  # float32 logits, f64 logp
  per_example += m.n_ctx * (m.d_model * 4 + (m.d_mlp if m.use_mlp else 0)) * 4 * m.num_layers
  per_example += m.num_heads * m.n_ctx * m.n_ctx * 4 * m.num_layers
  return num_lanes * task.eval_examples() * per_example


def _put(tree: Any, sharding: NamedSharding) -> Any:
  """Host arrays (the same on every process) as global arrays: each process fills only the
  shards of its own devices."""
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)
  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree.map(put, tree)


def _memory_bytes(device: Any) -> int | None:
  try:
    stats = device.memory_stats()
    if stats and "bytes_limit" in stats:
      return int(stats["bytes_limit"])
  except Exception:  # CPU devices have no memory_stats
    pass
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):
    return None


class _Scoped:
  """A jitted function that is always traced and called inside the sweep's 64-bit scope
  (`train.x64`), whatever the caller's jax_enable_x64."""

  def __init__(self, cfg: Config, fn: Callable):
    self._cfg, self._fn = cfg, fn

  def __call__(self, *args):
    with train.x64(self._cfg):
      return self._fn(*args)

  def lower(self, *args):
    with train.x64(self._cfg):
      return self._fn.lower(*args)

  def _cache_size(self) -> int:
    return self._fn._cache_size()


class Sweep:
  """The compiled programs of one sweep, with the run axis sharded over `devices`."""

  def __init__(self, cfg: Config, devices: list[Any] | None = None):
    with train.x64(cfg):
      self._build(cfg, devices)

  def _build(self, cfg: Config, devices: list[Any] | None) -> None:
    self.cfg = cfg
    self.prog = prog = train.program(cfg)
    devices = list(devices or jax.devices())
    if jax.process_count() == 1 and cfg.sweep.num_runs < len(devices):
      # No device without a run of its own: a padding lane repeats a run for nothing, and CPU
      # devices share the host's cores, so it costs wall time (1 run on 2 CPU devices: 0.55x
      # the epochs/s of 1; benchmarks/multiprocess_throughput.py --runs 1).
      devices = devices[:cfg.sweep.num_runs]
    self.num_lanes = -(-cfg.sweep.num_runs // len(devices)) * len(devices)
    local = [d for d in devices if d.process_index == jax.process_index()] or devices
    need, have = estimate_bytes(cfg, self.num_lanes), _memory_bytes(local[0])
    if have is not None and need > have * len(devices):
      raise ConfigError(
          f"--p/--d_model/...: one evaluation of {self.num_lanes} runs needs at least "
          f"{need / 2**30:.1f} GiB ({prog.task.eval_examples()} examples × "
          f"{len(prog.task.loss_pos)}×{cfg.model.d_vocab_out} logits each), this machine has "
          f"{have * len(devices) / 2**30:.1f} GiB; use a smaller model, task or sweep")
    self.runs = grid(cfg)
    mesh = Mesh(np.array(devices), ("runs",))
    self.lane_sharding = NamedSharding(mesh, P("runs"))
    self.replicated = NamedSharding(mesh, P())
    run_data, shared = build_data(cfg, self.runs, self.num_lanes)
    self._lane_seeds = [int(s) for s in run_data.hyper.seed]
    self.run_data = _put(run_data, self.lane_sharding)
    self.shared = _put(shared, self.replicated)
    chunk = cfg.train.checkpoint_every
    vchunk = _at_precision(cfg, jax.vmap(
        lambda s, r, sh: train.train_chunk(prog, s, r, sh, chunk), in_axes=(0, 0, None)))
    # Outputs keep the run-axis sharding, so chunk n+1 sees chunk n's output exactly as it saw
    # the init: one compile for the whole sweep.
    self.chunk_fn = _Scoped(cfg, jax.jit(vchunk, donate_argnums=0,
                                         out_shardings=self.lane_sharding))
    veval = _at_precision(cfg, jax.vmap(
        lambda s, r, sh: train.evaluate(prog, s.params, r, sh, s.epoch), in_axes=(0, 0, None)))
    self.eval_fn = _Scoped(cfg, jax.jit(veval, out_shardings=self.lane_sharding))
    self.init_fn = _Scoped(cfg, jax.jit(jax.vmap(lambda p, r: train.init_state(prog, r, p)),
                                        out_shardings=self.lane_sharding))

  def init(self) -> train.TrainState:
    """The state at epoch 0. Each distinct seed's parameters are drawn by one unbatched program
    (the same bits as drawing them inside the vmap, which compiles up to 3× slower on a CPU)."""
    with train.x64(self.cfg):
      drawn = {s: jax.device_get(model.init_params(self.cfg.model, jax.random.key(np.int32(s))))
               for s in sorted(set(self._lane_seeds))}
    params = jax.tree.map(lambda *xs: np.stack(xs), *[drawn[s] for s in self._lane_seeds])
    return self.init_fn(_put(params, self.lane_sharding), self.run_data)

  def abstract_state(self) -> train.TrainState:
    with train.x64(self.cfg):
      shapes = jax.eval_shape(jax.vmap(lambda r: train.init_state(self.prog, r)), self.run_data)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                       sharding=self.lane_sharding), shapes)

  def metric_rows(self, metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Rows (run-major within each epoch) from chunk metrics shaped (lanes, blocks): the run,
    the epoch, the run's swept values, the metrics (per-group test losses where the task has
    groups) and the halt flag."""
    rows = []
    epochs = np.asarray(metrics["epoch"])
    axes = [name for name, _ in self.cfg.sweep.axes()]
    names = list(METRICS) + [f"test_loss_{g}" for g in self.prog.task.group_names]
    for b in range(epochs.shape[1]):
      for r in self.runs:
        i = r["run"]
        row = dict(run=i, epoch=int(epochs[i, b]), **{a: r[a] for a in axes})
        row.update({k: float(metrics[k][i, b]) for k in names})
        row["halted_at"] = int(metrics["halted_at"][i, b])
        rows.append(row)
    return rows
