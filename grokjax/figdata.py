"""A read-only view of a workdir for figures and the report (plain files only, no training code).

Reads `config.json`, `sweep.json`, `metrics.jsonl` and, when `experiments.analyze` has run,
`analysis/run_{i:04d}.csv`, `run_{i:04d}_final.json`, `run_{i:04d}_final.npz`, `summary.csv`.
Everything missing reads as None, so callers can say what they skip and why.
"""
from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from grokjax import paper, phases, results
from grokjax.config import AXIS_NAMES

ANALYSIS = results.ANALYSIS


class Workdir:
  """Lazy, cached loaders of one workdir's files."""

  def __init__(self, path: str):
    self.path = path

  def _p(self, *parts: str) -> str:
    return os.path.join(self.path, *parts)

  # --- sweep-level files -------------------------------------------------------------------

  @functools.cached_property
  def config(self) -> dict[str, Any]:
    with open(self._p("config.json")) as f:
      return json.load(f)

  @property
  def p(self) -> int:
    return int(self.config["p"])

  @functools.cached_property
  def runs(self) -> list[dict[str, Any]]:
    with open(self._p("sweep.json")) as f:
      return json.load(f)["runs"]

  def run_info(self, run: int) -> dict[str, Any]:
    return next(r for r in self.runs if r["run"] == run)

  def label(self, run: int, keys: tuple[str, ...] | None = None) -> str:
    """'seed 0, λ 1, frac 0.3' (the default keys), plus any other axis that varies in the sweep
    (dropout, L1, ...), so that no two runs of a sweep share a label."""
    if keys is None:
      base = ("seed", "weight_decay", "frac_train")
      keys = base + tuple(a for a in self.varying_axes() if a not in base)
    r = self.run_info(run)
    short = dict(seed="seed", weight_decay="λ", frac_train="frac", split_seed="split", lr="lr",
                 dropout="dropout", l1="L1", grokfast_alpha="α", grokfast_lamb="λ_gf")
    return ", ".join(f"{short.get(k, k)} {r[k]:g}" for k in keys if k in r)

  def varying_axes(self) -> tuple[str, ...]:
    """The swept axes (config.AXES order) whose value differs between the runs."""
    return tuple(a for a in AXIS_NAMES if len({r.get(a) for r in self.runs}) > 1)

  def run_label(self, run: int) -> str:
    """The run's values of the varying axes, or 'run i' for a one-run sweep."""
    keys = self.varying_axes()
    return self.label(run, keys) if keys else f"run {run}"

  @functools.cached_property
  def metrics(self) -> pd.DataFrame | None:
    """metrics.jsonl as a DataFrame (null -> NaN), or None when absent or empty."""
    from grokjax.results import read_metrics_rows  # plain-file loader, no training code
    rows = read_metrics_rows(self.path)
    if not rows:
      return None
    df = pd.DataFrame(rows)
    for c in ("train_loss", "test_loss", "train_acc", "test_acc"):
      if c in df:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    # The final evaluation row repeats the last epoch: keep one row per (run, epoch).
    df = df.drop_duplicates(["run", "epoch"], keep="last")
    return df.sort_values(["run", "epoch"]).reset_index(drop=True)

  def run_metrics(self, run: int) -> pd.DataFrame:
    m = self.metrics
    return m[m["run"] == run] if m is not None else pd.DataFrame()

  def groups(self, by: tuple[str, ...] = ("weight_decay", "frac_train")) -> dict[tuple, list[int]]:
    """Runs grouped by the swept values in `by` (the other axes, e.g. seeds, are replicates)."""
    out: dict[tuple, list[int]] = {}
    for r in self.runs:
      out.setdefault(tuple(r[k] for k in by), []).append(r["run"])
    return dict(sorted(out.items()))

  def values(self, key: str) -> list[float]:
    return sorted({r[key] for r in self.runs})

  def main_group(self) -> list[int]:
    """The runs of the setting closest to the paper's mainline (λ=1, frac 0.3) among the
    settings where some run generalised (test loss < 1e-2); any setting if none did."""
    def dist(k):
      wd, frac = k
      return (abs(math.log((wd + 1e-3) / 1.001)), abs(frac - 0.3))
    groups = self.groups()
    grokked = set()
    if self.metrics is not None:
      t = self.grok_table()
      grokked = set(t.loc[t["grokked"].notna(), "run"])
    ok = [k for k, runs in groups.items() if grokked & set(runs)]
    return groups[min(ok or groups, key=dist)]

  def is_mainline(self, run: int) -> bool:
    r = self.run_info(run)
    m = self.config.get("model", {})
    return (self.p == 113 and math.isclose(r["weight_decay"], 1.0)
            and math.isclose(r["frac_train"], 0.3) and m.get("d_model", 128) == 128
            and m.get("num_layers", 1) == 1)

  # --- analysis files ----------------------------------------------------------------------

  def _analysis(self, name: str) -> str:
    return self._p(ANALYSIS, name)

  def analysed_runs(self) -> list[int]:
    return [r["run"] for r in self.runs
            if os.path.exists(self._analysis(f"run_{r['run']:04d}_final.json"))]

  @functools.lru_cache(maxsize=None)
  def curve(self, run: int) -> pd.DataFrame | None:
    path = self._analysis(f"run_{run:04d}.csv")
    return pd.read_csv(path).sort_values("epoch") if os.path.exists(path) else None

  @functools.lru_cache(maxsize=None)
  def final(self, run: int) -> dict[str, Any] | None:
    path = self._analysis(f"run_{run:04d}_final.json")
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return json.load(f)

  @functools.lru_cache(maxsize=None)
  def final_arrays(self, run: int) -> dict[str, np.ndarray] | None:
    path = self._analysis(f"run_{run:04d}_final.npz")
    if not os.path.exists(path):
      return None
    with np.load(path) as z:
      return {k: z[k] for k in z.files}

  @functools.cached_property
  def summary(self) -> pd.DataFrame | None:
    path = self._analysis("summary.csv")
    return pd.read_csv(path) if os.path.exists(path) else None

  def main_run(self) -> int | None:
    """The analysed run shown in single-model figures: in the main group, the first analysed
    run that generalised, else its first analysed run, else the first analysed run."""
    analysed = self.analysed_runs()
    if not analysed:
      return None
    main = [r for r in self.main_group() if r in analysed]
    if self.metrics is not None:
      grokked = [r for r in main if self.first_below(r, "test_loss", paper.GROK_THRESH)
                 is not None]
      main = grokked or main
    return (main or analysed)[0]

  # --- derived quantities --------------------------------------------------------------------

  def first_below(self, run: int, column: str, thresh: float) -> int | None:
    m = self.run_metrics(run)
    if m.empty or column not in m:
      return None
    return paper.first_below(m["epoch"].to_numpy(), m[column].to_numpy(), thresh)

  def last_epoch(self, run: int) -> int | None:
    m = self.run_metrics(run)
    return int(m["epoch"].max()) if not m.empty else None

  def grok_table(self, thresh: float = paper.GROK_THRESH) -> pd.DataFrame:
    """One row per run: its swept values, the epochs at which train and test loss first fall
    below `thresh`,
    their ratio, the phase ("never", "grokking", "immediate"; see paper.GROK_RATIO), and the
    train-loss spikes after generalising (after memorising if the run never generalises)."""
    rows = []
    for r in self.runs:
      i = r["run"]
      tr, te = self.first_below(i, "train_loss", thresh), self.first_below(i, "test_loss", thresh)
      ratio = te / max(tr, 1) if (te is not None and tr is not None) else math.nan
      phase = ("never" if te is None else
               "grokking" if ratio >= paper.GROK_RATIO else "immediate")
      m = self.run_metrics(i)
      spikes = [] if m.empty else phases.late_spikes(m["epoch"], m["train_loss"],
                                                     m["test_loss"], thresh)
      row = dict(run=i, **{a: r[a] for a in AXIS_NAMES if a in r})  # every swept value
      row.update(seed=r["seed"], weight_decay=r["weight_decay"],
                 frac_train=r["frac_train"], split_seed=r.get("split_seed", 0),
                 memorized=tr, grokked=te, ratio=ratio, phase=phase,
                 last_epoch=self.last_epoch(i), spikes=spikes)
      rows.append(row)
    return pd.DataFrame(rows)

  def phase_grid(self, thresh: float = paper.GROK_THRESH) -> pd.DataFrame:
    """One row per (weight_decay, frac_train): `grok_cells` over those two axes."""
    return self.grok_cells(("weight_decay", "frac_train"), thresh)

  def grok_cells(self, by: tuple[str, ...],
                 thresh: float = paper.GROK_THRESH) -> pd.DataFrame:
    """One row per combination of the swept values in `by` (the runs that share it, e.g.
    seeds, are replicates): runs, how many generalised, the mean grok epoch and mean ratio over
    the runs that did (NaN when none did), and the cell's phase ("never" when no run
    generalised, else by the mean ratio)."""
    t = self.grok_table(thresh)
    rows = []
    for key, g in t.groupby(list(by)):
      ok = g["grokked"].dropna()
      ratio = float(g["ratio"].mean()) if len(ok) else math.nan
      phase = ("never" if not len(ok) else
               "grokking" if ratio >= paper.GROK_RATIO else "immediate")
      rows.append(dict(zip(by, key), n=len(g), n_grokked=len(ok),
                       mean_grok=float(ok.mean()) if len(ok) else math.nan,
                       mean_ratio=ratio, phase=phase, last_epoch=int(g["last_epoch"].max())))
    return pd.DataFrame(rows)
