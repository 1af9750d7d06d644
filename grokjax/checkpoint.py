"""Orbax checkpoints of a sweep's vmapped state.

Two managers under `WORKDIR/checkpoints/`:
  params/<epoch>/   the stacked parameters (leading run axis) every `checkpoint_every` epochs,
                    all kept: what the analysis reads;
  state/<epoch>/    the whole vmapped TrainState (params, AdamW moments, step, halt flags), only the
                    newest two kept: what resuming reads.
and `config.json` / `sweep.json`, copies of the workdir's files written before the first
checkpoint: they prove which sweep the checkpoints belong to (results.load_config falls back to
them; the sweep restores the workdir's copies from them).
A checkpoint labelled epoch e holds the parameters after e optimizer steps, the ones that produced
the losses logged at epoch e (epoch 0 = the initialisation).
A state checkpoint that cannot be restored is moved to `checkpoints/damaged/` and the resume
falls back to the previous one.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from grokjax import distributed
from grokjax.results import CHECKPOINTS, WorkdirError

PARAMS, STATE = "params", "state"
DAMAGED = "damaged"


class _DropReadOnlyNotes(logging.Filter):
  """Orbax warns on every read-only manager it opens ('Given directory is read only=...');
  reading is all the analysis does, so these notes are noise."""

  def filter(self, record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    return not (msg.startswith("Given directory is read only")
                or msg.startswith("CheckpointManagerOptions.read_only=True"))


@contextlib.contextmanager
def _quiet_read_only():
  f = _DropReadOnlyNotes()
  logger = logging.getLogger("absl")  # orbax logs through absl.logging
  logger.addFilter(f)
  try:
    yield
  finally:
    logger.removeFilter(f)


def _dir(workdir: str, kind: str) -> str:
  return os.path.abspath(os.path.join(workdir, CHECKPOINTS, kind))


def _manager(workdir: str, kind: str, max_to_keep: int | None, read_only: bool = False):
  path = _dir(workdir, kind)
  if read_only:
    opts = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                        enable_async_checkpointing=False)
    with _quiet_read_only():
      return ocp.CheckpointManager(path, options=opts)
  # With several processes the two managers save the same epoch at once: their barriers need
  # names of their own.
  opts = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=kind))
  return ocp.CheckpointManager(path, options=opts)


def _first_line(e: BaseException) -> str:
  """'Type: the first line of the message' (tensorstore's long details cut off)."""
  text = str(e).strip().splitlines()
  line = text[0].split(" See full TensorStore details")[0] if text else ""
  line = line if len(line) <= 160 else line[:157] + "..."
  return f"{type(e).__name__}: {line}" if line else type(e).__name__


def epochs_text(epochs: list[int]) -> str:
  """'0, 100, ..., 2000 (21 epochs, every 100)' for long evenly spaced lists, else all."""
  if not epochs:
    return "none"
  steps = {b - a for a, b in zip(epochs, epochs[1:])}
  if len(epochs) > 10 and len(steps) == 1:
    return (f"{epochs[0]}, {epochs[1]}, ..., {epochs[-1]} "
            f"({len(epochs)} epochs, every {steps.pop()})")
  return ", ".join(map(str, epochs))


class Checkpointer:
  """Writes both kinds of checkpoint; `wait()` before reading back or exiting."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.params = _manager(workdir, PARAMS, None)
    self.state = _manager(workdir, STATE, 2)

  def latest_state_epoch(self) -> int | None:
    return self.state.latest_step()

  def save(self, epoch: int, state: Any, params_only: bool = False) -> None:
    if epoch not in self.params.all_steps():
      self.params.save(epoch, args=ocp.args.StandardSave(state.params))
    if not params_only and epoch not in self.state.all_steps():
      self.state.save(epoch, args=ocp.args.StandardSave(state))

  def restore_state(self, epoch: int, abstract_state: Any) -> Any:
    return self.state.restore(epoch, args=ocp.args.StandardRestore(abstract_state))

  def restore_newest(self, abstract_state: Any,
                     log: Callable[[str], None]) -> tuple[int, Any] | None:
    """The newest state checkpoint that restores, as (epoch, state); None when there is none.

    One that fails is logged in one line and the previous one is tried (the caller then moves
    the failed ones aside with `set_aside_states_after`, so that the resumed run can save those
    epochs again). When every one fails, the
    checkpoints are left in place and WorkdirError says so: that is what a state from other
    code or another config looks like, and nothing should be deleted for it."""
    steps = sorted(self.state.all_steps(), reverse=True)
    if not steps:
      return None
    failures = []
    for step in steps:
      try:
        state, error = self.restore_state(step, abstract_state), None
      except Exception as e:  # orbax/tensorstore raise plain Exception/ValueError on damage
        state, error = None, e
      if distributed.process_count() > 1:  # each process read its own shards: agree
        ok = distributed.all_flags([error is None])[:, 0]
        if error is None and not ok.all():
          error = WorkdirError(f"process(es) {', '.join(map(str, np.flatnonzero(ok == 0)))} "
                               "could not restore their part")
      if error is None:
        return step, state
      failures.append((step, error))
      nxt = next((s for s in steps if s < step), None)
      log(f"{self.workdir}: state checkpoint {step} cannot be restored ({_first_line(error)}); "
          + (f"trying {nxt}" if nxt is not None else "no older one"))
    raise WorkdirError(
        f"--workdir: {self.workdir}: no state checkpoint can be restored (tried "
        f"{', '.join(str(s) for s, _ in failures)}; first error: {_first_line(failures[0][1])})"
        "; the checkpoints are left as they are")

  def set_aside_states_after(self, epoch: int, log: Callable[[str], None]) -> None:
    """Moves state checkpoints newer than `epoch` (ones that failed to restore) to
    checkpoints/damaged/ instead of deleting them."""
    newer = [step for step in self.state.all_steps() if step > epoch]
    if not newer:
      return
    if distributed.is_primary():
      for step in newer:
        dest = os.path.join(self.workdir, CHECKPOINTS, DAMAGED,
                            f"state_{step}_{time.strftime('%Y%m%d-%H%M%S')}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(os.path.join(_dir(self.workdir, STATE), str(step)), dest)
        log(f"{self.workdir}: moved the unrestorable state checkpoint {step} to {dest}")
    distributed.barrier("grokjax:set_aside_states")
    self.state.reload()

  def drop_params_after(self, epoch: int) -> None:
    """Deletes parameter checkpoints newer than `epoch` (left by a run killed mid-chunk)."""
    for step in self.params.all_steps():
      if step > epoch:
        self.params.delete(step)

  def wait(self) -> None:
    self.params.wait_until_finished()
    self.state.wait_until_finished()

  def close(self) -> None:
    self.params.close()
    self.state.close()


def remove_partial(workdir: str) -> None:
  """Deletes the temporary directories of saves that a crash (or a full disk) interrupted;
  orbax ignores them, but warns about each when it saves that epoch again. Only for the
  workdir's lock holder."""
  for kind in (PARAMS, STATE):
    d = _dir(workdir, kind)
    for name in os.listdir(d) if os.path.isdir(d) else []:
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(d, name), ignore_errors=True)


