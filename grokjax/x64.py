"""64-bit types where grokjax needs them, not for the whole process.

The paper's loss and the analysis' means and projections are float64 (SPEC §1.5, §7.1); JAX
gives 64-bit types only under `jax_enable_x64`. Importing grokjax leaves that flag as the user
set it: the entry points that need 64-bit types (`runner.run_sweep` and `sweep.Sweep` through
`train.x64(cfg)`, the analysis drivers through `scoped`) turn it on for their own work only, so
a user's other JAX code keeps its dtypes. Parameters and activations are float32 explicitly
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
