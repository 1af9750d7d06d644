"""The analysis step on a small workdir (grokjax/analysis.py, experiments/analyze.py).

The workdir is written directly in the sweep's formats (config.json, sweep.json, metrics.jsonl,
orbax parameter checkpoints) with random parameters, each run's final checkpoint carrying one
planted W_L frequency; no training, so the test stays small.
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from grokjax import analysis, checkpoint, config, data, fourier, interop, measures, model, runner
from grokjax import results, sweep

P, D_MLP, HEADS = 11, 32, 4
K = (P - 1) // 2
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
State = collections.namedtuple("State", "params")
CSV_COLUMNS = ["epoch", "loss_train", "loss_test", "loss_all", "acc_train", "acc_test",
               "restricted_loss_all", "restricted_loss_train", "restricted_loss_test",
               "restricted_acc_all", "excluded_loss_train", "excluded_acc_train", "gini_W_E",
               "gini_W_L", "sum_sq_weights", "sum_sq_W_E", "sum_sq_blocks_0.W_Q",
               "sum_sq_blocks_0.b_out", "sum_sq_W_U"]
WEIGHTS_KEYS = ["loss_train", "loss_test", "key_freqs", "key_freqs_neuron_rule", "gini_W_E",
                "gini_W_L", "restricted_loss_all", "restricted_loss_train",
                "restricted_loss_test", "excluded_loss_train", "excluded_loss_train_per_freq",
                "logit_fve", "table1_fve_mean", "W_L_residual_ratio", "sum_sq_weights",
                "neuron_clusters"]
FINAL_KEYS = WEIGHTS_KEYS + ["run", "epoch", "W_E_fourier_norms", "W_L_fourier_norms",
                             "neuron_freq", "neuron_fve", "ablation_per_freq", "loss_all",
                             "table1_fve", "attention_fits", "phases", "mlp_fve_mean",
                             "mlp_fve_std"]
SUMMARY_COLUMNS = ["run", "seed", "weight_decay", "frac_train", "split_seed", "lr", "dropout",
                   "l1", "key_freqs",
                   "gini_W_E", "gini_W_L", "logit_fve", "mlp_fve_mean", "mlp_fve_std",
                   "loss_test", "memorization_end", "circuit_formation_end", "cleanup_end",
                   "grok_epoch"]


def _cfg():
  return config.make_config(p=P, d_model=16, num_heads=HEADS, d_mlp=D_MLP, num_epochs=200,
                            seed=(0, 1))


def _params(seed: int, planted: int | None):
  """Random parameters; with `planted`, W_U carries a cos/sin pattern of that frequency."""
  prm = jax.jit(model.init_params, static_argnums=0)(_cfg().model, jax.random.key(seed))
  if planted is not None:
    F = fourier.basis(P)
    rng = np.random.default_rng(seed)
    W_U = 3 * (np.outer(rng.normal(size=16), F[2 * planted - 1])
               + np.outer(rng.normal(size=16), F[2 * planted]))
    prm["W_U"] = prm["W_U"].at[:, :P].set(jnp.asarray(W_U, jnp.float32))
  return prm


def _save(workdir: str, epoch: int, planted: tuple[int, int] | None):
  runs = [_params(10 * epoch + i, None if planted is None else planted[i]) for i in range(2)]
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(epoch, State(jax.tree.map(lambda *x: jnp.stack(x), *runs)), params_only=True)
  ckpt.wait()
  ckpt.close()
  return runs


def _make_workdir(path: str) -> dict:
  cfg = _cfg()
  runner.prepare_workdir(cfg, path, sweep.grid(cfg))
  params = {e: _save(path, e, (2, 4) if e == 200 else None) for e in (0, 100, 200)}
  rows = [dict(run=r, epoch=e, train_loss=1.0, test_loss=(5e-3 if (r, e) == (1, 150) else 3.0),
               train_acc=1.0, test_acc=0.1) for r in (0, 1) for e in range(0, 201, 50)]
  results.append_metrics(path, rows)
  return params


def _tmp(test) -> str:
  path = tempfile.mkdtemp()  # (absl's create_tempdir needs parsed flags; pytest has none)
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


class AnalyzeWorkdirTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()
    cls.params = _make_workdir(cls.dir)
    cls.logs = []
    cls.finals = analysis.analyze_workdir(cls.dir, log=cls.logs.append)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.dir, ignore_errors=True)
    super().tearDownClass()

  def _a(self, name):
    return os.path.join(self.dir, "analysis", name)

  def test_tables(self):
    self.assertTrue(any(l.startswith("analysis: 6/6 checkpoints") for l in self.logs), self.logs)
    for run, k in ((0, 2), (1, 4)):
      df = pd.read_csv(self._a(f"run_{run:04d}.csv"))
      self.assertEqual(list(df["epoch"]), [0, 100, 200])
      for c in CSV_COLUMNS + [f"excluded_loss_train_k{k}", f"cos_coeff_k{k}"]:
        self.assertIn(c, df.columns)
      self.assertFalse(df.isna().any().any())
      self.assertEqual(df["loss_train"].dtype, np.float64)

  def test_rows_equal_direct_measures(self):
    df = pd.read_csv(self._a("run_0001.csv")).set_index("epoch")
    labels = jnp.asarray(data.labels("add", P))
    train = jnp.asarray(data.train_mask(P, 0.3, 0))
    got = jax.jit(measures.dynamics)(self.params[100][1], labels, train, jnp.array([4]))
    for k in ("loss_test", "restricted_loss_all", "excluded_loss_train", "gini_W_L",
              "sum_sq_weights"):
      np.testing.assert_allclose(df.loc[100, k], float(got[k]), rtol=1e-6, err_msg=k)
    np.testing.assert_allclose(df.loc[100, "excluded_loss_train_k4"],
                               float(got["excluded_loss_train_per_freq"][0]), rtol=1e-6)

  def test_final_files(self):
    for run, k in ((0, 2), (1, 4)):
      with open(self._a(f"run_{run:04d}_final.json")) as f:
        fin = json.load(f)
      for key in FINAL_KEYS:
        self.assertIn(key, fin)
      self.assertEqual((fin["run"], fin["epoch"]), (run, 200))
      self.assertEqual(fin["analysis_version"], analysis.ANALYSIS_VERSION)
      self.assertIn("W_L per-frequency norm", fin["key_freq_rule"])
      self.assertEqual(fin["key_freqs"], [k])
      self.assertEqual(list(fin["excluded_loss_train_per_freq"]), [str(k)])
      self.assertLen(fin["W_E_fourier_norms"], P)
      self.assertLen(fin["W_L_fourier_norms"], P)
      self.assertLen(fin["neuron_freq"], D_MLP)
      self.assertLen(fin["neuron_fve"], D_MLP)
      self.assertEqual(set(fin["ablation_per_freq"]), {"all", "train", "test"})
      self.assertLen(fin["ablation_per_freq"]["test"], K)
      self.assertEqual([(r["k"], r["kind"]) for r in fin["table1_fve"]], [(k, "cos"), (k, "sin")])
      self.assertEqual([a["head"] for a in fin["attention_fits"]], list(range(HEADS)))
      self.assertEqual(set(fin["phases"]),
                       {"memorization_end", "circuit_formation_end", "cleanup_end"})
      with np.load(self._a(f"run_{run:04d}_final.npz")) as z:
        shapes = {n: z[n].shape for n in z.files}
      self.assertEqual(shapes, dict(attn_eq_to_a=(HEADS, P, P), neuron_acts=(5, P, P),
                                    logits_fourier_norms_2d=(P, P), W_L_hat=(P, D_MLP),
                                    neuron_freq=(D_MLP,), attn_score_hat=(HEADS, P),
                                    attn_ov_fourier_norms=(HEADS, P)))

  def test_summary(self):
    s = pd.read_csv(self._a("summary.csv"))
    self.assertEqual(list(s.columns[:len(SUMMARY_COLUMNS)]), SUMMARY_COLUMNS)
    self.assertEqual(list(s["key_freqs"].astype(str)), ["2", "4"])
    self.assertTrue(pd.isna(s.loc[0, "grok_epoch"]))
    self.assertEqual(s.loc[1, "grok_epoch"], 150)


class IncrementalTest(absltest.TestCase):

  def test_rerun_analyses_only_new_checkpoints(self):
    path = _tmp(self)
    _make_workdir(path)
    analysis.analyze_workdir(path, log=lambda s: None)
    before = pd.read_csv(os.path.join(path, "analysis", "run_0000.csv"))
    _save(path, 300, (2, 4))  # same key frequencies at the new final checkpoint
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "experiments.analyze", f"--workdir={path}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    self.assertEqual(out.returncode, 0, out.stderr[-2000:])
    self.assertIn("analysis: 2/2 checkpoints", out.stderr)  # 1 new epoch × 2 runs
    after = pd.read_csv(os.path.join(path, "analysis", "run_0000.csv"))
    self.assertEqual(list(after["epoch"]), [0, 100, 200, 300])
    pd.testing.assert_frame_equal(after.iloc[:3], before)
    with open(os.path.join(path, "analysis", "run_0000_final.json")) as f:
      self.assertEqual(json.load(f)["epoch"], 300)
    # Nothing new: nothing analysed.
    logs = []
    analysis.analyze_workdir(path, log=logs.append)
    self.assertTrue(any("already analysed" in l for l in logs), logs)

  def test_older_final_arrays_are_completed(self):
    """A final .npz written by an older version (fewer arrays) is recomputed; the curves are not."""
    path = _tmp(self)
    _make_workdir(path)
    analysis.analyze_workdir(path, log=lambda s: None)
    npz = os.path.join(path, "analysis", "run_0000_final.npz")
    with np.load(npz) as z:
      old = {n: z[n] for n in z.files if n != "attn_ov_fourier_norms"}
    np.savez(npz, **old)
    logs = []
    analysis.analyze_workdir(path, log=logs.append)
    self.assertTrue(any("already analysed" in l for l in logs), logs)
    with np.load(npz) as z:
      self.assertIn("attn_ov_fourier_norms", z.files)

  def test_changed_key_frequencies_recompute_the_table(self):
    path = _tmp(self)
    _make_workdir(path)
    analysis.analyze_workdir(path, log=lambda s: None)
    _save(path, 300, (3, 4))  # run 0's final key frequency moves from 2 to 3
    logs = []
    analysis.analyze_workdir(path, log=logs.append)
    self.assertTrue(any("run 0: key frequencies changed to [3]" in l for l in logs), logs)
    self.assertTrue(any(l.startswith("analysis: 5/5 checkpoints") for l in logs), logs)
    df = pd.read_csv(os.path.join(path, "analysis", "run_0000.csv"))
    self.assertIn("excluded_loss_train_k3", df.columns)
    self.assertNotIn("excluded_loss_train_k2", df.columns)
    self.assertEqual(list(df["epoch"]), [0, 100, 200, 300])


class AuthorsWeightsCliTest(absltest.TestCase):

  def _run(self, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "experiments.analyze", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)

  def test_json_and_errors(self):
    tmp = _tmp(self)
    good = os.path.join(tmp, "small.npz")
    np.savez(good, **interop.to_state_dict(jax.tree.map(np.asarray, _params(0, 3))))
    out_json = os.path.join(tmp, "out.json")
    r = self._run(f"--authors_weights={good}", "--frac_train=0.3", "--split_seed=1",
                  f"--out={out_json}")
    self.assertEqual(r.returncode, 0, r.stderr[-2000:])
    with open(out_json) as f:
      rec = json.load(f)
    for k in WEIGHTS_KEYS:
      self.assertIn(k, rec)
    self.assertEqual(rec["p"], P)
    self.assertEqual(rec["key_freqs"], [3])
    self.assertEqual(rec["n_train"], int(0.3 * P * P))

    sd = interop.to_state_dict(jax.tree.map(np.asarray, _params(0, 3)))
    del sd["blocks.0.attn.W_K"]
    sd["unembed.W_U"] = sd["unembed.W_U"][:, :5]
    bad = os.path.join(tmp, "bad.npz")
    np.savez(bad, **sd)
    r = self._run(f"--authors_weights={bad}", f"--out={out_json}")
    self.assertEqual(r.returncode, 1)
    self.assertIn("missing blocks.0.attn.W_K", r.stderr)
    r = self._run("--authors_weights=/nonexistent.npz")
    self.assertEqual(r.returncode, 1)
    self.assertIn("no such file", r.stderr)


if __name__ == "__main__":
  absltest.main()
