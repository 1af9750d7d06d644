"""Figures across several workdirs of a suite (`grokjax/suite.py`), keyed by kind:

  * `width_scan`: the no-weight-decay width scan (d_model 8…1024; a width is a shape, so each
    is its own sweep): final train / test loss against d_model, and the test-loss curves, with
    the authors' scan (`no_wd_width_scan`, SPEC §5.1) overlaid;
  * `loss_precision`: the float32 / float64 / float32_stable study (`plotting_precision.py`);
  * `regularisers`: Fig 28, dropout and L1 runs, a panel per setting (with its weight decay,
    if any), and a table of their grokking epochs and Gini coefficients beside the paper's claims;
  * `frac_thresholds`: Fig 21 pooled over several data-fraction sweeps of one (p, λ) (a sweep
    pads every run to its largest training set, so a CPU suite splits the fractions in two).

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
  fracs = sorted({f for w in wds for f in w.config["sweep"]["frac_train"]})
  fig.suptitle(f"No weight decay: width scan, grokjax frac {', '.join(map(str, fracs))} (authors' "
               f"runs: {ref[ds[0]].source}; their frac and seed were not stored)", fontsize=10)
  return fig


def _regulariser(r: dict) -> str:
  """'dropout 0.2', 'L1 0.0001', or 'λ 1' (weight decay alone) for a run of sweep.json; a
  dropout or L1 run that keeps a weight decay says so ('dropout 0.2 + λ 1'): the paper's
  "replaced" may or may not mean λ = 0 (SPEC §2), and the two readings are separate panels."""
  lam = f"λ {r['weight_decay']:g}"
  for key, name in (("dropout", "dropout"), ("l1", "L1")):
    if r.get(key):
      return f"{name} {r[key]:g}" + (f" + {lam}" if r["weight_decay"] else "")
  return lam


def _regulariser_runs(paths: list[str]) -> dict[str, list[tuple[Workdir, dict]]]:
  groups: dict[str, list[tuple[Workdir, dict]]] = {}
  for p in paths:
    wd = Workdir(p)
    if wd.metrics is None:
      continue
    for r in wd.runs:
      groups.setdefault(_regulariser(r), []).append((wd, r))
  if not groups:
    raise Skip("no metrics in any workdir of the regulariser study yet")
  return groups


def fig_regularisers(paths: list[str]) -> Figure:
  """Fig 28: one panel per regulariser setting (dropout rate, L1 coefficient), each seed's train
  (solid) and test (dashed) loss."""
  groups = _regulariser_runs(paths)
  cols = min(3, len(groups))
  rows = -(-len(groups) // cols)
  fig, ax = plotting._fig(rows, cols, w=4.2, h=3.4, sharey=True)
  for a in ax.flat[len(groups):]:
    a.set_visible(False)
  for a, (name, runs) in zip(ax.flat, groups.items()):
    for i, (wd, r) in enumerate(runs):
      m = wd.run_metrics(r["run"])
      c = plotting._color(i)
      a.plot(m["epoch"], m["train_loss"], ls=TRAIN, color=c, lw=1.0, label=f"seed {r['seed']}")
      a.plot(m["epoch"], m["test_loss"], ls=TEST, color=c, lw=1.0)
    plotting._loss_axes(a, name if "λ" in name else f"{name} (λ = 0)")
    a.legend(fontsize=6)
  fig.suptitle("Fig 28: other regularisers; train solid, test dashed", fontsize=10)
  return fig


def regularisers_table(paths: list[str]) -> str:
  """Markdown: per run its regulariser, the epochs of train / test loss < 1e-2, the last test
  accuracy and the final Gini coefficients (when analysed), beside the paper's claim."""
  from grokjax.report_tables import fmt, md_table, pct
  rows = []
  for name, runs in _regulariser_runs(paths).items():
    for wd, r in runs:
      g = wd.grok_table().set_index("run").loc[r["run"]]
      m = wd.run_metrics(r["run"]).sort_values("epoch")
      f = wd.final(r["run"]) or {}
      claim = (f"{paper.TABLE5_KINDS['dropout']} (Table 5)" if r.get("dropout") else
               "L1 never groks (Fig 28)" if r.get("l1") else "")
      rows.append([name, r["seed"], fmt(g["memorized"]),
                   fmt(g["grokked"]) if g["grokked"] is not None and g["grokked"] == g["grokked"]
                   else f"never (≤ {fmt(g['last_epoch'])})",
                   pct(float(m["test_acc"].iloc[-1])), fmt(f.get("gini_W_E"), 2),
                   fmt(f.get("gini_W_L"), 2), claim])
  return md_table(["regulariser", "seed", "train < 1e-2", "test < 1e-2", "last test acc",
                   "Gini(W_E)", "Gini(W_L)", "paper (SPEC §2, §4.2 [PAPER])"], rows)


SUITE_FIGURES: dict[str, tuple[Callable[[list[str]], Figure], str]] = {
    "width_scan": (fig_width_scan, "No-weight-decay width scan: loss against d_model, the "
                   "authors' scan overlaid"),
    "loss_precision": (plotting_precision.fig_loss_precision_multi,
                       "App. D.2: float32 vs float64 vs float32_stable loss from one init"),
    "regularisers": (fig_regularisers, "Fig 28: dropout and L1 instead of weight decay"),
    "frac_thresholds": (lambda paths: plotting.frac_thresholds([Workdir(p) for p in paths]),
                        "Fig 21 across sweeps: epochs to loss < 1e-6 per data fraction"),
}

# Tables drawn under a suite figure of the same kind: kind -> (workdir paths -> markdown).
SUITE_TABLES: dict[str, Callable[[list[str]], str]] = {
    "loss_precision": plotting_precision.precision_table,
    "regularisers": regularisers_table,
}
