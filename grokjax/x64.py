"""64-bit types where grokjax needs them, not for the whole process.

The paper's loss and the analysis' means and projections are float64 (SPEC §1.5, §7.1); JAX
gives 64-bit types only under `jax_enable_x64`. Importing grokjax leaves that flag as the user
set it: the entry points that need 64-bit types (`runner.run_sweep` and `sweep.Sweep` through
`train.x64(cfg)`, the analysis drivers through `scoped` / `of_workdir`) turn it on for their
own work only, so a user's other JAX code keeps its dtypes. A sweep trained with `--nox64`
(float32 losses only) has no 64-bit type anywhere; random draws without an explicit dtype
(some of the tasks' data, dropout masks) follow the flag, so whatever recomputes a workdir's
data runs in the scope the workdir was trained in (`of_workdir`). Parameters and activations are float32 explicitly
either way. The pure building blocks (fourier, measures, losses, llc) compute in float64 when
called inside `with jax.enable_x64(True):` (or with the flag on), in float32 otherwise. Jitted
functions keep one cache per x64 state, so a scoped entry point traces and calls its programs
inside the scope.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax

F = TypeVar("F", bound=Callable)


def scoped(fn: F) -> F:
  """`fn` run inside `jax.enable_x64(True)`, whatever the caller's setting."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.enable_x64(True):
      return fn(*args, **kwargs)
  return wrapped  # type: ignore[return-value]


def of_workdir(fn: F) -> F:
  """`fn(workdir, ...)` run inside the 64-bit scope the workdir's sweep was trained in (on,
  unless it was trained with --nox64), so that it draws the same data the training did."""
  @functools.wraps(fn)
  def wrapped(workdir, *args, **kwargs):
    from grokjax import results
    try:
      on = results.load_config(workdir).train.x64
    except (OSError, ValueError, KeyError, TypeError):
      on = True  # no readable config: `fn` itself reports what is wrong with the workdir
    with jax.enable_x64(on):
      return fn(workdir, *args, **kwargs)
  return wrapped  # type: ignore[return-value]
