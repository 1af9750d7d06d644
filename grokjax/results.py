"""The workdir's plain files, and loaders for notebooks.

WORKDIR/
  config.json       the validated Config (shapes, optimiser, the swept values)
  sweep.json        one entry per run: run index, seed, weight_decay, frac_train, split_seed,
                    n_train, split fingerprint
  metrics.jsonl     one JSON object per (run, evaluated epoch)
  checkpoints/      orbax (see checkpoint.py)
  analysis/         written by `experiments.analyze`
  figures/, report.md   written by `experiments.plot` / `experiments.reproduce`
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

from grokjax.config import Config

CONFIG, SWEEP, METRICS = "config.json", "sweep.json", "metrics.jsonl"


def _write_atomic(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  _write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_config(workdir: str) -> Config:
  with open(os.path.join(workdir, CONFIG)) as f:
    return Config.from_dict(json.load(f))


def load_runs(workdir: str) -> list[dict[str, Any]]:
  with open(os.path.join(workdir, SWEEP)) as f:
    return json.load(f)["runs"]


def _clean(v: Any) -> Any:
  if isinstance(v, float) and not math.isfinite(v):
    return None  # strict JSON: non-finite values are written as null
  return v


def append_metrics(workdir: str, rows: Iterable[dict[str, Any]]) -> None:
  lines = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
  with open(os.path.join(workdir, METRICS), "a") as f:
    f.write(lines)
    f.flush()
    os.fsync(f.fileno())


def read_metrics_rows(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, METRICS)
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break  # a line cut by a crash: it and anything after are dropped on resume
  return rows


def truncate_metrics(workdir: str, before_epoch: int) -> None:
  """Keeps only rows with epoch < before_epoch (resume recomputes the rest identically)."""
  rows = [r for r in read_metrics_rows(workdir) if r["epoch"] < before_epoch]
  _write_atomic(os.path.join(workdir, METRICS),
                "".join(json.dumps(r) + "\n" for r in rows))


def load_metrics(workdir: str):
  """metrics.jsonl as a pandas DataFrame (null → NaN), sorted by (run, epoch)."""
  import pandas as pd
  df = pd.DataFrame(read_metrics_rows(workdir))
  if df.empty:
    return df
  for c in ("train_loss", "test_loss", "train_acc", "test_acc"):
    df[c] = pd.to_numeric(df[c], errors="coerce")
  return df.sort_values(["run", "epoch"]).reset_index(drop=True)
