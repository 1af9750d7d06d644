"""64-bit types are scoped (grokjax/x64.py): importing grokjax leaves jax_enable_x64 as the user
set it, a sweep's numbers are those of the golden files with the flag off in the caller, and a
float32-loss sweep with --nox64 runs without any 64-bit type (what a TPU needs).

The flag checks run in fresh subprocesses: this test session itself runs with x64 on
(tests/conftest.py)."""
import json
import os
import re
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import numpy as np

from grokjax import config, runner, sweep

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

IMPORT_ALL = ("import grokjax\nfrom grokjax import (analysis, checkpoint, config, fourier, "
              "llc, llc_analysis, measures, model, results, runner, sweep, train, x64)\n")

GOLDEN_SWEEP = r"""
import json, sys
import jax
before = bool(jax.config.jax_enable_x64)
{imports}
after_import = bool(jax.config.jax_enable_x64)
import jax.numpy as jnp
# The sweep of tasks_test.GoldenTest.test_modular_sweep (tests/golden/modular_p23_metrics.jsonl).
cfg = config.make_config(num_epochs=200, p=23, d_model=32, num_heads=4, d_mlp=64,
                         checkpoint_every=100, seed=(0, 1), frac_train=(0.3, 0.5))
status = runner.run_sweep(cfg, sys.argv[1], log=lambda s: None)
print(json.dumps(dict(before=before, after_import=after_import, status=status,
                      after_sweep=bool(jax.config.jax_enable_x64),
                      user_dtype=str(jnp.asarray(1.0).dtype))))
""".format(imports=IMPORT_ALL)


def _python(code, *args, env=None):
  out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600,
                       env={**{k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"},
                            **(env or {})})
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


class ImportTest(absltest.TestCase):

  def test_import_keeps_the_users_setting(self):
    code = ("import json, jax\n" + IMPORT_ALL +
            "print(json.dumps(bool(jax.config.jax_enable_x64)))")
    self.assertEqual(_python(code, env={"JAX_ENABLE_X64": "1"}), True)
    self.assertEqual(_python(code), False)

  def test_golden_numbers_with_x64_off_in_the_caller(self):
    with tempfile.TemporaryDirectory() as tmp:
      wd = os.path.join(tmp, "w")
      got = _python(GOLDEN_SWEEP, wd)
      self.assertEqual(got, dict(before=False, after_import=False, status="trained",
                                 after_sweep=False, user_dtype="float32"))
      with open(os.path.join(HERE, "golden", "modular_p23_metrics.jsonl")) as f:
        want = [r for r in map(json.loads, f) if r["epoch"] <= 200]
      with open(os.path.join(wd, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f]
    self.assertEqual(len(rows), len(want))
    for w, g in zip(want, rows):
      self.assertEqual(w, {k: g[k] for k in w})


class Float32LossTest(absltest.TestCase):

  def _f64(self, cfg):
    sw = self.built[cfg] = sweep.Sweep(cfg)
    state = sw.abstract_state()  # traced only: nothing to compile
    text = sw.chunk_fn.lower(state, sw.run_data, sw.shared).as_text()
    leaves = jax.tree.leaves((state, sw.run_data, sw.shared))
    return (re.search(r"tensor<[0-9x]*[fi]64>", text) is not None,
            {str(x.dtype) for x in leaves if x.dtype.itemsize == 8})

  def test_nox64_float32_losses_use_no_64_bit_type(self):
    small = dict(p=23, d_model=32, num_heads=4, d_mlp=64, num_epochs=100, checkpoint_every=50)
    self.built = {}
    self.assertTrue(self._f64(config.make_config(**small))[0])  # the paper's float64 loss
    with self.assertRaisesRegex(config.ConfigError, "^--x64: .*float32"):
      config.make_config(x64=False, **small)
    for dtype in ("float32", "float32_stable"):
      cfg = config.make_config(loss_dtype=dtype, dropout=(0.0, 0.1), x64=False, **small)
      self.assertEqual(self._f64(cfg), (False, set()), dtype)
    # Saved and resumed without 64-bit types (this session has the flag on: the scope is off).
    with tempfile.TemporaryDirectory() as tmp:
      log = []
      # the Sweep built above, compiled once for both calls (as a resumed process would build)
      with mock.patch.object(runner, "Sweep", lambda c, devices=None: self.built[c]):
        self.assertEqual(runner.run_sweep(cfg, tmp, log=log.append, stop_after_chunks=1,
                                         state_every_s=0),
                         "stopped")
        self.assertEqual(runner.run_sweep(cfg, tmp, log=log.append, state_every_s=0), "trained")
      self.assertTrue(any("resuming 2 runs at epoch 50/100" in l for l in log), log)
      with open(os.path.join(tmp, "metrics.jsonl")) as f:
        rows = [json.loads(l) for l in f]
    self.assertLen(rows, 2 * 11)
    self.assertTrue(np.all(np.isfinite([r["train_loss"] for r in rows])))


if __name__ == "__main__":
  absltest.main()
