"""The vmapped sweep: one compile, run i equals run i alone, resume after SIGKILL, devices."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np

from grokjax import checkpoint, config, results, sweep, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(p=17, d_model=32, num_heads=4, eval_every=10, checkpoint_every=50)
CLI_SMALL = ["--p=17", "--d_model=32", "--checkpoint_every=50"]


def tmpdir(test):
  path = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def small(**kw):
  return config.make_config(**{**SMALL, **kw})


def metrics(workdir):
  df = results.load_metrics(workdir)
  return df.drop(columns=[]).set_index(["run", "epoch"]).sort_index()


def assert_same_trajectory(a, b):
  """Equal up to float32 reassociation (a different batch of lanes compiles to other kernels).

  Adam divides by sqrt(v), so rounding differences of 1e-7 in near-zero gradients grow to ~1e-4
  within a few dozen epochs: tight agreement is required through epoch 20, loose after.
  """
  cols = ["train_loss", "test_loss"]
  early = a.index.get_level_values("epoch") <= 20
  np.testing.assert_allclose(a[cols].to_numpy()[early], b[cols].to_numpy()[early], rtol=1e-5)
  np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=2e-2)


def run_cli(args, stdout_to=None):
  out = open(stdout_to, "w") if stdout_to else subprocess.PIPE
  return subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT,
                          stdout=out, stderr=subprocess.STDOUT, text=True)


class SweepTest(absltest.TestCase):

  def test_vmapped_run_equals_run_alone_and_compiles_once(self):
    wd = tmpdir(self)
    cfg = small(num_epochs=200, seed=(0, 1), weight_decay=(0.3, 1.0), frac_train=(0.3, 0.5))
    sw_status = runner.run_sweep(cfg, wd, log=lambda s: None)
    self.assertEqual(sw_status, "trained")
    # One compiled chunk program for all four 50-epoch chunks.
    sw = sweep.Sweep(cfg)
    state = sw.init()
    for _ in range(3):
      state, _ = sw.chunk_fn(state, sw.run_data, sw.shared)
    self.assertEqual(sw.chunk_fn._cache_size(), 1)
    runs = results.load_runs(wd)
    target = next(r for r in runs if (r["seed"], r["weight_decay"], r["frac_train"]) == (1, 1.0, 0.3))
    alone_wd = tmpdir(self)
    runner.run_sweep(small(num_epochs=200, seed=(1,), weight_decay=(1.0,), frac_train=(0.3,)),
                    alone_wd, log=lambda s: None)
    grid_m = metrics(wd).loc[target["run"]]
    alone_m = metrics(alone_wd).loc[0]
    assert_same_trajectory(grid_m, alone_m)
    self.assertEqual(len(grid_m), 21)  # epochs 0, 10, ..., 200
    self.assertEqual(checkpoint.param_epochs(wd), [0, 50, 100, 150, 200])
    # A finished sweep is not retrained; a different config is refused.
    self.assertEqual(runner.run_sweep(cfg, wd, log=lambda s: None), "finished")
    with self.assertRaisesRegex(config.ConfigError, "--workdir: .* different sweep .*lr"):
      runner.run_sweep(small(num_epochs=200, seed=(0, 1), weight_decay=(0.3, 1.0),
                            frac_train=(0.3, 0.5), lr=3e-3), wd, log=lambda s: None)

  def test_more_epochs_continue_the_same_runs(self):
    wd, straight = tmpdir(self), tmpdir(self)
    cfg = lambda n: small(num_epochs=n, seed=(0, 1))
    self.assertEqual(runner.run_sweep(cfg(100), wd, log=lambda s: None), "trained")
    self.assertEqual(runner.run_sweep(cfg(150), wd, log=lambda s: None), "trained")
    self.assertEqual(results.load_config(wd).train.num_epochs, 150)
    runner.run_sweep(cfg(150), straight, log=lambda s: None)
    a, b = metrics(wd), metrics(straight)
    self.assertEqual(list(a.index), list(b.index))  # no duplicate row at epoch 100
    np.testing.assert_array_equal(a[["train_loss", "test_loss", "test_acc"]].to_numpy(),
                                  b[["train_loss", "test_loss", "test_acc"]].to_numpy())
    self.assertEqual(checkpoint.param_epochs(wd), [0, 50, 100, 150])
    with self.assertRaisesRegex(config.ConfigError, "--num_epochs: .* epoch 150"):
      runner.run_sweep(cfg(100), wd, log=lambda s: None)
    self.assertEqual(results.load_config(wd).train.num_epochs, 150)  # refused: left unchanged

  def test_sigkill_and_resume_equals_uninterrupted(self):
    tmp = tmpdir(self)
    args = CLI_SMALL + ["--num_epochs=1000", "--seed=0,1", "--weight_decay=1.0"]
    ref = run_cli(args + [f"--workdir={tmp}/ref"])
    out = ref.communicate()[0]  # (reading the pipe as it fills: a full pipe would block the child)
    self.assertEqual(ref.returncode, 0, out)
    killed = run_cli(args + [f"--workdir={tmp}/kill", "--state_every_s=0"],
                     stdout_to=os.path.join(tmp, "killed.log"))
    state_dir = os.path.join(tmp, "kill", "checkpoints", "state")
    deadline = time.time() + 240
    while time.time() < deadline:
      steps = [int(s) for s in os.listdir(state_dir) if s.isdigit()] if os.path.isdir(state_dir) else []
      if steps and max(steps) >= 300:
        break
      time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    self.assertLess(max(steps), 1000, "the run finished before it could be killed")
    resumed = run_cli(args + [f"--workdir={tmp}/kill"])
    out = resumed.communicate()[0]
    self.assertEqual(resumed.returncode, 0, out)
    self.assertIn("resuming", out)
    a, b = metrics(f"{tmp}/ref"), metrics(f"{tmp}/kill")
    self.assertEqual(list(a.index), list(b.index))
    np.testing.assert_array_equal(a[["train_loss", "test_loss"]].to_numpy(),
                                  b[["train_loss", "test_loss"]].to_numpy())
    pa = checkpoint.load_params(f"{tmp}/ref", 1000)
    pb = checkpoint.load_params(f"{tmp}/kill", 1000)
    np.testing.assert_array_equal(pa["W_E"], pb["W_E"])

  def test_eight_fake_devices_equal_one(self):
    tmp = tmpdir(self)
    args = CLI_SMALL + ["--num_epochs=100", "--seed=0,1,2", "--weight_decay=0.5,1"]
    one = run_cli(args + [f"--workdir={tmp}/one"])
    out = one.communicate()[0]
    self.assertEqual(one.returncode, 0, out)
    # fewer runs than devices: one lane per run, no padding (it would cost CPU time)
    code = ("import jax, sys; assert jax.device_count() == 8, jax.devices(); "
            "from grokjax import config, sweep as s; "
            "lanes = [s.Sweep(config.make_config(p=23, d_model=16, seed=tuple(range(n))))"
            ".num_lanes for n in (1, 6, 9)]; assert lanes == [1, 6, 16], lanes; "
            "sys.argv[0] = 'sweep'; from experiments import sweep; sweep.run(sweep.main)")
    eight = subprocess.run(
        [sys.executable, "-c", code, *args, f"--workdir={tmp}/eight"], cwd=ROOT,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
        capture_output=True, text=True)
    self.assertEqual(eight.returncode, 0, eight.stderr)
    a, b = metrics(f"{tmp}/one"), metrics(f"{tmp}/eight")
    self.assertEqual(len(a), 6 * 11)
    assert_same_trajectory(a, b)

  def test_nonfinite_run_is_isolated(self):
    wd = tmpdir(self)
    runner.run_sweep(small(num_epochs=100, weight_decay=(1.0, 1e30)), wd, log=lambda s: None)
    m = metrics(wd)
    self.assertGreaterEqual(m.loc[1]["halted_at"].iloc[-1], 0)
    self.assertEqual(m.loc[0]["halted_at"].iloc[-1], -1)
    self.assertTrue(np.all(np.isfinite(m.loc[0]["train_loss"])))
    alone = tmpdir(self)
    runner.run_sweep(small(num_epochs=100, weight_decay=(1.0,)), alone, log=lambda s: None)
    assert_same_trajectory(m.loc[[0]], metrics(alone).loc[[0]])
    with open(os.path.join(wd, results.METRICS)) as f:
      for line in f:
        json.loads(line)  # strict JSON: non-finite values are null


class PrecisionTest(absltest.TestCase):

  def _dots(self, fn, *args):
    text = fn.lower(*args).as_text()
    return [l for l in text.splitlines() if "stablehlo.dot_general" in l]

  def test_matmuls_are_true_float32_by_default(self):
    """TF32 (JAX's default on recent NVIDIA GPUs) would change the paper's numerics: every dot
    of the train chunk and the evaluation is traced at HIGHEST unless asked otherwise."""
    for prec, expect in (("highest", True), ("default", False)):
      sw = sweep.Sweep(small(num_epochs=100, matmul_precision=prec))
      state = sw.abstract_state()  # traced only: nothing to compile
      for fn in (sw.chunk_fn, sw.eval_fn):
        dots = self._dots(fn, state, sw.run_data, sw.shared)
        self.assertNotEmpty(dots)
        self.assertEqual(all("HIGHEST" in d for d in dots), expect, (prec, dots[:2]))
        self.assertEqual(any("HIGHEST" in d for d in dots), expect, prec)

  def test_config_json_without_a_newer_field_still_resumes(self):
    wd = tmpdir(self)
    cfg = small(num_epochs=100)
    runner.run_sweep(cfg, wd, log=lambda s: None)
    path = os.path.join(wd, results.CONFIG)
    with open(path) as f:
      old = json.load(f)
    del old["train"]["matmul_precision"]  # as written before the flag existed
    with open(path, "w") as f:
      json.dump(old, f)
    self.assertEqual(runner.run_sweep(cfg, wd, log=lambda s: None), "finished")
    with self.assertRaisesRegex(config.ConfigError, "matmul_precision: highest there, default now"):
      runner.run_sweep(small(num_epochs=100, matmul_precision="default"), wd, log=lambda s: None)


class CliTest(absltest.TestCase):

  def test_shipped_flagfiles_parse(self):
    from absl import flags
    from experiments import sweep as cli
    flags_dir = os.path.join(ROOT, "experiments", "flags")
    names = sorted(os.listdir(flags_dir))
    self.assertContainsSubset({"mainline.flags", "seeds.flags", "wd_sweep.flags",
                               "frac_sweep.flags", "quick.flags"}, set(names))
    for name in names:
      argv = cli.resolve_flagfiles(["sweep", f"--flagfile={name}", "--workdir=/tmp/unused"])
      flags.FLAGS.unparse_flags()
      flags.FLAGS(argv)
      cfg = cli.config_from_flags()
      self.assertGreater(cfg.sweep.num_runs, 0, name)
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["test"])  # leave the flags parsed for other tests

  def test_command_line_replaces_flagfile_values(self):
    from experiments import sweep as cli
    argv = cli.resolve_flagfiles(["x", "--flagfile=wd_sweep.flags", "--weight_decay=0.5"])
    self.assertEqual([a for a in argv if a.startswith("--weight_decay")], ["--weight_decay=0.5"])

  def test_bad_flags_fail_before_anything_is_written(self):
    tmp = tmpdir(self)
    # On the command line: a value that does not parse, and two the config refuses (started at
    # once: each process spends its time importing).
    bad = [("--seed=x", "--seed: 'x' is not a valid integer"), ("--d_model=30", "--d_model"),
           ("--act=tanh", "--act")]
    procs = [run_cli([arg, f"--workdir={tmp}/w"]) for arg, _ in bad]
    for (arg, msg), proc in zip(bad, procs):
      out = proc.communicate()[0]
      self.assertEqual(proc.returncode, 2, arg)
      self.assertIn(f"error: {msg}", out, arg)
    self.assertFalse(os.path.exists(f"{tmp}/w"))
    # The rest of the config's checks, as the command line calls them.
    for kw, flag in [(dict(frac_train=1.5), "frac_train"), (dict(p=1), "p"), (dict(p=4), "p"),
                     (dict(num_epochs=-100), "num_epochs"), (dict(loss_dtype="float16"), "loss_dtype"),
                     (dict(matmul_precision="fp8"), "matmul_precision")]:
      with self.assertRaisesRegex(config.ConfigError, f"^--{flag}:"):
        config.make_config(**kw)


if __name__ == "__main__":
  absltest.main()
