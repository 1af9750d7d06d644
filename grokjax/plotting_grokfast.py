"""Grokfast figures (beyond the paper; issue 14), from a workdir's plain files.

* `fig_grokfast_curves`: test loss and test accuracy of every run of a Grokfast sweep.
* `fig_grokfast_heatmap`: epochs to grok (test loss < 1e-2) over (α, λ), one panel row per
  learning rate, and the speed-up against the plain run (λ = 0) and, where it was trained, the
  lr-scaled baseline (plain AdamW at lr·(1 + λ)). The cells are `figdata.Workdir.grok_cells`, drawn
  by `plotting.heat_cells` as the phase diagram is.
* `fig_grokfast_progress`: the progress measures (excluded and restricted loss, Gini of W_E and
  W_L) of a Grokfast run beside the plain run from the same init (and the lr-scaled one), with
  each run's phase boundaries: which phase does Grokfast shorten?

Each raises `plotting.Skip` when the workdir is not a Grokfast sweep (`--grokfast=none`) or lacks
what it needs. `grokfast_table` holds the numbers behind them; a baseline may come from another
workdir (a plain sweep over lr, e.g. grokfast_grid_baseline.flags):

    python -m grokjax.plotting_grokfast --workdir=runs/grokfast_grid \\
        --baseline=runs/grokfast_grid_baseline
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import paper
from grokjax.figdata import Workdir
from grokjax.plotting import (TEST, TRAIN, FigureSpec, Skip, _color, _fig, _need_metrics,
                              heat_cells)

ACC = 0.95                     # the Grokfast paper's criterion: 95 % test (validation) accuracy
PHASE_KEYS = ("memorization_end", "circuit_formation_end", "cleanup_end")
PHASE_SHORT = ("memorization", "circuit formation", "cleanup")
# Axes that identify "the same run but for the optimiser": the plain run of a Grokfast run
# shares these (and its lr), and has λ = 0.
SAME_RUN = ("seed", "weight_decay", "frac_train", "split_seed", "dropout", "l1")


def _need_grokfast(wd: Workdir) -> None:
  kind = wd.config.get("train", {}).get("grokfast", "none")
  if kind == "none":
    raise Skip("not a Grokfast sweep (--grokfast=none)")
  _need_metrics(wd)


def first_at_least(wd: Workdir, run: int, column: str, thresh: float) -> int | None:
  m = wd.run_metrics(run)
  if m.empty or column not in m:
    return None
  hit = np.nonzero(np.nan_to_num(m[column].to_numpy(float), nan=-np.inf) >= thresh)[0]
  return int(m["epoch"].to_numpy()[hit[0]]) if len(hit) else None


def _same(a: dict, b: dict, keys=SAME_RUN) -> bool:
  return all(math.isclose(float(a.get(k, 0)), float(b.get(k, 0))) for k in keys)


def _plain_of(runs: list[dict], r: dict, lr: float) -> dict | None:
  """The plain (λ = 0, or no Grokfast) run of `runs` that is run `r` but for the optimiser,
  at learning rate `lr`."""
  for q in runs:
    if (q.get("grokfast_lamb", 0.0) == 0 and _same(q, r)
        and math.isclose(q.get("lr", 1e-3), lr, rel_tol=1e-6)):
      return q
  return None


def grokfast_table(wd: Workdir, baseline: Workdir | None = None,
                   thresh: float = paper.GROK_THRESH, acc: float = ACC) -> pd.DataFrame:
  """One row per run: its α, λ, lr; the epochs at which test loss first falls below `thresh`
  (`grok`) and test accuracy first reaches `acc` (`acc_epoch`); the same for its plain run
  (λ = 0, same lr, init and data: `plain_grok`, `plain_acc`) and for its lr-scaled baseline
  (plain AdamW at lr·(1 + λ), from this workdir or else from `baseline`: `scaled_grok`,
  `scaled_acc`, `scaled_from`); the speed-ups (baseline epoch / this run's epoch) and, when
  `experiments.analyze` has run, the detected phase ends."""
  _need_grokfast(wd)
  rows = []
  for r in wd.runs:
    i, lr, lamb = r["run"], r.get("lr", 1e-3), r.get("grokfast_lamb", 0.0)
    row = dict(run=i, alpha=r.get("grokfast_alpha"), lamb=lamb, lr=lr,
               grok=wd.first_below(i, "test_loss", thresh),
               acc_epoch=first_at_least(wd, i, "test_acc", acc),
               last_epoch=wd.last_epoch(i))
    for name, q_wd, q in (("plain", wd, _plain_of(wd.runs, r, lr)),
                          ("scaled", *_scaled(wd, baseline, r))):
      row[f"{name}_run"] = None if q is None else q["run"]
      row[f"{name}_grok"] = None if q is None else q_wd.first_below(q["run"], "test_loss", thresh)
      row[f"{name}_acc"] = None if q is None else first_at_least(q_wd, q["run"], "test_acc", acc)
      if name == "scaled":
        row["scaled_from"] = None if q is None else ("this sweep" if q_wd is wd else q_wd.path)
    for name in ("plain", "scaled"):
      for what, col in (("grok", "grok"), ("acc", "acc_epoch")):
        a, b = row[f"{name}_{what}"], row[col]
        row[f"speedup_{name}_{what}"] = a / b if (a and b) else math.nan
    phases = (wd.final(i) or {}).get("phases") or {}
    row.update({k: phases.get(k) for k in PHASE_KEYS})
    rows.append(row)
  return pd.DataFrame(rows)


def _scaled(wd: Workdir, baseline: Workdir | None, r: dict) -> tuple[Workdir, dict | None]:
  lr = r.get("lr", 1e-3) * (1 + r.get("grokfast_lamb", 0.0))
  q = _plain_of(wd.runs, r, lr)
  if q is None and baseline is not None:
    return baseline, _plain_of(baseline.runs, r, lr)
  return wd, q


# --- figures ------------------------------------------------------------------------------------

def _style(wd: Workdir, run: int) -> tuple[str, str]:
  """Colour by λ, line style by the other varying axes (α, lr, ...)."""
  r = wd.run_info(run)
  lambs = wd.values("grokfast_lamb")
  others = [a for a in wd.varying_axes() if a != "grokfast_lamb"]
  combos = sorted({tuple(q.get(a) for a in others) for q in wd.runs})
  k = combos.index(tuple(r.get(a) for a in others))
  return _color(lambs.index(r["grokfast_lamb"])), ("-", "--", ":", "-.")[k % 4]


def fig_grokfast_curves(wd: Workdir) -> Figure:
  """Test loss (left) and test accuracy (right) of every run; train loss thin and faint."""
  _need_grokfast(wd)
  fig, ax = _fig(1, 2, w=5.6, h=4.0)
  for r in wd.runs:
    m = wd.run_metrics(r["run"])
    if m.empty:
      continue
    color, ls = _style(wd, r["run"])
    label = wd.run_label(r["run"])
    ax[0, 0].plot(m["epoch"], m["train_loss"], ls=ls, color=color, lw=0.6, alpha=0.35)
    ax[0, 0].plot(m["epoch"], m["test_loss"], ls=ls, color=color, lw=1.3, label=label)
    ax[0, 1].plot(m["epoch"], m["test_acc"], ls=ls, color=color, lw=1.3, label=label)
  ax[0, 0].axhline(paper.GROK_THRESH, color="0.5", lw=0.8, ls=":")
  ax[0, 0].set(yscale="log", xlabel="epoch", ylabel="loss",
               title=f"test loss (train: faint); dotted: {paper.GROK_THRESH:g}")
  ax[0, 1].axhline(ACC, color="0.5", lw=0.8, ls=":")
  ax[0, 1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1.02),
               title=f"test accuracy; dotted: {ACC:.0%}")
  for a in ax.flat:
    a.title.set_fontsize(10)
  ax[0, 1].legend(fontsize=7, ncol=1 + len(wd.runs) // 8)
  kind = wd.config["train"]["grokfast"].upper()
  fig.suptitle(f"Grokfast-{kind} sweep ({_setting(wd)}): colour = λ_gf, style = the other values",
               fontsize=11)
  return fig


def _setting(wd: Workdir) -> str:
  r = wd.runs[0]
  task = wd.config.get("task", "add")
  op = {"add": "+", "multiply": "·", "subtract": "−"}.get(task, f" {task} ")
  return (f"x{op}y mod {wd.p}, {r['frac_train']:.0%} of pairs, λ_wd={r['weight_decay']:g}, "
          f"seed {r['seed']}")


def fig_grokfast_heatmap(wd: Workdir, baseline: Workdir | None = None,
                         thresh: float = paper.GROK_THRESH) -> Figure:
  """Epoch of test loss < `thresh` over α × λ (one row of panels per lr), and the speed-up
  against the lr-scaled baseline where every cell has one, else against the plain run."""
  _need_grokfast(wd)
  if wd.config["train"]["grokfast"] != "ema":
    raise Skip("the (α, λ) heatmap needs Grokfast-EMA")
  alphas, lambs, lrs = wd.values("grokfast_alpha"), wd.values("grokfast_lamb"), wd.values("lr")
  if len(alphas) * len(lambs) < 2:
    raise Skip(f"needs at least 2 (α, λ) cells (workdir has α {alphas}, λ {lambs})")
  cells = wd.grok_cells(("lr", "grokfast_alpha", "grokfast_lamb"), thresh)
  t = grokfast_table(wd, baseline, thresh)
  scaled = bool(t["scaled_grok"].notna().all())
  vs = "scaled" if scaled else "plain"
  fig, ax = _fig(len(lrs), 2, w=0.9 * len(lambs) + 2.8, h=0.5 * len(alphas) + 2.2)
  for row, lr in enumerate(lrs):
    grok = np.full((len(alphas), len(lambs)), np.nan)
    speed = np.full_like(grok, np.nan)
    text1, text2 = {}, {}
    for _, c in cells[np.isclose(cells["lr"], lr)].iterrows():
      i, j = alphas.index(c["grokfast_alpha"]), lambs.index(c["grokfast_lamb"])
      runs = t[np.isclose(t["lr"], lr) & (t["alpha"] == c["grokfast_alpha"])
               & (t["lamb"] == c["grokfast_lamb"])]
      if not np.isfinite(c["mean_grok"]):
        text1[i, j] = text2[i, j] = f"never\n(≤{c['last_epoch']:g})"
        base = pd.to_numeric(runs[f"{vs}_grok"], errors="coerce").mean()
        if np.isfinite(base):   # it would grok after the run's end: an upper bound
          text2[i, j] = f"< ×{base / c['last_epoch']:.2f}\n({base:.0f})"
        continue
      grok[i, j] = c["mean_grok"]
      text1[i, j] = f"{c['mean_grok']:.0f}"
      s = float(runs[f"speedup_{vs}_grok"].mean())
      if np.isfinite(s):
        speed[i, j] = s
        base = runs[f"{vs}_grok"].iloc[0]
        text2[i, j] = f"×{s:.2f}\n({base:.0f})"
      else:
        text2[i, j] = "baseline\nnever"
    lr_txt = f", lr {lr:g}" if len(lrs) > 1 else ""
    xt, yt = [f"{x:g}" for x in lambs], [f"{a:g}" for a in alphas]
    heat_cells(fig, ax[row, 0], grok, text1, xt, yt, "Grokfast λ", "Grokfast α",
               f"epoch of test loss < {thresh:g}{lr_txt}", "viridis")
    heat_cells(fig, ax[row, 1], speed, text2, xt, yt, "Grokfast λ", "Grokfast α",
               ("speed-up vs plain AdamW at lr·(1+λ) (its epoch)" if scaled else
                "speed-up vs the plain run, λ = 0 (its epoch)") + lr_txt, "RdBu", center=1.0)
  fig.suptitle(f"Grokfast-EMA over (α, λ): {_setting(wd)}; grey = never within the run",
               fontsize=11)
  return fig


def _comparison_runs(wd: Workdir, baseline: Workdir | None = None):
  """(label, workdir, run) of the plain run, a Grokfast run (λ = 2 if swept, else the largest
  λ; the largest α; the smallest lr) and its lr-scaled baseline where one was trained."""
  t = grokfast_table(wd, baseline)
  lr0 = t["lr"].min()
  gf = t[(t["lamb"] > 0) & np.isclose(t["lr"], lr0)]
  if gf.empty or gf["plain_run"].isna().all():
    raise Skip("needs a Grokfast run (λ > 0) and its plain run (λ = 0, same lr)")
  lamb = 2.0 if (gf["lamb"] == 2.0).any() else gf["lamb"].max()
  gf = gf[gf["lamb"] == lamb]
  g = gf[gf["alpha"] == gf["alpha"].max()].iloc[0] if gf["alpha"].notna().any() else gf.iloc[0]
  alpha = "" if g["alpha"] is None or pd.isna(g["alpha"]) else f"α {g['alpha']:g}, "
  out = [(f"plain AdamW (lr {lr0:g})", wd, int(g["plain_run"])),
         (f"Grokfast ({alpha}λ {lamb:g}, lr {lr0:g})", wd, int(g["run"]))]
  if g["scaled_run"] is not None and not pd.isna(g["scaled_run"]):
    src = wd if g["scaled_from"] == "this sweep" else baseline
    out.append((f"plain AdamW, lr {lr0 * (1 + lamb):g} = (1+λ)·lr", src, int(g["scaled_run"])))
  return out


def fig_grokfast_progress(wd: Workdir, baseline: Workdir | None = None) -> Figure:
  """The progress measures of the plain run, a Grokfast run and the lr-scaled baseline from the
  same init, each with its phase ends (vertical lines: memorization end dotted, circuit
  formation end dashed, cleanup end solid)."""
  _need_grokfast(wd)
  if wd.config.get("task", "add") != "add":
    raise Skip(f"the progress measures follow addition's Fourier circuit (task "
               f"{wd.config.get('task')})")
  runs = _comparison_runs(wd, baseline)
  need = ("loss_train", "loss_test", "excluded_loss_train", "restricted_loss_all", "gini_W_L")
  curves = []
  for label, src, run in runs:
    c = src.curve(run)
    if c is None or any(k not in c for k in need):
      raise Skip(f"run {run} of {src.path}: no analysis csv with the progress measures "
                 "(run experiments.analyze)")
    curves.append((label, c, (src.final(run) or {}).get("phases") or {}))
  fig, ax = _fig(2, 2, w=5.4, h=3.5)
  panels = ((ax[0, 0], "train (thin) and test loss", ("loss_train", "loss_test"), True),
            (ax[0, 1], "excluded loss (train)", ("excluded_loss_train",), True),
            (ax[1, 0], "restricted loss (all pairs)", ("restricted_loss_all",), True),
            (ax[1, 1], "Gini of W_L (solid) and W_E (dashed) Fourier norms",
             ("gini_W_L", "gini_W_E"), False))
  xmax = max(float(c["epoch"].max()) for _, c, _ in curves)
  for a, title, cols, log in panels:
    for k, (label, c, ph) in enumerate(curves):
      for n, col in enumerate(cols):
        if col not in c:
          continue
        thin = col == "loss_train" or col == "gini_W_E"
        a.plot(c["epoch"], c[col], color=_color(k), lw=0.8 if thin else 1.4,
               ls=TEST if col == "gini_W_E" else TRAIN,
               label=label if n == len(cols) - 1 or col == "loss_test" else None)
      for key, ls in zip(PHASE_KEYS, (":", "--", "-")):
        if ph.get(key) is not None:
          a.axvline(ph[key], color=_color(k), ls=ls, lw=0.9, alpha=0.8)
    if log:
      a.set_yscale("log")
    a.set(xlabel="epoch", title=title, xlim=(0, xmax))
    a.title.set_fontsize(10)
  handles, labels = ax[0, 0].get_legend_handles_labels()
  ends = ["/".join("?" if ph.get(k) is None else f"{ph[k]:g}" for k in PHASE_KEYS)
          for _, _, ph in curves]
  ax[0, 0].legend(handles, [f"{l}\nphase ends {e}" for l, e in zip(labels, ends)], fontsize=7)
  fig.suptitle(f"Progress measures, {_setting(wd)}\nvertical lines: each run's phase ends "
               "(memorization dotted, circuit formation dashed, cleanup solid)", fontsize=10)
  return fig


FIGURES = (
    FigureSpec("grokfast_curves", fig_grokfast_curves,
               "Beyond the paper: test loss and accuracy of every run of a Grokfast sweep"),
    FigureSpec("grokfast_heatmap", fig_grokfast_heatmap,
               "Beyond the paper: epochs to grok over Grokfast (α, λ), and the speed-up"),
    FigureSpec("grokfast_progress", fig_grokfast_progress,
               "Beyond the paper: progress measures and phases, Grokfast vs plain AdamW"),
)


def _table_markdown(t: pd.DataFrame) -> str:
  cols = ["run", "alpha", "lamb", "lr", "grok", "acc_epoch", "plain_grok", "scaled_grok",
          "speedup_plain_grok", "speedup_scaled_grok", *PHASE_KEYS]
  fmt = lambda v: ("–" if v is None or (isinstance(v, float) and math.isnan(v)) else
                   f"{v:.3g}" if isinstance(v, float) and not float(v).is_integer() else
                   f"{v:g}" if isinstance(v, (int, float)) else str(v))
  out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for _, r in t.iterrows():
    out.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
  return "\n".join(out)


def main(argv: list[str]) -> int:
  """--workdir=D [--baseline=B] [--out=DIR] [--dpi=90]: the table (Markdown, stdout) and the
  three figures (DIR/grokfast_*.png, default D/figures)."""
  import argparse
  import os
  ap = argparse.ArgumentParser(prog="python -m grokjax.plotting_grokfast")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--baseline", default=None)
  ap.add_argument("--out", default=None)
  ap.add_argument("--dpi", type=int, default=90)
  args = ap.parse_args(argv)
  wd = Workdir(args.workdir)
  base = Workdir(args.baseline) if args.baseline else None
  print(_table_markdown(grokfast_table(wd, base)))
  out = args.out or os.path.join(args.workdir, "figures")
  os.makedirs(out, exist_ok=True)
  for spec in FIGURES:
    try:
      fig = (spec.func(wd) if spec.func is fig_grokfast_curves else spec.func(wd, base))
    except Skip as e:
      print(f"skip {spec.name}: {e}", file=sys.stderr)
      continue
    path = os.path.join(out, spec.name + ".png")
    fig.savefig(path, dpi=args.dpi)
    print(f"wrote {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
