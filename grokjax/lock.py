"""An exclusive lock on a workdir, so that two writers never interleave their files.

The sweep holds WORKDIR/.lock for the whole of `runner.run_sweep` (config.json, sweep.json,
metrics.jsonl, checkpoints/); the analysis holds WORKDIR/analysis/.lock while it writes
analysis/, figures/ and report.md, so that it may read a sweep that is still training.

The lock is `fcntl.flock` on the lock file: the kernel releases it when its holder dies, however
it dies. The file also records the holder (pid, host, start time, command) so that a refused
writer can say who holds it, and so that a lock left by a killed process is recognised and taken
over with a log line.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Callable

from grokjax.results import WorkdirError

SWEEP_LOCK = ".lock"
ANALYSIS_LOCK = os.path.join("analysis", ".lock")


class WorkdirLocked(WorkdirError):
  """Another live process holds the workdir's lock."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _describe(h: dict[str, Any]) -> str:
  started = h.get("started")
  when = (datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
          if isinstance(started, (int, float)) else "?")
  cmd = h.get("command") or ""
  cmd = cmd if len(cmd) <= 80 else cmd[:77] + "..."
  return (f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {when}"
          + (f": {cmd}" if cmd else ""))


class WorkdirLock:
  """`with WorkdirLock(workdir, "sweep"):` — refuses (WorkdirLocked) when another live process
  holds it; takes over a lock left by a dead one, saying so through `log`."""

  def __init__(self, workdir: str, role: str = "sweep",
               log: Callable[[str], None] | None = None):
    self.workdir, self.role = workdir, role
    self.path = os.path.join(workdir, SWEEP_LOCK if role == "sweep" else ANALYSIS_LOCK)
    self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    self._fd: int | None = None

  def holder(self) -> dict[str, Any] | None:
    """The holder recorded in the lock file (None when empty or unreadable)."""
    try:
      with open(self.path) as f:
        h = json.load(f)
      return h if isinstance(h, dict) else None
    except (OSError, ValueError):
      return None

  def acquire(self) -> "WorkdirLock":
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      h = self.holder() or {}
      what = "trained" if self.role == "sweep" else "analysed"
      raise WorkdirLocked(
          f"--workdir: {self.workdir} is being {what} by another process ({_describe(h)}); "
          f"wait for it to finish or stop it (lock: {self.path})") from None
    old = self.holder()
    if old and not (old.get("pid") == os.getpid() and old.get("host") == socket.gethostname()):
      here = old.get("host") == socket.gethostname()
      state = ("no longer running" if here and not _pid_alive(int(old.get("pid", -1)))
               else "not holding it")
      self.log(f"{self.workdir}: taking over the lock left by {_describe(old)}: {state}")
    from grokjax.console import command_line
    me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(),
              command=command_line(sys.argv) if sys.argv and sys.argv[0] else "", role=self.role)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly
    except OSError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
