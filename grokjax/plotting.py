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
  _plot_ref(ax[0, 1], paper.reference_curves(wd.p, r0["weight_decay"], r0["frac_train"]), xmax)
  ax[0, 0].set(xlabel="epoch", ylabel="accuracy", ylim=(-0.02, 1.02))
  _loss_axes(ax[0, 1])
  ax[0, 1].legend(fontsize=7, ncol=1 + len(runs) // 6)
  fig.suptitle(f"Fig 2: train (solid) / test (dashed), p={wd.p}, λ={r0['weight_decay']:g}, "
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


def fig_frac_sweep(wd: Workdir) -> Figure:
  """Fig 20: train/test loss per data fraction (authors' sweep overlaid where it matches)."""
  return _sweep_panels(wd, "frac_train", "weight_decay", "Fig 20: data-fraction sweep")


def fig_wd_sweep(wd: Workdir) -> Figure:
  """Fig 27: train/test loss per weight decay (authors' λ=0.1 run overlaid where it matches)."""
  return _sweep_panels(wd, "weight_decay", "frac_train", "Fig 27: weight-decay sweep")


def fig_frac_thresholds(wd: Workdir, thresh: float = 1e-6) -> Figure:
  """Fig 21: epochs until train and test loss first fall below `thresh`, per data fraction."""
  _need_metrics(wd)
  fracs = wd.values("frac_train")
  if len(fracs) < 2:
    raise Skip(f"needs at least 2 data fractions (workdir has {fracs})")
  main_wd = wd.run_info(wd.main_group()[0])["weight_decay"]
  fig, ax = _fig(1, 1, w=6.0, h=4.0)
  a = ax[0, 0]
  for col, mk, color in (("train_loss", "o", "C0"), ("test_loss", "s", "C3")):
    xs, ys, nx, ny, means = [], [], [], [], []
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
    mx, my = zip(*means)
    a.plot(mx, my, marker=mk, color=color, label=f"{col.split('_')[0]} loss < {thresh:g} (mean)")
  if wd.p == 113 and math.isclose(main_wd, 1.0):
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
  a.set_title(f"Fig 21: epochs to loss < {thresh:g} (p={wd.p}, λ={main_wd:g})", fontsize=10)
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

def _freq_bars(ax, norms: np.ndarray, key: list[int], title: str) -> None:
  norms = np.asarray(norms, float)
  k = np.arange(1, (len(norms) - 1) // 2 + 1)
  ax.bar(k - 0.2, norms[1::2], width=0.4, color="C0", label="cos k")
  ax.bar(k + 0.2, norms[2::2], width=0.4, color="C1", label="sin k")
  ax.bar([0], norms[:1], width=0.4, color="0.5", label="const")
  top = norms.max()
  for kk in key if len(key) <= 12 else []:
    ax.annotate(str(kk), (kk, max(norms[2 * kk - 1], norms[2 * kk]) + 0.02 * top),
                ha="center", fontsize=7)
  ax.set(xlabel="frequency k", ylabel="norm of Fourier component", title=title)
  ax.title.set_fontsize(10)
  ax.legend(fontsize=7)


def fig_fourier_norms(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 3: Fourier component norms of W_E (over d_model) and of W_L (over neurons)."""
  run, f = _need_final(wd, run, ("W_E_fourier_norms", "W_L_fourier_norms"))
  key = f.get("key_freqs") or []
  fig, ax = _fig(1, 2, w=6.0)
  _freq_bars(ax[0, 0], f["W_E_fourier_norms"], key, "W_E (embedding) in the Fourier basis")
  _freq_bars(ax[0, 1], f["W_L_fourier_norms"], key, "W_L = W_U W_out along the logit axis")
  fig.suptitle(f"Fig 3: run {run} ({wd.label(run)}), key freqs {key}", fontsize=11)
  return fig


def _heat(fig, ax, z, title, xlabel="b", ylabel="a", cmap="viridis", **kw):
  im = ax.imshow(z, origin="lower", cmap=cmap, aspect="equal", interpolation="nearest", **kw)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.title.set_fontsize(10)
  fig.colorbar(im, ax=ax, shrink=0.8)


def _fourier_ticks(ax, p: int, key: list[int], axis: str = "both") -> None:
  """Ticks at the constant and between the cos k / sin k rows of each key frequency k."""
  ticks = [0.0] + [2 * kk - 0.5 for kk in key]
  labels = ["const"] + [f"cos/sin {kk}" for kk in key]
  for which in ("x", "y") if axis == "both" else (axis,):
    getattr(ax, f"set_{which}ticks")(ticks, labels, fontsize=7)
  if axis in ("both", "x"):
    ax.tick_params(axis="x", labelrotation=90)


def fig_attention_neuron_logits(wd: Workdir, run: int | None = None, head: int = 0,
                                neuron: int | None = None) -> Figure:
  """Fig 4: attention `=`→a of one head, one neuron's activation over (a, b) (default: the
  best single-frequency neuron among the stored neurons 0–4; the paper shows neuron 0), and the
  norms of the logits in the 2D Fourier basis."""
  run, z = _need_final(wd, run, ("attn_eq_to_a", "neuron_acts", "logits_fourier_norms_2d"),
                       arrays=True)
  key = (wd.final(run) or {}).get("key_freqs") or []
  if neuron is None:
    fve = (wd.final(run) or {}).get("neuron_fve") or []
    fve = [x if x is not None else -1.0 for x in fve[:len(z["neuron_acts"])]]
    neuron = int(np.argmax(fve)) if fve else 0
  fig, ax = _fig(1, 3, w=4.6, h=4.2)
  _heat(fig, ax[0, 0], z["attn_eq_to_a"][head], f"attention head {head}: `=` → a")
  _heat(fig, ax[0, 1], z["neuron_acts"][neuron], f"MLP neuron {neuron}{_neuron_tag(wd, run, neuron)}")
  norms = z["logits_fourier_norms_2d"]
  _heat(fig, ax[0, 2], norms, "logits: norm of 2D Fourier components",
        xlabel="component over b", ylabel="component over a", cmap="Blues")
  _fourier_ticks(ax[0, 2], norms.shape[0], key)
  fig.suptitle(f"Fig 4: run {run} ({wd.label(run)})", fontsize=11)
  return fig


def _neuron_tag(wd: Workdir, run: int, j: int) -> str:
  f = wd.final(run) or {}
  nf, fve = f.get("neuron_freq"), f.get("neuron_fve")
  if not nf or j >= len(nf) or fve is None or fve[j] is None:
    return ""
  return f" (k={nf[j]}, FVE {fve[j]:.2f})"


def fig_attention_heads(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 9: attention from `=` to a for every head over (a, b)."""
  run, z = _need_final(wd, run, ("attn_eq_to_a",), arrays=True)
  attn = z["attn_eq_to_a"]
  fits = {d["head"]: d for d in (wd.final(run) or {}).get("attention_fits") or []}
  fig, ax = _fig(1, len(attn), w=3.8, h=3.6)
  for h, a in enumerate(ax.flat):
    fit = fits.get(h)
    tag = f" (k={fit['freq']}, FVE {fit['fve']:.2f})" if fit and fit.get("fve") is not None else ""
    _heat(fig, a, attn[h], f"head {h}{tag}")
  fig.suptitle(f"Fig 9: attention `=` → a per head, run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_neurons(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 12: activations of MLP neurons 1-4 over (a, b)."""
  run, z = _need_final(wd, run, ("neuron_acts",), arrays=True)
  acts = z["neuron_acts"][1:]
  if not len(acts):
    raise Skip(f"run {run}: neuron_acts holds only neuron 0")
  fig, ax = _fig(1, len(acts), w=3.8, h=3.6)
  for j, a in enumerate(ax.flat, start=1):
    _heat(fig, a, acts[j - 1], f"neuron {j}{_neuron_tag(wd, run, j)}")
  fig.suptitle(f"Fig 12: MLP neuron activations, run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_interference(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 8 (App. B): constructive interference. Each key frequency's wave cos(w_k x) is 1 at
  x = 0 (i.e. c = a + b) and comes close to 1 elsewhere; their sum peaks only at x = 0."""
  run, f = _need_final(wd, run, ("key_freqs",))
  key, p = f["key_freqs"], wd.p
  if not key:
    raise Skip(f"run {run}: no key frequencies")
  x = np.arange(-(p // 2), p - p // 2)  # residues mod p, centred on 0
  fig, ax = _fig(1, 2, w=6.0)
  for i, k in enumerate(key):  # stacked with offsets so each wave stays readable
    off = 2.5 * (len(key) - 1 - i)
    ax[0, 0].plot(x, np.cos(2 * np.pi * k * x / p) + off, ".-", color=_color(i), lw=0.6, ms=2.5)
    ax[0, 0].annotate(f"k = {k}", (x[-1] + 1, off), fontsize=7, va="center")
  total = sum(np.cos(2 * np.pi * k * x / p) for k in key)
  ax[0, 1].plot(x, total, "k.-", lw=0.8, ms=3, label="Σ_k cos(w_k x)")
  ax[0, 1].axhline(len(key), color="0.6", ls=":", lw=1, label=f"{len(key)} (all in phase)")
  ax[0, 0].set(xlabel="x = a + b − c (mod p)", yticks=[], title="each key frequency (offset)")
  ax[0, 1].set(xlabel="x = a + b − c (mod p)", ylabel="sum",
               title="their sum: one peak, at x = 0")
  ax[0, 1].legend(fontsize=7, loc="lower right")
  for a in ax.flat:
    a.title.set_fontsize(10)
  fig.suptitle(f"Fig 8: constructive interference of the key frequencies {key}, run {run} "
               f"({wd.label(run)})", fontsize=11)
  return fig


def fig_attention_scores(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 10: each head's attention-score lookup C_h[t] = x_=ᵀ W_Qᵀ W_K W_E[:, t] in the Fourier
  basis: one frequency dominates each head (its single-wave fit is Table 2)."""
  run, z = _need_final(wd, run, ("attn_score_hat",), arrays=True)
  fits = {d["head"]: d for d in (wd.final(run) or {}).get("attention_fits") or []}
  c_hat = np.abs(z["attn_score_hat"])
  fig, ax = _fig(1, len(c_hat), w=3.8, h=3.2)
  for h, a in enumerate(ax.flat):
    fit = fits.get(h) or {}
    k = fit.get("score_freq")
    tag = (f": k={k}, FVE {fit['score_fve']:.2f}"
           if k is not None and fit.get("score_fve") is not None else "")
    _freq_bars(a, c_hat[h], [k] if k else [], f"head {h}{tag}")
    a.set_ylabel("|Fourier coefficient|")
  fig.suptitle(f"Fig 10: attention score C_h over the key token, Fourier basis, run {run} "
               f"({wd.label(run)})", fontsize=11)
  return fig


def fig_ov_circuits(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 11: each head's OV output W_O^h W_V^h (W_E[:, a] + W_pos[0]) in the Fourier basis over
  a (norms over d_model): the heads pass on the key frequencies."""
  run, z = _need_final(wd, run, ("attn_ov_fourier_norms",), arrays=True)
  key = (wd.final(run) or {}).get("key_freqs") or []
  ov = z["attn_ov_fourier_norms"]
  fig, ax = _fig(1, len(ov), w=3.8, h=3.2)
  for h, a in enumerate(ax.flat):
    _freq_bars(a, ov[h], key, f"head {h}")
  fig.suptitle(f"Fig 11: OV circuit output per head in the Fourier basis (key freqs {key}), "
               f"run {run} ({wd.label(run)})", fontsize=11)
  return fig


def _cluster_freq(f: dict, z: dict) -> tuple[int, np.ndarray, str]:
  """A frequency cluster to show: the smallest key frequency with neurons of FVE > 0.85 (the
  paper shows k = 14), else the most common neuron frequency (whatever the FVE)."""
  nf = np.asarray(z.get("neuron_freq", f.get("neuron_freq")))
  fve = np.nan_to_num(np.asarray(f.get("neuron_fve", np.ones_like(nf)), float))
  for k in sorted(f.get("key_freqs") or []):
    member = (nf == k) & (fve > 0.85)
    if member.any():
      return k, np.nonzero(member)[0], "FVE > 0.85"
  vals, counts = np.unique(nf, return_counts=True)
  k = int(vals[np.argmax(counts)])
  return k, np.nonzero(nf == k)[0], "any FVE"


def fig_neuron_fve(wd: Workdir, run: int | None = None) -> Figure:
  """Fig 5: histogram of each neuron's single-frequency FVE; Ŵ_L columns of one cluster."""
  run, f = _need_final(wd, run, ("neuron_fve",))
  _, z = _need_final(wd, run, ("W_L_hat",), arrays=True)
  fve = np.asarray(f["neuron_fve"], float)
  fig, ax = _fig(1, 2, w=5.5, h=4.2)
  a = ax[0, 0]
  a.hist(fve[np.isfinite(fve)], bins=np.linspace(0, 1, 41), color="C0")
  a.axvline(0.85, color="k", ls="--", lw=1)
  a.set(xlabel="fraction of variance explained by one frequency", ylabel="neurons",
        title=f"{np.mean(fve > 0.85):.1%} of {len(fve)} neurons have FVE > 0.85")
  a.title.set_fontsize(10)
  k, cols, rule = _cluster_freq(f, z)
  w = z["W_L_hat"][:, cols]
  lim = float(np.abs(w).max()) or 1.0
  _heat(fig, ax[0, 1], w, f"Ŵ_L columns of the {len(cols)} neurons of frequency {k} ({rule})",
        xlabel="neuron (cluster index)", ylabel="Fourier component (logit axis)", cmap="RdBu_r",
        vmin=-lim, vmax=lim)
  ax[0, 1].set_aspect("auto")
  _fourier_ticks(ax[0, 1], w.shape[0], [k], axis="y")
  fig.suptitle(f"Fig 5: run {run} ({wd.label(run)})", fontsize=11)
  return fig


def fig_freq_ablation(wd: Workdir, run: int | None = None, split: str = "train") -> Figure:
  """Fig 6: loss after removing each frequency k from the logits (per-frequency excluded)."""
  run, f = _need_final(wd, run, ("ablation_per_freq",))
  abl = f["ablation_per_freq"]
  if split not in abl:
    split = next(iter(abl))
  y = np.asarray(abl[split], float)
  k = np.arange(1, len(y) + 1)
  key = f.get("key_freqs") or []
  fig, ax = _fig(1, 1, w=9.0, h=3.8)
  a = ax[0, 0]
  a.bar(k, y, color=["C3" if kk in key else "C0" for kk in k])
  for name, style in ((f"loss_{split}", dict(color="k", ls="--")),
                      (f"restricted_loss_{split}", dict(color="C2", ls=":"))):
    if f.get(name) is not None:
      label = "original loss" if name.startswith("loss") else "only key freqs kept (restricted)"
      a.axhline(f[name], label=label, **style)
  a.set(yscale="log", xlabel="frequency k removed (red: key)", ylabel=f"loss ({split})")
  a.legend(fontsize=8)
  a.set_title(f"Fig 6: per-frequency ablation of the logits, run {run} ({wd.label(run)})",
              fontsize=10)
  return fig


# --- Figs 7, 13-15, 18-19: progress measures over training ------------------------------------

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
  fig.suptitle(f"Fig 7: progress measures, run {run} ({wd.label(run)}); phases {_phase_str(phases)}",
               fontsize=11)
  return fig


def _phase_str(phases: dict | None) -> str:
  if not phases:
    return "not detected"
  v = [phases.get(k) for k in ("memorization_end", "circuit_formation_end", "cleanup_end")]
  return "/".join("?" if x is None else f"{x:g}" for x in v)


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
    a.set_title(f"loss, {wd.label(run, ('seed', 'split_seed'))}", fontsize=8)
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
  fig.suptitle("Figs 18–19: loss and Gini for each seed", fontsize=11)
  return fig


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


FIGURES = (
    FigureSpec("fig02_train_test", fig_train_test,
               "Fig 2: train/test accuracy and loss for every seed of the mainline-like setting"),
    FigureSpec("fig03_fourier_norms", fig_fourier_norms,
               "Fig 3: Fourier component norms of W_E and W_L (cos and sin per frequency)"),
    FigureSpec("fig04_attention_neuron_logits", fig_attention_neuron_logits,
               "Fig 4: attention `=`→a (head 0), MLP neuron 0, logits in the 2D Fourier basis"),
    FigureSpec("fig05_neuron_fve", fig_neuron_fve,
               "Fig 5: neuron single-frequency FVE histogram; Ŵ_L columns of one cluster"),
    FigureSpec("fig06_freq_ablation", fig_freq_ablation,
               "Fig 6: loss after ablating each frequency from the logits"),
    FigureSpec("fig07_progress_measures", fig_progress_measures,
               "Fig 7: excluded/restricted loss, Gini, sum of squared weights; phases shaded"),
    FigureSpec("fig08_interference", fig_interference,
               "Fig 8: constructive interference of the key frequencies"),
    FigureSpec("fig09_attention_heads", fig_attention_heads,
               "Fig 9: attention `=`→a for every head"),
    FigureSpec("fig10_attention_scores", fig_attention_scores,
               "Fig 10: attention score lookup per head in the Fourier basis"),
    FigureSpec("fig11_ov_circuits", fig_ov_circuits,
               "Fig 11: OV circuit output per head in the Fourier basis"),
    FigureSpec("fig12_neurons", fig_neurons, "Fig 12: activations of MLP neurons 1–4"),
    FigureSpec("fig13_restricted_acc", fig_restricted_acc, "Fig 13: restricted accuracy"),
    FigureSpec("fig14_cos_coeffs", fig_cos_coeffs,
               "Fig 14: coefficients of cos(w_k(a+b−c)) over training"),
    FigureSpec("fig15_excluded_per_freq", fig_excluded_per_freq,
               "Fig 15: excluded loss of each key frequency over training"),
    FigureSpec("fig16_17_seed_norms", fig_seed_norms, "Figs 16–17: W_E / W_L norms per seed"),
    FigureSpec("fig18_19_seed_curves", fig_seed_curves, "Figs 18–19: loss and Gini per seed"),
    FigureSpec("fig20_frac_sweep", fig_frac_sweep, "Fig 20: data-fraction sweep"),
    FigureSpec("fig21_frac_thresholds", fig_frac_thresholds,
               "Fig 21: epochs until train/test loss < 1e-6 per data fraction"),
    FigureSpec("fig26_no_wd", fig_no_wd, "Fig 26: no weight decay"),
    FigureSpec("fig27_wd_sweep", fig_wd_sweep, "Fig 27: weight-decay sweep"),
    FigureSpec("phase_diagram", fig_phase_diagram,
               "Beyond the paper: grokking phase diagram over weight decay × data fraction"),
)
