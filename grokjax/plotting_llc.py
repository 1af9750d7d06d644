"""Figures of the local learning coefficient (grokjax/llc_analysis.py), from plain files.

  fig_llc         one run: train/test loss (modular: with the restricted and excluded loss and
                  the paper's phases shaded; other tasks: with the per-group test losses) above
                  its LLC ± spread over chains, checkpoints with unhealthy traces marked;
  fig_llc_runs    every run of a sweep: test loss above LLC (only for sweeps of several runs);
  calibration_figure   the (ε, nβ) grid of `experiments.llc_calibrate`: each cell's chains'
                  loss traces (burn-in shaded) and the estimate ± spread over the grid.
Like plotting.py, this reads files only (never imports the model or training code).
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from grokjax.figdata import Workdir
from grokjax.plotting import FigureSpec, Skip, _color, _fig, _phase_str, shade_phases

TRACES = "_llc_traces.npz"   # = llc_analysis.TRACES (not imported: that module imports jax)


def _traces(wd: Workdir, run: int) -> dict[str, np.ndarray] | None:
  path = wd._p("analysis", f"run_{run:04d}{TRACES}")
  if not os.path.exists(path):
    return None
  with np.load(path) as z:
    return {k: z[k] for k in z.files}


def llc_runs(wd: Workdir) -> list[int]:
  """Runs whose per-checkpoint table has an llc column with a value."""
  out = []
  for r in wd.runs:
    c = wd.curve(r["run"])
    if c is not None and "llc" in c and c["llc"].notna().any():
      out.append(r["run"])
  return out


def _main(wd: Workdir) -> int:
  runs = llc_runs(wd)
  if not runs:
    raise Skip("no llc column in analysis/run_*.csv (run experiments.analyze --llc)")
  try:
    main = wd.main_run()
  except Exception:  # sweep.json of a sequence task has no modular fields
    main = None
  return main if main in runs else runs[0]


def _loss_columns(c) -> tuple[str, str]:
  return ("loss_train", "loss_test") if "loss_train" in c else ("train_loss", "test_loss")


def _label(wd: Workdir, run: int) -> str:
  try:
    return wd.label(run)
  except (KeyError, StopIteration, TypeError, ValueError):
    return f"run {run}"


def _wide(values) -> bool:
  """Whether the positive λ̂ span more than two decades (it falls by orders of magnitude between
  a memorising and a grokked model): then the axis is logarithmic."""
  v = np.asarray(values, float)
  pos = v[np.isfinite(v) & (v > 0)]
  return bool(pos.size) and pos.max() > 100 * pos.min()


def _llc_axis(ax, c, tr: dict | None, color: str = "C3", label: str = "LLC",
              log: bool = False) -> None:
  ok = c["llc"].notna()
  e, y, s = c["epoch"][ok], c["llc"][ok], c["llc_std"][ok].fillna(0)
  if log:
    ax.set_yscale("log")
    pos = y > 0
    ax.plot(e[pos], y[pos], "o-", color=color, ms=2.5, lw=1.2, label=label)
    lo = np.where(y - s > 0, y - s, y / 2)
    ax.fill_between(e[pos], lo[pos], (y + s)[pos], color=color, alpha=0.25, lw=0)
    if (~pos).any():  # a log axis cannot show them: marked at its bottom, values in the legend
      bottom = float(y[pos].min()) / 3
      ax.plot(e[~pos], np.full((~pos).sum(), bottom), "v", color=color, ms=6,
              label="λ̂ ≤ 0 (" + ", ".join(f"epoch {int(a)}: {b:.3g}"
                                          for a, b in zip(e[~pos][:3], y[~pos][:3])) + ")")
  else:
    ax.plot(e, y, "o-", color=color, ms=2.5, lw=1.2, label=label)
    ax.fill_between(e, y - s, y + s, color=color, alpha=0.25, lw=0)
    if (y < 0).any():
      # λ̂ < 0: the chains found lower loss than w* (the checkpoint is not a minimum of the
      # training loss at this nβ, e.g. while it still learns or where weight decay holds it
      # off one). Such values can dwarf the rest: a symmetric log axis keeps both readable.
      ax.axhline(0, color="0.5", lw=0.6)
      big, small = float(np.abs(y).max()), float(np.abs(y[y != 0]).min())
      if big > 100 * small:
        ax.set_yscale("symlog", linthresh=max(small, big / 1e4))
      ax.plot([], [], " ", label="λ̂ < 0: chains found lower loss than the checkpoint's")
  if tr is not None and "healthy" in tr:
    bad = tr["epoch"][~tr["healthy"].astype(bool)]
    sel = c[c["epoch"].isin(bad) & ok & ((c["llc"] > 0) | (not log))]
    if len(sel):
      ax.plot(sel["epoch"], sel["llc"], "x", color="k", ms=5,
              label="unhealthy trace (llc.trace_health)")


def _settings_text(tr: dict | None) -> str:
  if tr is None or "settings" not in tr:
    return ""
  import json
  s = json.loads(str(tr["settings"]))
  nb = "n/log n" if s.get("nbeta") is None else f"{s['nbeta']:g}"
  nbeta = f" = {float(np.median(tr['nbeta'])):.0f}" if "nbeta" in tr else ""
  return (f"ε {s['epsilon']:g}, γ {s['gamma']:g}, nβ {nb}{nbeta}, {s['num_chains']} chains × "
          f"{s['num_draws']} draws (+{s['num_burnin']} burn-in), batch {s['batch_size']}")


def fig_llc(wd: Workdir, run: int | None = None) -> Figure:
  """One run's LLC below its losses, phases shaded (modular tasks)."""
  run = _main(wd) if run is None else run
  c = wd.curve(run)
  tr = _traces(wd, run)
  final = wd.final(run) or {}
  phases = final.get("phases")
  fig, ax = _fig(2, 1, w=7.5, h=3.2, sharex=True)
  top, bot = ax[0, 0], ax[1, 0]
  shade_phases(top, phases, legend=True)
  shade_phases(bot, phases)
  tr_col, te_col = _loss_columns(c)
  top.plot(c["epoch"], c[tr_col], color="C0", label="train")
  top.plot(c["epoch"], c[te_col], color="C1", label="test")
  extra = [(k, lab, col) for k, lab, col in (
      ("restricted_loss_all", "restricted (all)", "C2"),
      ("excluded_loss_train", "excluded (train)", "C4")) if k in c]
  groups = [k for k in c.columns if k.startswith("test_loss_")]
  extra += [(k, f"test {k[len('test_loss_'):]}", _color(5 + j)) for j, k in enumerate(groups)]
  for k, lab, col in extra:
    top.plot(c["epoch"], c[k], color=col, lw=1.0, ls="--" if k in groups else "-", label=lab)
  top.set_yscale("log")
  top.set_ylabel("loss")
  top.legend(fontsize=7, ncol=2)
  _llc_axis(bot, c, tr, log=_wide(c["llc"]))
  bot.set_xlabel("epoch")
  bot.set_ylabel("local learning coefficient λ̂")
  bot.legend(fontsize=7)
  bot.set_title(_settings_text(tr), fontsize=8)
  title = f"LLC over training, run {run} ({_label(wd, run)})"
  if phases:
    title += f"; phases {_phase_str(phases)}"
  top.set_title(title, fontsize=10)
  return fig


