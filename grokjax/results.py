"""The workdir's plain files, and loaders for notebooks.

WORKDIR/
  config.json       the validated Config (shapes, optimiser, the swept values)
  sweep.json        one entry per run: run index and its swept values (and the task's per-run
                    fields, e.g. n_train and the split fingerprint)
  metrics.jsonl     one JSON object per (run, evaluated epoch)
  checkpoints/      orbax (see checkpoint.py), with copies of config.json and sweep.json that
                    prove which sweep the checkpoints belong to
  analysis/         written by `experiments.analyze`
  figures/, report.md   written by `experiments.plot` / `experiments.reproduce`

Every reader of metrics.jsonl goes through `scan_metrics`: a damaged line in the middle of the
file is reported with its line number and skipped (the rows after it are kept), a cut last line
(a crash while appending) is dropped, and rows are deduplicated by (run, epoch), the later
line winning.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from typing import Any, Callable, Iterable

from grokjax.config import Config, ConfigError

CONFIG, SWEEP, METRICS = "config.json", "sweep.json", "metrics.jsonl"
ANALYSIS = "analysis"  # the analysis step's folder in a workdir
CHECKPOINTS = "checkpoints"
_log = logging.getLogger("grokjax.results")


class WorkdirError(ConfigError):
  """A workdir that cannot be used as asked (locked, damaged, of another sweep, not a
  directory); the message names the path and what to do."""


@contextlib.contextmanager
def _naming(path: str):
  """OSErrors raised by writes and fsyncs carry no file name: add it (a full disk names it)."""
  try:
    yield
  except OSError as e:
    if e.filename is None:
      raise OSError(e.errno, e.strerror, path) from e
    raise


def _write_atomic(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with _naming(path):
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  _write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _require_dir(workdir: str) -> None:
  if not os.path.isdir(workdir):
    what = "is a file, not a workdir" if os.path.exists(workdir) else "does not exist"
    raise FileNotFoundError(f"{workdir}: {what}")


def _json_with_fallback(workdir: str, name: str) -> dict[str, Any]:
  """WORKDIR/name, or the copy stored with the checkpoints when that one is missing."""
  _require_dir(workdir)
  for path in (os.path.join(workdir, name), os.path.join(workdir, CHECKPOINTS, name)):
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
  raise FileNotFoundError(f"{os.path.join(workdir, name)}: no such file (nor a copy in "
                          f"{os.path.join(workdir, CHECKPOINTS)}/): not a sweep's workdir?")


def load_config(workdir: str) -> Config:
  return Config.from_dict(_json_with_fallback(workdir, CONFIG))


def load_runs(workdir: str) -> list[dict[str, Any]]:
  return _json_with_fallback(workdir, SWEEP)["runs"]


# ----------------------------------------------------------------------------- metrics.jsonl

def _clean(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return None  # strict JSON: non-finite values are written as null
  return v


def append_metrics(workdir: str, rows: Iterable[dict[str, Any]]) -> None:
  lines = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
  path = os.path.join(workdir, METRICS)
  with _naming(path), open(path, "a+b") as f:
    f.seek(0, os.SEEK_END)
    if f.tell():  # never glue a row onto a line left unterminated by a crash
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        lines = "\n" + lines
    f.write(lines.encode())
    f.flush()
    os.fsync(f.fileno())


@dataclasses.dataclass
class MetricsScan:
  """What `scan_metrics` found: the rows (one per (run, epoch), the later line winning, in file
  order), the damaged lines as (line number, text), whether the last line was cut by a crash,
  and how many duplicate rows were dropped."""
  path: str
  rows: list[dict[str, Any]]
  damaged: list[tuple[int, str]]
  cut_last_line: bool = False
  duplicates: int = 0

  def problems(self) -> list[str]:
    """One line per damaged line (and one for duplicates): what a reader should be told."""
    out = [f"{self.path} line {n}: damaged (not a metrics row), skipped; the rows after it are "
           f"kept: {text[:60]!r}" for n, text in self.damaged]
    if self.duplicates:
      out.append(f"{self.path}: {self.duplicates} duplicate (run, epoch) rows ignored "
                 "(the later line of each is used)")
    return out


def _is_row(obj: Any) -> bool:
  return (isinstance(obj, dict) and isinstance(obj.get("run"), int)
          and isinstance(obj.get("epoch"), int))


def scan_metrics(workdir: str) -> MetricsScan:
  """Reads metrics.jsonl line by line (see the module docstring); a missing file is empty."""
  path = os.path.join(workdir, METRICS)
  scan = MetricsScan(path, [], [])
  if not os.path.exists(path):
    return scan
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  terminated = lines[-1] == b""
  if terminated:
    lines.pop()
  by_key: dict[tuple[int, int], dict[str, Any]] = {}
  for n, raw in enumerate(lines, start=1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
      row = None
    if not _is_row(row):
      if n == len(lines) and not terminated:
        scan.cut_last_line = True  # a crash while appending: the resume recomputes it
      else:
        scan.damaged.append((n, raw.decode("utf-8", "replace")))
      continue
    key = (row["run"], row["epoch"])
    if key in by_key:
      scan.duplicates += 1
    by_key[key] = row
  scan.rows = list(by_key.values())
  return scan


def read_metrics_rows(workdir: str,
                      log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
  """The rows of metrics.jsonl (one per (run, epoch)); damaged lines are reported through `log`
  (default: a `grokjax.results` logging warning) with their line numbers and skipped."""
  scan = scan_metrics(workdir)
  for msg in scan.problems():
    (log or _log.warning)(msg)
  return scan.rows


def truncate_metrics(workdir: str, before_epoch: int,
                     log: Callable[[str], None] | None = None) -> MetricsScan:
  """Keeps only rows with epoch < before_epoch (resume recomputes the rest identically).

  Damaged lines are reported (and dropped from the rewritten file; their text is appended to
  metrics.jsonl.damaged so that nothing is lost silently). Returns the scan."""
  scan = scan_metrics(workdir)
  for msg in scan.problems():
    (log or _log.warning)(msg)
  if scan.damaged:
    with open(os.path.join(workdir, METRICS + ".damaged"), "a") as f:
      f.write("".join(f"line {n}: {text}\n" for n, text in scan.damaged))
  rows = [r for r in scan.rows if r["epoch"] < before_epoch]
  _write_atomic(os.path.join(workdir, METRICS), "".join(json.dumps(r) + "\n" for r in rows))
  return scan


def load_metrics(workdir: str):
  """metrics.jsonl as a pandas DataFrame (null → NaN), one row per (run, epoch), sorted.

  Raises FileNotFoundError naming the path when the workdir or its metrics.jsonl is missing;
  damaged lines are reported as warnings (with their line numbers) and skipped."""
  import pandas as pd
  _require_dir(workdir)
  path = os.path.join(workdir, METRICS)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file (the sweep has not written metrics yet)")
  df = pd.DataFrame(read_metrics_rows(workdir))
  if df.empty:
    return df
  for c in ("train_loss", "test_loss", "train_acc", "test_acc"):
    if c in df:
      df[c] = pd.to_numeric(df[c], errors="coerce")
  return df.sort_values(["run", "epoch"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- progress

def param_dirs(workdir: str) -> list[int]:
  """Epochs of the parameter checkpoints that look complete on disk (a step directory with its
  orbax metadata), from the plain directory listing (no orbax import)."""
  root = os.path.join(workdir, CHECKPOINTS, "params")
  if not os.path.isdir(root):
    return []
  return sorted(int(d) for d in os.listdir(root)
                if d.isdigit() and os.path.isfile(os.path.join(root, d, "_CHECKPOINT_METADATA")))


@dataclasses.dataclass(frozen=True)
class Progress:
  """How far a workdir's sweep got: `reached` (the newest epoch with a metrics row or a
  parameter checkpoint) of `total` epochs, the parameter checkpoints on disk and the epoch each
  halted run stopped at (non-finite loss)."""
  reached: int | None
  total: int
  checkpoint_every: int
  param_epochs: tuple[int, ...]
  halted: dict[int, int]

  @property
  def finished(self) -> bool:
    return self.reached is not None and self.reached >= self.total

  @property
  def final_epoch(self) -> int | None:
    """The epoch whose parameters are the final ones: `reached` rounded down to a checkpoint
    epoch (a crash between a chunk's metrics and its checkpoint leaves rows past the newest
    checkpoint)."""
    return None if self.reached is None else self.reached - self.reached % self.checkpoint_every

  trained = final_epoch

  def missing_params(self) -> list[int]:
    """Checkpoint epochs up to `final_epoch` without a complete parameter checkpoint."""
    if self.final_epoch is None:
      return []
    have = set(self.param_epochs)
    return [e for e in range(0, self.final_epoch + 1, self.checkpoint_every) if e not in have]

  def text(self) -> str:
    """'trained to 700 of 2000 epochs (unfinished)', or '2000 epochs' when finished."""
    if self.reached is None:
      return f"not trained yet (0 of {self.total} epochs)"
    if self.finished:
      return f"{self.total} epochs"
    return f"trained to {self.final_epoch} of {self.total} epochs (unfinished)"


def halted_runs(rows: Iterable[dict[str, Any]]) -> dict[int, int]:
  """{run: epoch of its first non-finite loss} for the runs that halted."""
  out: dict[int, int] = {}
  for r in rows:
    h = r.get("halted_at")
    if isinstance(h, (int, float)) and h == h and h >= 0:  # (NaN from a DataFrame: not halted)
      h, run = int(h), int(r["run"])
      out[run] = min(h, out.get(run, h))
  return out


def progress(workdir: str, rows: list[dict[str, Any]] | None = None) -> Progress:
  """The workdir's `Progress`, from config.json, the checkpoint directories and metrics."""
  train = _json_with_fallback(workdir, CONFIG)["train"]  # plain JSON: any version's config
  epochs = param_dirs(workdir)
  rows = read_metrics_rows(workdir, log=lambda s: None) if rows is None else rows
  last = max([int(r["epoch"]) for r in rows] + epochs, default=None)
  return Progress(last, int(train["num_epochs"]), int(train.get("checkpoint_every", 100)),
                  tuple(epochs), halted_runs(rows))
