"""The LLC of every checkpoint of a workdir (grokjax/llc_analysis.py, experiments.analyze --llc).

Two tiny workdirs shared by the module, written in the sweep's formats without training (a
compile of the train step would double the test's time): modular addition (p = 23, two seeds:
the run axis is vmapped; a hand-written stand-in for the modular analysis' table, to check the
merge) and finite 5-digit addition (a sequence task with per-digit losses: no modular analysis,
its table comes from metrics.jsonl). Checkpoints are independently initialised parameters.
Tiny sampler settings: the numbers are not meaningful, the plumbing is (the estimator itself is
checked against known answers in llc_test.py).
"""
import collections
import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from grokjax import checkpoint, config, figdata, llc_analysis, llc_calibration, model
from grokjax import plotting_llc, results
from grokjax import runner, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dataclasses.replace(llc_analysis.DEFAULT, num_chains=2, num_draws=12, num_burnin=4,
                           batch_size=32, epsilon=1e-4)
CLI_TINY = ["--llc_chains=2", "--llc_draws=12", "--llc_burnin=4", "--llc_batch_size=32",
            "--llc_epsilon=1e-4"]
MODULAR_COLUMNS = ["epoch", "loss_train", "loss_test", "restricted_loss_all",
                   "excluded_loss_train", "excluded_loss_train_k3"]
State = collections.namedtuple("State", "params")
quiet = lambda s: None
GROUPS = tuple(f"digit{j}" for j in range(6))


def make_workdir(path, cfg, epochs, groups=()):
  """config/sweep files, stacked parameter checkpoints at `epochs` and metrics rows at every
  evaluated epoch (losses 1/(1 + epoch/100) + run/10, test twice that, per-group test losses)."""
  runs = sweep.grid(cfg)
  runner.prepare_workdir(cfg, path, runs, log=quiet)
  init = jax.jit(model.init_params, static_argnums=0)
  ckpt = checkpoint.Checkpointer(path)
  for e in epochs:
    params = [init(cfg.model, jax.random.key(100 * e + r["run"])) for r in runs]
    ckpt.save(e, State(jax.tree.map(lambda *x: np.stack(x), *params)), params_only=True)
  ckpt.wait()
  ckpt.close()
  rows = []
  for e in range(0, epochs[-1] + 1, cfg.train.eval_every):
    for r in runs:
      loss = 1 / (1 + e / 100) + r["run"] / 10
      rows.append(dict(run=r["run"], epoch=e, seed=r["seed"], train_loss=loss,
                       test_loss=2 * loss, train_acc=0.5, test_acc=0.25, halted_at=-1,
                       **{f"test_loss_{g}": 2 * loss + j for j, g in enumerate(groups)}))
  results.append_metrics(path, rows)
  return path


def _csv(wd, run=0):
  return pd.read_csv(os.path.join(wd, "analysis", f"run_{run:04d}.csv"))