def fig_llc_runs(wd: Workdir) -> Figure:
  """Every run's test loss (top) and LLC (bottom)."""
  runs = llc_runs(wd)
  if len(runs) < 2:
    raise Skip("fewer than two runs with an LLC")
  fig, ax = _fig(2, 1, w=7.5, h=3.2, sharex=True)
  log = _wide(np.concatenate([wd.curve(r)["llc"].to_numpy(float) for r in runs[:20]]))
  for j, run in enumerate(runs[:20]):
    c = wd.curve(run)
    lab = _label(wd, run)
    ax[0, 0].plot(c["epoch"], c[_loss_columns(c)[1]], color=_color(j), lw=1.0, label=lab)
    _llc_axis(ax[1, 0], c, None, color=_color(j), label=lab, log=log)
  ax[0, 0].set(yscale="log", ylabel="test loss")
  ax[0, 0].legend(fontsize=6, ncol=2)
  ax[1, 0].set(xlabel="epoch", ylabel="LLC λ̂")
  ax[0, 0].set_title(f"LLC of every run ({len(runs)} runs"
                     + (", the first 20 shown" if len(runs) > 20 else "") + ")", fontsize=10)
  return fig


FIGURES = (
    FigureSpec("llc", fig_llc, "Beyond the paper: the local learning coefficient (SGLD) of "
               "every checkpoint beside the losses, phases shaded (modular tasks)"),
    FigureSpec("llc_runs", fig_llc_runs, "Beyond the paper: the LLC of every run of the sweep"),
)


