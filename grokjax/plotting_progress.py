"""Figures of the progress measures over training (paper Figs 7, 13–15) and of the other
seeds (Figs 16–19), from the analysis tables."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from grokjax import paper
from grokjax.figdata import Workdir
from grokjax.plotting import (REF_STYLE, Skip, _color, _fig, _loss_axes, _need_curve,
                              _phase_str, shade_phases)


def _curve_and_phases(wd: Workdir, run: int | None, columns: tuple[str, ...]):
  if run is None:
    run = wd.main_run()
  if run is None:
    raise Skip("no analysed run (run experiments.analyze)")
  c = _need_curve(wd, run, columns)
  return run, c, (wd.final(run) or {}).get("phases")


def fig_progress_measures(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 7: excluded and restricted loss, Gini of W_E / W_L and the sum of squared weights,
  with the detected phases shaded (authors' mainline curves overlaid for the same setting)."""
  run, c, phases = _curve_and_phases(
      wd, run, ("loss_train", "loss_test", "excluded_loss_train", "restricted_loss_all"))
  ref = paper.mainline_curves() if wd.is_mainline(run) else None
  e = c["epoch"]
  fig, ax = _fig(2, 2, w=5.2, h=3.6)
  panels = (
      (ax[0, 0], "excluded loss", [("excluded_loss_train", "excluded (train)", "C3", "-")],
       "excluded_loss_full_train"),
      (ax[0, 1], "restricted loss", [("restricted_loss_all", "restricted (all)", "C2", "-"),
                                     ("restricted_loss_train", "restricted (train)", "C2", ":"),
                                     ("restricted_loss_test", "restricted (test)", "C2", "-.")],
       "restricted_loss_all"))
  for a, title, cols, refkey in panels:
    shade_phases(a, phases, legend=a is ax[0, 0])
    a.plot(e, c["loss_train"], color="C0", label="train")
    a.plot(e, c["loss_test"], color="C1", label="test")
    for col, label, color, ls in cols:
      if col in c:
        a.plot(e, c[col], color=color, ls=ls, label=label)
    if ref is not None:
      keep = ref["epochs"] <= e.max()
      a.plot(ref["epochs"][keep], ref[refkey][keep], ls="--", label="authors", **REF_STYLE)
      for j, x in enumerate(x for x in paper.PHASES.value if x <= e.max()):
        a.axvline(x, color="0.3", ls=":", lw=0.8, label="authors' phase ends" if j == 0 else None)
    _loss_axes(a, title)
    a.legend(fontsize=7)
  a = ax[1, 0]
  shade_phases(a, phases)
  for col, color in (("gini_W_E", "C4"), ("gini_W_L", "C5")):
    if col in c:
      a.plot(e, c[col], color=color, label=f"Gini({col[5:]})")
  a.set(xlabel="epoch", ylabel="Gini coefficient", title="Gini of Fourier norms")
  a.title.set_fontsize(10)
  a.legend(fontsize=7)
  a = ax[1, 1]
  shade_phases(a, phases)
  if "sum_sq_weights" in c:
    a.plot(e, c["sum_sq_weights"], color="C7", label="grokjax")
  if ref is not None:
    keep = ref["epochs"] <= e.max()
    a.plot(ref["epochs"][keep], ref["sum_sq_weights_total"][keep], ls="--", label="authors",
           **REF_STYLE)
  a.set(xlabel="epoch", ylabel="sum of squared weights", title="total sum of squared weights")
  a.title.set_fontsize(10)
  a.legend(fontsize=7)
  layers = wd.config.get("model", {}).get("num_layers", 1)
  name = "Fig 7" if layers == 1 else f"Fig 23: {layers}-layer transformer"
  fig.suptitle(f"{name}: progress measures, run {run} ({wd.label(run)}); "
               f"phases {_phase_str(phases)}", fontsize=11)
  return fig


