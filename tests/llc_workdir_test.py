"""The LLC of every checkpoint of a workdir (grokjax/llc_analysis.py, experiments.analyze --llc).

Two tiny trained workdirs shared by the module: modular addition (p = 23, two seeds: the run
axis is vmapped; a hand-written stand-in for the modular analysis' table, to check the merge)
and a finite skip trigram (a sequence task: no modular analysis, its table comes from
metrics.jsonl). Tiny sampler settings: the numbers are not meaningful, the plumbing is.
"""
import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from grokjax import config, figdata, llc_analysis, plotting_llc, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dataclasses.replace(llc_analysis.DEFAULT, num_chains=2, num_draws=12, num_burnin=4,
                           batch_size=32, epsilon=1e-4)
CLI_TINY = ["--llc_chains=2", "--llc_draws=12", "--llc_burnin=4", "--llc_batch_size=32",
            "--llc_epsilon=1e-4"]
MODULAR_COLUMNS = ["epoch", "loss_train", "loss_test", "restricted_loss_all",
                   "excluded_loss_train", "excluded_loss_train_k3"]
quiet = lambda s: None


def _csv(wd, run=0):
  return pd.read_csv(os.path.join(wd, "analysis", f"run_{run:04d}.csv"))


@pytest.fixture(scope="module")
def modular(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("modular") / "w")
  cfg = config.make_config(p=23, d_model=32, num_heads=4, d_mlp=64, num_epochs=200,
                           checkpoint_every=100, seed=(0, 1))
  runner.run_sweep(cfg, wd, log=quiet)
  os.makedirs(os.path.join(wd, "analysis"))
  for run in (0, 1):  # what the modular analysis writes, in miniature
    pd.DataFrame({c: [0.5, 0.4, 0.3] if c != "epoch" else [0, 100, 200]
                  for c in MODULAR_COLUMNS}).to_csv(
        os.path.join(wd, "analysis", f"run_{run:04d}.csv"), index=False)
  out = llc_analysis.analyze_workdir(wd, TINY, log=quiet)
  return wd, out


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("sequence") / "w")
  cfg = config.make_config(task="skip_trigram", attn_only=True, d_model=16, num_heads=2,
                           n_ctx=6, num_data=64, eval_size=64, num_epochs=100,
                           checkpoint_every=50)
  runner.run_sweep(cfg, wd, log=quiet)
  proc = subprocess.run([sys.executable, "-m", "experiments.analyze", f"--workdir={wd}",
                         "--llc", *CLI_TINY], cwd=ROOT, capture_output=True, text=True)
  return wd, proc


def test_modular_columns_merged_into_the_analysis_table(modular):
  wd, out = modular
  assert out == dict(computed=6, reused=0, epochs=[0, 100, 200])
  for run in (0, 1):
    df = _csv(wd, run)
    assert list(df.columns) == MODULAR_COLUMNS + ["llc", "llc_std", "llc_loss_init"]
    assert list(df["epoch"]) == [0, 100, 200]
    assert np.all(df["loss_train"] == [0.5, 0.4, 0.3])       # the analysis' columns kept
    assert df["llc"].notna().all() and (df["llc_std"] >= 0).all()
    assert np.all(df["llc_loss_init"] > 0)
    with np.load(os.path.join(wd, "analysis", f"run_{run:04d}_llc_traces.npz")) as z:
      assert z["loss_trace"].shape == (3, 2, 12)
      assert list(z["epoch"]) == [0, 100, 200]
      np.testing.assert_allclose(z["llc"], df["llc"], rtol=1e-8)
  assert not np.allclose(_csv(wd, 0)["llc"], _csv(wd, 1)["llc"])  # two runs, two values


def test_rerun_computes_nothing_and_reuses_the_traces(modular, tmp_path):
  wd, _ = modular
  before = _csv(wd)
  assert llc_analysis.analyze_workdir(wd, TINY, log=quiet)["computed"] == 0
  pd.testing.assert_frame_equal(_csv(wd), before)
  # A table rebuilt without the llc columns (as the modular analysis does when the key
  # frequencies move) takes them back from the npz, computing nothing.
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  before.drop(columns=list(llc_analysis.COLUMNS)).to_csv(
      os.path.join(copy, "analysis", "run_0000.csv"), index=False)
  out = llc_analysis.analyze_workdir(copy, TINY, log=quiet)
  assert (out["computed"], out["reused"]) == (0, 3)
  pd.testing.assert_frame_equal(_csv(copy), before)


