"""The optimiser and train step against the authors' PyTorch semantics (SPEC §1.4–1.6)."""
from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import config, optim, sweep, train


def one_run(**kw):
  cfg = config.make_config(p=11, d_model=16, num_heads=2, num_epochs=100, **kw)
  run_data, shared = sweep.build_data(cfg, sweep.grid(cfg), 1)
  take0 = lambda t: jax.tree.map(lambda x: jnp.asarray(x[0]), t)
  return train.program(cfg), take0(run_data), jax.tree.map(jnp.asarray, shared)


def batch_loss(prog, params, run, shared):
  batch = prog.task.train_batch(run.data, shared, None, jnp.int32(0))
  return train.loss_fn(params, prog, batch, run.hyper, None)


class OptimTest(absltest.TestCase):

  def test_schedule_starts_at_zero(self):
    lrs = [float(optim.warmup_lr(1e-3, jnp.int32(i), 10)) for i in (0, 1, 5, 10, 11, 1000)]
    np.testing.assert_allclose(lrs, [0, 1e-4, 5e-4, 1e-3, 1e-3, 1e-3], rtol=1e-6)

  def test_adamw_matches_pytorch_update(self):
    cfg, run, shared = one_run(weight_decay=(0.7,))
    state = train.init_state(cfg, run)
    step = jax.jit(lambda s: train.train_step(cfg, s, run, shared))  # op by op: ~20 s here
    s1, _ = step(state)
    # Step 0 has lr 0: nothing moves, but the step counter and moments advance.
    jax.tree.map(np.testing.assert_array_equal, s1.params, state.params)
    # Step 1 by hand, as torch.optim.AdamW computes it.
    grad = jax.jit(jax.grad(lambda q: batch_loss(cfg, q, run, shared)))
    g0, g1 = grad(state.params), grad(s1.params)
    s2, _ = step(s1)
    lr, b1, b2, eps, wd = 1e-4, 0.9, 0.98, 1e-8, 0.7

    def expected(p, a, b):
      p, a, b = (np.asarray(x, np.float64) for x in (p, a, b))
      m = b1 * ((1 - b1) * a) + (1 - b1) * b
      v = b2 * ((1 - b2) * a * a) + (1 - b2) * b * b
      p = p * (1 - lr * wd)  # decoupled decay first, then the Adam step (bias-corrected, t=2)
      return p - lr * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps)
    want = jax.tree.map(expected, s1.params, g0, g1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7),
                 s2.params, want)
    self.assertEqual(int(s2.epoch), 2)

  def test_float32_loss_option(self):
    for dtype, want in (("float32", jnp.float32), ("float64", jnp.float64)):
      cfg, run, shared = one_run(loss_dtype=dtype)
      # only the output type is checked: traced, not run (op by op the step costs seconds)
      loss = jax.eval_shape(lambda s: train.train_step(cfg, s, run, shared)[1],
                            train.init_state(cfg, run))
      self.assertEqual(loss.dtype, want, dtype)

  def test_l1_penalty_added(self):
    cfg0, run, shared = one_run()
    cfg1, run1, _ = one_run(l1=1e-3)
    params = train.init_state(cfg0, run).params
    l0 = batch_loss(cfg0, params, run, shared)
    l1 = batch_loss(cfg1, params, run1, shared)
    l1_norm = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(params))
    self.assertAlmostEqual(float(l1 - l0), 1e-3 * l1_norm, places=4)

  def test_chunk_logs_losses_before_each_update(self):
    cfg, run, shared = one_run()
    state = train.init_state(cfg, run)
    _, metrics = train.train_chunk(cfg, state, run, shared, 20)
    np.testing.assert_array_equal(metrics["epoch"], [0, 10])
    np.testing.assert_array_equal(metrics["halted_at"], [-1, -1])
    # The eval's train loss at epoch 0 is the loss of the init, as is the first step's loss.
    np.testing.assert_allclose(metrics["train_loss"][0], metrics["step_train_loss"][0, 0],
                               rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