@pytest.fixture(scope="module")
def sequence_started(tmp_path_factory):
  """The sequence workdir and `experiments.analyze --llc` on it, started in the background: its
  compile overlaps the modular tests' (XLA compiles on one core)."""
  cfg = config.make_config(task="digit_addition", attn_only=True, d_model=16, num_heads=2,
                           num_data=64, eval_size=64, num_epochs=100, checkpoint_every=50)
  wd = make_workdir(str(tmp_path_factory.mktemp("sequence") / "w"), cfg, [0, 50, 100], GROUPS)
  proc = subprocess.Popen([sys.executable, "-m", "experiments.analyze", f"--workdir={wd}",
                           "--llc", *CLI_TINY], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  yield wd, proc
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


@pytest.fixture(scope="module")
def sequence(sequence_started):
  wd, proc = sequence_started
  out, err = proc.communicate(timeout=300)
  return wd, proc.returncode, out, err


@pytest.fixture(scope="module")
def modular(tmp_path_factory, sequence_started):
  cfg = config.make_config(p=23, d_model=32, num_heads=4, d_mlp=64, num_epochs=200,
                           checkpoint_every=100, seed=(0, 1))
  wd = make_workdir(str(tmp_path_factory.mktemp("modular") / "w"), cfg, [0, 100, 200])
  os.makedirs(os.path.join(wd, "analysis"))
  for run in (0, 1):  # what the modular analysis writes, in miniature
    pd.DataFrame({c: [0.5, 0.4, 0.3] if c != "epoch" else [0, 100, 200]
                  for c in MODULAR_COLUMNS}).to_csv(
        os.path.join(wd, "analysis", f"run_{run:04d}.csv"), index=False)
  out = llc_analysis.analyze_workdir(wd, TINY, log=quiet)
  return wd, out


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


def test_a_subset_of_runs(modular, tmp_path):
  wd, _ = modular
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  shutil.rmtree(os.path.join(copy, "analysis"))
  out = llc_analysis.analyze_workdir(copy, TINY, runs=[1], log=quiet)
  assert out["computed"] == 3
  # A run's value does not depend on which other runs are estimated with it (same keys; float32
  # rounding of a vmap over 1 run instead of 2 differs in the last bits).
  np.testing.assert_allclose(_csv(copy, 1)["llc"], _csv(wd, 1)["llc"], rtol=1e-5)
  assert "llc" not in _csv(copy, 0) or _csv(copy, 0)["llc"].isna().all()
  with pytest.raises(ValueError, match="--llc_runs"):
    llc_analysis.analyze_workdir(copy, TINY, runs=[7], log=quiet)


def test_calibration_grid_matches_the_workdir_estimate(modular):
  wd, _ = modular
  rec = llc_calibration.calibrate_workdir(wd, run=1, epoch=100, epsilons=(1e-4, 1e-3),
                                       settings=TINY)
  assert rec["llc_mean"].shape == (2, 3) and rec["loss_trace"].shape == (2, 3, 2, 16)
  # Same key, same steps: the cell (ε 1e-4, nβ n/log n) is the workdir's estimate at epoch 100.
  want = _csv(wd, 1).set_index("epoch").loc[100, "llc"]
  np.testing.assert_allclose(rec["llc_mean"][0, 1], want, rtol=1e-5)
  assert plotting_llc.calibration_figure(rec).axes


def test_analyze_on_a_sequence_workdir(sequence, tmp_path):
  wd, returncode, out, err = sequence
  assert returncode == 0, err[-2000:]
  assert "modular (Fourier) analysis does not apply" in out
  assert "3 estimates computed, 0 reused" in out, out
  df = _csv(wd)
  assert list(df["epoch"]) == [0, 50, 100]
  for col in ("train_loss", "test_loss", "train_acc", "test_acc", "sum_sq_weights", "llc",
              "llc_std", "llc_loss_init") + tuple(f"test_loss_{g}" for g in GROUPS):
    assert df[col].notna().all(), col
  metrics = pd.read_json(os.path.join(wd, "metrics.jsonl"), lines=True).drop_duplicates(
      "epoch", keep="last").set_index("epoch")
  for col in ("test_loss", "test_loss_digit5"):
    np.testing.assert_allclose(df[col], metrics.loc[[0, 50, 100], col], rtol=1e-9)
  assert llc_analysis.analyze_workdir(wd, TINY, log=quiet)["computed"] == 0
  # The table lost: rebuilt from metrics.jsonl and the checkpoints, λ̂ from the npz.
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  os.remove(os.path.join(copy, "analysis", "run_0000.csv"))
  out = llc_analysis.analyze_workdir(copy, TINY, log=quiet)
  assert (out["computed"], out["reused"]) == (0, 3)
  pd.testing.assert_frame_equal(_csv(copy), df)


def test_figures(modular, sequence):
  for wd in (modular[0], sequence[0]):
    fig = plotting_llc.fig_llc(figdata.Workdir(wd))
    assert fig.axes
  assert plotting_llc.fig_llc_runs(figdata.Workdir(modular[0])).axes
  with pytest.raises(plotting_llc.Skip):
    plotting_llc.fig_llc_runs(figdata.Workdir(sequence[0]))


def test_negative_estimates_get_a_symmetric_log_axis():
  """λ̂ < 0 (chains below the checkpoint's loss: not a minimum at that nβ) can be 1000× the
  positive values; the axis then stays readable for both (symlog), and stays linear otherwise."""
  from matplotlib.figure import Figure
  epochs = np.arange(0, 60, 10)
  for llc, scale in (([-3e4, -20.0, -1.5, 2.0, 5.0, 6.0], "symlog"),
                     ([-1.0, 20.0, 22.0, 25.0, 18.0, 12.0], "linear"),
                     ([3.0, 20.0, 22.0, 25.0, 18.0, 12.0], "linear")):
    c = pd.DataFrame({"epoch": epochs, "llc": llc, "llc_std": np.ones(6)})
    ax = Figure().add_subplot()
    plotting_llc._llc_axis(ax, c, None)
    assert ax.get_yscale() == scale, llc


def test_rows_without_losses_are_filled_in(sequence, tmp_path):
  """A table row written while a resumed sweep was rewriting its metrics (losses missing, λ̂
  present) gets its losses on the next run, its λ̂ kept, nothing recomputed."""
  wd = sequence[0]
  df = _csv(wd)
  copy = str(tmp_path / "w")
  shutil.copytree(wd, copy)
  blank = df.copy()
  blank.loc[blank["epoch"] == 50, ["train_loss", "test_loss"]] = np.nan
  blank.to_csv(os.path.join(copy, "analysis", "run_0000.csv"), index=False)
  out = llc_analysis.analyze_workdir(copy, TINY, log=quiet)
  assert out["computed"] == 0
  pd.testing.assert_frame_equal(_csv(copy), df)
