"""The plan's time estimate per sweep (`grokjax.suite.plan`), from the best source at hand:

  own rate  a sweep already started in ROOT/NAME: its seconds per epoch read from the
            modification times of its parameter checkpoints (one per `checkpoint_every` epochs,
            written as it trains): the median over the last RECENT intervals between consecutive
            ones, which ignores the compile and any gap between sessions; it needs MIN_INTERVALS
            of them (the pace of whatever machine trained it, at its load then).
  measured  otherwise: the sweep's own training program (`grokjax.sweep.Sweep` of its Config, in
            chunks of one evaluation and eval_every steps, the real chunk's unit) compiled ahead
            of time, then called chunk after chunk for TIMED_S seconds, at least once
            (block_until_ready; the median chunk after the first, a warm-up, counts); no
            checkpoints, nothing written to the workdir. Cached in ROOT/plan_timings.json under the sweep's Config (less its
            epoch count, which does not change the pace) and the machine (jax backend, device
            kind, device count, os.cpu_count()): a rerun of the plan is instant, another
            machine re-measures. Delete the file to re-measure here.
  model     not measured (`--nomeasure`, a finished sweep without checkpoint times, a sweep too
            large to build here): `grokjax.suite_cost.estimate_s`, the FLOP-count model (instant;
            ≈ 3.5x low for the 2-layer attention-only induction model).

Per sweep: total = epochs × s/epoch + overhead + analysis, and what is left to run
(planned epochs − reached) × s/epoch + overhead + analysis (nothing when finished). A measured
sweep's overhead is its measured compile plus REST_OVERHEAD_S (start-up, the analysis' compiles,
figures, report); an own-rate sweep's is the model's SWEEP_OVERHEAD_S; the analysis is the
model's per-checkpoint cost. Checkpoint writing is not timed by a measurement (the own rate
includes it): a few per cent of small models' epochs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import time
from typing import Any, Callable

from grokjax import results
from grokjax import suite_cost as model

CACHE = "plan_timings.json"
TIMED_S = 2.0            # seconds of timed training per measured sweep, after its compile
REST_OVERHEAD_S = 40.0   # start-up, analysis compiles, figures, report (34 s for a p = 23 sweep)
RECENT = 20              # the own rate: the last intervals between parameter checkpoints
MIN_INTERVALS = 3
MIN_RATE_S = 1e-5        # s/epoch below this: checkpoint times copied, not trained (no rate)


@dataclasses.dataclass(frozen=True)
class Estimate:
  total_s: float
  remaining_s: float
  source: str                      # 'measured', 'own rate' or 'model'
  s_per_epoch: float | None = None
  cached: bool = False             # measured: read from ROOT/plan_timings.json


def machine() -> dict[str, Any]:
  import jax
  return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "device_count": jax.device_count(), "cpu_count": os.cpu_count()}


def cache_key(cfg, mach: dict[str, Any]) -> str:
  """The sweep's Config without its epoch count, and the machine."""
  d = cfg.to_dict()
  d["train"].pop("num_epochs")
  text = json.dumps({"config": d, "machine": mach}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:20]


def measure_sweep(cfg, timed_s: float = TIMED_S) -> dict[str, float]:
  """Seconds per epoch of the sweep's compiled training program, and the time to build and
  compile it. The program is the sweep's chunk with one evaluation block (an evaluation and
  eval_every steps: the real chunk's unit), compiled ahead of time, then called until `timed_s`
  seconds have passed (at least once); the median call after the first is used."""
  import jax
  from grokjax import sweep, train
  chunk = cfg.train.eval_every
  short = dataclasses.replace(cfg, train=dataclasses.replace(
      cfg.train, num_epochs=chunk, checkpoint_every=chunk))
  t0 = time.perf_counter()
  sw = sweep.Sweep(short)
  with train.x64(short):
    state = jax.block_until_ready(sw.init())
    program = sw.chunk_fn.lower(state, sw.run_data, sw.shared).compile()
    compile_s = time.perf_counter() - t0
    times: list[float] = []
    while sum(times) < timed_s:
      t0 = time.perf_counter()
      state, metrics = program(state, sw.run_data, sw.shared)
      jax.device_get(jax.block_until_ready(metrics))   # the runner reads each chunk's metrics
      times.append(time.perf_counter() - t0)
  del sw, state, metrics, program
  jax.clear_caches()
  warm = times[1:] or times   # a first call runs ≈ 0.2 s slower (mainline, 2-core CPU)
  return {"s_per_epoch": statistics.median(warm) / chunk, "compile_s": compile_s,
          "epochs_timed": len(times) * chunk, "timed_s": sum(times)}


