"""Grokfast figures and their table, from synthetic workdirs in the sweep/analysis file formats."""
import itertools
import json
import os

import numpy as np
import pytest
from matplotlib.figure import Figure

import synthetic_workdir
from grokjax import figdata, figures, plotting, plotting_grokfast as pg


def G(lam, lr):
  return 800 / (1 + lam) / (lr / 1e-3) ** 0.5 + 25 * np.log(999)


def make(path, alphas=(0.9, 0.98), lambs=(0.0, 1.0, 2.0), lrs=(1e-3, 2e-3, 3e-3),
         grokfast="ema", epochs=1000, analysis=True):
  """Test losses drop at 800 / (1 + λ) / (lr / 1e-3)^0.5 and cross 1e-2 at `G` (λ = 0 runs are
  plain AdamW)."""
  os.makedirs(path, exist_ok=True)
  p = 11
  synthetic_workdir.make(path, p=p, epochs=epochs, seeds=(0,), wds=(1.0,), fracs=(0.3,),
                         analysis=False)
  with open(os.path.join(path, "config.json")) as f:
    cfg = json.load(f)
  cfg["train"]["grokfast"] = grokfast
  sweep = dict(grokfast_lamb=list(lambs), lr=list(lrs))
  if grokfast == "ema":
    sweep["grokfast_alpha"] = list(alphas)
  else:
    alphas = (None,)
  cfg["sweep"].update(sweep)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f)
  runs, rows, grok_at = [], [], {}
  e = np.arange(0, epochs + 1, 10)
  for i, (lr, a, lam) in enumerate(itertools.product(lrs, alphas, lambs)):
    r = dict(run=i, seed=0, weight_decay=1.0, frac_train=0.3, split_seed=0, lr=lr,
             dropout=0.0, l1=0.0, grokfast_lamb=lam, n_train=36, split_fingerprint="0" * 16)
    if a is not None:
      r["grokfast_alpha"] = a
    runs.append(r)
    g = 800 / (1 + lam) / (lr / 1e-3) ** 0.5
    grok_at[i] = g
    test = 10 * synthetic_workdir._sigmoid(-(e - g) / 25) + 1e-7
    for j, ep in enumerate(e):
      rows.append(dict(r, epoch=int(ep), train_loss=float(4 * np.exp(-ep / 40) + 1e-7),
                       test_loss=float(test[j]), train_acc=1.0,
                       test_acc=float(np.exp(-test[j])), halted_at=-1))
  with open(os.path.join(path, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  if analysis:
    synthetic_workdir._analysis(path, p, 16, 4, epochs, runs, grok_at)
  return figdata.Workdir(path)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
  return make(str(tmp_path_factory.mktemp("grid")))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  return figdata.Workdir(synthetic_workdir.make(str(tmp_path_factory.mktemp("plain")),
                                                wds=(1.0,), analysis=False))


@pytest.mark.parametrize("spec", pg.FIGURES, ids=lambda s: s.name)
def test_every_figure_renders_and_skips_plain_sweeps(grid, plain, spec, tmp_path):
  fig = spec.func(grid)
  assert isinstance(fig, Figure) and fig.axes
  fig.savefig(tmp_path / "f.png", dpi=40)
  assert (tmp_path / "f.png").stat().st_size > 1000
  with pytest.raises(plotting.Skip, match="not a Grokfast sweep"):
    spec.func(plain)


def test_table_pairs_each_run_with_its_plain_and_lr_scaled_runs(grid):
  t = pg.grokfast_table(grid).set_index("run")
  runs = {r["run"]: r for r in grid.runs}
  for i, row in t.iterrows():
    r = runs[i]
    plain = runs[row["plain_run"]]
    assert plain["grokfast_lamb"] == 0 and plain["lr"] == r["lr"]
    assert abs(row["grok"] - G(r["grokfast_lamb"], r["lr"])) <= 10
    scaled_lr = r["lr"] * (1 + r["grokfast_lamb"])
    if any(np.isclose(scaled_lr, q["lr"]) for q in grid.runs):
      assert np.isclose(runs[row["scaled_run"]]["lr"], scaled_lr)
      assert runs[row["scaled_run"]]["grokfast_lamb"] == 0
      assert row["speedup_scaled_grok"] == pytest.approx(row["scaled_grok"] / row["grok"])
    else:
      assert np.isnan(row["speedup_scaled_grok"])
  # λ 2 at lr 1e-3 vs λ 0 at lr 3e-3 (its lr-scaled baseline, in the same sweep).
  row = t[(t.lamb == 2.0) & np.isclose(t.lr, 1e-3)].iloc[0]
  assert row["speedup_scaled_grok"] == pytest.approx(G(0, 3e-3) / G(2, 1e-3), rel=0.05)
  assert row["speedup_plain_grok"] == pytest.approx(G(0, 1e-3) / G(2, 1e-3), rel=0.05)
  assert row["circuit_formation_end"] is not None


def test_baseline_from_another_workdir(tmp_path):
  gf = make(str(tmp_path / "gf"), lambs=(0.0, 2.0), lrs=(1e-3,), analysis=False)
  base = make(str(tmp_path / "base"), lambs=(0.0,), lrs=(3e-3,), analysis=False)
  t = pg.grokfast_table(gf, baseline=base)
  row = t[t.lamb == 2.0].iloc[0]
  assert row["scaled_from"] == base.path and row["scaled_run"] == 0
  assert row["speedup_scaled_grok"] == pytest.approx(G(0, 3e-3) / G(2, 1e-3), rel=0.05)
  assert np.isnan(pg.grokfast_table(gf)["speedup_scaled_grok"][t.lamb == 2.0].iloc[0])


def test_ma_sweep_curves_and_progress_but_no_heatmap(tmp_path):
  wd = make(str(tmp_path / "ma"), grokfast="ma", lambs=(0.0, 5.0), lrs=(1e-3,))
  assert pg.fig_grokfast_curves(wd).axes and pg.fig_grokfast_progress(wd).axes
  with pytest.raises(plotting.Skip, match="EMA"):
    pg.fig_grokfast_heatmap(wd)


def test_progress_measures_only_for_addition(tmp_path):
  wd = make(str(tmp_path / "mul"), lambs=(0.0, 2.0), lrs=(1e-3,))
  with open(os.path.join(wd.path, "config.json")) as f:
    cfg = json.load(f)
  cfg["task"] = "multiply"
  with open(os.path.join(wd.path, "config.json"), "w") as f:
    json.dump(cfg, f)
  wd = figdata.Workdir(wd.path)
  with pytest.raises(plotting.Skip, match="addition"):
    pg.fig_grokfast_progress(wd)
  assert pg.fig_grokfast_curves(wd).axes


def test_registered_in_the_report(grid):
  names = [s.name for s in figures.specs(grid)]
  assert {"grokfast_curves", "grokfast_heatmap", "grokfast_progress"} <= set(names)
