"""Several processes (hosts) training one sweep: start-up, agreement and gathering.

Every process runs the same command: it builds the same config and grid, holds the runs of its
own devices (the run axis is sharded over the global mesh of all processes' devices) and
computes them with no communication inside the compiled step. Between chunks the processes
exchange small things: the metrics of all runs (process 0 writes every workdir file), whether
to stop or to save the full state, and process 0's verdict on the workdir. A collective that
fails because a peer died raises `PeerLost`; the command-line programs then exit at once (a
clean JAX shutdown would wait for the dead peer). With one process every function here is the
single-process operation (no collective, no copy).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import numpy as np

from grokjax.results import WorkdirError

MODES = ("auto", "on", "off")
# Exit status of a process whose peer died (EX_TEMPFAIL: rerunning the command resumes).
PEER_LOST_EXIT = 75


class PeerLost(WorkdirError):
  """Another process of the sweep died (or became unreachable) during an exchange."""


def cluster_env() -> str | None:
  """The multi-process cluster this process runs in, from its environment (None: none, or a
  single-process one). These are the environments JAX's own auto-detection reads."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "JAX_COORDINATOR_ADDRESS"
  if env.get("SLURM_JOB_ID") and int(env.get("SLURM_STEP_NUM_TASKS",
                                              env.get("SLURM_NTASKS", "1")) or 1) > 1:
    return "SLURM"
  hosts = env.get("TPU_WORKER_HOSTNAMES") or env.get("MEGASCALE_COORDINATOR_ADDRESS")
  if hosts and ("," in hosts or env.get("MEGASCALE_COORDINATOR_ADDRESS")):
    return "TPU pod slice"
  return None


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               heartbeat_timeout_s: int = 100) -> bool:
  """Starts JAX's multi-process runtime when asked; returns whether it did.

  `mode`: "auto" starts it when `coordinator_address` is given or `cluster_env()` finds a
  multi-process cluster (SLURM with several tasks, a TPU pod slice, JAX_COORDINATOR_ADDRESS);
  "on" always (JAX detects what is not given); "off" never. Must run before anything touches a
  JAX device. CPU processes exchange arrays through gloo, as JAX requires.
  """
  if mode not in MODES:
    raise ValueError(f"--distributed: unknown {mode!r}; allowed: {', '.join(MODES)}")
  given = coordinator_address is not None or num_processes is not None or process_id is not None
  if mode == "off":
    if given:
      raise ValueError("--coordinator_address/--num_processes/--process_id: need "
                       "--distributed=auto or on")
    return False
  if mode == "auto" and coordinator_address is None and cluster_env() is None:
    if given:
      raise ValueError("--num_processes/--process_id: need --coordinator_address (or a "
                       "cluster environment such as SLURM)")
    return False
  global _started
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_s)
  _started = True
  return True


_started = False


def process_count() -> int:
  return jax.process_count()


def process_count_if_started() -> int:
  """The number of processes when `initialize` started the runtime, else 1 (without touching
  a JAX backend)."""
  return jax.process_count() if _started else 1


def is_primary() -> bool:
  """Process 0: the one that writes the workdir's files and logs."""
  return jax.process_index() == 0


def where() -> str:
  return f"process {jax.process_index()} of {jax.process_count()}"


def _collective(fn: Callable[[], Any], what: str) -> Any:
  try:
    return fn()
  except Exception as e:  # gloo/coordination errors come as ValueError/XlaRuntimeError
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise PeerLost(
        f"{where()}: another process of this sweep stopped or cannot be reached while "
        f"exchanging {what} ({first}); stopping: the workdir resumes from its last complete "
        "checkpoint when every process runs the same command again") from e


def gather(tree: Any) -> Any:
  """The whole of a tree of run-sharded arrays on every process, as numpy arrays."""
  if process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return _collective(lambda: jax.tree.map(
      np.asarray, multihost_utils.process_allgather(tree, tiled=True)), "metrics")


def all_flags(local: list[float]) -> np.ndarray:
  """Every process's `local` values as a (processes, len(local)) float array."""
  x = np.asarray(local, np.float32)[None]
  if process_count() == 1:
    return x
  from jax.experimental import multihost_utils
  return _collective(lambda: np.asarray(multihost_utils.process_allgather(x[0])).reshape(
      process_count(), -1), "control flags")


def barrier(name: str) -> None:
  if process_count() > 1:
    from jax.experimental import multihost_utils
    _collective(lambda: multihost_utils.sync_global_devices(name), name)


def _broadcast_bytes(data: bytes | None) -> bytes:
  """Process 0's bytes on every process (the others pass None)."""
  from jax.experimental import multihost_utils
  n = int(multihost_utils.broadcast_one_to_all(np.int32(len(data) if data is not None else 0)))
  size = -(-max(n, 1) // 1024) * 1024  # a few padded sizes: a few small compiles
  buf = np.zeros(size, np.uint8)
  if data is not None:
    buf[:n] = np.frombuffer(data, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buf))[:n].tobytes()


# Exceptions that process 0 may report to the others, re-raised there by name.
def _error_types() -> dict[str, type]:
  from grokjax.config import ConfigError
  from grokjax.lock import WorkdirLocked
  return {c.__name__: c for c in (ConfigError, WorkdirError, WorkdirLocked, FileNotFoundError,
                                  NotADirectoryError, PermissionError, OSError)}


def on_primary(fn: Callable[[], Any], what: str) -> Any:
  """Runs `fn` on process 0 only and returns its (JSON-able) result on every process; an
  exception it raises is raised on every process (the others get its type and message)."""
  if process_count() == 1:
    return fn()
  if is_primary():
    try:
      out = fn()
    except Exception as e:
      msg = json.dumps({"error": type(e).__name__, "message": str(e)})
      _collective(lambda: _broadcast_bytes(msg.encode()), what)
      raise
    _collective(lambda: _broadcast_bytes(json.dumps({"result": out}).encode()), what)
    return out
  got = json.loads(_collective(lambda: _broadcast_bytes(None), what).decode())
  if "error" in got:
    cls = _error_types().get(got["error"], WorkdirError)
    raise cls(got["message"])
  return got["result"]