def _epochs(workdir: str, kind: str) -> list[int]:
  if not os.path.isdir(_dir(workdir, kind)):
    return []
  mngr = _manager(workdir, kind, None, read_only=True)
  try:
    return sorted(mngr.all_steps())
  finally:
    mngr.close()


def param_epochs(workdir: str) -> list[int]:
  """Epochs with a complete parameter checkpoint, ascending."""
  return _epochs(workdir, PARAMS)


def state_epochs(workdir: str) -> list[int]:
  """Epochs with a complete state checkpoint (what a resume starts from), ascending."""
  return _epochs(workdir, STATE)


def params_problem(workdir: str, epoch: int) -> str | None:
  """A cheap check of params/<epoch> (no array is read): None when the step directory and
  its orbax metadata are present and readable, else what is wrong."""
  step = os.path.join(_dir(workdir, PARAMS), str(epoch))
  if not os.path.isdir(step):
    return "missing"
  for name in ("_CHECKPOINT_METADATA", os.path.join("default", "_METADATA")):
    path = os.path.join(step, name)
    try:
      with open(path) as f:
        json.load(f)
    except (OSError, ValueError):
      return f"damaged ({name} missing or unreadable)"
  manifest = os.path.join(step, "default", "manifest.ocdbt")
  if os.path.exists(manifest) and os.path.getsize(manifest) == 0:
    return "damaged (empty manifest.ocdbt)"
  return None


def verify_params(workdir: str, epochs: list[int]) -> dict[int, str]:
  """{epoch: problem} for the parameter checkpoints among `epochs` that fail `params_problem`."""
  out = {}
  for e in epochs:
    problem = params_problem(workdir, e)
    if problem:
      out[e] = problem
  return out


class ParamsReader:
  """Reads parameter checkpoints through one open orbax manager (opening one per read costs
  ≈ 0.1 s, a read through an open one ≈ 0.015 s). Use as a context manager.

  A missing workdir or epoch raises FileNotFoundError naming the path and the epochs that
  exist; a checkpoint that cannot be read raises WorkdirError naming it."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = _dir(workdir, PARAMS)
    if not os.path.isdir(self.path):
      why = ("does not exist" if not os.path.exists(workdir) else
             "is not a directory" if not os.path.isdir(workdir) else
             f"has no parameter checkpoints ({self.path} does not exist)")
      raise FileNotFoundError(f"{workdir}: {why}")
    self._mngr = _manager(workdir, PARAMS, None, read_only=True)

  def epochs(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def __call__(self, epoch: int) -> Any:
    """The stacked parameters (leading run axis) at `epoch`, as numpy arrays on the host."""
    if epoch not in self._mngr.all_steps():
      raise FileNotFoundError(f"{os.path.join(self.path, str(epoch))}: no parameter checkpoint "
                              f"at epoch {epoch}; available: {epochs_text(self.epochs())}")
    try:
      tree = self._mngr.restore(epoch, args=ocp.args.StandardRestore(self._target(epoch)))
    except Exception as e:
      raise WorkdirError(f"{os.path.join(self.path, str(epoch))}: the parameter checkpoint at "
                         f"epoch {epoch} cannot be read, it is damaged ({_first_line(e)})") from e
    return jax.tree.map(np.asarray, tree)

  def _target(self, epoch: int) -> Any:
    """The checkpoint's shapes and dtypes on this process's first CPU device: a checkpoint
    written by several devices or processes is read by one (orbax would otherwise ask for the
    devices that wrote it)."""
    meta = ocp.StandardCheckpointHandler().metadata(
        epath.Path(self.path) / str(epoch) / "default")
    cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu),
                        meta.tree)

  def close(self) -> None:
    self._mngr.close()

  def __enter__(self) -> "ParamsReader":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def load_params(workdir: str, epoch: int) -> Any:
  """The stacked parameters (leading run axis) at `epoch`, as numpy arrays on the host."""
  with ParamsReader(workdir) as read:
    return read(epoch)
