"""The paper's figures (SPEC §6) from a workdir's plain files; each function returns a Figure.

Every `fig_*` function takes a `figdata.Workdir` and raises `Skip(reason)` when the workdir lacks
what it needs (no analysis yet, a single weight decay, ...). Figures are built with
`matplotlib.figure.Figure` (rendered by Agg on save; no pyplot global state). This module reads
files only: it never imports the model, training or sweep code.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker
from matplotlib.figure import Figure

from grokjax import paper
from grokjax.figdata import Workdir

TRAIN, TEST = "-", "--"
REF_STYLE = dict(color="0.35", lw=1.0, alpha=0.8)
REF_COLORS = ("0.2", "0.6")  # the authors' recorded curves: dark, then light grey
PHASE_COLORS = ("#cfe2f3", "#fce5cd", "#d9ead3")
PHASE_NAMES = ("memorization", "circuit formation", "cleanup")
MAX_PANELS = 12


class Skip(Exception):
  """The workdir does not hold the data a figure needs; the message says what is missing."""


def _fig(nrows: int = 1, ncols: int = 1, w: float = 5.0, h: float = 3.6, **kw):
  fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
  return fig, axes


def _color(i: int) -> str:
  return f"C{i % 10}"


def fourier_labels(p: int) -> list[str]:
  """Names of the rows of the real Fourier basis (SPEC §3.1): const, cos 1, sin 1, ..."""
  return ["const"] + [f"{t} {k}" for k in range(1, (p - 1) // 2 + 1) for t in ("cos", "sin")]


def _need_curve(wd: Workdir, run: int, columns: tuple[str, ...]):
  c = wd.curve(run)
  if c is None:
    raise Skip(f"run {run}: no analysis/run_{run:04d}.csv (run experiments.analyze)")
  missing = [k for k in columns if k not in c]
  if missing:
    raise Skip(f"run {run}: analysis csv lacks {', '.join(missing)}")
  return c


def _need_final(wd: Workdir, run: int | None, keys: tuple[str, ...] = (), arrays: bool = False):
  if run is None:
    run = wd.main_run()
  if run is None:
    raise Skip("no analysed run (run experiments.analyze)")
  f = wd.final_arrays(run) if arrays else wd.final(run)
  if f is None:
    raise Skip(f"run {run}: no analysis/run_{run:04d}_final.{'npz' if arrays else 'json'}")
  missing = [k for k in keys if k not in f or f[k] is None]
  if missing:
    raise Skip(f"run {run}: final analysis lacks {', '.join(missing)}")
  return run, f


def _need_metrics(wd: Workdir):
  if wd.metrics is None:
    raise Skip("no metrics.jsonl (the sweep has not run)")
  return wd.metrics


def shade_phases(ax, phases: dict | None, legend: bool = False) -> None:
  """Shades memorization / circuit formation / cleanup from `phases` (ends; None = undetected)."""
  if not phases:
    return
  start = 0
  for key, color, name in zip(("memorization_end", "circuit_formation_end", "cleanup_end"),
                              PHASE_COLORS, PHASE_NAMES):
    end = phases.get(key)
    if end is None:
      break
    ax.axvspan(start, end, color=color, alpha=0.7, lw=0, zorder=0,
               label=name if legend else None)
    start = end


def _loss_axes(ax, title: str = "") -> None:
  ax.set_yscale("log")
  ax.set_xlabel("epoch")
  ax.set_ylabel("loss")
  if title:
    ax.set_title(title, fontsize=10)


def _plot_ref(ax, curves: list[paper.Curve], xmax: float | None, acc: bool = False) -> None:
  for i, c in enumerate(curves):
    if acc:
      continue
    for e, v, ls, part in ((c.train_epochs, c.train_loss, TRAIN, "train"),
                           (c.test_epochs, c.test_loss, TEST, "test")):
      keep = e <= xmax if xmax else slice(None)
      ax.plot(e[keep], v[keep], ls=ls, label=f"{c.label} {part}",
              **{**REF_STYLE, "color": REF_COLORS[i % len(REF_COLORS)]})


def _runs_losses(ax, wd: Workdir, runs: list[int], keys=("seed",), acc: bool = False) -> float:
  xmax = 0.0
  for i, run in enumerate(runs):
    m = wd.run_metrics(run)
    if m.empty:
      continue
    xmax = max(xmax, float(m["epoch"].max()))
    for col, ls, part in (("train", TRAIN, "train"), ("test", TEST, "test")):
      y = m[f"{col}_acc" if acc else f"{col}_loss"]
      ax.plot(m["epoch"], y, ls=ls, color=_color(i), lw=1.2,
              label=f"{wd.label(run, keys)} {part}")
  return xmax


# --- Fig 2, 20, 21, 26, 27: training curves from metrics.jsonl --------------------------------

def fig_train_test(wd: Workdir) -> Figure:
  """Fig 2: train/test accuracy and loss of all seeds of the mainline-like setting."""
  _need_metrics(wd)
  runs = wd.main_group()
  r0 = wd.run_info(runs[0])
  fig, ax = _fig(1, 2)
  _runs_losses(ax[0, 0], wd, runs, ("seed", "split_seed"), acc=True)
  xmax = _runs_losses(ax[0, 1], wd, runs, ("seed", "split_seed"))
  layers = wd.config.get("model", {}).get("num_layers", 1)
  if layers == 1:  # the authors' curves are all of one-layer models
    _plot_ref(ax[0, 1], paper.reference_curves(wd.p, r0["weight_decay"], r0["frac_train"]), xmax)
  ax[0, 0].set(xlabel="epoch", ylabel="accuracy", ylim=(-0.02, 1.02))
  _loss_axes(ax[0, 1])
  ax[0, 1].legend(fontsize=7, ncol=1 + len(runs) // 6)
  name = "Fig 2" if layers == 1 else f"Fig 22: {layers}-layer transformer"
  fig.suptitle(f"{name}: train (solid) / test (dashed), p={wd.p}, λ={r0['weight_decay']:g}, "
               f"frac={r0['frac_train']:g}, {len(runs)} run(s)", fontsize=11)
  return fig


def _plain_log_ticks(axis) -> None:
  """Log-axis ticks at 1, 2, 5 × 10^n written as plain numbers."""
  axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axis.set_minor_formatter(mticker.NullFormatter())


def _panel_grid(n: int, ncols: int = 3):
  n = min(n, MAX_PANELS)
  ncols = 2 if n == 4 else min(ncols, n)
  return _fig(math.ceil(n / ncols), ncols, w=4.2, h=3.0, sharey=True)


def _sweep_panels(wd: Workdir, axis: str, fixed: str, title: str) -> Figure:
  _need_metrics(wd)
  vals = wd.values(axis)
  if len(vals) < 2:
    raise Skip(f"needs at least 2 values of {axis} (workdir has {vals})")
  main = wd.run_info(wd.main_group()[0])[fixed]
  groups = {k: v for k, v in wd.groups((axis, fixed)).items() if k[1] == main}
  fig, ax = _panel_grid(len(groups))
  for a, ((val, fx), runs) in zip(ax.flat, list(groups.items())[:MAX_PANELS]):
    xmax = _runs_losses(a, wd, runs, ("seed",))
    ref = paper.reference_curves(wd.p, *((val, fx) if axis == "weight_decay" else (fx, val)))
    _plot_ref(a, ref, xmax)
    _loss_axes(a, f"{'λ' if axis == 'weight_decay' else 'frac'} = {val:g}")
    a.legend(fontsize=6)
  for a in ax.flat[len(groups):]:
    a.set_visible(False)
  short = "λ" if fixed == "weight_decay" else "frac"
  fig.suptitle(f"{title} (p={wd.p}, {short}={main:g}); train solid, test dashed", fontsize=11)
  return fig


# The appendix's other primes (Figs 24-25) are the same panels at another p.
OTHER_PRIMES = {53: "Fig 24: P = 53", 109: "Fig 24: P = 109", 401: "Fig 25: P = 401"}


def fig_frac_sweep(wd: Workdir) -> Figure:
  """Fig 20: train/test loss per data fraction (authors' sweep overlaid where it matches)."""
  fig = OTHER_PRIMES.get(wd.p, "Fig 20")
  return _sweep_panels(wd, "frac_train", "weight_decay", f"{fig}: data-fraction sweep")


def fig_wd_sweep(wd: Workdir) -> Figure:
  """Fig 27: train/test loss per weight decay (authors' λ=0.1 run overlaid where it matches)."""
  fig = OTHER_PRIMES.get(wd.p, "Fig 27")
  return _sweep_panels(wd, "weight_decay", "frac_train", f"{fig}: weight-decay sweep")


def fig_frac_thresholds(wd: Workdir, thresh: float = 1e-6) -> Figure:
  """Fig 21: epochs until train and test loss first fall below `thresh`, per data fraction."""
  _need_metrics(wd)
  fracs = wd.values("frac_train")
  if len(fracs) < 2:
    raise Skip(f"needs at least 2 data fractions (workdir has {fracs})")
  return frac_thresholds([wd], thresh)


def frac_thresholds(wds: list[Workdir], thresh: float = 1e-6) -> Figure:
  """Fig 21 from one or more workdirs of one (p, λ) — e.g. a suite's two fraction sweeps, each
  padded to its own largest training set: each workdir's main weight decay, fractions pooled."""
  wds = [w for w in wds if w.metrics is not None]
  if not wds:
    raise Skip("no workdir has metrics yet")
  mains = {(w.p, w.run_info(w.main_group()[0])["weight_decay"]) for w in wds}
  if len(mains) > 1:
    raise Skip(f"the workdirs differ in (p, main weight decay): {sorted(mains)}")
  (p, main_wd), = mains
  if len({f for w in wds for f in w.values("frac_train")}) < 2:
    raise Skip("needs at least 2 data fractions across the workdirs")
  fig, ax = _fig(1, 1, w=6.0, h=4.0)
  a = ax[0, 0]
  for col, mk, color in (("train_loss", "o", "C0"), ("test_loss", "s", "C3")):
    xs, ys, nx, ny, means = [], [], [], [], []
    for wd in wds:
      for (wdv, frac), runs in wd.groups().items():
        if wdv != main_wd:
          continue
        got = []
        for run in runs:
          e = wd.first_below(run, col, thresh)
          if e is None:
            nx.append(frac); ny.append(wd.last_epoch(run))
          else:
            xs.append(frac); ys.append(e); got.append(e)
        means.append((frac, np.mean(got) if got else np.nan))
    a.scatter(xs, ys, marker=mk, color=color, s=18, alpha=0.6)
    if nx:
      a.scatter(nx, ny, marker="^", facecolor="none", edgecolor=color, s=40,
                label=f"{col.split('_')[0]}: not reached (run end)")
    mx, my = zip(*sorted(means))
    a.plot(mx, my, marker=mk, color=color, label=f"{col.split('_')[0]} loss < {thresh:g} (mean)")
  if p == 113 and math.isclose(main_wd, 1.0):
    ref = paper.frac_sweep()
    fs = sorted(ref)
    tr = [paper.first_below(np.arange(len(ref[f][0])), ref[f][0], thresh) for f in fs]
    a.plot(fs, [np.nan if t is None else t for t in tr], ls=":", marker="o", color="0.4",
           label=f"authors: train < {thresh:g}")
    a.plot(fs, [len(ref[f][1]) for f in fs], ls=":", marker="s", color="0.2",
           label="authors: test < 3e-6 (run stopped)")
  a.set(xlabel="fraction of pairs used for training", ylabel="epochs", yscale="log")
  _plain_log_ticks(a.yaxis)
  a.legend(fontsize=7)
  a.set_title(f"Fig 21: epochs to loss < {thresh:g} (p={p}, λ={main_wd:g})", fontsize=10)
  return fig


def fig_no_wd(wd: Workdir) -> Figure:
  """Fig 26: λ = 0 runs: train, test and (when analysed) full excluded loss."""
  _need_metrics(wd)
  runs = [r["run"] for r in wd.runs if r["weight_decay"] == 0]
  if not runs:
    raise Skip("no run with weight_decay = 0")
  fracs = sorted({wd.run_info(r)["frac_train"] for r in runs})
  fig, ax = _panel_grid(len(fracs))
  if len(fracs) == 1:  # room for the title and the legend beside one panel
    fig.set_size_inches(7.0, 3.8)
  for a, frac in zip(ax.flat, fracs):
    group = [r for r in runs if wd.run_info(r)["frac_train"] == frac]
    xmax = _runs_losses(a, wd, group, ("seed",))
    for i, run in enumerate(group):
      c = wd.curve(run)
      if c is not None and "excluded_loss_train" in c:
        a.plot(c["epoch"], c["excluded_loss_train"], ls=":", color=_color(i), lw=1.5,
               label=f"{wd.label(run, ('seed',))} excluded (train)")
    _plot_ref(a, paper.reference_curves(wd.p, 0.0, frac), xmax)
    _loss_axes(a, f"λ = 0, frac = {frac:g}")
    a.legend(fontsize=6)
  for a in ax.flat[len(fracs):]:
    a.set_visible(False)
  fig.suptitle(f"Fig 26: no weight decay (p={wd.p})\ntrain solid, test dashed, excluded (key "
               f"frequencies removed) dotted",
               fontsize=11)
  return fig


# --- Figs 3-6: the final model of one run -----------------------------------------------------


# --- Figs 7, 13-15, 18-19: progress measures over training ------------------------------------


def _phase_str(phases: dict | None) -> str:
  if not phases:
    return "not detected"
  v = [phases.get(k) for k in ("memorization_end", "circuit_formation_end", "cleanup_end")]
  return "/".join("?" if x is None else f"{x:g}" for x in v)


# --- beyond the paper: the grokking phase diagram ---------------------------------------------

def fig_phase_diagram(wd: Workdir, thresh: float = paper.GROK_THRESH) -> Figure:
  """Epoch at which test loss first falls below `thresh` over weight decay × data fraction
  (mean over the runs of a cell that got there; "never" when none did), and the delay after
  memorization (grok epoch / epoch of train loss < thresh) with each cell's phase."""
  _need_metrics(wd)
  g = wd.phase_grid(thresh)
  wds, fracs = sorted(g["weight_decay"].unique()), sorted(g["frac_train"].unique())
  if len(g) < 2:
    raise Skip("needs at least 2 (weight decay, data fraction) cells")
  grok = np.full((len(wds), len(fracs)), np.nan)
  ratio = np.full_like(grok, np.nan)
  text1, text2 = {}, {}
  for _, r in g.iterrows():
    i, j = wds.index(r["weight_decay"]), fracs.index(r["frac_train"])
    if r["mean_grok"] is None or not np.isfinite(r["mean_grok"]):
      text1[i, j] = text2[i, j] = f"never\n(≤{r['last_epoch']:g})"
      continue
    grok[i, j], ratio[i, j] = r["mean_grok"], r["mean_ratio"]
    part = "" if r["n_grokked"] == r["n"] else f"\n{r['n_grokked']}/{r['n']} runs"
    text1[i, j] = f"{r['mean_grok']:.0f}{part}"
    text2[i, j] = f"×{r['mean_ratio']:.1f}\n{r['phase']}"
  wide = len(fracs) > 6  # a wide grid stacks the two panels
  fig, ax = _fig(2 if wide else 1, 1 if wide else 2, w=0.85 * len(fracs) + 2.6,
                 h=0.55 * len(wds) + 2.0)
  ax = ax.flat
  for a, z, txt, title, cmap in (
      (ax[0], grok, text1, f"epoch of test loss < {thresh:g} (mean over seeds)", "viridis"),
      (ax[1], ratio, text2, "delay: grok epoch / memorization epoch", "magma_r")):
    heat_cells(fig, a, z, txt, [f"{f:g}" for f in fracs], [f"{w:g}" for w in wds],
               "fraction of pairs used for training", "weight decay λ", title, cmap)
  fig.suptitle(f"Grokking phase diagram (p={wd.p}; grey = never within the run; "
               f"grokking if delay ≥ ×{paper.GROK_RATIO:g})", fontsize=11)
  return fig


def heat_cells(fig, a, z: np.ndarray, text: dict, xticks: list[str], yticks: list[str],
               xlabel: str, ylabel: str, title: str, cmap: str, floor: float = 1.0,
               center: float | None = None) -> None:
  """A heatmap of `z` (rows = y values; NaN cells grey) with a text per cell ((i, j) -> str)
  and a log colour scale over the finite values (from `floor` up at least; symmetric about
  `center` when given, e.g. 1 for ratios) with a colorbar."""
  finite = z[np.isfinite(z)]
  if not len(finite):
    norm = None
  elif center is not None:
    half = max(np.abs(np.log(finite / center)).max(), np.log(1.5))
    norm = mcolors.LogNorm(center * np.exp(-half), center * np.exp(half))
  else:
    norm = mcolors.LogNorm(max(finite.min(), floor),
                           max(finite.max(), finite.min() * 1.01, 2 * floor))
  a.set_facecolor("0.85")
  im = a.imshow(np.ma.masked_invalid(z), origin="lower", cmap=cmap, norm=norm, aspect="auto")
  for (i, j), s in text.items():
    a.text(j, i, s, ha="center", va="center", fontsize=7,
           color=_text_color(im.cmap(norm(z[i, j]))) if np.isfinite(z[i, j]) else "k")
  a.set_xticks(range(len(xticks)), xticks)
  a.set_yticks(range(len(yticks)), yticks)
  a.set(xlabel=xlabel, ylabel=ylabel, title=title)
  a.title.set_fontsize(10)
  if norm is not None:
    _plain_log_ticks(fig.colorbar(im, ax=a, shrink=0.85).ax.yaxis)


def _text_color(rgba) -> str:
  r, g, b = rgba[:3]
  return "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  name: str
  func: Callable[[Workdir], Figure]
  caption: str
