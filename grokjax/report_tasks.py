"""The report of a sequence-task workdir (App. D.3): grokjax's curves beside the authors'.

For each run: the first epoch (or step) at which the train and test loss fall below 0.1 and
0.01, the grokking delay (test < 0.01 over train < 0.01) and, for 5-digit addition, the epoch at
which each answer digit's loss falls below 0.1 — beside the same numbers computed from the
authors' recorded curve of the same task and data regime. Reads plain workdir files only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from grokjax import paper
from grokjax.figdata import Workdir

THRESHOLDS = (0.1, 0.01)


def _first(epochs, values, thresh: float) -> int | None:
  return paper.first_below(np.asarray(epochs), np.asarray(values, float), thresh)


def _fmt(x: Any) -> str:
  if x is None:
    return "—"
  if isinstance(x, float):
    return f"{x:.3g}"
  return f"{x:,}".replace(",", " ")


def _ratio(a: int | None, b: int | None) -> str:
  if a is None or b is None or b == 0:
    return "—"
  return f"×{a / b:.1f}"


def task_rows(wd: Workdir) -> list[list[str]]:
  """Rows [quantity, authors, source, grokjax per run] of the paper-vs-grokjax table."""
  cfg = wd.config
  task, finite = cfg["task"], cfg.get("num_data", 0) > 0
  ref = paper.task_curve(task, finite)
  if ref is None or wd.metrics is None:
    return []
  unit = "epoch" if finite else "step"
  rows = []
  runs = [r["run"] for r in wd.runs]
  ms = {r: wd.run_metrics(r) for r in runs}
  ours = lambda col, t: "; ".join(
      f"{_fmt(_first(ms[r]['epoch'], ms[r][col], t))}" for r in runs if col in ms[r])
  parts = [("train", ref.train_epochs, ref.train_loss)]
  if finite:
    parts.append(("test", ref.test_epochs, ref.test_loss))
  for t in THRESHOLDS:
    for name, e, v in parts:
      rows.append([f"first {unit} with {name} loss < {t:g}", _fmt(_first(e, v, t)),
                   ref.source, ours(f"{name}_loss", t)])
  if finite:
    auth = _ratio(_first(ref.test_epochs, ref.test_loss, 0.01),
                  _first(ref.train_epochs, ref.train_loss, 0.01))
    mine = "; ".join(_ratio(_first(ms[r]["epoch"], ms[r]["test_loss"], 0.01),
                            _first(ms[r]["epoch"], ms[r]["train_loss"], 0.01)) for r in runs)
    rows.append(["grokking delay (test < 0.01 / train < 0.01)", auth, ref.source, mine])
  last = lambda col: "; ".join(_fmt(float(ms[r][col].iloc[-1])) for r in runs if col in ms[r])
  n = len(ref.train_loss)
  rows.append([f"final train loss ({unit} {_fmt(n - 1)} authors; "
               f"{_fmt(int(ms[runs[0]]['epoch'].iloc[-1]))} grokjax)",
               _fmt(float(ref.train_loss[-1])), ref.source, last("train_loss")])
  if finite:
    rows.append(["final test loss", _fmt(float(ref.test_loss[-1])), ref.source,
                 last("test_loss")])
  if task == "digit_addition" and not finite:
    for j, a in enumerate(paper.DIGIT_PHASES.value):
      rows.append([f"digit {j}{' (carry)' if j == 0 else ''}: first step with loss < 0.1",
                   _fmt(a), paper.DIGIT_PHASES.source, ours(f"test_loss_digit{j}", 0.1)])
  return rows


def run_legend(wd: Workdir) -> str:
  """Which run is which in the table's ';'-separated grokjax cells."""
  if not wd.varying_axes():
    return "one run"
  return "runs in order: " + "; ".join(wd.run_label(r["run"]) for r in wd.runs)
