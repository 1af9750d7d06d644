"""Figures of the paper's other tasks (App. D.3, Figs 29–34), from metrics.jsonl, each with the
authors' recorded curve overlaid (grey). One function per figure; each raises `Skip` for a
workdir of another task or data regime."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from grokjax import paper
from grokjax.figdata import Workdir
from grokjax.plotting import (REF_COLORS, REF_STYLE, TEST, TRAIN, FigureSpec, Skip, _color,
                              _fig, _need_metrics)

def _need_task(wd: Workdir, task: str, finite: bool) -> None:
  cfg = wd.config
  if cfg.get("task") != task:
    raise Skip(f"the workdir's task is {cfg.get('task')}, not {task}")
  if (cfg.get("num_data", 0) > 0) != finite:
    raise Skip(f"the workdir has {'finite' if cfg.get('num_data', 0) else 'infinite'} data")
  _need_metrics(wd)


def _label(wd: Workdir, run: int) -> str:
  return wd.run_label(run)


def _ref(ax, curve: paper.Curve | None, xmax: float, test: bool) -> None:
  if curve is None:
    return
  parts = [(curve.train_epochs, curve.train_loss, TRAIN, "train")]
  if test and len(curve.test_loss):
    parts.append((curve.test_epochs, curve.test_loss, TEST, "test"))
  for i, (e, v, ls, part) in enumerate(parts):
    keep = e <= xmax
    ax.plot(e[keep], v[keep], ls=ls, label=f"{curve.label} {part}",
            **{**REF_STYLE, "color": REF_COLORS[i % len(REF_COLORS)]})


def _curves(wd: Workdir, task: str, finite: bool, title: str,
            ax=None) -> tuple[Figure | None, object]:
  """Train (and test) loss of every run, the authors' curve in grey, log loss axis."""
  fig = None
  if ax is None:
    fig, axes = _fig(1, 1, w=6.4, h=4.2)
    ax = axes[0, 0]
  xmax = 0.0
  for i, r in enumerate(wd.runs):
    m = wd.run_metrics(r["run"])
    if m.empty:
      continue
    xmax = max(xmax, float(m["epoch"].max()))
    ax.plot(m["epoch"], m["train_loss"], TRAIN, color=_color(i), lw=1.2,
            label=f"{_label(wd, r['run'])} train")
    if finite:
      ax.plot(m["epoch"], m["test_loss"], TEST, color=_color(i), lw=1.2,
              label=f"{_label(wd, r['run'])} test")
  _ref(ax, paper.task_curve(task, finite), xmax, finite)
  ax.set_yscale("log")
  ax.set_xlabel("step" if not finite else "epoch")
  ax.set_ylabel("loss")
  ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7, ncol=2)
  return fig, ax


def fig_digit_addition_infinite(wd: Workdir) -> Figure:
  """Fig 29: top, the loss; bottom, the loss of each answer digit (authors' dashed)."""
  _need_task(wd, "digit_addition", False)
  fig, axes = _fig(2, 1, w=7.0, h=3.6)
  _curves(wd, "digit_addition", False, "Fig 29: 5-digit addition, infinite data", axes[0, 0])
  ax = axes[1, 0]
  # The run that learned most (lowest final train loss) is the one worth splitting by digit.
  final = {r["run"]: wd.run_metrics(r["run"])["train_loss"].iloc[-1] for r in wd.runs
           if not wd.run_metrics(r["run"]).empty}
  run = min(final, key=final.get) if final else wd.runs[0]["run"]
  m = wd.run_metrics(run)
  ref = paper.digit_curves()
  xmax = float(m["epoch"].max()) if not m.empty else 0
  for j in range(6):
    col = f"test_loss_digit{j}"
    if col in m:
      ax.plot(m["epoch"], m[col], color=_color(j), lw=1.2, label=f"digit {j}")
    e = np.arange(len(ref))
    keep = e <= xmax
    ax.plot(e[keep], ref[keep, j], ls=":", color=_color(j), lw=1.0, alpha=0.8)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("loss per answer digit")
  ax.set_title(f"per digit ({_label(wd, run)}; dotted: authors; digit 0 = the carry)",
               fontsize=10)
  ax.legend(fontsize=7, ncol=3)
  return fig


def fig_digit_addition_finite(wd: Workdir) -> Figure:
  _need_task(wd, "digit_addition", True)
  return _curves(wd, "digit_addition", True, "Fig 30: 5-digit addition, finite data")[0]


def fig_repeated_subsequence_infinite(wd: Workdir) -> Figure:
  """Fig 31, with the loss of the copies' first tokens (unpredictable) and the rest."""
  _need_task(wd, "repeated_subsequence", False)
  fig, axes = _fig(1, 2, w=5.4, h=4.0)
  _curves(wd, "repeated_subsequence", False,
          "Fig 31: repeated subsequence, infinite data", axes[0, 0])
  ax = axes[0, 1]
  for i, r in enumerate(wd.runs):
    m = wd.run_metrics(r["run"])
    for col, ls in (("test_loss_first", ":"), ("test_loss_rest", "-")):
      if col in m:
        ax.plot(m["epoch"], m[col], ls=ls, color=_color(i), lw=1.2,
                label=f"{_label(wd, r['run'])} {col.rsplit('_', 1)[1]}")
  ax.axhline(np.log(128), color="0.5", lw=0.8, ls="--", label="ln 128 (a guess)")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_title("first token of each copy vs the other 15 (test)", fontsize=10)
  ax.legend(fontsize=7)
  return fig


def fig_repeated_subsequence_finite(wd: Workdir) -> Figure:
  _need_task(wd, "repeated_subsequence", True)
  return _curves(wd, "repeated_subsequence", True,
                 "Fig 32: repeated subsequence, 512 training sequences")[0]


def fig_skip_trigram_infinite(wd: Workdir) -> Figure:
  _need_task(wd, "skip_trigram", False)
  return _curves(wd, "skip_trigram", False, "Fig 33: skip trigram, infinite data")[0]


def fig_skip_trigram_finite(wd: Workdir) -> Figure:
  _need_task(wd, "skip_trigram", True)
  return _curves(wd, "skip_trigram", True, "Fig 34: skip trigram, 512 training examples")[0]


FIGURES = (
    FigureSpec("fig29_digit_addition_infinite", fig_digit_addition_infinite,
               "Fig 29: 5-digit addition, infinite data: loss and loss per answer digit"),
    FigureSpec("fig30_digit_addition_finite", fig_digit_addition_finite,
               "Fig 30: 5-digit addition, finite data: train and test loss"),
    FigureSpec("fig31_repeated_subsequence_infinite", fig_repeated_subsequence_infinite,
               "Fig 31: repeated subsequence (induction heads), infinite data"),
    FigureSpec("fig32_repeated_subsequence_finite", fig_repeated_subsequence_finite,
               "Fig 32: repeated subsequence, 512 training sequences: train and test loss"),
    FigureSpec("fig33_skip_trigram_infinite", fig_skip_trigram_infinite,
               "Fig 33: skip trigram, infinite data"),
    FigureSpec("fig34_skip_trigram_finite", fig_skip_trigram_finite,
               "Fig 34: skip trigram, finite data: train and test loss"),
)
