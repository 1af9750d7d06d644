"""Model shapes, init scales, the fast one-layer path against the plain model."""
from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import config, data, losses, model, sweep, tasks, train


def small_cfg(**kw):
  return config.make_config(p=13, d_model=32, num_heads=4, num_epochs=100, **kw)


class ModelTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_shapes(self):
    cfg = config.make_config().model
    params = model.init_params(cfg, jax.random.key(0))
    chex.assert_shape(params["W_E"], (128, 114))
    chex.assert_shape(params["W_pos"], (3, 128))
    chex.assert_shape(params["W_U"], (128, 114))
    blk = params["blocks_0"]
    for n in ("W_Q", "W_K", "W_V"):
      chex.assert_shape(blk[n], (4, 32, 128))
    chex.assert_shape([blk["W_O"], blk["W_in"], blk["b_in"], blk["W_out"], blk["b_out"]],
                      [(128, 128), (512, 128), (512,), (128, 512), (128,)])
    chex.assert_type(jax.tree.leaves(params), jnp.float32)
    tokens = jnp.asarray(data.all_tokens(113)[:7])
    logits = self.variant(lambda p, t: model.apply(cfg, p, t))(params, tokens)
    chex.assert_shape(logits, (7, 3, 114))
    chex.assert_type(logits, jnp.float32)
    last = self.variant(lambda p, t: model.last_logits(cfg, p, t))(params, tokens)
    chex.assert_shape(last, (7, 114))

  def test_init_scales_and_sum_of_squares(self):
    # SPEC §1.3: ≈ 1781 at init (the mainline epoch-0 checkpoint had 1783.38).
    params = model.init_params(config.make_config().model, jax.random.key(0))
    sq = sum(float(jnp.sum(x.astype(jnp.float64) ** 2)) for x in jax.tree.leaves(params))
    self.assertAlmostEqual(sq, 1781, delta=40)
    self.assertAlmostEqual(float(jnp.std(params["W_U"])), 114 ** -0.5, delta=0.005)
    self.assertAlmostEqual(float(jnp.std(params["blocks_0"]["W_out"])), 128 ** -0.5, delta=0.003)
    self.assertEqual(float(jnp.abs(params["blocks_0"]["b_in"]).max()), 0.0)
    self.assertAlmostEqual(float(jnp.std(params["W_E"])), 128 ** -0.5, delta=0.003)
    # --embed_std (the induction authors' nn.Embedding-like W_E) changes W_E only.
    wide = model.init_params(config.make_config(embed_std=1.0).model, jax.random.key(0))
    self.assertAlmostEqual(float(jnp.std(wide["W_E"])), 1.0, delta=0.03)
    np.testing.assert_array_equal(wide["W_U"], params["W_U"])
    with self.assertRaisesRegex(config.ConfigError, "--embed_std"):
      config.make_config(embed_std=0.0)

  @parameterized.parameters(("digit_addition", False, 1), ("skip_trigram", True, 1),
                            ("repeated_subsequence", True, 2), ("add", False, 2))
  def test_loss_positions_only_equal_the_plain_model(self, task, attn_only, layers):
    data = dict(p=23) if task == "add" else dict(num_data=8, eval_size=8)
    cfg = config.make_config(task=task, d_model=16, num_heads=2, attn_only=attn_only,
                             num_layers=layers, **data).model
    pos = tasks.from_config(config.make_config(task=task, **data)).loss_pos
    # Doubled weights make the sequence models' attention non-trivial; in the 3-token modular
    # model they saturate the second block's softmax, whose float32 W_Q/W_K gradients are then
    # cancellation noise in either path (they agree to 1e-6 in float64).
    scale = 1.0 if task == "add" else 2.0
    params = jax.tree.map(lambda x: scale * x, model.init_params(cfg, jax.random.key(3)))
    tokens = jax.random.randint(jax.random.key(4), (5, cfg.n_ctx), 0, cfg.d_vocab)
    plain = lambda p: model.apply(cfg, p, tokens)[:, jnp.asarray(pos)]
    sliced = lambda p: model.logits_at(cfg, p, tokens, pos)
    grad = lambda f: jax.grad(lambda p: jnp.sum(f(p) ** 2))
    # one compiled program (op by op, the forward and backward cost ~20 s per task here)
    both = jax.jit(lambda p: (sliced(p), plain(p), grad(sliced)(p), grad(plain)(p)))
    y_sliced, y_plain, g_sliced, g_plain = both(params)
    np.testing.assert_allclose(y_sliced, y_plain, rtol=1e-5, atol=1e-5)
    self.assertEqual("W_in" in params["blocks_0"], not attn_only)
    for a, b in zip(jax.tree.leaves(g_sliced), jax.tree.leaves(g_plain)):  # float32 sums
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))

  @parameterized.parameters("relu", "gelu")
  def test_fast_path_equals_plain_model(self, act):
    cfg = small_cfg(act=act)
    params = model.init_params(cfg.model, jax.random.key(1))
    # Make the attention non-trivial so a wrong table would show.
    params = jax.tree.map(lambda x: 2 * x, params)
    tokens = jnp.asarray(data.all_tokens(13))
    labels = jnp.asarray(data.labels("add", 13))
    plain = jax.jit(lambda p: model.apply(cfg.model, p, tokens)[:, -1])
    fast = jax.jit(lambda p: model.last_logits(cfg.model, p, tokens))
    np.testing.assert_allclose(fast(params), plain(params), rtol=1e-5,
                               atol=2e-6 * float(jnp.abs(plain(params)).max()))

    def loss(p, fn):
      return losses.cross_entropy(fn(p), labels, "float64").mean()
    g_plain = jax.jit(jax.grad(lambda p: loss(p, plain)))(params)
    g_fast = jax.jit(jax.grad(lambda p: loss(p, fast)))(params)
    chex.assert_trees_all_close(g_fast, g_plain, rtol=1e-4, atol=1e-6)

  def test_causal_mask(self):
    # Changing a later token must not change earlier positions' logits.
    cfg = small_cfg(num_layers=2).model
    params = model.init_params(cfg, jax.random.key(2))
    t1 = jnp.array([[1, 2, 13]]); t2 = jnp.array([[1, 5, 13]])
    l1, l2 = model.apply(cfg, params, t1), model.apply(cfg, params, t2)
    np.testing.assert_allclose(l1[:, 0], l2[:, 0], rtol=1e-6)
    self.assertGreater(float(jnp.abs(l1[:, 1] - l2[:, 1]).max()), 1e-4)

  def test_dropout_only_in_training(self):
    cfg = small_cfg().model
    params = model.init_params(cfg, jax.random.key(0))
    tokens = jnp.asarray(data.all_tokens(13))
    last = jax.jit(lambda *drop: model.last_logits(cfg, params, tokens, drop or None))
    a, b = last(), last()
    c = last(jnp.float64(0.5), jax.random.key(3))
    d = last(jnp.float64(1.0), jax.random.key(3))
    np.testing.assert_array_equal(a, b)
    self.assertGreater(float(jnp.abs(a - c).max()), 1e-3)
    np.testing.assert_array_equal(a, d)  # keep probability 1: exactly no dropout

  def test_cache(self):
    cfg = small_cfg().model
    params = model.init_params(cfg, jax.random.key(0))
    logits, cache = jax.jit(lambda p, t: model.apply_with_cache(cfg, p, t))(
        params, jnp.asarray(data.all_tokens(13)))
    chex.assert_shape(cache["blocks_0"]["attn_pattern"], (169, 4, 3, 3))
    chex.assert_shape(cache["blocks_0"]["mlp_post"], (169, 3, 128))
    np.testing.assert_allclose(cache["blocks_0"]["attn_pattern"].sum(-1), 1.0, rtol=1e-5)