def own_rate(workdir: str) -> float | None:
  """Seconds per epoch of a started sweep, from its parameter checkpoints' times (or None)."""
  epochs = results.param_dirs(workdir)
  root = os.path.join(workdir, results.CHECKPOINTS, "params")
  try:
    t = [os.path.getmtime(os.path.join(root, str(e), "_CHECKPOINT_METADATA")) for e in epochs]
  except OSError:   # removed while listing (a resume dropping newer checkpoints)
    return None
  gaps = [(t[i + 1] - t[i]) / (epochs[i + 1] - epochs[i]) for i in range(len(epochs) - 1)]
  gaps = gaps[-RECENT:]
  if len(gaps) < MIN_INTERVALS:
    return None
  rate = statistics.median(gaps)
  return rate if rate >= MIN_RATE_S else None


def _valid(entry: Any) -> bool:
  """A cache entry with a usable pace (anything else is measured again)."""
  num = lambda k: isinstance(entry.get(k), (int, float)) and entry[k] == entry[k]
  return (isinstance(entry, dict) and num("s_per_epoch") and num("compile_s")
          and entry["s_per_epoch"] > 0)


class Estimator:
  """Estimates for the sweeps of one suite root; `measure=False` never times anything (own rates
  and cached measurements are still used: both are instant); `only` limits the timing to those
  sweeps (the suite's --only). `measure_fn(cfg)` returns `measure_sweep`'s dict (tests count its
  calls)."""

  def __init__(self, root: str, measure: bool = True, log: Callable[[str], None] = print,
               measure_fn: Callable[[Any], dict[str, float]] | None = None,
               only: tuple[str, ...] | None = None):
    self.path = os.path.join(root, CACHE)
    self.measure, self.log, self.only = measure, log, only
    self.measure_fn = measure_fn or measure_sweep
    self._machine: dict[str, Any] | None = None
    self.measured_s = 0.0   # wall time spent measuring (compiles included)

  @property
  def machine(self) -> dict[str, Any]:
    if self._machine is None:
      self._machine = machine()
    return self._machine

  def _load(self) -> dict[str, Any]:
    try:
      with open(self.path) as f:
        data = json.load(f)
      return data if isinstance(data.get("entries"), dict) else {"entries": {}}
    except (OSError, ValueError, AttributeError):
      return {"entries": {}}

  def _store(self, key: str, entry: dict[str, Any]) -> None:
    data = self._load()
    data["entries"][key] = entry
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    results.write_json(self.path, data)

  def _measured(self, name: str, args: tuple[str, ...], cfg, finished: bool,
                label: str) -> tuple[dict[str, float], bool] | None:
    """(timing, cached) from the cache or a new measurement; None where neither applies."""
    entries = self._load()["entries"]
    timed = self.measure and not finished and (self.only is None or name in self.only)
    if not entries and not timed:
      return None   # nothing to look up: no need to start jax for the machine's description
    key = cache_key(cfg, self.machine)
    entry = entries.get(key)
    if _valid(entry):
      return entry, True
    if not timed:
      return None
    from grokjax.config import ConfigError
    runs = cfg.sweep.num_runs
    self.log(f"measuring {label} {name} ({runs} run{'s' if runs != 1 else ''})…")
    t0 = time.perf_counter()
    try:
      timing = self.measure_fn(cfg)
    except ConfigError as e:   # e.g. too large for this machine's memory: the run fails too
      self.log(f"  {name}: not measured ({e}); model estimate")
      return None
    finally:
      self.measured_s += time.perf_counter() - t0
    self._store(key, {**timing, "sweep": name, "args": list(args), "machine": self.machine,
                      "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    return timing, False

  def estimate(self, name: str, args: tuple[str, ...], cfg, workdir: str,
               reached: int | None, finished: bool, label: str = "") -> Estimate:
    epochs = cfg.train.num_epochs
    left = 0 if finished else max(epochs - (reached or 0), 0)
    analysis = model.analysis_s(cfg)

    def est(rate: float, overhead: float, source: str, cached: bool = False) -> Estimate:
      rest = 0.0 if finished else left * rate + overhead + analysis
      return Estimate(epochs * rate + overhead + analysis, rest, source, rate, cached)

    if reached is not None:
      rate = own_rate(workdir)
      if rate is not None:
        return est(rate, model.SWEEP_OVERHEAD_S, "own rate")
    got = self._measured(name, args, cfg, finished, label)
    if got is not None:
      timing, cached = got
      return est(timing["s_per_epoch"], timing["compile_s"] + REST_OVERHEAD_S, "measured",
                 cached)
    return est(model.model_s_per_epoch(cfg), model.SWEEP_OVERHEAD_S, "model")
