"""Grokfast in the sweep: λ = 0 runs are plain AdamW bit for bit, swept α/λ/lr share one compiled
program, SIGKILL + resume is exact with the Grokfast state, and Grokfast-MA likewise.

Compiling dominates (training these tiny models takes well under a second), so each sweep's
programs are compiled once for the module: a Grokfast-EMA sweep and a plain sweep are trained in
setUpModule, and the in-process resumes reuse the compiled `sweep.Sweep` of their config. The CLI
run that is killed starts first, so that it compiles on the other core meanwhile.
"""
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from grokjax import checkpoint, config, grokfast, results, runner, sweep

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sweep_test import ROOT  # noqa: E402

EPOCHS = 400
SMALL = dict(p=17, d_model=32, num_heads=4, d_mlp=64, eval_every=10, checkpoint_every=50)
# 8 runs: α × λ × lr, all from init seed 0.
EMA = dict(grokfast="ema", grokfast_alpha=(0.9, 0.98), grokfast_lamb=(0.0, 2.0), lr=(1e-3, 3e-3))
CLI = ["--p=17", "--d_model=32", "--num_heads=4", "--d_mlp=64", "--checkpoint_every=50",
       f"--num_epochs={EPOCHS}", "--grokfast=ema", "--grokfast_alpha=0.9,0.98",
       "--grokfast_lamb=0,2", "--lr=1e-3,3e-3"]
# A plain sweep of as many runs (8): the same run inside a sweep of another size computes its
# matmuls with other kernels (README, Resume). Its seed 0, wd 1 runs are the λ = 0 runs.
PLAIN = dict(seed=(0, 1), weight_decay=(1.0, 0.5), lr=(1e-3, 3e-3))
MA = dict(grokfast="ma", grokfast_window=5, seed=(0, 1), grokfast_lamb=(0.0, 5.0),
          lr=(1e-3, 3e-3))
COLS = ["train_loss", "test_loss", "train_acc", "test_acc"]
_MOD = {}


def cfg_of(kw, epochs=EPOCHS):
  return config.make_config(num_epochs=epochs, **SMALL, **kw)


def compiled(cfg):
  """One `sweep.Sweep` per config for the module (its programs compile once)."""
  if cfg not in _MOD:
    _MOD[cfg] = sweep.Sweep(cfg)
  return _MOD[cfg]


@contextlib.contextmanager
def reuse_compiled():
  """runner.run_sweep uses the module's compiled Sweep of its config."""
  orig = runner.Sweep
  runner.Sweep = lambda cfg, devices=None: compiled(cfg)
  try:
    yield
  finally:
    runner.Sweep = orig


def train(kw, workdir, epochs=EPOCHS, **run_kw):
  with reuse_compiled():
    return runner.run_sweep(cfg_of(kw, epochs), workdir, log=lambda s: None, **run_kw)


def _start_killed_run():
  """The EMA sweep on the command line, SIGKILLed once its state checkpoint of epoch 100
  exists. The watcher is a shell loop (no GIL: the test process is compiling meanwhile)."""
  kill = os.path.join(_MOD["root"], "kill")
  log = os.path.join(_MOD["root"], "killed.log")
  args = " ".join(shlex.quote(a) for a in CLI + [f"--workdir={kill}", "--state_every_s=0"])
  script = (f"{shlex.quote(sys.executable)} -m experiments.sweep {args} > {shlex.quote(log)} "
            "2>&1 & pid=$!; while kill -0 $pid 2>/dev/null; do "
            f"if [ -d {shlex.quote(kill)}/checkpoints/state/100 ]; then kill -9 $pid; break; fi; "
            "sleep 0.02; done; wait $pid")
  _MOD["killed"] = (subprocess.Popen(["bash", "-c", script], cwd=ROOT), kill, log)


