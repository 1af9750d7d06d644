"""Progress measures (grokjax/measures.py): planted signals, a hand-built Fourier-multiplication
logit table, jit/vmap consistency, and the expected values on the authors' λ = 0.1 weights.

The reference test (class AuthorsWeightsTest) compares with `authors_wd0.1_expected.json`, an
independent float64 implementation of SPEC §3: update those numbers only if SPEC §3 changes.
"""
import json
import math

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import analysis, config, data, evidence, fourier, interop, measures, model

P = 13  # small model for the structural tests
K = (P - 1) // 2


def _small_params(seed: int, p: int = P):
  cfg = config.make_config(p=p, d_model=16, num_heads=4, d_mlp=32, num_epochs=100).model
  return _init(cfg, jax.random.key(seed)), cfg


_init = jax.jit(model.init_params, static_argnums=0)


def _split(p: int = P, frac: float = 0.3, seed: int = 0):
  return jnp.asarray(data.labels("add", p)), jnp.asarray(data.train_mask(p, frac, seed))


def fourier_multiplication_logits(p: int, keys, scale: float) -> np.ndarray:
  """L[(a, b), c] = scale · Σ_k cos(w_k (a + b − c)): the paper's algorithm, at the logits."""
  a, b = np.divmod(np.arange(p * p), p)
  c = np.arange(p)
  return scale * sum(np.cos(2 * np.pi * k * ((a + b)[:, None] - c[None, :]) / p) for k in keys)


class LossTest(absltest.TestCase):

  def test_ce_matches_extended_precision_log_softmax(self):
    rng = np.random.default_rng(0)
    L = (rng.normal(size=(200, 17)) * 10).astype(np.float32)
    L[:100, 3] += 30  # confident rows: loss 1e-12…1e-4, where float32 log-softmax gives 0
    y = np.where(np.arange(200) < 100, 3, rng.integers(0, 17, 200))
    x = L.astype(np.longdouble)  # 80-bit on x86: a reference exact to ~1e-19 · |logit|
    m = x.max(1, keepdims=True)
    ref = (np.log(np.exp(x - m).sum(1)) + m[:, 0] - x[np.arange(200), y]).astype(np.float64)
    loss, ok = jax.jit(measures.ce_and_correct)(jnp.asarray(L), jnp.asarray(y))
    self.assertEqual(loss.dtype, jnp.float64)
    np.testing.assert_allclose(np.asarray(loss), ref, rtol=1e-4, atol=1e-15)
    self.assertTrue(np.all(np.asarray(loss)[:100] > 0))
    naive32 = np.asarray(-jax.nn.log_softmax(jnp.asarray(L), -1)[jnp.arange(200), y])
    self.assertGreater(np.max(np.abs(naive32[:100] - ref[:100]) / ref[:100]), 0.5)
    np.testing.assert_array_equal(np.asarray(ok), L.argmax(1) == y)
    loss64, _ = measures.ce_and_correct(jnp.asarray(L, jnp.float64), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(loss64), ref, rtol=1e-4, atol=1e-18)

  def test_gini(self):
    self.assertAlmostEqual(float(measures.gini(jnp.ones(10))), 0.0, places=12)
    self.assertAlmostEqual(float(measures.gini(jnp.zeros(10).at[3].set(2.0))), 0.9, places=12)


