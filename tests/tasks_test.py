"""The task layer: each task's data, the validation of task flags, the modular path unchanged
(golden metrics of the pre-task-layer code), sequence tasks in one vmapped sweep, and exact
resume after SIGKILL with infinite data."""
import json
import os
import signal
import sys
import time
from unittest import mock

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import checkpoint, config, runner, sweep, tasks
from grokjax.config import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sweep_test import run_cli, tmpdir  # noqa: E402

TINY_SEQ = dict(d_model=16, num_heads=2, eval_every=10, checkpoint_every=50)


class DataTest(absltest.TestCase):

  def test_digit_addition_sums(self):
    t = tasks.from_config(config.make_config(task="digit_addition"))
    b = jax.tree.map(np.asarray, t.sample(jax.random.key(0), 256))
    self.assertEqual(b.tokens.shape, (256, 18))
    self.assertEqual(t.loss_pos, (11, 12, 13, 14, 15, 16))
    num = lambda d: sum(int(x) * 10 ** (len(d) - 1 - i) for i, x in enumerate(d))
    for row in b.tokens[:50]:
      self.assertEqual(row[5], 10)
      self.assertEqual(row[11], 11)
      self.assertEqual(num(row[:5]) + num(row[6:11]), num(row[12:]))
    np.testing.assert_array_equal(b.targets, b.tokens[:, 12:])  # logits at p predict p + 1
    self.assertEqual(b.tokens[:, 12].max(), 1)                  # the carry digit
    np.testing.assert_array_equal(b.groups[0], np.arange(6))

  def test_repeated_subsequence_copies(self):
    t = tasks.from_config(config.make_config(task="repeated_subsequence"))
    b = jax.tree.map(np.asarray, t.sample(jax.random.key(1), 64))
    self.assertEqual(b.tokens.shape, (64, 85))
    self.assertEqual(b.targets.shape, (64, 84))
    np.testing.assert_array_equal(b.weights.sum(1), 32)        # 2nd and 3rd copies, 16 each
    np.testing.assert_array_equal((b.weights * (b.groups == 0)).sum(1), 2)  # their first tokens
    for tok, w in zip(b.tokens, b.weights):
      pos = np.flatnonzero(w) + 1                               # positions of the copies' tokens
      second, third = tok[pos[:16]], tok[pos[16:]]
      np.testing.assert_array_equal(second, third)
      self.assertTrue(np.all(np.diff(pos[:16]) == 1) and np.all(np.diff(pos[16:]) == 1))
      # The first copy occurs before the second, somewhere in the prefix.
      prefix = tok[:pos[0]]
      hits = [s for s in range(len(prefix) - 15) if np.array_equal(prefix[s:s + 16], second)]
      self.assertNotEmpty(hits)
    starts = [np.flatnonzero(w)[0] + 1 for w in b.weights]
    self.assertGreater(len(set(starts)), 10)                    # random places

  def test_skip_trigram_one_special_token(self):
    t = tasks.from_config(config.make_config(task="skip_trigram", n_ctx=7))
    b = jax.tree.map(np.asarray, t.sample(jax.random.key(2), 500))
    self.assertEqual(b.tokens.shape, (500, 7))
    np.testing.assert_array_equal((b.tokens >= 10).sum(1), 1)
    np.testing.assert_array_equal(b.tokens.max(1) - 10, b.targets[:, 0])
    self.assertEqual(set(np.argmax(b.tokens, 1)), set(range(7)))

  def test_fixed_sets_and_streams_come_from_the_data_seed(self):
    cfg = config.make_config(task="skip_trigram", num_data=32, split_seed=(0, 1))
    runs = sweep.grid(cfg)
    self.assertNotEqual(runs[0]["data_fingerprint"], runs[1]["data_fingerprint"])
    self.assertEqual(runs[0]["data_fingerprint"], sweep.grid(cfg)[0]["data_fingerprint"])
    t = tasks.from_config(config.make_config(task="skip_trigram"))
    a = t.train_batch(None, None, jax.random.key(0), jnp.int32(5))
    b = t.train_batch(None, None, jax.random.key(0), jnp.int32(6))
    c = t.train_batch(None, None, jax.random.key(0), jnp.int32(5))
    np.testing.assert_array_equal(a.tokens, c.tokens)
    self.assertFalse(np.array_equal(a.tokens, b.tokens))