def test_deterministic_given_the_seed_and_missing_rows_only(modular, tmp_path):
  wd, _ = modular
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  for run in (0, 1):  # forget everything about epoch 100
    os.remove(os.path.join(copy, "analysis", f"run_{run:04d}_llc_traces.npz"))
    df = _csv(copy, run)
    df.loc[df["epoch"] == 100, list(llc_analysis.COLUMNS)] = np.nan
    df.to_csv(os.path.join(copy, "analysis", f"run_{run:04d}.csv"), index=False)
  assert llc_analysis.analyze_workdir(copy, TINY, log=quiet)["computed"] == 2
  for run in (0, 1):
    np.testing.assert_array_equal(_csv(copy, run)["llc"], _csv(wd, run)["llc"])
  # Another seed: other numbers, and every checkpoint recomputed (settings changed).
  out = llc_analysis.analyze_workdir(copy, TINY, seed=1, log=quiet)
  assert out["computed"] == 6
  assert not np.any(_csv(copy)["llc"].to_numpy() == _csv(wd)["llc"].to_numpy())


def test_every_kth_checkpoint(modular, tmp_path):
  wd, _ = modular
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  shutil.rmtree(os.path.join(copy, "analysis"))
  out = llc_analysis.analyze_workdir(copy, TINY, every=2, log=quiet)
  assert out["epochs"] == [0, 200] and out["computed"] == 4
  df = _csv(copy)  # no modular table: this module's own (train/test loss from metrics.jsonl)
  assert list(df["epoch"]) == [0, 100, 200]
  assert df["llc"].isna().tolist() == [False, True, False]
  np.testing.assert_array_equal(df.loc[df["epoch"] != 100, "llc"],
                                _csv(wd).loc[lambda d: d["epoch"] != 100, "llc"])


def test_analyze_on_a_sequence_workdir(sequence):
  wd, proc = sequence
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "modular (Fourier) analysis does not apply" in proc.stdout
  df = _csv(wd)
  assert list(df["epoch"]) == [0, 50, 100]
  for col in ("train_loss", "test_loss", "train_acc", "test_acc", "sum_sq_weights", "llc",
              "llc_std", "llc_loss_init"):
    assert df[col].notna().all(), col
  metrics = pd.read_json(os.path.join(wd, "metrics.jsonl"), lines=True).drop_duplicates(
      "epoch", keep="last").set_index("epoch")
  np.testing.assert_allclose(df["test_loss"], metrics.loc[[0, 50, 100], "test_loss"], rtol=1e-9)
  assert llc_analysis.analyze_workdir(wd, TINY, log=quiet)["computed"] == 0


def test_figures(modular, sequence):
  for wd in (modular[0], sequence[0]):
    fig = plotting_llc.fig_llc(figdata.Workdir(wd))
    assert fig.axes
  assert plotting_llc.fig_llc_runs(figdata.Workdir(modular[0])).axes
  with pytest.raises(plotting_llc.Skip):
    plotting_llc.fig_llc_runs(figdata.Workdir(sequence[0]))


def test_calibration_grid_matches_the_workdir_estimate(modular):
  wd, _ = modular
  rec = llc_analysis.calibrate_workdir(wd, run=1, epoch=100, epsilons=(1e-4, 1e-3),
                                       settings=TINY)
  assert rec["llc_mean"].shape == (2, 3) and rec["loss_trace"].shape == (2, 3, 2, 16)
  # Same key, same steps: the cell (ε 1e-4, nβ n/log n) is the workdir's estimate at epoch 100.
  want = _csv(wd, 1).set_index("epoch").loc[100, "llc"]
  np.testing.assert_allclose(rec["llc_mean"][0, 1], want, rtol=1e-5)
  assert plotting_llc.calibration_figure(rec).axes