class PlantedTest(absltest.TestCase):

  def test_planted_W_L_frequency_is_key(self):
    params, _ = _small_params(0)
    k = 4
    F = fourier.basis(P)
    rng = np.random.default_rng(0)
    # W_L = W_U[:, :p]ᵀ W_out: a cos/sin(w_k c) pattern along the logit axis of W_U plants one
    # along the logit axis of W_L, on top of small noise.
    W_U = (np.outer(rng.normal(size=16), F[2 * k - 1]) + np.outer(rng.normal(size=16), F[2 * k])
           + 0.02 * rng.normal(size=(16, P)))
    params["W_U"] = params["W_U"].at[:, :P].set(jnp.asarray(W_U, jnp.float32))
    np.testing.assert_allclose(np.asarray(measures.W_L(params)),
                               W_U.T @ np.asarray(params["blocks_0"]["W_out"]), atol=1e-5)
    key = np.asarray(jax.jit(measures.key_freqs_W_L)(params))
    self.assertEqual(list(np.flatnonzero(key) + 1), [k])
    self.assertFalse(bool(measures.W_L_dense(params)))

  def test_dense_W_L_spectrum_falls_back_to_the_largest_frequencies(self):
    """An untrained model has no sparse spectrum: the key set is the KEY_FALLBACK largest, not
    every frequency (which would make the excluded loss remove the whole logit table)."""
    p = 53  # K = 26 > KEY_MAX
    params, _ = _small_params(3, p)
    n = np.asarray(fourier.per_freq_norms(measures.fourier_norms_W_L(params)))
    self.assertGreater(int(np.sum(n > measures.KEY_FRAC * n.max())), measures.KEY_MAX)
    self.assertTrue(bool(measures.W_L_dense(params)))
    key = np.asarray(jax.jit(measures.key_freqs_W_L)(params))
    self.assertEqual(int(key.sum()), measures.KEY_FALLBACK)
    self.assertEqual(set(np.flatnonzero(key)), set(np.argsort(n)[-measures.KEY_FALLBACK:]))

  def test_planted_neuron_frequency(self):
    a, b = np.divmod(np.arange(P * P), P)
    ks = np.array([1, 3, 5, 6])
    rng = np.random.default_rng(1)
    acts = np.maximum(0, np.cos(2 * np.pi * ks[None, :] * (a + b)[:, None] / P + rng.uniform(
        0, 6, 4)))  # ReLU of a single wave: degree-2 terms dominate but higher harmonics exist
    acts = np.concatenate([np.cos(2 * np.pi * 2 * (a + b) / P)[:, None] + 3.0, acts,
                           np.zeros((P * P, 1))], axis=1)  # an exact wave; a dead neuron
    freq, fve, alive = jax.jit(measures.neuron_freqs, static_argnums=1)(jnp.asarray(acts), P)
    np.testing.assert_array_equal(np.asarray(freq)[:5], [2, 1, 3, 5, 6])
    self.assertAlmostEqual(float(fve[0]), 1.0, places=10)
    self.assertTrue(np.all(np.asarray(fve)[1:5] > 0.5))
    self.assertEqual(list(np.asarray(alive)), [True] * 5 + [False])
    self.assertEqual(float(fve[5]), 0.0)
    key = measures.key_freqs_neuron_rule(jnp.asarray(acts), P)
    self.assertEqual(list(np.flatnonzero(np.asarray(key)) + 1), [1, 2, 3, 5, 6])

  def test_planted_attention_and_ov_frequencies(self):
    """W_E with only frequency k: every head's score lookup C_h and OV output live on k."""
    params, _ = _small_params(2)
    k = 3
    F = fourier.basis(P)
    rng = np.random.default_rng(2)
    W_E = np.asarray(params["W_E"]).copy()
    W_E[:, :P] = np.outer(rng.normal(size=16), F[2 * k - 1]) + np.outer(rng.normal(size=16), F[2 * k])
    params["W_E"] = jnp.asarray(W_E, jnp.float32)
    params["W_pos"] = jnp.zeros_like(params["W_pos"])  # no constant term from the position
    fw = measures.forward(params)
    fits = jax.jit(measures.attention_fits)(params, fw["pattern"])
    ov, hat = np.asarray(fits["ov_fourier_norms"]), np.asarray(fits["score_hat"])
    self.assertEqual(ov.shape, (4, P))
    self.assertEqual(hat.shape, (4, P))
    others = np.ones(P, bool)
    others[[2 * k - 1, 2 * k]] = False
    np.testing.assert_allclose(ov[:, others], 0.0, atol=1e-5)
    np.testing.assert_allclose(hat[:, others], 0.0, atol=1e-5)
    self.assertTrue(np.all(ov[:, 2 * k - 1] + ov[:, 2 * k] > 1e-3))
    self.assertEqual(list(np.asarray(fits["score_freq"])), [k] * 4)
    # The OV spectrum is the norm of each head's output W_O^h W_V^h W_E[:, a] in the basis.
    blk = params["blocks_0"]
    W_O = np.asarray(blk["W_O"], np.float64).reshape(16, 4, 4)
    ov0 = W_O[:, 0] @ np.asarray(blk["W_V"], np.float64)[0] @ W_E[:, :P]
    np.testing.assert_allclose(ov[0], np.linalg.norm(ov0 @ F.T, axis=0), rtol=1e-4, atol=1e-6)

  def test_fourier_multiplication_restricted_and_excluded(self):
    keys = [2, 5]
    L = jnp.asarray(fourier_multiplication_logits(P, keys, scale=15.0))
    y, train = _split()
    key_K = jnp.zeros(K).at[jnp.array(keys) - 1].set(1.0)
    full = measures.split_means(measures.per_example_ce(L, y), train)["all"]
    restricted = measures.split_means(
        measures.per_example_ce(measures.restricted_logits(L, key_K, P), y), train)
    excluded = measures.split_means(
        measures.per_example_ce(measures.excluded_logits(L, key_K, P), y), train)
    self.assertLess(float(full), 1e-3)
    self.assertLess(float(restricted["all"]), 1e-3)
    np.testing.assert_allclose(float(restricted["all"]), float(full), rtol=1e-6)
    self.assertGreater(float(excluded["train"]), 0.99 * math.log(P))  # chance is ln p
    # Logit FVE: the table is exactly Σ α_k Ĉ_k.
    self.assertAlmostEqual(float(measures.logit_fve(L, key_K, P)), 1.0, places=10)
    # Per-frequency excluded loss: removing a key frequency hurts (the other one alone still
    # points at a + b, less sharply); removing any other frequency changes nothing.
    abl = np.asarray(measures.ablation_per_freq(L, y, train, P))
    self.assertGreater(abl[1, 1], 100 * float(full))                      # k = 2
    np.testing.assert_allclose(abl[0], float(full), rtol=1e-6)            # k = 1


