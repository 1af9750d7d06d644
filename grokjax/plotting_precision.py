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
      extra = f", {wd.run_label(r['run'])}" if len(wd.runs) > 1 else ""
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
               f"{phases.SPIKE_FACTOR:g}× its minimum over the previous {phases.SPIKE_WINDOW} "
               f"epochs, after it fell below {MEMORIZED:g}); authors' float32 run grey "
               f"({ref.source})", fontsize=10)
  return fig


def _first_below(e, x, level: float) -> int | None:
  x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=np.inf)
  hit = np.flatnonzero(x < level)
  return int(np.asarray(e)[hit[0]]) if hit.size else None


def _row(label: str, e, train, test_e, test, collapsed=None) -> dict:
  spikes = count_spikes(e, train)
  row = dict(label=label, last=int(np.asarray(e).max()), memorised=_first_below(e, train, MEMORIZED),
             grokked=_first_below(test_e, test, MEMORIZED), spikes=spikes,
             final=(float(np.asarray(train)[-1]), float(np.asarray(test)[-1])))
  if collapsed is not None and np.isfinite(collapsed).any():
    i = int(np.nanargmax(collapsed))
    row["collapsed"] = (float(collapsed[i]), int(np.asarray(e)[i]))
  return row


def _vs_float64(m, ref) -> str:
  """Median and largest |log10| ratio of the train loss to the float64 run's at the same
  epochs (after both fell below MEMORIZED: before that the curves are equal to a few %)."""
  both = m.merge(ref, on="epoch", suffixes=("", "_64"))
  x, y = both["train_loss"].to_numpy(np.float64), both["train_loss_64"].to_numpy(np.float64)
  keep = (x < MEMORIZED) & (y < MEMORIZED) & (x > 0) & (y > 0)
  if not keep.any():
    return "—"
  r = np.abs(np.log10(x[keep] / y[keep]))
  return f"×{10 ** np.median(r):.2g} median, ×{10 ** r.max():.2g} max"


def precision_table(paths: list[str]) -> str:
  """Markdown: per loss dtype (and the authors' float32 run) the epochs at which the train and
  test loss first fell below 1e-2, the spikes counted, the largest collapsed fraction, the last
  losses, and how far the train loss stays from the float64 run's (ratio at equal epochs)."""
  from grokjax.report_tables import fmt, md_table, spikes_text
  wds = [Workdir(p) for p in paths]
  rows, ref64 = [], None
  for wd in wds:
    if wd.metrics is not None and _dtype(wd) == "float64" and len(wd.runs) == 1:
      ref64 = wd.run_metrics(wd.runs[0]["run"])[["epoch", "train_loss"]]
  for label, m in _curves(wds):
    col = m["train_collapsed"].to_numpy(np.float64) if "train_collapsed" in m else None
    row = _row(label, m["epoch"], m["train_loss"], m["epoch"], m["test_loss"], col)
    row["vs64"] = ("(reference)" if label.startswith("float64") else
                   _vs_float64(m[["epoch", "train_loss"]], ref64) if ref64 is not None else "—")
    rows.append(row)
  a = paper.low_precision_curve()
  xmax = max(r["last"] for r in rows)
  k, t = a.train_epochs <= xmax, a.test_epochs <= xmax
  auth = _row(f"authors, float32 (to {xmax})", a.train_epochs[k], a.train_loss[k],
              a.test_epochs[t], a.test_loss[t])
  auth["vs64"] = "—"
  cells = []
  for r in rows + [auth]:
    c = r.get("collapsed")
    cells.append([r["label"], fmt(r["memorised"]), fmt(r["grokked"]),
                  f"{len(r['spikes'])}: {spikes_text(r['spikes'], most=3)}",
                  "—" if c is None else f"{100 * c[0]:.1f} % (epoch {fmt(c[1])})",
                  f"{fmt(r['final'][0])} / {fmt(r['final'][1])}", r["vs64"]])
  return md_table(["loss", "train < 1e-2", "test < 1e-2", "spikes: epoch (peak)",
                   "most collapsed", "last train / test loss", "train loss vs float64"], cells)


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
