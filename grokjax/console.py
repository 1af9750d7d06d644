"""Clean endings for the command-line entry points: one line, never a traceback, for what a user
can cause or fix — a bad flag or workdir (ConfigError / WorkdirError), a signal (Interrupted,
KeyboardInterrupt), a full disk — with the command that resumes where it helps.

Light on purpose (no jax import): the entry points wrap their `main` with `guard` before
anything heavy is imported.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shlex
import signal
import sys
import threading
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The command that resumes the current sweep (set by `guard`); the interruption messages of
# `runner` print it.
resume_command: str | None = None


class Interrupted(Exception):
  """Training stopped by a signal at a chunk boundary; the workdir is resumable."""

  def __init__(self, signum: int, epoch: int, total: int, workdir: str):
    self.signum, self.epoch, self.total, self.workdir = signum, epoch, total, workdir
    name = signal.Signals(signum).name
    super().__init__(f"stopped by {name} at epoch {epoch}/{total}; checkpoints saved, "
                     f"{workdir} is resumable")

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


def command_line(argv: list[str]) -> str:
  """`python -m experiments.NAME ARGS` for the running entry point (its original arguments)."""
  path = os.path.abspath(argv[0]) if argv else ""
  if path.startswith(os.path.join(ROOT, "experiments") + os.sep) and path.endswith(".py"):
    module = "experiments." + os.path.basename(path)[:-3]
  else:
    module = "experiments.sweep"
  return shlex.join(["python", "-m", module, *argv[1:]])


# ----------------------------------------------------------------------------- disk full

_ENOSPC_TEXT = ("No space left on device", "os_error_code='28'", f"[Errno {errno.ENOSPC}]",
                "Disk quota exceeded", f"[Errno {errno.EDQUOT}]")


def _chain(e: BaseException):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def disk_full(e: BaseException) -> str | None:
  """The path being written when `e` (or an exception it chains) is a full disk; '' when the
  disk is full but no path is known; None when it is something else."""
  hit = None
  for x in _chain(e):
    if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT):
      return x.filename or hit or ""
    text = str(x)
    if any(t in text for t in _ENOSPC_TEXT):
      m = re.search(r'local file "([^"]+)"', text)
      hit = hit or (m.group(1) if m else "")
  return hit


def _short_path(path: str) -> str:
  """An orbax temporary path, as the checkpoint it was writing."""
  return re.sub(r"\.orbax-checkpoint-tmp.*$", "", path)


class _DropDiskFullNoise(logging.Filter):
  """Orbax logs every failed background write with its traceback (hundreds of lines when the
  disk is full); the one line `guard` prints says it all."""

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      text = record.getMessage()
    except Exception:
      text = str(record.msg)
    if record.exc_info and record.exc_info[1] is not None:
      if disk_full(record.exc_info[1]) is not None:
        return False
    return not any(t in text for t in _ENOSPC_TEXT)


def _closed_loop_noise(exc: BaseException | None) -> bool:
  """Tensorstore callbacks that fire after orbax closed its event loop (writes still in flight
  when a save failed) report 'RuntimeError: Event loop is closed' as unraisable."""
  return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


@contextlib.contextmanager
def quiet_disk_full():
  """While active: orbax's and asyncio's logged tracebacks of a full disk are dropped (the
  caller says it in one line)."""
  f = _DropDiskFullNoise()
  root = logging.getLogger()
  targets = [logging.getLogger("absl"), logging.getLogger("asyncio"), root, *root.handlers]
  for t in targets:
    t.addFilter(f)
  old_thread_hook = threading.excepthook

  def thread_hook(args):
    if args.exc_value is None or disk_full(args.exc_value) is None:
      old_thread_hook(args)
  threading.excepthook = thread_hook
  try:
    yield
  finally:
    threading.excepthook = old_thread_hook
    for t in targets:
      t.removeFilter(f)


def drop_closed_loop_noise() -> None:
  """For a command-line process: the 'Event loop is closed' tracebacks that tensorstore prints
  (as unraisable exceptions, up to the process's exit) after orbax abandoned a failed save or
  restore are not shown; the failure itself is reported in one line."""
  old_hook, old_unraisable = sys.excepthook, sys.unraisablehook

  def hook(typ, value, tb):
    if not _closed_loop_noise(value):
      old_hook(typ, value, tb)

  def unraisable(args):
    if not _closed_loop_noise(args.exc_value):
      old_unraisable(args)
  sys.excepthook, sys.unraisablehook = hook, unraisable


# ----------------------------------------------------------------------------- the guard

_disk_full_exit = False


def _err(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def guard(main: Callable[[list[str]], Any], command: str | None = None,
          resumable: bool = True) -> Callable[[list[str]], Any]:
  """`main` (an absl main) ending in one line on the errors a user causes or can fix."""
  def wrapped(argv):
    global resume_command
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save and read at INFO
    from grokjax.config import ConfigError
    cmd = command or command_line(sys.argv)
    resume_command = cmd if resumable else None
    again = f"; resume with: {cmd}" if resumable else f"; rerun: {cmd}"
    with quiet_disk_full():
      try:
        return main(argv)
      except ConfigError as e:  # also WorkdirError
        _err(f"error: {e}")
        return 2
      except Interrupted as e:
        _err(f"{e}{again}")
        return e.exit_code
      except KeyboardInterrupt:
        _err(f"interrupted (SIGINT){again}")
        return 128 + signal.SIGINT
      except Exception as e:
        where = disk_full(e)
        if where is None:
          raise
        at = f" while writing {_short_path(where)}" if where else ""
        _err(f"error: disk full{at}: free some space, then rerun the same command; the "
             f"workdir resumes from its last complete checkpoint{again}")
        global _disk_full_exit
        _disk_full_exit = True
        return 1
  return wrapped


def _exit_on_signals(cmd: str, resumable: bool) -> None:
  """Outside the training loop (which stops at its next chunk boundary instead), SIGINT and
  SIGTERM end the process at once with one line. os._exit: unwinding a KeyboardInterrupt out
  of an XLA compile and tearing the interpreter down under live XLA threads segfaults; every
  file grokjax writes is written whole (a temporary file renamed) or rewritten by a rerun."""
  again = f"; resume with: {cmd}" if resumable else f"; rerun: {cmd}"

  def handler(signum, frame):
    _err(f"interrupted ({signal.Signals(signum).name}){again}")
    os._exit(128 + signum)
  if threading.current_thread() is threading.main_thread():
    for s in (signal.SIGINT, signal.SIGTERM):
      signal.signal(s, handler)


def run_app(main: Callable[[list[str]], Any],
            resolve_argv: Callable[[list[str]], list[str]] | None = None,
            resumable: bool = True) -> None:
  """absl `app.run(guard(main))`, with `resolve_argv` (flagfile expansion) failing in one line."""
  from absl import app
  cmd = command_line(sys.argv)
  drop_closed_loop_noise()
  _exit_on_signals(cmd, resumable)
  try:
    argv = resolve_argv(sys.argv) if resolve_argv else sys.argv
  except OSError as e:
    what = "is a directory, not a flagfile" if isinstance(e, IsADirectoryError) else e.strerror
    _err(f"error: --flagfile: {e.filename}: {what}")
    sys.exit(2)
  try:
    app.run(guard(main, cmd, resumable), argv=argv)
  except SystemExit as e:
    if _disk_full_exit:  # skip the teardown, where orbax's abandoned writes would log again
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(e.code if isinstance(e.code, int) else 1)
    raise
