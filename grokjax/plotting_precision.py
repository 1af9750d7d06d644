"""The float32-loss study (paper App. D.2, SPEC §1.5 / §7.1): train and test loss per loss
dtype, the fraction of training examples whose float32 softmax collapsed (metrics column
`train_collapsed`) beside the train loss, the train-loss spikes counted (`phases.loss_spikes`
after the train loss first fell below 1e-2), and the authors' float32-loss run overlaid.

`--loss_dtype` is a training setting of the whole sweep (config.TrainConfig), not a swept axis,
so the study is several workdirs trained from the same init and split (one per dtype):
`fig_loss_precision_multi(paths)` draws them together (the suite's `loss_precision` figure);
`fig_loss_precision(wd)`, registered in `figures.py`, draws one workdir whose loss is not
float64 the same way.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from grokjax import paper, phases, plotting
from grokjax.figdata import Workdir
from grokjax.plotting import REF_STYLE, TEST, TRAIN, Skip

MEMORIZED = 1e-2  # spikes are counted after the train loss first falls below this


def _dtype(wd: Workdir) -> str:
  return wd.config.get("train", {}).get("loss_dtype", "float64")


def count_spikes(epochs, train_loss) -> list[tuple[int, float]]:
  """`phases.loss_spikes` of a train-loss curve after it first fell below MEMORIZED (none for a
  run that never got there)."""
  e, x = np.asarray(epochs), np.asarray(train_loss, dtype=np.float64)
  below = e[np.nan_to_num(x, nan=np.inf) < MEMORIZED]
  return [] if not below.size else phases.loss_spikes(e, x, after=int(below.min()))


def _curves(workdirs: list[Workdir]) -> list[tuple[str, object]]:
  """(label, run metrics) of every run of every workdir, labelled by its loss dtype."""
  out = []
  for wd in workdirs:
    if wd.metrics is None:
      continue
    for r in wd.runs:
      m = wd.run_metrics(r["run"])
      if m.empty:
        continue
      extra = f", {wd.label(r['run'])}" if len(wd.runs) > 1 else ""
      out.append((f"{_dtype(wd)}{extra}", m))
  if not out:
    raise Skip("no metrics in any workdir of the precision study")
  return out


def draw(workdirs: list[Workdir]) -> Figure:
  """Left: train (solid) / test (dashed) loss of each run, spike starts marked, the authors'
  float32 run in grey; right: the fraction of training examples whose float32 softmax
  collapsed (a float32 log-softmax gives them no gradient)."""
  curves = _curves(workdirs)
  fig, ax = plotting._fig(1, 2, w=6.0, h=4.0)
  xmax = 0.0
  for i, (label, m) in enumerate(curves):
    c = plotting._color(i)
    e = m["epoch"].to_numpy()
    xmax = max(xmax, float(e.max()))
    spikes = count_spikes(e, m["train_loss"])
    ax[0, 0].plot(e, m["train_loss"], ls=TRAIN, color=c, lw=1.0,
                  label=f"{label}: train ({len(spikes)} spikes)")
    ax[0, 0].plot(e, m["test_loss"], ls=TEST, color=c, lw=1.0, label=f"{label}: test")
    if spikes:
      se, sx = zip(*spikes)
      ax[0, 0].plot(se, sx, "v", color=c, ms=5)
    if "train_collapsed" in m and m["train_collapsed"].notna().any():
      ax[0, 1].plot(e, m["train_collapsed"], color=c, lw=1.0, label=label)
  ref = paper.low_precision_curve()
  keep = ref.train_epochs <= xmax
  n_ref = len(count_spikes(ref.train_epochs[keep], ref.train_loss[keep]))
  ax[0, 0].plot(ref.train_epochs[keep], ref.train_loss[keep], ls=TRAIN,
                label=f"{ref.label}: train ({n_ref} spikes)", **REF_STYLE)
  tk = ref.test_epochs <= xmax
  ax[0, 0].plot(ref.test_epochs[tk], ref.test_loss[tk], ls=TEST, label=f"{ref.label}: test",
                **{**REF_STYLE, "color": "0.6"})
  plotting._loss_axes(ax[0, 0], "train / test loss; ▼ spike starts")
  ax[0, 0].legend(fontsize=6)
  ax[0, 1].set_xlabel("epoch")
  ax[0, 1].set_ylabel("fraction of training examples")
  ax[0, 1].set_ylim(-0.02, 1.02)
  ax[0, 1].set_title("float32 softmax collapsed (label probability = 1)", fontsize=10)
  if ax[0, 1].lines:
    ax[0, 1].legend(fontsize=6)
  fig.suptitle("App. D.2: loss precision (spikes: train loss > "
               f"{phases.SPIKE_FACTOR:g}× its running minimum after it fell below "
               f"{MEMORIZED:g}); authors' float32 run grey ({ref.source})", fontsize=10)
  return fig


def fig_loss_precision_multi(paths: list[str]) -> Figure:
  """The precision study over several workdirs (one per loss dtype)."""
  return draw([Workdir(p) for p in paths])


def fig_loss_precision(wd: Workdir) -> Figure:
  """One workdir of the precision study (a loss other than the paper's float64)."""
  if _dtype(wd) == "float64":
    raise Skip("float64 loss (the paper's): the precision study draws float32 / float32_stable "
               "workdirs, or several workdirs together (suite figure `loss_precision`)")
  return draw([wd])


FIGURES = (plotting.FigureSpec(
    "loss_precision", fig_loss_precision,
    "App. D.2: loss precision: train/test loss, float32 softmax collapse, spikes, the authors' "
    "float32 run"),)
