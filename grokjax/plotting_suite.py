"""Figures across several workdirs of a suite (`grokjax/suite.py`), keyed by kind:

  * `width_scan`: the no-weight-decay width scan (d_model 8…1024; a width is a shape, so each
    is its own sweep): final train / test loss against d_model, and the test-loss curves, with
    the authors' scan (`no_wd_width_scan`, SPEC §5.1) overlaid;
  * `loss_precision`: the float32 / float64 / float32_stable study (`plotting_precision.py`).

Each takes the workdir paths and returns a Figure, or raises `plotting.Skip`.
"""
from __future__ import annotations

from typing import Callable

from matplotlib.figure import Figure

from grokjax import paper, plotting, plotting_precision
from grokjax.figdata import Workdir
from grokjax.plotting import REF_STYLE, TEST, TRAIN, Skip


def _final_losses(wd: Workdir) -> list[tuple[float, float]]:
  """(train, test) loss at the last logged epoch of each run."""
  out = []
  for r in wd.runs:
    m = wd.run_metrics(r["run"])
    if not m.empty:
      last = m.sort_values("epoch").iloc[-1]
      out.append((float(last["train_loss"]), float(last["test_loss"])))
  return out


def fig_width_scan(paths: list[str]) -> Figure:
  """Final train / test loss against d_model (left) and test-loss curves (right); grokjax in
  colour, the authors' scan in grey."""
  wds = [Workdir(p) for p in paths]
  wds = [w for w in wds if w.metrics is not None]
  if not wds:
    raise Skip("no width-scan workdir has metrics yet")
  wds.sort(key=lambda w: w.config["model"]["d_model"])
  fig, ax = plotting._fig(1, 2, w=5.5, h=4.0)
  ref = paper.width_scan()
  ds = sorted(ref)
  ax[0, 0].plot(ds, [ref[d].train_loss[-1] for d in ds], "s" + TRAIN, label="authors train",
                **REF_STYLE)
  ax[0, 0].plot(ds, [ref[d].test_loss[-1] for d in ds], "s" + TEST, label="authors test",
                **{**REF_STYLE, "color": "0.6"})
  widths, tr, te = [], [], []
  for w in wds:
    for train, test in _final_losses(w):
      widths.append(w.config["model"]["d_model"])
      tr.append(train)
      te.append(test)
  ax[0, 0].plot(widths, tr, "o" + TRAIN, color="C0", label="grokjax train")
  ax[0, 0].plot(widths, te, "o" + TEST, color="C3", label="grokjax test")
  ax[0, 0].set_xscale("log", base=2)
  ax[0, 0].set_yscale("log")
  ax[0, 0].set_xlabel("d_model")
  ax[0, 0].set_ylabel("loss at the last epoch")
  ax[0, 0].legend(fontsize=7)
  epochs = {int(w.metrics["epoch"].max()) for w in wds}
  ax[0, 0].set_title(f"final loss (grokjax: epoch {', '.join(map(str, sorted(epochs)))}; "
                     "authors: 3 000)", fontsize=9)
  for i, w in enumerate(wds):
    d = w.config["model"]["d_model"]
    c = plotting._color(i)
    for r in w.runs:
      m = w.run_metrics(r["run"])
      ax[0, 1].plot(m["epoch"], m["test_loss"], color=c, lw=1.0, label=f"d_model={d}")
    if d in ref:
      ax[0, 1].plot(ref[d].test_epochs, ref[d].test_loss, color=c, lw=0.8, ls=":", alpha=0.7)
  plotting._loss_axes(ax[0, 1], "test loss (authors dotted)")
  ax[0, 1].legend(fontsize=6, ncol=2)
  fig.suptitle(f"No weight decay: width scan (authors' runs: {ref[ds[0]].source}; their frac "
               "and seed were not stored)", fontsize=10)
  return fig


SUITE_FIGURES: dict[str, tuple[Callable[[list[str]], Figure], str]] = {
    "width_scan": (fig_width_scan, "No-weight-decay width scan: loss against d_model, the "
                   "authors' scan overlaid"),
    "loss_precision": (plotting_precision.fig_loss_precision_multi,
                       "App. D.2: float32 vs float64 vs float32_stable loss from one init"),
}

# Tables drawn under a suite figure of the same kind: kind -> (workdir paths -> markdown).
SUITE_TABLES: dict[str, Callable[[list[str]], str]] = {
    "loss_precision": plotting_precision.precision_table,
}
