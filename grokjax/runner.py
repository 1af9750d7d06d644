"""The resumable training loop of a sweep over a workdir (files, checkpoints, progress lines).

`run_sweep` locks the workdir (one writer at a time, `lock.py`), checks config.json/sweep.json
against the workdir's files and checkpoints (and only then writes them), then trains the compiled
`sweep.Sweep` in chunks of `checkpoint_every` epochs, appending metrics and saving orbax
checkpoints between chunks; rerunning resumes from the newest restorable state checkpoint and
reproduces an uninterrupted run exactly. SIGINT/SIGTERM stop it at the next chunk boundary with
a state checkpoint saved (`Interrupted`); a second one aborts at once. With several processes
(`distributed.py`) process 0 writes the files and the processes agree, once per chunk, on the
metrics of all runs, on stopping and on saving the full state.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from grokjax import checkpoint, console, distributed, results, train
from grokjax.checkpoint import Checkpointer
from grokjax.console import Interrupted
from grokjax.config import Config, ConfigError
from grokjax.lock import WorkdirLock
from grokjax.results import CHECKPOINTS, WorkdirError
from grokjax.sweep import Sweep

# ----------------------------------------------------------------------------- config files

def _canonical(d: dict[str, Any]) -> dict[str, Any]:
  """A config dict through Config (fields it lacked read as their defaults), as plain JSON."""
  return json.loads(Config.from_dict(d).to_json())


def _read_config(path: str) -> dict[str, Any]:
  with open(path) as f:
    return _canonical(json.load(f))


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


def _has_training_files(workdir: str) -> list[str]:
  """What a workdir holds that only a sweep writes (checkpoints, metrics rows)."""
  out = []
  for kind in (checkpoint.PARAMS, checkpoint.STATE):
    d = os.path.join(workdir, CHECKPOINTS, kind)
    if os.path.isdir(d) and any(s.split(".")[0].isdigit() for s in os.listdir(d)):
      out.append(f"{CHECKPOINTS}/{kind}/")
  m = os.path.join(workdir, results.METRICS)
  if os.path.exists(m) and os.path.getsize(m) > 0:
    out.append(results.METRICS)
  return out


def _state_dirs(workdir: str) -> list[int]:
  d = os.path.join(workdir, CHECKPOINTS, checkpoint.STATE)
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def prepare_workdir(cfg: Config, workdir: str, runs: list[dict[str, Any]],
                    log: Callable[[str], None] | None = None) -> None:
  """Checks `cfg` against the workdir's config.json AND the copy stored with its checkpoints,
  refuses a workdir of another sweep (or one whose checkpoints carry no config to prove which
  sweep they are), and only then writes config.json, sweep.json and their checkpoint copies."""
  log = log or (lambda s: print(s, file=sys.stderr, flush=True))
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir: {workdir} is a file, not a directory")
  new = json.loads(cfg.to_json())
  new_total = new["train"].pop("num_epochs")
  main_path = os.path.join(workdir, results.CONFIG)
  ckpt_path = os.path.join(workdir, CHECKPOINTS, results.CONFIG)
  found: dict[str, dict[str, Any]] = {}
  for path in (ckpt_path, main_path):
    if not os.path.exists(path):
      continue
    try:
      found[path] = _read_config(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
      if path == main_path and ckpt_path in found:
        log(f"{main_path} is damaged ({type(e).__name__}); restoring it from {ckpt_path}")
        continue
      raise WorkdirError(f"--workdir: {path} cannot be read ({type(e).__name__}: {e}); "
                         "use a new --workdir") from None
  if not found:
    held = _has_training_files(workdir)
    if held:
      raise WorkdirError(
          f"--workdir: {workdir} holds {' and '.join(held)} but no {results.CONFIG}, and no copy "
          f"of it is stored with its checkpoints: nothing proves which sweep they belong to; "
          "use a new --workdir (or put its config.json back)")
  totals = {path: old["train"].pop("num_epochs") for path, old in found.items()}
  for path, old in found.items():
    # The number of epochs may change: the trajectory does not depend on it (chunks are
    # `checkpoint_every` epochs), so a longer run continues the same runs bit for bit.
    if old != new:
      raise ConfigError(f"--workdir: {workdir} holds a different sweep ({_diff(old, new)}; "
                        f"from {os.path.relpath(path, workdir)}); use a new --workdir or "
                        "delete this one")
  if any(t != new_total for t in totals.values()):
    done = max(_state_dirs(workdir), default=0)
    if new_total < done:
      old_total = totals.get(ckpt_path, totals.get(main_path))
      raise ConfigError(f"--num_epochs: {workdir} already holds a saved state at epoch {done}; "
                        f"ask for at least {done} epochs (it was started with {old_total})")
  # Every check passed: now (and only now) the files are written.
  os.makedirs(os.path.join(workdir, CHECKPOINTS), exist_ok=True)
  if ckpt_path in found and main_path not in found:
    log(f"{workdir}: {results.CONFIG} was missing or damaged; restored from the copy stored "
        "with its checkpoints")
  for d in (workdir, os.path.join(workdir, CHECKPOINTS)):
    sweep_path = os.path.join(d, results.SWEEP)
    if not os.path.exists(sweep_path):
      results.write_json(sweep_path, {"runs": runs})
    path = os.path.join(d, results.CONFIG)
    if totals.get(path) != new_total:
      results.write_json(path, cfg.to_dict())


# ----------------------------------------------------------------------------- signals

class _StopOnSignal:
  """SIGINT/SIGTERM set a flag that the loop reads at chunk boundaries (a KeyboardInterrupt
  raised inside a compile or a running XLA program can crash the process); a second signal
  exits at once. Only installed from the main thread; the previous handlers are restored."""

  def __init__(self, log: Callable[[str], None]):
    self.log, self.signum, self._old = log, None, {}

  def __enter__(self) -> "_StopOnSignal":
    if threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._old[s] = signal.signal(s, self._handler)
    return self

  def _handler(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    if self.signum is not None:
      hint = f"; resume with: {console.resume_command}" if console.resume_command else ""
      print(f"second {name}: aborting now; the workdir resumes from its last complete "
            f"checkpoint{hint}", file=sys.stderr, flush=True)
      os._exit(128 + signum)
    self.signum = signum
    self.log(f"{name} received: stopping at the end of the current chunk (again to abort now)")

  def __exit__(self, *exc) -> None:
    for s, h in self._old.items():
      signal.signal(s, h)


# ----------------------------------------------------------------------------- the loop

def _range(x: np.ndarray) -> str:
  return f"{np.nanmin(x):.3f}" if np.nanmin(x) == np.nanmax(x) else \
      f"{np.nanmin(x):.3f}-{np.nanmax(x):.3f}"


def _missing_rows(rows: list[dict[str, Any]], runs: list[dict[str, Any]], upto: int,
                  eval_every: int, final: int | None) -> list[tuple[int, int]]:
  """(run, epoch) of the evaluation rows before `upto` (and at `final`) that are absent."""
  have = {(r["run"], r["epoch"]) for r in rows}
  want = [(r["run"], e) for r in runs for e in range(0, upto, eval_every)]
  if final is not None:
    want += [(r["run"], final) for r in runs]
  return [k for k in want if k not in have]


def _report_missing(log, workdir: str, missing: list[tuple[int, int]]) -> None:
  if missing:
    some = ", ".join(f"run {r} epoch {e}" for r, e in missing[:4])
    more = f", +{len(missing) - 4} more" if len(missing) > 4 else ""
    log(f"warning: {workdir}/{results.METRICS} lacks {len(missing)} row(s) ({some}{more}): "
        "they were on damaged lines; only retraining in a new workdir recovers them")


def _report_params(log, workdir: str, total: int, every: int) -> list[int]:
  bad = checkpoint.verify_params(workdir, list(range(0, total + 1, every)))
  if bad:
    text = ", ".join(f"{e} ({why})" for e, why in sorted(bad.items()))
    log(f"warning: {workdir}: parameter checkpoint(s) {text}: the analysis cannot use them")
  return sorted(bad)


def run_sweep(cfg: Config, workdir: str, *, log: Callable[[str], None] | None = None,
              devices: list[Any] | None = None, stop_after_chunks: int | None = None,
              state_every_s: float = 30.0) -> str:
  """Trains (or resumes, or finds finished) the sweep in `workdir`. Returns a status word.

  Parameters are checkpointed every `checkpoint_every` epochs; the full state (for resuming) at
  the first chunk end after `state_every_s` seconds since the last one, and at the end. A resume
  recomputes the chunks after the newest restorable state checkpoint, bit for bit. Raises
  WorkdirError (locked, another sweep, unprovable or unrestorable workdir) before writing
  anything, and Interrupted after a SIGINT/SIGTERM (state saved, resumable).

  With several processes (`distributed.initialize`) every process calls this with the same
  arguments: process 0 holds the lock, checks and writes the workdir's files and logs; all of
  them save and restore the checkpoints of the global arrays together; a peer that dies makes
  the others raise `distributed.PeerLost`.
  """
  log = log or (lambda s: print(s, file=sys.stderr, flush=True))
  if not distributed.is_primary():
    log = lambda s: None  # process 0 speaks for the sweep
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir: {workdir} is a file, not a directory")
  with train.x64(cfg):
    sw = Sweep(cfg, devices)  # refuses a sweep that cannot fit before anything is written
    lock = WorkdirLock(workdir, "sweep", log)

    def claim() -> None:
      os.makedirs(workdir, exist_ok=True)
      lock.acquire()
      try:
        prepare_workdir(cfg, workdir, sw.runs, log)
      except BaseException:
        lock.release()
        raise

    try:
      with _StopOnSignal(log) as stop:
        if distributed.process_count() > 1:
          _same_sweep_everywhere(cfg, workdir)
        distributed.on_primary(claim, "the workdir check")
        try:
          return _train(cfg, workdir, sw, log, stop, stop_after_chunks, state_every_s)
        except distributed.PeerLost:
          raise
        except Exception as e:
          if console.disk_full(e) == "":  # orbax's own OSErrors name no file: name the workdir
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), workdir) from e
          raise
    finally:
      lock.release()  # (only process 0 holds it)


def _same_sweep_everywhere(cfg: Config, workdir: str) -> None:
  """Every process must train the same sweep into the same workdir: a process started with
  other flags is refused (on every process) before anything is written."""
  mine = json.dumps([cfg.to_dict(), os.path.abspath(workdir)], sort_keys=True)
  theirs = distributed.on_primary(lambda: mine, "the sweep's flags")
  ok = distributed.all_flags([mine == theirs])[:, 0]
  if not ok.all():
    bad = ", ".join(str(i) for i in np.flatnonzero(ok == 0))
    raise ConfigError(f"--workdir/--p/...: process(es) {bad} were started with other flags "
                      "(or another --workdir) than process 0; run the same command on every "
                      "process")


def _agree(stop: _StopOnSignal, save_state: bool) -> tuple[int | None, bool]:
  """The signal that stops the sweep (any process's) and whether to save the full state now
  (process 0's clock decides): every process must make the same collective saves."""
  if distributed.process_count() == 1:
    return stop.signum, save_state
  flags = distributed.all_flags([stop.signum or 0, save_state])
  return (int(flags[:, 0].max()) or None), bool(flags[0, 1])


def _train(cfg: Config, workdir: str, sw: Sweep, log, stop: _StopOnSignal,
           stop_after_chunks: int | None, state_every_s: float) -> str:
  total, every = cfg.train.num_epochs, cfg.train.checkpoint_every
  eval_every = cfg.train.eval_every
  primary, single = distributed.is_primary(), distributed.process_count() == 1
  distributed.on_primary(lambda: checkpoint.remove_partial(workdir), "the workdir clean-up")
  ckpt = Checkpointer(workdir)
  failed, peer_lost = True, False
  try:
    def finished() -> bool:
      rows = results.read_metrics_rows(workdir, log)
      done = {(r["run"], r["epoch"]) for r in rows}
      if not (ckpt.latest_state_epoch() == total
              and all((r["run"], total) in done for r in sw.runs)):
        return False
      _report_missing(log, workdir, _missing_rows(rows, sw.runs, total, eval_every, total))
      _report_params(log, workdir, total, every)
      log(f"{workdir}: finished sweep ({len(sw.runs)} runs, {total} epochs); nothing to do")
      return True
    if distributed.on_primary(finished, "the workdir's state"):
      failed = False
      return "finished"
    restored = ckpt.restore_newest(sw.abstract_state(), log)
    if restored is None:
      if primary and (ckpt.params.all_steps() or _has_training_files(workdir)):
        log(f"{workdir}: no state checkpoint; training from the start")
      state, start = sw.init(), 0

      def clear() -> None:
        results.truncate_metrics(workdir, 0, log=lambda s: None)
      distributed.on_primary(clear, "the metrics clean-up")
      ckpt.drop_params_after(-1)
      ckpt.save(0, state)
      log(f"{workdir}: training {len(sw.runs)} runs for {total} epochs (compiling first)")
    else:
      start, state = restored
      ckpt.set_aside_states_after(start, log)

      def truncate() -> None:
        scan = results.truncate_metrics(workdir, start, log=lambda s: None)
        _report_missing(log, workdir, _missing_rows(scan.rows, sw.runs, start, eval_every, None))
      distributed.on_primary(truncate, "the metrics clean-up")
      ckpt.drop_params_after(start)
      log(f"{workdir}: resuming {len(sw.runs)} runs at epoch {start}/{total}")
    t0, epoch, last_log, chunks = time.time(), start, 0.0, 0
    last_state = t0
    signum, _ = _agree(stop, False)
    while epoch < total:
      if single:
        signum = stop.signum
      if signum is not None:
        ckpt.save(epoch, state)  # the full state at the boundary: nothing is recomputed
        ckpt.wait()
        raise Interrupted(signum, epoch, total, workdir)
      state, metrics = sw.chunk_fn(state, sw.run_data, sw.shared)
      metrics = distributed.gather(metrics)
      epoch += every
      if primary:
        results.append_metrics(workdir, sw.metric_rows(metrics))
      now = time.time()
      signum, save_state = _agree(stop, epoch == total or now - last_state >= state_every_s)
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
        failed = False
        return "stopped"
    final, halted_at = distributed.gather((sw.eval_fn(state, sw.run_data, sw.shared),
                                           state.halted_at))
    final = {k: np.asarray(v)[:, None] for k, v in final.items()}
    final["epoch"] = np.full((sw.num_lanes, 1), total)
    final["halted_at"] = np.asarray(halted_at)[:, None]
    if primary:
      results.append_metrics(workdir, sw.metric_rows(final))
    ckpt.wait()
    if primary:
      _report_params(log, workdir, total, every)
    failed = False
    return "trained"
  except distributed.PeerLost:
    peer_lost = True  # orbax's waits would block on the dead process: leave at once
    raise
  finally:
    if peer_lost:
      pass
    elif failed:  # keep the original error: a failing save re-raises from wait()/close()
      for fn in (ckpt.wait, ckpt.close):
        try:
          fn()
        except Exception:
          pass
    else:
      ckpt.wait()
      ckpt.close()