def fig_restricted_acc(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 13: restricted accuracy with train / test (and excluded) accuracy over training."""
  run, c, phases = _curve_and_phases(wd, run, ("restricted_acc_all", "acc_train", "acc_test"))
  fig, ax = _fig(1, 1, w=6.5, h=3.8)
  a = ax[0, 0]
  shade_phases(a, phases, legend=True)
  for col, label, color in (("acc_train", "train", "C0"), ("acc_test", "test", "C1"),
                            ("restricted_acc_all", "restricted (all)", "C2"),
                            ("excluded_acc_train", "excluded (train)", "C3")):
    if col in c:
      a.plot(c["epoch"], c[col], color=color, label=label)
  a.set(xlabel="epoch", ylabel="accuracy", ylim=(-0.02, 1.02))
  a.legend(fontsize=7)
  a.set_title(f"Fig 13: restricted accuracy, run {run} ({wd.label(run)})", fontsize=10)
  return fig


def _key_columns(c, prefix: str) -> list[tuple[int, str]]:
  cols = [(int(k[len(prefix):]), k) for k in c.columns
          if k.startswith(prefix) and k[len(prefix):].isdigit()]
  return sorted(cols)


def _per_key_axes(wd: Workdir, run: int | None, prefix: str, needed: tuple[str, ...]):
  """(run, curves, [(k, column)], figure, axes with phases shaded) for a per-key-frequency plot."""
  run, c, phases = _curve_and_phases(wd, run, needed)
  cols = _key_columns(c, prefix)
  if not cols:
    raise Skip(f"run {run}: analysis csv has no {prefix}* columns")
  fig, ax = _fig(1, 1, w=6.5, h=3.8)
  shade_phases(ax[0, 0], phases)
  return run, c, cols, fig, ax[0, 0]


def fig_cos_coeffs(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 14: coefficients of cos(w_k(a+b−c)) in the logits over training, k ∈ key freqs."""
  run, c, cols, fig, a = _per_key_axes(wd, run, "cos_coeff_k", ())
  for i, (k, col) in enumerate(cols):
    a.plot(c["epoch"], c[col], color=_color(i), label=f"k = {k}")
  a.set(xlabel="epoch", ylabel="coefficient of cos(w_k(a+b−c))")
  a.legend(fontsize=7)
  a.set_title(f"Fig 14: logit coefficients per key frequency, run {run}", fontsize=10)
  return fig


def fig_excluded_per_freq(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 15: excluded loss (train) of each key frequency alone, with train and test loss."""
  run, c, cols, fig, a = _per_key_axes(wd, run, "excluded_loss_train_k", ("loss_train", "loss_test"))
  a.plot(c["epoch"], c["loss_train"], color="k", label="train")
  a.plot(c["epoch"], c["loss_test"], color="k", ls="--", label="test")
  for i, (k, col) in enumerate(cols):
    a.plot(c["epoch"], c[col], color=_color(i), label=f"excluded k = {k}")
  _loss_axes(a, f"Fig 15: excluded loss per key frequency (train), run {run}")
  a.legend(fontsize=7)
  return fig


def _seed_runs(wd: Workdir) -> list[int]:
  runs = [r for r in wd.main_group() if r in wd.analysed_runs()]
  if len(runs) < 2:
    raise Skip("needs at least 2 analysed runs (seeds) of the mainline-like setting")
  return runs[:5]


def fig_seed_norms(wd: Workdir) -> Figure:
  """Figs 16–17: per-frequency norms of W_E and W_L for each seed of the main setting."""
  runs = _seed_runs(wd)
  fig, ax = _fig(len(runs), 2, w=5.5, h=2.2, sharex=True)
  for row, run in enumerate(runs):
    f = wd.final(run)
    for col, name in enumerate(("W_E", "W_L")):
      n = np.asarray(f.get(f"{name}_fourier_norms") or [], float)
      a = ax[row, col]
      if len(n):
        k = np.arange(1, (len(n) - 1) // 2 + 1)
        a.bar(k, np.hypot(n[1::2], n[2::2]), color="C0" if col == 0 else "C1")
      a.set_title(f"{name}, {wd.label(run, ('seed', 'split_seed'))}, key {f.get('key_freqs')}",
                  fontsize=8)
  for a in ax[-1]:
    a.set_xlabel("frequency k")
  fig.suptitle("Figs 16–17: per-frequency norms √(cos²+sin²) for each seed", fontsize=11)
  return fig


def fig_seed_curves(wd: Workdir) -> Figure:
  """Figs 18–19: train / test / restricted loss and Gini(W_E), Gini(W_L) for each seed."""
  runs = _seed_runs(wd)
  fig, ax = _fig(len(runs), 2, w=5.0, h=2.6, sharex=True)
  for row, run in enumerate(runs):
    c = wd.curve(run)
    phases = (wd.final(run) or {}).get("phases")
    if c is None:
      continue
    a = ax[row, 0]
    shade_phases(a, phases)
    for col, label, color in (("loss_train", "train", "C0"), ("loss_test", "test", "C1"),
                              ("restricted_loss_all", "restricted", "C2")):
      if col in c:
        a.plot(c["epoch"], c[col], color=color, label=label)
    a.set_yscale("log")
    a.set_title(f"loss, {wd.run_label(run)}", fontsize=8)  # the swept values, e.g. seed or L1
    a.legend(fontsize=6)
    a = ax[row, 1]
    shade_phases(a, phases)
    for col, color in (("gini_W_E", "C4"), ("gini_W_L", "C5")):
      if col in c:
        a.plot(c["epoch"], c[col], color=color, label=f"Gini({col[5:]})")
    a.set_title("Gini", fontsize=8)
    a.legend(fontsize=6)
  for a in ax[-1]:
    a.set_xlabel("epoch")
  fig.suptitle("Figs 18–19: loss and Gini for each run", fontsize=11)
  return fig
