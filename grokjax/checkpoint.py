"""Orbax checkpoints of a sweep's vmapped state.

Two managers under `WORKDIR/checkpoints/`:
  params/<epoch>/   the stacked parameters (leading run axis) every `checkpoint_every` epochs,
                    all kept: what the analysis reads;
  state/<epoch>/    the whole vmapped TrainState (params, AdamW moments, step, halt flags), only the
                    newest two kept: what resuming reads.
A checkpoint labelled epoch e holds the parameters after e optimizer steps, the ones that produced
the losses logged at epoch e (epoch 0 = the initialisation).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PARAMS, STATE = "params", "state"


def _manager(workdir: str, kind: str, max_to_keep: int | None, read_only: bool = False):
  path = os.path.abspath(os.path.join(workdir, "checkpoints", kind))
  opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                      read_only=read_only, enable_async_checkpointing=True)
  return ocp.CheckpointManager(path, options=opts)


class Checkpointer:
  """Writes both kinds of checkpoint; `wait()` before reading back or exiting."""

  def __init__(self, workdir: str):
    self.params = _manager(workdir, PARAMS, None)
    self.state = _manager(workdir, STATE, 2)

  def latest_state_epoch(self) -> int | None:
    return self.state.latest_step()

  def save(self, epoch: int, state: Any, params_only: bool = False) -> None:
    if epoch not in self.params.all_steps():
      self.params.save(epoch, args=ocp.args.StandardSave(state.params))
    if not params_only:
      self.state.save(epoch, args=ocp.args.StandardSave(state))

  def restore_state(self, epoch: int, abstract_state: Any) -> Any:
    return self.state.restore(epoch, args=ocp.args.StandardRestore(abstract_state))

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


def _epochs(workdir: str, kind: str) -> list[int]:
  path = os.path.join(workdir, "checkpoints", kind)
  if not os.path.isdir(path):
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


class ParamsReader:
  """Reads parameter checkpoints through one open orbax manager (opening one per read costs
  ≈ 0.1 s, a read through an open one ≈ 0.015 s). Use as a context manager."""

  def __init__(self, workdir: str):
    self._mngr = _manager(workdir, PARAMS, None, read_only=True)

  def epochs(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def __call__(self, epoch: int) -> Any:
    """The stacked parameters (leading run axis) at `epoch`, as numpy arrays on the host."""
    tree = self._mngr.restore(epoch, args=ocp.args.StandardRestore())
    return jax.tree.map(np.asarray, tree)

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