class ForwardTest(absltest.TestCase):

  def test_fast_forward_equals_plain_model(self):
    params, cfg = _small_params(3)
    tokens = jnp.asarray(data.all_tokens(P))
    logits, cache = model.apply_with_cache(cfg, params, tokens)
    fw = jax.jit(measures.forward)(params)
    np.testing.assert_allclose(np.asarray(fw["logits"]), np.asarray(logits[:, -1, :P]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fw["mlp_post"]),
                               np.asarray(cache["blocks_0"]["mlp_post"][:, -1]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(fw["pattern"]),
                               np.asarray(cache["blocks_0"]["attn_pattern"][:, :, -1]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(fw["mlp_logits"]),
                               np.asarray(fw["mlp_post"] @ measures.W_L(params).T), atol=1e-5)

  def test_two_layers_fall_back_to_plain_model(self):
    cfg = config.make_config(p=P, d_model=16, num_heads=2, num_layers=2, num_epochs=100).model
    params = model.init_params(cfg, jax.random.key(0))
    logits = model.apply(cfg, params, jnp.asarray(data.all_tokens(P)))[:, -1, :P]
    fw = measures.forward(params)
    np.testing.assert_allclose(np.asarray(fw["logits"]), np.asarray(logits), atol=1e-5)
    chex.assert_shape(fw["mlp_post"], (P * P, 64))


class JitVmapTest(parameterized.TestCase):
  """Every bundle jits and vmaps over checkpoints: batched equals one by one."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    ps = [_small_params(s)[0] for s in range(3)]
    cls.stacked = jax.tree.map(lambda *x: jnp.stack(x), *ps)
    cls.singles = ps
    cls.y, cls.train = _split()

  def _check(self, fn):
    batched = jax.jit(jax.vmap(fn))(self.stacked)
    single = jax.jit(fn)  # compiled once for every checkpoint
    for i, prm in enumerate(self.singles):
      one = single(prm)
      chex.assert_trees_all_close(jax.tree.map(lambda t: t[i], batched), one,
                                  rtol=1e-5, atol=1e-6)

  def test_dynamics(self):
    key = jnp.array([1, 4, 6])
    self._check(lambda prm: measures.dynamics(prm, self.y, self.train, key))

  def test_dynamics_detected(self):
    self._check(lambda prm: measures.dynamics_detected(prm, self.y, self.train))

  def test_evidence(self):
    self._check(lambda prm: evidence.evidence(prm, self.y, self.train))

  def test_lax_map_batches_equal_vmap(self):
    key = jnp.array([2, 3])
    fn = lambda prm: measures.dynamics(prm, self.y, self.train, key)
    a = jax.jit(lambda s: jax.lax.map(fn, s, batch_size=2))(self.stacked)
    b = jax.jit(jax.vmap(fn))(self.stacked)
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)

  def test_dynamics_agrees_with_mask_form(self):
    keys = [2, 5]
    key_K = jnp.zeros(K).at[jnp.array(keys) - 1].set(1.0)

    @jax.jit
    def both(prm):
      dyn = measures.dynamics(prm, self.y, self.train, jnp.array(keys))
      L = measures.forward(prm)["logits"].astype(jnp.float64)
      r = measures.split_means(measures.per_example_ce(
          measures.restricted_logits(L, key_K, P), self.y), self.train)
      x = measures.split_means(measures.per_example_ce(
          measures.excluded_logits(L, key_K, P), self.y), self.train)
      return dyn, r, x, measures.ablation_per_freq(L, self.y, self.train, P), \
          fourier.cos_abc_coeffs(L, P)

    dyn, r, x, abl, alpha = both(self.singles[0])
    np.testing.assert_allclose(float(dyn["restricted_loss_all"]), float(r["all"]), rtol=1e-5)
    np.testing.assert_allclose(float(dyn["excluded_loss_train"]), float(x["train"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dyn["excluded_loss_train_per_freq"]),
                               np.asarray(abl)[np.array(keys) - 1, 1], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dyn["cos_coeff"]), np.asarray(alpha)[np.array(keys) - 1],
                               rtol=1e-4, atol=1e-5)


class AuthorsWeightsTest(absltest.TestCase):
  """SPEC §5.4: the λ = 0.1 run's final weights against the expected values."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.rec = analysis.analyze_weights(
        analysis.reference_path("authors_wd0.1_final_weights.npz"), 0.3, 1)
    with open(analysis.reference_path("authors_wd0.1_expected.json")) as f:
      cls.exp = json.load(f)["values"]

  def test_losses(self):
    r, e = self.rec, self.exp
    pairs = dict(loss_train="loss_train_113", loss_test="loss_test_113", loss_all="loss_all_113",
                 restricted_loss_all="restricted_loss_all",
                 restricted_loss_train="restricted_loss_train",
                 restricted_loss_test="restricted_loss_test",
                 excluded_loss_train="excluded_loss_train", excluded_loss_test="excluded_loss_test",
                 keep_3x3_blocks_loss_all="keep_3x3_blocks_loss_all",
                 keep_2x2_blocks_loss_all="keep_2x2_blocks_loss_all")
    for ours, theirs in pairs.items():
      np.testing.assert_allclose(r[ours], e[theirs], rtol=0.02, err_msg=ours)
    for k, v in e["excluded_loss_train_per_freq"].items():
      np.testing.assert_allclose(r["excluded_loss_train_per_freq"][k], v, rtol=0.02, err_msg=k)
    self.assertEqual(r["acc_train"], e["acc_train"])
    self.assertEqual(r["acc_test"], e["acc_test"])
    self.assertAlmostEqual(r["excluded_acc_train"], e["excluded_acc_train"], places=6)

  def test_key_frequencies_and_clusters(self):
    r, e = self.rec, self.exp
    self.assertEqual(r["key_freqs"], e["keyfreqs_WL_perfreqnorm_gt_0.25max"])
    self.assertEqual(r["key_freqs_neuron_rule"], e["keyfreqs_neuron_unique_1to56"])
    self.assertEqual(r["neuron_clusters"], {k: v for k, v in e["neuron_clusters_fve_gt_0.85"].items()})
    self.assertEqual(r["n_neurons_clustered"], e["n_neurons_fve_gt_0.85"])
    self.assertEqual(r["n_dead_neurons"], e["n_dead_neurons"])

  def test_gini_fve_norms_and_ratios(self):
    r, e = self.rec, self.exp
    for ours, theirs in dict(gini_W_E="gini_WE_113comp", gini_W_L="gini_WL_113comp",
                             logit_fve="logit_FVE_global_centered",
                             table1_fve_mean="table1_FVE_mean",
                             W_L_residual_ratio="WL_residual_frob_ratio").items():
      self.assertAlmostEqual(r[ours], e[theirs], delta=0.005, msg=ours)
    for row in r["table1_fve"]:
      self.assertAlmostEqual(row["fve"], e["table1_FVE"][f"{row['kind']}{row['k']}"], delta=0.005)
    np.testing.assert_allclose(r["W_E_fourier_norms"], e["WE_fourier_norms_113"], atol=1e-4)
    np.testing.assert_allclose(r["W_L_fourier_norms"], e["WL_fourier_norms_113"], atol=1e-4)
    for k, v in e["cos_coeffs_keyfreqs"].items():
      np.testing.assert_allclose(r["cos_coeffs"][k], v, rtol=1e-4)

  def test_sum_of_squared_weights(self):
    r, e = self.rec, self.exp
    np.testing.assert_allclose(r["sum_sq_weights"], e["sum_sq_weights_total"], rtol=1e-6)
    names = {"W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U"}
    for ours, v in r["sum_sq_weights_by_param"].items():
      theirs = names.get(ours) or ours.replace("blocks_0.", "blocks.0.attn." if ours[-3:] in (
          "W_Q", "W_K", "W_V", "W_O") else "blocks.0.mlp.")
      np.testing.assert_allclose(v, e["sum_sq_weights"][theirs], rtol=1e-6, err_msg=ours)

  def test_other_authors_weights_are_finite(self):
    for name, frac, seed in (("authors_lowprec_final_weights.npz", 0.3, 1),
                             ("authors_nowd_final_weights.npz", 0.9, 0)):
      rec = analysis.analyze_weights(analysis.reference_path(name), frac, seed)
      for k in ("loss_train", "loss_test", "restricted_loss_all", "excluded_loss_train",
                "gini_W_E", "gini_W_L", "logit_fve", "table1_fve_mean", "W_L_residual_ratio",
                "sum_sq_weights"):
        self.assertTrue(np.isfinite(rec[k]), f"{name}: {k} = {rec[k]}")
      self.assertNotEmpty(rec["key_freqs"])
      self.assertTrue(all(np.isfinite(v) for v in rec["excluded_loss_train_per_freq"].values()))


if __name__ == "__main__":
  absltest.main()