# ----------------------------------------------------------------------------- calibration

def calibration_figure(rec: dict) -> Figure:
  """The (ε, nβ) grid of one checkpoint (a record of llc_analysis.calibrate_workdir with the
  burn-in kept in loss_trace; see experiments/llc_calibrate.py)."""
  eps, nbs = np.asarray(rec["epsilon"]), np.asarray(rec["nbeta"])
  E, B = len(eps), len(nbs)
  trace = np.asarray(rec["loss_trace"])            # (E, B, C, burnin + draws)
  burn = int(rec["settings"]["num_burnin"])
  base = float(rec["loss_init"])
  fig = Figure(figsize=(2.6 * B + 4.6, 1.9 * E + 0.8), layout="constrained")
  gs = fig.add_gridspec(E, B + 2)
  steps = np.arange(trace.shape[-1])
  for a in range(E):
    for b in range(B):
      ax = fig.add_subplot(gs[a, b])
      with np.errstate(invalid="ignore", divide="ignore"):
        y = nbs[b] * (trace[a, b] - base)     # the per-step estimate nβ (L_t − L(w*))
      for ch in range(y.shape[0]):
        ax.plot(steps, y[ch], lw=0.6, color=_color(ch))
      ax.axvspan(0, burn, color="0.9", lw=0, zorder=0)
      ax.axhline(float(rec["llc_mean"][a, b]), color="k", lw=0.8, ls="--")
      ok = bool(rec["healthy"][a, b])
      flags = [] if ok else [n for n, v in (("nonfinite", rec["frac_nonfinite"][a, b] > 0),
                                             ("negative", rec["frac_negative"][a, b] > 0),
                                             ("drift", abs(rec["drift"][a, b]) >= 0.2)) if v]
      lbar = f", L̄ {rec['mean_loss'][a, b]:.2g}" if "mean_loss" in rec else ""
      ax.set_title(f"ε {eps[a]:.0e}, nβ {nbs[b]:.0f}: λ̂ {rec['llc_mean'][a, b]:.3g}{lbar}"
                   + ("" if ok else f"\n[{', '.join(flags)}]"),
                   fontsize=7, color="k" if ok else "C3")
      ax.tick_params(labelsize=6)
      finite = y[np.isfinite(y)]
      if finite.size:
        lo, hi = np.percentile(finite, [1, 99])
        pad = 0.1 * (hi - lo + 1e-12)
        ax.set_ylim(lo - pad, hi + pad)
      if a == E - 1:
        ax.set_xlabel("SGLD step", fontsize=7)
      if b == 0:
        ax.set_ylabel("nβ·(L_t − L(w*))", fontsize=7)
  ax = fig.add_subplot(gs[:, B:])
  for b in range(B):
    m, s = np.asarray(rec["llc_mean"])[:, b], np.asarray(rec["llc_std"])[:, b]
    healthy = np.asarray(rec["healthy"])[:, b].astype(bool)
    ax.errorbar(eps, m, yerr=s, color=_color(b), marker="o", ms=4, capsize=2,
                label=f"nβ {nbs[b]:.0f}" + (" (n/log n)" if np.isclose(
                    nbs[b], rec.get("default_nbeta", np.nan), rtol=1e-4) else ""))
    ax.plot(eps[~healthy], m[~healthy], "x", color="k", ms=8)
  ax.plot([], [], "x", color="k", label="unhealthy (trace_health)")
  ax.set_xscale("log")
  means = np.asarray(rec["llc_mean"], float)
  means = means[np.isfinite(means)]
  pos = means[means > 0]
  if pos.size and pos.max() > 20 * pos.min():   # an unstable cell would flatten the rest
    if (means <= 0).any():
      ax.set_yscale("symlog", linthresh=float(pos.min()))
    else:
      ax.set_yscale("log")
  ax.set_xlabel("ε (SGLD step size)")
  ax.set_ylabel("λ̂ (mean ± sd over chains)")
  ax.legend(fontsize=7)
  s = rec["settings"]
  chance = f" (chance {rec['chance_loss']:.3g})" if "chance_loss" in rec else ""
  ax.set_title(f"run {rec['run']}, epoch {rec['epoch']}: n {rec['n']}, L(w*) {base:.3g}{chance}"
               f"; L̄: mean draw loss\n"
               f"γ {s['gamma']:g}, {s['num_chains']} chains, {s['num_draws']} draws after "
               f"{burn} burn-in (grey), batch {s['batch_size']}", fontsize=8)
  return fig
