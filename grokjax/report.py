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
from typing import Any, Callable, Sequence

import numpy as np

from grokjax import figures, paper, phases, plotting, report_tasks
from grokjax.config import AXIS_NAMES, MODULAR_TASKS, SEQUENCE_TASKS, ConfigError
from grokjax.figdata import Workdir
from grokjax.report_tables import (  # noqa: F401 (the tables are part of this module's API)
    fmt, grok_markdown, halted_runs, md_table, mlp_cell, pct, phase_grid_markdown, run_cell,
    spikes_text, table1_markdown, table2_markdown, table3_markdown, table4_markdown,
    table5_markdown, table6_markdown)


def is_modular(task: str) -> bool:
  return task in MODULAR_TASKS

FIG_DIR, MANIFEST, REPORT = "figures", "manifest.json", "report.md"
log = logging.getLogger("grokjax.report")


# --- figures ------------------------------------------------------------------------------------

def render_figures(workdir: str, dpi: int = 110, specs=None,
                   echo: Callable[[str], None] = print,
                   only: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Saves every supported figure to WORKDIR/figures/NAME.png; returns and writes the manifest
  (one entry per figure: name, caption, file or the reason it was skipped).

  `only`: draw just these figures (names as in the manifest); the others keep their entries of
  the last full drawing (and their files), or are listed as not drawn."""
  wd = Workdir(workdir)
  specs = figures.specs(wd) if specs is None else specs
  if only is not None:
    unknown = sorted(set(only) - {s.name for s in specs})
    if unknown:
      raise ConfigError(f"--figures: no figure {', '.join(unknown)}; the figures: "
                        + ", ".join(s.name for s in specs))
  out = os.path.join(workdir, FIG_DIR)
  os.makedirs(out, exist_ok=True)
  old = {}
  if only is not None and os.path.exists(os.path.join(out, MANIFEST)):
    with open(os.path.join(out, MANIFEST)) as f:
      old = {e["name"]: e for e in json.load(f)}
  manifest = []
  for spec in specs:
    if only is not None and spec.name not in only:
      kept = old.get(spec.name)
      if kept is None or ("file" in kept and not os.path.exists(os.path.join(workdir,
                                                                             kept["file"]))):
        kept = dict(name=spec.name, caption=spec.caption, skipped="not drawn (--figures)")
      manifest.append(kept)
      continue
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
        f"{fmt(f.get('gini_W_E'), 2)} / {mlp_cell(f, fmt(f.get('gini_W_L'), 2))}", note)
    add("Sum of squared weights", fmt(paper.SUM_SQ_WEIGHTS.value, 4), paper.SUM_SQ_WEIGHTS.source,
        fmt(f.get("sum_sq_weights"), 4), note)
    fve = f.get("neuron_fve")
    add("Neurons with single-frequency FVE > 0.85", pct(paper.NEURON_FVE_FRAC.value),
        paper.NEURON_FVE_FRAC.source,
        mlp_cell(f, pct(np.mean(np.asarray(fve, float) > 0.85)) if fve else "—"), note)
    add("Table 1 FVE (mean over cos/sin rows)", pct(np.mean(paper.TABLE1_FVE.value)),
        paper.TABLE1_FVE.source, mlp_cell(f, pct(f.get("table1_fve_mean"))), note)
    add("Logit FVE by Σ α_k cos(w_k(a+b−c))", pct(paper.LOGIT_FVE.value), paper.LOGIT_FVE.source,
        pct(f.get("logit_fve")), note)
    res = f.get("W_L_residual_ratio")
    add("W_L residual outside key frequencies: squared-norm ratio ‖W_L − P W_L‖²/‖W_L‖² "
        "(compared with the paper); norm ratio beside it", "< 0.55 %", paper.W_L_RESIDUAL.source,
        mlp_cell(f, f"{pct(None if res is None else res ** 2)} squared; {pct(res)} norm"),
        note + "; the paper's ratio is compared with the squared form: the authors' own λ = 0.1 "
        "weights give 9.96 % as a norm ratio and ≈ 1 % squared (SPEC §3.12), and only the "
        "squared form is of the paper's order (which one the paper meant is UNVERIFIED)")
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


def _status_lines(wd: Workdir) -> list[str]:
  """Report paragraphs for an unfinished sweep and for halted runs (empty when neither)."""
  out = []
  prog = _progress(wd)
  if not prog.finished:
    text = prog.text()
    out += [f"**Unfinished.** {text[0].upper() + text[1:]}: the analysis and every final "
            f"value below are from epoch {fmt(prog.trained)}, not from the end of training.", ""]
  skipped = [r for r in wd.analysed_runs() if (wd.final(r) or {}).get("skipped")]
  if skipped:
    sk = wd.final(skipped[0])["skipped"]
    out += [f"**Measures skipped.** Run(s) {', '.join(map(str, skipped))}: {sk['reason']}: not "
            f"computed: {', '.join(sk['measures'])}; their key frequencies come from W_E's "
            "Fourier spectrum (SPEC §3.4 rule 3).", ""]
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
            "### Table 6", "", "Final MLP skip connection zero- or mean-ablated in the logits "
            "(the residual after attention replaced by 0 or by its mean over inputs; the MLP "
            "still reads it); loss and accuracy on all p² pairs.", "", table6_markdown(wd), "",
            "### Grokking phase diagram", "",
            "Epoch at which test loss first falls below 1e-2 (mean over the runs of a cell that "
            "got there), the phase and the mean delay ratio (grok epoch / epoch of train loss "
            "< 1e-2).", "", phase_grid_markdown(wd), "",
            "### Grokking per run", "",
            "Phase: *never* (test loss never < 1e-2), *grokking* (test loss < 1e-2 at least "
            f"×{paper.GROK_RATIO:g} later than train loss; calibrated on the authors' "
            "data-fraction sweep, SPEC §5.2), *immediate* (otherwise). Spikes: the logged train "
            f"loss rising above {phases.SPIKE_FACTOR:g}× its minimum over the previous "
            f"{phases.SPIKE_WINDOW} epochs (and above {phases.SPIKE_FLOOR:g}) after the test loss reached 1e-2 (after the train loss did, "
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