class ConfigTest(absltest.TestCase):

  def assertFlagError(self, flag, **kw):
    with self.assertRaisesRegex(ConfigError, f"^--{flag}:"):
      config.make_config(**kw)

  def test_flags_that_do_not_apply_name_the_flag(self):
    self.assertFlagError("frac_train", task="digit_addition", frac_train=0.3)
    self.assertFlagError("num_data", task="add", num_data=700)
    self.assertFlagError("p", task="skip_trigram", p=17)
    self.assertFlagError("batch_size", task="digit_addition", num_data=700, batch_size=64)
    self.assertFlagError("n_ctx", task="digit_addition", n_ctx=20)
    self.assertFlagError("n_ctx", task="repeated_subsequence", n_ctx=40)
    self.assertFlagError("grokfast_lamb", grokfast_lamb=1.0)
    self.assertFlagError("dropout", attn_only=True, dropout=0.1)

  def test_bad_values_name_the_flag(self):
    self.assertFlagError("lr", lr=float("inf"))
    self.assertFlagError("weight_decay", weight_decay=float("nan"))
    self.assertFlagError("l1", l1=float("inf"))
    self.assertFlagError("seed", seed=3_000_000_000)
    self.assertFlagError("split_seed", split_seed=-1)
    self.assertFlagError("b2", b2=1.0)

  def test_task_sizes(self):
    cfg = config.make_config(task="repeated_subsequence", attn_only=True, num_layers=2)
    self.assertEqual((cfg.model.d_vocab, cfg.model.d_vocab_out, cfg.model.n_ctx), (128, 128, 85))
    self.assertEqual(cfg.batch_size, 128)
    self.assertFalse(cfg.model.use_mlp)
    old = json.loads(config.make_config(p=23).to_json())
    for k in ("lr", "l1"):
      old["train"][k] = old["sweep"].pop(k)[0]
    old["model"]["dropout"] = old["sweep"].pop("dropout")[0]
    self.assertEqual(config.Config.from_dict(old), config.make_config(p=23))

  def test_memory_estimate_refuses_before_allocating(self):
    with self.assertRaisesRegex(ConfigError, r"GiB"):
      sweep.Sweep(config.make_config(p=5001, d_model=32, num_heads=4))


class GoldenTest(absltest.TestCase):
  """The modular path did not move: metrics equal, bit for bit, those the code before the task
  layer wrote (tests/golden/, made at commit d009e11). Update the golden files only for a
  deliberate change of the modular numerics, and say so in the commit."""

  def check(self, name, epochs, **kw):
    wd = os.path.join(tmpdir(self), "w")
    runner.run_sweep(config.make_config(num_epochs=epochs, **kw), wd, log=lambda s: None)
    with open(os.path.join(HERE, "golden", name)) as f:
      want = [json.loads(l) for l in f]
    want = [r for r in want if r["epoch"] <= epochs]
    with open(os.path.join(wd, "metrics.jsonl")) as f:
      got = [json.loads(l) for l in f]
    self.assertLen(got, len(want))
    for w, g in zip(want, got):
      self.assertEqual(w, {k: g[k] for k in w})

  def test_modular_sweep(self):
    self.check("modular_p23_metrics.jsonl", 200, p=23, d_model=32, num_heads=4, d_mlp=64,
               checkpoint_every=100, seed=(0, 1), frac_train=(0.3, 0.5))

  def test_two_layers_dropout_l1(self):
    self.check("dropout_l1_2layer_p23_metrics.jsonl", 100, p=23, d_model=32, num_heads=4,
               d_mlp=64, checkpoint_every=100, dropout=0.2, l1=1e-4, num_layers=2)


class SequenceSweepTest(absltest.TestCase):

  def test_seeds_and_weight_decays_in_one_program(self):
    cfg = config.make_config(task="digit_addition", batch_size=16, eval_size=32, num_epochs=100,
                             seed=(0, 1, 2), weight_decay=(0.1, 1.0), **TINY_SEQ)
    wd = os.path.join(tmpdir(self), "w")
    sw = sweep.Sweep(cfg)
    with mock.patch.object(runner, "Sweep", lambda c, devices=None: sw):
      self.assertEqual(runner.run_sweep(cfg, wd, log=lambda s: None), "trained")
    self.assertEqual(sw.chunk_fn._cache_size(), 1)  # every chunk of the 6 runs: one program
    rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
    self.assertLen(rows, 6 * 11)
    groups = [rows[-1][f"test_loss_digit{j}"] for j in range(6)]
    self.assertAlmostEqual(np.mean(groups), rows[-1]["test_loss"], places=6)
    self.assertEqual(len({(r["seed"], r["weight_decay"]) for r in rows}), 6)

  def test_sigkill_and_resume_is_exact_with_infinite_data(self):
    tmp = tmpdir(self)
    args = ["--task=skip_trigram", "--attn_only", "--d_model=16", "--num_heads=2", "--n_ctx=6",
            "--batch_size=32", "--eval_size=64", "--checkpoint_every=50", "--num_epochs=600",
            "--seed=0,1"]
    ref = run_cli(args + [f"--workdir={tmp}/ref"])
    out = ref.communicate()[0]
    self.assertEqual(ref.returncode, 0, out)
    killed = run_cli(args + [f"--workdir={tmp}/kill", "--state_every_s=0"],
                     stdout_to=os.path.join(tmp, "killed.log"))
    state_dir = os.path.join(tmp, "kill", "checkpoints", "state")
    steps, deadline = [], time.time() + 240
    while time.time() < deadline:
      steps = [int(s) for s in os.listdir(state_dir) if s.isdigit()] if os.path.isdir(state_dir) else []
      if steps and max(steps) >= 150:
        break
      time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    self.assertLess(max(steps), 600, "the run finished before it could be killed")
    resumed = run_cli(args + [f"--workdir={tmp}/kill"])
    out = resumed.communicate()[0]
    self.assertEqual(resumed.returncode, 0, out)
    self.assertIn("resum", out)
    read = lambda d: [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    a, b = read(f"{tmp}/ref"), read(f"{tmp}/kill")
    key = lambda r: (r["run"], r["epoch"])
    self.assertEqual(sorted(a, key=key), sorted(b, key=key))
    pa, pb = (checkpoint.load_params(f"{tmp}/{d}", 600) for d in ("ref", "kill"))
    jax.tree.map(np.testing.assert_array_equal, pa, pb)


if __name__ == "__main__":
  absltest.main()
