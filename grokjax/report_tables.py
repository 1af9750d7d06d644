"""The report's Markdown tables: the paper's Tables 1–6 for a workdir's analysed runs, the
per-run grokking table and the phase grid, and the number formats they share.

Reads plain workdir files only (through `figdata`); never imports training code.
"""
from __future__ import annotations

import math
from typing import Any

from grokjax import paper
from grokjax.figdata import Workdir


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
  """Table 5 for every analysed run, with the paper's row for the same data fraction (p = 113,
  λ = 1) or the range of its rows of the same kind (2-layer, dropout, the unnamed k ≤ 26 rows
  beside P = 53)."""
  runs = wd.analysed_runs()
  if not runs:
    return "_Table 5 skipped: no analysed runs._"
  rows, halted = [], halted_runs(wd)
  layers = wd.config.get("model", {}).get("num_layers", 1)
  for run in runs:
    f, r = wd.final(run), wd.run_info(run)
    ref = ""
    t5 = paper.TABLE5_FRAC.get(round(r["frac_train"], 3))
    if r.get("dropout", 0) > 0:
      ref = paper.TABLE5_KINDS["dropout"]
    elif layers == 2:
      ref = paper.TABLE5_KINDS["2-layer"]
    elif wd.p == 53:
      ref = paper.TABLE5_KINDS["p53"]
    elif t5 and wd.p == 113 and math.isclose(r["weight_decay"], 1.0):
      ref = (f"Gini {t5[0]:.2f}/{t5[1]:.2f}, key {t5[2]}, logit FVE {pct(t5[3])}, "
             f"MLP FVE {pct(t5[4])} [{100 * t5[5]:.1f}]")
    mlp = (f"{pct(f.get('mlp_fve_mean'))} [{100 * f['mlp_fve_std']:.1f}]"
           if f.get("mlp_fve_std") is not None else pct(f.get("mlp_fve_mean")))
    extra = tuple(k for k in ("dropout", "l1") if r.get(k))   # the other regularisers, if on
    rows.append([run_cell(run, halted), wd.label(run, ("seed", "weight_decay") + extra),
                 fmt(r["frac_train"]), fmt(f.get("loss_test")), fmt(f.get("gini_W_E"), 2),
                 mlp_cell(f, fmt(f.get("gini_W_L"), 2)), f.get("key_freqs"),
                 pct(f.get("logit_fve")), mlp_cell(f, mlp), ref])
  header = ["run", "setting", "frac", "test loss", "Gini(W_E)", "Gini(W_L)", "key freqs",
            "logit FVE", "MLP FVE [sd]", f"paper, same kind of model ({paper.TABLE5_SOURCE})"]
  if not any(r[-1] for r in rows):  # no run has a setting of the paper's table
    header, rows = header[:-1], [r[:-1] for r in rows]
  return md_table(header, rows)


def mlp_cell(f: dict[str, Any], text: str) -> str:
  """A cell of an MLP / W_L measure: the value, or why the run's analysis skipped it."""
  return "skipped (attention-only: no MLP)" if f.get("skipped") else text


def table6_markdown(wd: Workdir) -> str:
  """Table 6: loss and accuracy (all p² pairs) before and after zero- or mean-ablating the skip
  connection around the final MLP in the logits (SPEC §3.13, App. A.1), per analysed run."""
  runs = wd.analysed_runs()
  rows, halted, skipped = [], halted_runs(wd), []
  for run in runs:
    f = wd.final(run) or {}
    a = f.get("mlp_skip_ablation")
    if not a:
      skipped.append(str(run))
      continue
    rows.append([run_cell(run, halted), wd.label(run),
                 f"{fmt(f.get('loss_all'))}, {pct(f.get('acc_all'))}",
                 f"{fmt(a['zero_loss_all'])}, {pct(a['zero_acc_all'])}",
                 f"{fmt(a['mean_loss_all'])}, {pct(a['mean_acc_all'])}"])
  if not rows:
    return ("_Table 6 skipped: no analysed run has an MLP skip-connection ablation "
            "(attention-only models, or an analysis older than this version)._")
  ref = "; ".join(f"{k}: {v}" for k, v in paper.TABLE6.value.items())
  note = (f"\n\nRuns {', '.join(skipped)}: skipped (no MLP, or analysed by an older version)."
          if skipped else "")
  return (md_table(["run", "setting", "loss, accuracy", "skip zero-ablated",
                    "skip mean-ablated"], rows)
          + f"\n\nPaper ({paper.TABLE6.source}): {ref}." + note)


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


# --- runs -----------------------------------------------------------------------------------------

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
