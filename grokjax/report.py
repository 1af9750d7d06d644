"""Figures on disk, Markdown tables and `report.md`: one page with every figure the workdir
supports and a "paper vs grokjax" table whose paper numbers each cite their source.

Reads plain workdir files only (through `figdata`); never imports training code.
"""
from __future__ import annotations

import datetime
import json
import logging
import math
import os
from typing import Any, Callable

import numpy as np

from grokjax import figures, paper, phases, plotting, report_tasks
from grokjax.config import AXIS_NAMES, MODULAR_TASKS, SEQUENCE_TASKS
from grokjax.figdata import Workdir


def is_modular(task: str) -> bool:
  return task in MODULAR_TASKS

FIG_DIR, MANIFEST, REPORT = "figures", "manifest.json", "report.md"
log = logging.getLogger("grokjax.report")


# --- figures ------------------------------------------------------------------------------------

def render_figures(workdir: str, dpi: int = 110, specs=None,
                   echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Saves every supported figure to WORKDIR/figures/NAME.png; returns and writes the manifest
  (one entry per figure: name, caption, file or the reason it was skipped)."""
  wd = Workdir(workdir)
  specs = figures.specs(wd) if specs is None else specs
  out = os.path.join(workdir, FIG_DIR)
  os.makedirs(out, exist_ok=True)
  manifest = []
  for spec in specs:
    entry = dict(name=spec.name, caption=spec.caption)
    try:
      fig = spec.func(wd)
    except plotting.Skip as e:
      entry["skipped"] = str(e)
      echo(f"skip {spec.name}: {e}")
    else:
      path = os.path.join(out, spec.name + ".png")
      fig.savefig(path, dpi=dpi)
      entry["file"] = os.path.join(FIG_DIR, spec.name + ".png")
      echo(f"wrote {path}")
    stale = os.path.join(out, spec.name + ".png")
    if "file" not in entry and os.path.exists(stale):  # left by an earlier, richer state
      os.remove(stale)
    manifest.append(entry)
  with open(os.path.join(out, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


# --- Markdown helpers ---------------------------------------------------------------------------

def md_table(header: list[str], rows: list[list[Any]]) -> str:
  esc = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
  return "\n".join(lines)


def fmt(x: Any, digits: int = 3) -> str:
  """Readable numbers: epochs as integers with thin spaces, losses in scientific notation."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "—"
  if isinstance(x, (list, tuple)):
    return "{" + ", ".join(fmt(v, digits) for v in x) + "}"
  x = float(x)
  if x.is_integer() and abs(x) < 1e7 or 1e3 <= abs(x) < 1e7:
    return f"{x:,.0f}".replace(",", " ")
  if x == 0 or 1e-3 <= abs(x) < 1e3:
    return f"{x:.{digits}g}"
  return f"{x:.{digits - 1}e}"


def pct(x: Any) -> str:
  return "—" if x is None else f"{100 * float(x):.1f} %"


# --- tables ---------------------------------------------------------------------------------------

def table1_markdown(wd: Workdir, run: int | None = None) -> str:
  """Table 1: FVE of u_kᵀMLP and v_kᵀMLP by one cos/sin(w_k(a+b)), with the paper's mainline."""
  run = wd.main_run() if run is None else run
  f = wd.final(run) if run is not None else None
  if not f or not f.get("table1_fve"):
    return "_Table 1 skipped: no analysed run with `table1_fve`._"
  paper_rows = dict(zip([(k, t) for k in paper.KEY_FREQS.value for t in ("cos", "sin")],
                        paper.TABLE1_FVE.value))
  rows = [[r["k"], r["kind"], pct(r["fve"])] for r in f["table1_fve"]]
  ours = md_table(["k", "component", "FVE (grokjax)"], rows)
  ref = md_table(["k", "component", "FVE (paper)"],
                 [[k, t, pct(v)] for (k, t), v in paper_rows.items()])
  return (f"Run {run} ({wd.label(run)}), key frequencies {f.get('key_freqs')}:\n\n{ours}\n\n"
          f"Paper, mainline model ({paper.TABLE1_FVE.source}); key frequencies depend on the "
          f"initialisation, so rows match by position only:\n\n{ref}")


def table2_markdown(wd: Workdir, run: int | None = None) -> str:
  """Table 2: each head's attention `=`→a as one wave, and its score lookup C_h fitted by one
  wave α cos(w_k t) + β sin(w_k t) (SPEC §3.14)."""
  run = wd.main_run() if run is None else run
  f = wd.final(run) if run is not None else None
  if not f or not f.get("attention_fits"):
    return "_Table 2 skipped: no analysed run with `attention_fits`._"
  rows = [[a["head"], a["freq"], pct(a["fve"]), a.get("score_freq", "—"),
           fmt(a.get("score_cos")), fmt(a.get("score_sin")), pct(a.get("score_fve"))]
          for a in f["attention_fits"]]
  ours = md_table(["head", "k (pattern)", "pattern FVE", "k (score C_h)", "α (cos)", "β (sin)",
                   "score FVE"], rows)
  ref = md_table(["head", "k", "FVE (paper)"],
                 [[h, k, pct(v)] for h, k, v in paper.TABLE2_ATTENTION.value])
  return (f"Run {run} ({wd.label(run)}):\n\n{ours}\n\nPaper, mainline model "
          f"({paper.TABLE2_ATTENTION.source}); frequencies depend on the initialisation:\n\n{ref}")


def _other_runs(wd: Workdir) -> list[int]:
  """Analysed runs other than the main one (the paper's 'other seeds')."""
  main = wd.main_run()
  return [r for r in wd.analysed_runs() if r != main]


def table3_markdown(wd: Workdir) -> str:
  """Table 3: the Table-1 FVEs (u_kᵀMLP, v_kᵀMLP by one cos/sin(w_k(a+b))) of every other run."""
  runs = [r for r in _other_runs(wd) if (wd.final(r) or {}).get("table1_fve")]
  if not runs:
    return "_Table 3 skipped: no analysed run besides the main one._"
  rows = []
  for run in runs:
    by_k: dict[int, dict[str, float]] = {}
    for e in wd.final(run)["table1_fve"]:
      by_k.setdefault(e["k"], {})[e["kind"]] = e["fve"]
    rows += [[run, wd.label(run), k, pct(v.get("cos")), pct(v.get("sin"))]
             for k, v in sorted(by_k.items())]
  return md_table(["run", "setting", "k", "FVE cos", "FVE sin"], rows)


def table4_markdown(wd: Workdir) -> str:
  """Table 4: test loss, with the key frequencies removed (excluded) and with only them kept
  (restricted), per analysed run (SPEC §3.13; the paper's values were not recovered)."""
  runs = wd.analysed_runs()
  if not runs:
    return "_Table 4 skipped: no analysed runs._"
  halted = halted_runs(wd)
  rows = [[run_cell(run, halted), wd.label(run), f.get("key_freqs"), fmt(f.get("loss_test")),
           fmt(f.get("excluded_loss_test")), fmt(f.get("restricted_loss_test"))]
          for run in runs for f in [wd.final(run)]]
  return md_table(["run", "setting", "key freqs", "test loss", "key freqs removed",
                   "only key freqs kept"], rows)


def table5_markdown(wd: Workdir) -> str:
  """Table 5 for every analysed run, with the paper's row for the same data fraction."""
  runs = wd.analysed_runs()
  if not runs:
    return "_Table 5 skipped: no analysed runs._"
  rows, halted = [], halted_runs(wd)
  for run in runs:
    f, r = wd.final(run), wd.run_info(run)
    ref = ""
    t5 = paper.TABLE5_FRAC.get(round(r["frac_train"], 3))
    if t5 and wd.p == 113 and math.isclose(r["weight_decay"], 1.0):
      ref = (f"Gini {t5[0]:.2f}/{t5[1]:.2f}, key {t5[2]}, logit FVE {pct(t5[3])}, "
             f"MLP FVE {pct(t5[4])} [{100 * t5[5]:.1f}]")
    mlp = (f"{pct(f.get('mlp_fve_mean'))} [{100 * f['mlp_fve_std']:.1f}]"
           if f.get("mlp_fve_std") is not None else pct(f.get("mlp_fve_mean")))
    rows.append([run_cell(run, halted), r["seed"], fmt(r["weight_decay"]),
                 fmt(r["frac_train"]), fmt(f.get("loss_test")), fmt(f.get("gini_W_E"), 2),
                 fmt(f.get("gini_W_L"), 2), f.get("key_freqs"), pct(f.get("logit_fve")), mlp, ref])
  header = ["run", "seed", "λ", "frac", "test loss", "Gini(W_E)", "Gini(W_L)", "key freqs",
            "logit FVE", "MLP FVE [sd]", f"paper, same fraction ({paper.TABLE5_SOURCE})"]
  if not any(r[-1] for r in rows):  # no run has the paper's setting (p = 113, λ = 1)
    header, rows = header[:-1], [r[:-1] for r in rows]
  return md_table(header, rows)


def spikes_text(spikes: list[tuple[int, float]], most: int = 4) -> str:
  """'26 690 (0.016), 30 150 (0.21)' for [(epoch, peak train loss)]; '—' for none."""
  if not spikes:
    return "—"
  text = ", ".join(f"{fmt(e)} ({fmt(x, 2)})" for e, x in spikes[:most])
  return text + (f", +{len(spikes) - most} more" if len(spikes) > most else "")


def grok_markdown(wd: Workdir) -> str:
  """Per run: epochs of train and test loss < 1e-2, their ratio, the phase and late spikes."""
  if wd.metrics is None:
    return "_No metrics yet._"
  t = wd.grok_table()
  halted = halted_runs(wd)
  rows = [[run_cell(r.run, halted), r.seed, fmt(r.weight_decay), fmt(r.frac_train),
           fmt(r.memorized),
           fmt(r.grokked) if r.grokked is not None and math.isfinite(r.grokked)
           else f"never (≤ {fmt(r.last_epoch)})", f"{r.ratio:.1f}" if math.isfinite(r.ratio) else "—", r.phase,
           spikes_text(r.spikes)]
          for r in t.itertuples()]
  return md_table(["run", "seed", "λ", "frac", "train loss < 1e-2", "test loss < 1e-2",
                   "ratio", "phase", "train-loss spikes after that: epoch (peak)"], rows)


def phase_grid_markdown(wd: Workdir) -> str:
  """The phase diagram as a table: λ rows × data-fraction columns, mean grok epoch and phase."""
  if wd.metrics is None:
    return "_No metrics yet._"
  g = wd.phase_grid()
  fracs = sorted(g["frac_train"].unique())
  rows = []
  for wdv, sub in g.groupby("weight_decay"):
    cells = {r["frac_train"]: r for _, r in sub.iterrows()}
    row = [f"λ = {wdv:g}"]
    for f in fracs:
      r = cells.get(f)
      if r is None:
        row.append("")
      elif not math.isfinite(r["mean_grok"]):
        row.append(f"never (≤ {fmt(r['last_epoch'])})")
      else:
        part = "" if r["n_grokked"] == r["n"] else f", {r['n_grokked']}/{r['n']} runs"
        row.append(f"{fmt(r['mean_grok'])} ({r['phase']}, ×{r['mean_ratio']:.1f}{part})")
    rows.append(row)
  return md_table(["weight decay"] + [f"frac {f:g}" for f in fracs], rows)


# --- paper vs grokjax -----------------------------------------------------------------------------

def _main_stats(wd: Workdir) -> dict[str, Any]:
  runs = wd.main_group()
  r0 = wd.run_info(runs[0])
  setting = f"p={wd.p}, λ={r0['weight_decay']:g}, frac={r0['frac_train']:g}, {len(runs)} run(s)"
  t = wd.grok_table().set_index("run").loc[runs]
  groks = [g for g in t["grokked"] if g is not None and math.isfinite(g)]
  mems = [m for m in t["memorized"] if m is not None and math.isfinite(m)]
  last = [wd.run_metrics(r).iloc[-1] for r in runs if not wd.run_metrics(r).empty]
  return dict(runs=runs, setting=setting, groks=groks, mems=mems, n=len(runs), last=last)


def _mean_of(vals: list[float], n: int, digits: int = 3) -> str:
  if not vals:
    return "never"
  s = fmt(float(np.mean(vals)), digits)
  if len(vals) > 1:
    s += f" (mean; {', '.join(fmt(v) for v in vals)})"
  if len(vals) < n:
    s += f"; {n - len(vals)} of {n} never"
  return s


def comparison_rows(wd: Workdir) -> list[list[str]]:
  """Rows of [quantity, paper, source, grokjax, grokjax setting / note]."""
  rows: list[list[str]] = []
  if wd.metrics is None:
    return rows
  s = _main_stats(wd)
  add = lambda q, pv, src, ours, note=s["setting"]: rows.append([q, pv, src, ours, note])
  m = paper.mainline_curves()
  add("Memorization epoch (train loss first < 1e-2)",
      fmt(paper.first_below(m["epochs"], m["train_loss"], 1e-2)),
      "SPEC §5.3 [NB-OUT] (100-epoch resolution)", _mean_of(s["mems"], s["n"]))
  add("Grokking epoch (test loss first < 1e-2)", fmt(paper.GROK_EPOCH.value),
      paper.GROK_EPOCH.source, _mean_of(s["groks"], s["n"]))
  if s["last"]:
    tr = [float(x["train_loss"]) for x in s["last"]]
    te = [float(x["test_loss"]) for x in s["last"]]
    ep = int(max(x["epoch"] for x in s["last"]))
    add("Final train / test loss", f"{fmt(paper.TRAIN_LOSS.value)} / {fmt(paper.TEST_LOSS.value)}",
        paper.TRAIN_LOSS.source, f"{fmt(np.mean(tr))} / {fmt(np.mean(te))} (epoch {fmt(ep)}, "
        "114-way training loss)")
    spikes = wd.grok_table().set_index("run").loc[s["runs"], "spikes"]
    ours = "; ".join(f"run {r}: {spikes_text(v, most=3)}" for r, v in spikes.items())
    dtype = wd.config.get("train", {}).get("loss_dtype", "float64")
    add("Train-loss spikes after grokking (float64 loss)", paper.LATE_SPIKES.value,
        paper.LATE_SPIKES.source, ours,
        s["setting"] + f", {dtype} loss, to epoch {fmt(ep)} (init-dependent: docs/gallery)")
  run = wd.main_run()
  f = wd.final(run) if run is not None else None
  if f:
    note = f"run {run} ({wd.label(run)}), epoch {fmt(f.get('epoch'))}"
    ph = f.get("phases") or {}
    add("Phase ends: memorization / circuit formation / cleanup",
        " / ".join(fmt(x) for x in paper.PHASES.value), paper.PHASES.source,
        " / ".join(fmt(ph.get(k)) for k in ("memorization_end", "circuit_formation_end",
                                            "cleanup_end")), note)
    add("Key frequencies", fmt(paper.KEY_FREQS.value), paper.KEY_FREQS.source,
        fmt(f.get("key_freqs")), note + " (init-dependent: compare the count)")
    add("Loss on all p² pairs (113-way)", fmt(paper.LOSS_ALL.value), paper.LOSS_ALL.source,
        fmt(f.get("loss_all")), note)
    add("Restricted loss (all pairs)", fmt(paper.RESTRICTED_LOSS.value),
        paper.RESTRICTED_LOSS.source, fmt(f.get("restricted_loss_all")), note)
    add("Excluded loss (train)", fmt(paper.EXCLUDED_LOSS.value), paper.EXCLUDED_LOSS.source,
        fmt(f.get("excluded_loss_train")), note)
    add("Gini(W_E) / Gini(W_L)", "—", paper.GINI_NOTE,
        f"{fmt(f.get('gini_W_E'), 2)} / {fmt(f.get('gini_W_L'), 2)}", note)
    add("Sum of squared weights", fmt(paper.SUM_SQ_WEIGHTS.value, 4), paper.SUM_SQ_WEIGHTS.source,
        fmt(f.get("sum_sq_weights"), 4), note)
    fve = f.get("neuron_fve")
    add("Neurons with single-frequency FVE > 0.85", pct(paper.NEURON_FVE_FRAC.value),
        paper.NEURON_FVE_FRAC.source,
        pct(np.mean(np.asarray(fve, float) > 0.85)) if fve else "—", note)
    add("Table 1 FVE (mean over cos/sin rows)", pct(np.mean(paper.TABLE1_FVE.value)),
        paper.TABLE1_FVE.source, pct(f.get("table1_fve_mean")), note)
    add("Logit FVE by Σ α_k cos(w_k(a+b−c))", pct(paper.LOGIT_FVE.value), paper.LOGIT_FVE.source,
        pct(f.get("logit_fve")), note)
    add("W_L residual outside key frequencies", "< 0.55 %", paper.W_L_RESIDUAL.source,
        pct(f.get("W_L_residual_ratio")), note)
  rows += _sweep_rows(wd)
  return rows


def _sweep_rows(wd: Workdir) -> list[list[str]]:
  rows = []
  grid = wd.phase_grid()
  main = wd.run_info(wd.main_group()[0])
  def cell(r) -> str:
    if not math.isfinite(r["mean_grok"]):
      return f"never (≤ {fmt(r['last_epoch'])})"
    part = "" if r["n_grokked"] == r["n"] else f"{r['n_grokked']}/{r['n']} runs, "
    return f"{fmt(r['mean_grok'])} ({part}{r['phase']})"

  fr = grid[grid["weight_decay"] == main["weight_decay"]]
  if len(fr) > 1:
    note = f"p={wd.p}, λ={main['weight_decay']:g}; phase: grokking if delay ≥ ×{paper.GROK_RATIO:g}"
    rows.append(["Data-fraction phase boundary", paper.FRAC_BOUNDARY.value,
                 paper.FRAC_BOUNDARY.source,
                 "; ".join(f"{r['frac_train']:g}: {r['phase']}" for _, r in fr.iterrows()), note])
    ref = paper.frac_sweep_epochs()
    rows.append(["Grokking epoch per data fraction (test loss < 1e-2)",
                 "; ".join(f"{k:g}: {fmt(v['test'])}" for k, v in sorted(ref.items())),
                 "SPEC §5.2 [DATA] (authors' saved sweep)",
                 "; ".join(f"{r['frac_train']:g}: {cell(r)}" for _, r in fr.iterrows()), note])
  wg = grid[grid["frac_train"] == main["frac_train"]]
  if len(wg) > 1:
    note = f"p={wd.p}, frac={main['frac_train']:g}"
    rows.append(["Grokking epoch per weight decay (test loss < 1e-2)",
                 f"{paper.WD_TEXT.value}; λ=0.1: {fmt(paper.WD01_GROK.value)}",
                 f"{paper.WD_TEXT.source}; {paper.WD01_GROK.source}",
                 "; ".join(f"λ={r['weight_decay']:g}: {cell(r)}" for _, r in wg.iterrows()),
                 note])
  zero = grid[grid["weight_decay"] == 0]
  if len(zero):
    excl = []  # final excluded loss (train) of the analysed λ = 0 runs, against their train loss
    for run in wd.analysed_runs():
      f = wd.final(run) or {}
      if wd.run_info(run)["weight_decay"] == 0 and f.get("excluded_loss_train") is not None:
        excl.append(f"run {run}: excluded {fmt(f['excluded_loss_train'])} vs train "
                    f"{fmt(f.get('loss_train'))} at epoch {fmt(f.get('epoch'))}")
    rows.append(["No weight decay (λ = 0)", paper.NO_WD_TEXT.value, paper.NO_WD_TEXT.source,
                 "; ".join([f"frac {r['frac_train']:g}: {cell(r)}" for _, r in zero.iterrows()]
                           + excl), f"p={wd.p}"])
  if wd.p == 53:
    rows.append(["P = 53", paper.P53_TEXT.value, paper.P53_TEXT.source,
                 "; ".join(f"λ={r['weight_decay']:g}, frac {r['frac_train']:g}: {cell(r)}"
                           for _, r in grid.iterrows()), "p=53"])
  return rows


# --- the report -----------------------------------------------------------------------------------

def _progress(wd: Workdir):
  from grokjax import results  # plain files only (config.json, metrics, directory listing)
  return results.progress(wd.path)


def halted_runs(wd: Workdir) -> dict[int, int]:
  """{run: epoch of its first non-finite loss} for the runs that halted."""
  from grokjax import results
  if wd.metrics is None or "halted_at" not in wd.metrics:
    return {}
  return results.halted_runs(wd.metrics[["run", "halted_at"]].dropna().astype(int)
                             .to_dict("records"))


def run_cell(run: int, halted: dict[int, int]) -> str:
  """A table's run column: the index, and the halt epoch of a halted run."""
  return f"{run} (halted at {fmt(halted[run])})" if run in halted else str(run)


def _status_lines(wd: Workdir) -> list[str]:
  """Report paragraphs for an unfinished sweep and for halted runs (empty when neither)."""
  out = []
  prog = _progress(wd)
  if not prog.finished:
    text = prog.text()
    out += [f"**Unfinished.** {text[0].upper() + text[1:]}: the analysis and every final "
            f"value below are from epoch {fmt(prog.trained)}, not from the end of training.", ""]
  for run, epoch in sorted(halted_runs(wd).items()):
    out += [f"**Halted run.** Run {run} ({wd.label(run)}) halted at epoch {fmt(epoch)}: its "
            "loss became non-finite, its parameters are frozen there and its numbers describe "
            "the frozen model.", ""]
  return out


def _setting(wd: Workdir) -> str:
  c = wd.config
  m, t, sw = c.get("model", {}), c.get("train", {}), c.get("sweep", {})
  task = c.get("task", "add")
  if is_modular(task):
    data = f"task {task}, p = {wd.p}"
  else:
    n = c.get("num_data", 0)
    data = (f"task {task}, n_ctx = {m.get('n_ctx')}, "
            + (f"{n} fixed training examples" if n else
               f"infinite data (batch {c.get('batch_size')})"))
  block = "attention-only" if m.get("use_mlp") is False else f"d_mlp = {m.get('d_mlp')}"
  swept = ", ".join(f"{k} {v[0] if len(v) == 1 else v}" for k in AXIS_NAMES
                    if (v := sw.get(k)))
  return (f"{data}, d_model = {m.get('d_model')}, heads = {m.get('num_heads')}, {block}, "
          f"layers = {m.get('num_layers')}, {_progress(wd).text()}, loss in "
          f"{t.get('loss_dtype')}; swept: {swept} ({len(wd.runs)} runs)")


def _task_comparison(wd: Workdir) -> list[str]:
  """The paper-vs-grokjax section of a sequence-task workdir."""
  c = wd.config
  finite = c.get("num_data", 0) > 0
  _, source, claim = paper.TASK_RUNS[(c["task"], finite)]
  rows = report_tasks.task_rows(wd)
  out = ["## Paper vs grokjax", "",
         f"The paper: {claim}. The authors' curve of the same task and data regime is "
         f"`reference_data/{paper.TASK_RUNS[(c['task'], finite)][0]}` ({source}); grokjax cells "
         f"list each run ({report_tasks.run_legend(wd)}). Epochs/steps are first evaluated "
         f"ones (every {c['train'].get('eval_every')}).", ""]
  if c["task"] == "skip_trigram":
    out += ["The skip-trigram sequence length, batch size and widths are grokjax's choices: "
            "the paper gives none (SPEC §2).", ""]
  out += [md_table(["quantity", "authors", "source", "grokjax"], rows)
          if rows else "_No metrics yet: nothing to compare._", ""]
  return out


def build_report(workdir: str, manifest: list[dict[str, Any]] | None = None) -> str:
  """The Markdown of report.md; references only figure files that exist."""
  wd = Workdir(workdir)
  if manifest is None:
    path = os.path.join(workdir, FIG_DIR, MANIFEST)
    manifest = json.load(open(path)) if os.path.exists(path) else []
  parts = [f"# grokjax report: `{os.path.basename(os.path.abspath(workdir))}`", "",
           f"Generated {datetime.date.today().isoformat()} from the workdir's plain files. "
           "Reimplementation of Nanda et al., *Progress measures for grokking via mechanistic "
           "interpretability* (ICLR 2023).", "", f"**Setting.** {_setting(wd)}.", ""]
  parts += _status_lines(wd)
  if wd.config.get("task") in SEQUENCE_TASKS:
    figures, skipped = _figures(workdir, manifest)
    return "\n".join(parts + _task_comparison(wd) + figures + _not_drawn(skipped))
  parts += ["## Paper vs grokjax", "",
            "Paper numbers cite the team SPEC section and its evidence tag ([PAPER] paper text, "
            "[PAPER*] paper text via verbatim quotations, [NB-OUT] saved outputs of the authors' "
            "notebook, [DATA] the authors' saved runs). The paper's mainline is p = 113, λ = 1, "
            "30 % of pairs, 40k epochs; a grokjax value from another setting is not expected "
            "to match.", ""]
  rows = comparison_rows(wd)
  parts += [md_table(["quantity", "paper", "paper source", "grokjax", "grokjax setting / note"],
                     rows) if rows else "_No metrics yet: nothing to compare._", ""]
  figures, skipped = _figures(workdir, manifest)
  parts += figures
  parts += ["## Tables", "", "### Table 1", "", table1_markdown(wd), "",
            "### Table 2", "", table2_markdown(wd), "",
            "### Table 3 (other runs)", "", table3_markdown(wd), "",
            "### Table 4", "", "The paper's Table 4 values were not recovered (SPEC §8).", "",
            table4_markdown(wd), "",
            "### Table 5", "", table5_markdown(wd), "",
            "### Grokking phase diagram", "",
            "Epoch at which test loss first falls below 1e-2 (mean over the runs of a cell that "
            "got there), the phase and the mean delay ratio (grok epoch / epoch of train loss "
            "< 1e-2).", "", phase_grid_markdown(wd), "",
            "### Grokking per run", "",
            "Phase: *never* (test loss never < 1e-2), *grokking* (test loss < 1e-2 at least "
            f"×{paper.GROK_RATIO:g} later than train loss; calibrated on the authors' "
            "data-fraction sweep, SPEC §5.2), *immediate* (otherwise). Spikes: the logged train "
            f"loss rising above {phases.SPIKE_FACTOR:g}× its running minimum (and above "
            f"{phases.SPIKE_FLOOR:g}) after the test loss reached 1e-2 (after the train loss did, "
            "for runs that never generalise) — slingshot-like instabilities (App. D.2); "
            f"excursions within {phases.SPIKE_GAP} epochs count once.", "", grok_markdown(wd), ""]
  return "\n".join(parts + _not_drawn(skipped))


def _figures(workdir: str, manifest: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
  """The report's figure sections, and the manifest entries that were not drawn."""
  parts, skipped = ["## Figures", ""], []
  for e in manifest:
    f = e.get("file")
    if f and os.path.exists(os.path.join(workdir, f)):
      parts += [f"### {e['caption']}", "", f"![{e['name']}]({f})", ""]
    else:
      skipped.append(e)
  return parts, skipped


def _not_drawn(skipped: list[dict]) -> list[str]:
  if not skipped:
    return []
  return (["## Figures not drawn", ""]
          + [f"- {e['caption']}: {e.get('skipped', 'file missing')}" for e in skipped] + [""])


def write_report(workdir: str, manifest: list[dict[str, Any]] | None = None) -> str:
  path = os.path.join(workdir, REPORT)
  text = build_report(workdir, manifest)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path