def setUpModule():
  _MOD["root"] = tempfile.mkdtemp()
  _start_killed_run()
  for name, kw in (("ema", EMA), ("plain", PLAIN)):
    _MOD[name] = os.path.join(_MOD["root"], name)
  train(EMA, _MOD["ema"])
  # Stopped after its last chunk: everything but the final evaluation row (saves a compile).
  train(PLAIN, _MOD["plain"], stop_after_chunks=EPOCHS // SMALL["checkpoint_every"])


def tearDownModule():
  watcher = _MOD["killed"][0]
  if watcher.poll() is None:
    watcher.kill()
    watcher.wait()
  shutil.rmtree(_MOD["root"], ignore_errors=True)


def metrics(workdir):
  return results.load_metrics(workdir).set_index(["run", "epoch"]).sort_index()


def run_of(workdir, **values):
  return next(r["run"] for r in results.load_runs(workdir)
              if all(r.get(k) == v for k, v in values.items()))


def assert_same(a_workdir, b_workdir, epochs, pairs):
  """Runs a of `a_workdir` equal runs b of `b_workdir` bit for bit: metrics through `epochs`
  and the parameters at `epochs`."""
  am, bm = metrics(a_workdir), metrics(b_workdir)
  ap, bp = checkpoint.load_params(a_workdir, epochs), checkpoint.load_params(b_workdir, epochs)
  for a, b in pairs:
    x, y = am.loc[a][COLS], bm.loc[b][COLS]
    common = x.index.intersection(y.index)   # a stopped sweep has no final-evaluation row
    assert len(common) == min(len(x), len(y)) and common.max() >= epochs - 10, (a, b)
    np.testing.assert_array_equal(x.loc[common].to_numpy(), y.loc[common].to_numpy(),
                                  err_msg=f"{a} {b}")
    for pa, pb in zip(jax.tree.leaves(ap), jax.tree.leaves(bp)):
      np.testing.assert_array_equal(pa[a], pb[b], err_msg=f"{a} {b}")


def assert_lambda_zero_is_plain(test, workdir, epochs):
  """Every λ = 0 run equals the plain run of its seed and lr; every λ > 0 run differs."""
  m, pm = metrics(workdir), metrics(_MOD["plain"])
  pairs = []
  for r in results.load_runs(workdir):
    p = run_of(_MOD["plain"], seed=r["seed"], lr=r["lr"], weight_decay=1.0)
    if r["grokfast_lamb"] == 0:
      pairs.append((r["run"], p))
    else:
      x, y = m.loc[r["run"]][COLS], pm.loc[p][COLS]
      common = x.index.intersection(y.index)
      test.assertFalse(np.array_equal(x.loc[common].to_numpy(), y.loc[common].to_numpy()), r)
  test.assertLen(pairs, 4)
  assert_same(workdir, _MOD["plain"], epochs, pairs)


class GrokfastSweepTest(absltest.TestCase):

  def test_lambda_zero_runs_are_plain_adamw_bit_for_bit(self):
    assert_lambda_zero_is_plain(self, _MOD["ema"], EPOCHS)

  def test_swept_alpha_lambda_lr_live_in_the_state_and_compile_once(self):
    sw = compiled(cfg_of(EMA))   # it trained the module's EMA sweep, all 8 chunks
    self.assertEqual(sw.chunk_fn._cache_size(), 1)
    gf_state, adam_state = sw.init().opt_state
    self.assertIsInstance(gf_state, grokfast.GrokfastEmaState)
    f32 = lambda k: np.float32([r[k] for r in sw.runs])
    np.testing.assert_array_equal(gf_state.alpha, f32("grokfast_alpha"))
    np.testing.assert_array_equal(gf_state.lamb, f32("grokfast_lamb"))
    np.testing.assert_array_equal(adam_state.hyperparams["learning_rate"], f32("lr"))
    self.assertLen(set(zip(f32("grokfast_alpha"), f32("grokfast_lamb"), f32("lr"))), 8)
    # Two more chunks from the init: still the one program.
    state = sw.init()
    for _ in range(2):
      state, _ = sw.chunk_fn(state, sw.run_data, sw.shared)
    self.assertEqual(sw.chunk_fn._cache_size(), 1)
    np.testing.assert_array_equal(state.opt_state[0].count, 100)

  def test_sigkill_and_resume_equals_uninterrupted(self):
    watcher, kill, log = _MOD["killed"]
    watcher.wait(timeout=600)
    state_dir = os.path.join(kill, "checkpoints", "state")
    steps = [int(x) for x in os.listdir(state_dir) if x.isdigit()]
    with open(log) as f:
      self.assertBetween(max(steps), 100, EPOCHS - 50, f"not killed mid-run: {f.read()}")
    # Rerun (in-process: the same code as the CLI's, with the module's compiled program).
    logs = []
    with reuse_compiled():
      status = runner.run_sweep(cfg_of(EMA), kill, log=logs.append)
    self.assertEqual(status, "trained")
    self.assertTrue(any("resuming 8 runs at epoch" in l for l in logs), logs)
    n = len(results.load_runs(kill))
    assert_same(_MOD["ema"], kill, EPOCHS, [(i, i) for i in range(n)])
    # The resume needed the restored Grokfast state: the λ = 2 runs' EMA is not zero.
    ckpt = checkpoint.Checkpointer(kill)
    try:
      state = ckpt.restore_state(EPOCHS, compiled(cfg_of(EMA)).abstract_state())
    finally:
      ckpt.close()
    ema = np.abs(np.asarray(state.opt_state[0].ema["W_E"]))
    self.assertGreater(ema[run_of(kill, grokfast_lamb=2.0, lr=1e-3, grokfast_alpha=0.98)].max(), 0)

  def test_grokfast_ma_plain_at_lambda_zero_and_resume_exact(self):
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
    wd = os.path.join(tmp, "ma")
    # Stopped after the first chunk (state saved), then rerun: resumes at epoch 50 (and stops
    # after its last chunk, before the final evaluation: one compile less).
    self.assertEqual(train(MA, wd, 100, stop_after_chunks=1, state_every_s=0), "stopped")
    self.assertEqual(train(MA, wd, 100, stop_after_chunks=1), "stopped")
    self.assertEqual(checkpoint.param_epochs(wd), [0, 50, 100])
    assert_lambda_zero_is_plain(self, wd, 100)
    # The uninterrupted run, chunk by chunk with the same program: the same parameters.
    sw = compiled(cfg_of(MA, 100))
    state = sw.init()
    for _ in range(2):
      state, _ = sw.chunk_fn(state, sw.run_data, sw.shared)
    self.assertEqual(sw.chunk_fn._cache_size(), 1)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(checkpoint.load_params(wd, 100))):
      np.testing.assert_array_equal(np.asarray(a)[:len(sw.runs)], b)
    self.assertIsInstance(state.opt_state[0], grokfast.GrokfastMaState)
    self.assertEqual(state.opt_state[0].buffer["W_E"].shape[:2], (len(sw.runs), 5))


if __name__ == "__main__":
  absltest.main()