if __name__ == "__main__":
  absltest.main()


class AuthorsWeightsTest(absltest.TestCase):

  def test_forward_on_authors_final_weights_reproduces_their_losses(self):
    # SPEC §5.4: the λ=0.1 run (split seed 1, frac 0.3): train 9.20e-9, test 4.99e-7.
    import os
    from grokjax import interop
    path = os.path.join(os.path.dirname(interop.__file__), "reference_data",
                        "authors_wd0.1_final_weights.npz")
    params, mcfg = interop.load(path)
    cfg = config.make_config(frac_train=(0.3,), split_seed=(1,))
    self.assertEqual(mcfg, cfg.model)
    run_data, shared = sweep.build_data(cfg, sweep.grid(cfg), 1)
    run = jax.tree.map(lambda x: jnp.asarray(x[0]), run_data)
    shared = jax.tree.map(jnp.asarray, shared)
    prog = train.program(cfg)
    m = jax.jit(lambda p: train.evaluate(prog, p, run, shared, jnp.int32(0)))(params)
    np.testing.assert_allclose(float(m["train_loss"]), 9.202e-9, rtol=0.01)
    np.testing.assert_allclose(float(m["test_loss"]), 4.988e-7, rtol=0.01)
    self.assertEqual(float(m["test_acc"]), 1.0)
    # The plain model agrees with the fast path used for training.
    tokens = shared["tokens"][:500]
    np.testing.assert_allclose(model.last_logits(cfg.model, params, tokens),
                               model.apply(cfg.model, params, tokens)[:, -1], rtol=1e-4, atol=2e-3)
