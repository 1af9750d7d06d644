"""The resumable training loop of a sweep over a workdir (files, checkpoints, progress lines).

`run_sweep` writes config.json/sweep.json (or checks them against an existing workdir), then
trains the compiled `sweep.Sweep` in chunks of `checkpoint_every` epochs, appending metrics and
saving orbax checkpoints between chunks; rerunning resumes from the newest state checkpoint and
reproduces an uninterrupted run exactly.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from grokjax import checkpoint, results
from grokjax.checkpoint import Checkpointer
from grokjax.config import Config, ConfigError
from grokjax.sweep import Sweep


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
