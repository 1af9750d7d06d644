"""Local learning coefficient (grokjax/llc.py) on models whose coefficient is known.

* Regular: least squares in d = 10 parameters, λ = d/2 = 5.
* Degenerate: 2 quadratic + 2 quartic + 3 ignored parameters, λ = 2·½ + 2·¼ + 0 = 1.5 (a regular
  model of 7 parameters has 3.5); and the product model L = (ab)² at a = b = 0, whose asymptotic
  coefficient is ½ (a regular 2-parameter model has 1) with multiplicity 2, so at finite nβ the
  expectation sits well below ½; it is checked against the exact value of its localised tempered
  posterior, a 1-D integral.
Each model compiles once (a few seconds on a loaded 2-core CPU); the sampler settings are chosen so
ε·(nβ·h_max + γ) ≈ 0.05 and the chains mix many times over (see the module docstring).
"""
import functools
import math

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import llc

N = 1000
REG_CFG = llc.LLCConfig(epsilon=3e-4, gamma=1.0, num_chains=8, num_draws=2000, num_burnin=300,
                        batch_size=50)


@functools.cache
def regression():
  """(X, y) with n = 1000, d = 10, noise 0.1; w* = the least-squares fit (float32)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, 10))
  y = x @ rng.normal(size=10) + 0.1 * rng.normal(size=N)
  w_star = np.linalg.lstsq(x, y, rcond=None)[0]
  return (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)), jnp.asarray(w_star,
                                                                                 jnp.float32)


def lsq_loss(w, batch):
  x, y = batch
  return 0.5 * jnp.mean((y - x @ w) ** 2)


@functools.cache
def regression_estimator():
  """jit((w*, key, data) -> estimate): data is an argument, so it is not baked into the program."""
  return jax.jit(lambda w, key, data: llc.estimate(
      lsq_loss, w, llc.batch_sampler(data, REG_CFG.batch_size), N, REG_CFG, key))


def unit_rms_data():
  """1000 scalars with mean square exactly 1: the full-data loss below is the formula itself."""
  x = np.random.default_rng(1).normal(size=N)
  return jnp.asarray(x / np.sqrt(np.mean(x ** 2)), jnp.float32)


def product_reference(nbeta: float, gamma: float) -> float:
  """nβ·E[(ab)²] under exp(−nβ(ab)² − γ(a² + b²)/2), exact: a | b is Gaussian, b by quadrature."""
  b = np.linspace(-12, 12, 400_001) / math.sqrt(gamma)
  marginal = np.exp(-gamma * b * b / 2) / np.sqrt(2 * nbeta * b * b + gamma)
  return float(nbeta * np.sum(b * b / (2 * nbeta * b * b + gamma) * marginal) / np.sum(marginal))


class LLCTest(absltest.TestCase):

  def test_regular_model_gives_half_the_dimension(self):
    data, w_star = regression()
    r = regression_estimator()(w_star, jax.random.key(0), data)
    # λ̂ = 4.84 measured (key 0; keys 1, 2: 4.87, 5.10); the localised, continuous-time value
    # ½ Σ nβh / (nβh + γ) is 4.97.
    self.assertAlmostEqual(float(r["llc_mean"]), 5.0, delta=0.5)
    self.assertEqual(r["loss_trace"].shape, (8, 2000))
    self.assertEqual(r["llc_per_chain"].shape, (8,))
    self.assertAlmostEqual(float(r["nbeta"]), N / math.log(N), places=3)
    health = llc.trace_health(r["loss_trace"], r["loss_init"])
    self.assertTrue(bool(health["healthy"]), health)

  def test_degenerate_model_counts_quartic_and_ignored_directions(self):
    def loss(w, x):
      return jnp.mean(x ** 2) * (0.5 * jnp.sum(w["quad"] ** 2) + jnp.sum(w["quartic"] ** 4))
    params = dict(quad=jnp.zeros(2, jnp.float32), quartic=jnp.zeros(2, jnp.float32),
                  unused=jnp.zeros(3, jnp.float32))
    cfg = llc.LLCConfig(epsilon=5e-5, gamma=1.0, nbeta=1000.0, num_chains=8, num_draws=2000,
                        num_burnin=1000, thin=10, batch_size=32)
    r = jax.jit(lambda p, k, x: llc.estimate(loss, p, llc.batch_sampler(x, cfg.batch_size), N,
                                             cfg, k))(params, jax.random.key(0), unit_rms_data())
    # λ̂ = 1.47 measured (keys 1, 2: 1.51, 1.54); a regular 7-parameter model: 3.5.
    self.assertAlmostEqual(float(r["llc_mean"]), 1.5, delta=0.15 * 1.5)

  def test_product_model_is_below_the_regular_value(self):
    def loss(w, x):
      return jnp.mean(x ** 2) * (w[0] * w[1]) ** 2
    cfg = llc.LLCConfig(epsilon=5e-5, gamma=10.0, nbeta=1000.0, num_chains=32, num_draws=2000,
                        num_burnin=1000, thin=10, batch_size=32)
    r = jax.jit(lambda p, k, x: llc.estimate(loss, p, llc.batch_sampler(x, cfg.batch_size), N,
                                             cfg, k))(jnp.zeros(2, jnp.float32),
                                                      jax.random.key(0), unit_rms_data())
    ref = product_reference(1000.0, 10.0)     # 0.290; asymptotically (nβ/γ² → ∞) ½
    self.assertAlmostEqual(ref, 0.290, places=3)
    # λ̂ = 0.283 measured (keys 1, 2: 0.287, 0.295), chains' sd 0.07.
    self.assertAlmostEqual(float(r["llc_mean"]), ref, delta=0.15 * ref)

  def test_same_key_same_number(self):
    data, w_star = regression()
    f = regression_estimator()
    a, b, c = (f(w_star, jax.random.key(s), data) for s in (0, 0, 1))
    np.testing.assert_array_equal(a["loss_trace"], b["loss_trace"])
    np.testing.assert_array_equal(a["llc_mean"], b["llc_mean"])
    self.assertNotEqual(float(a["llc_mean"]), float(c["llc_mean"]))

  def test_vmap_over_checkpoints_equals_one_at_a_time(self):
    data, w_star = regression()
    w_B = w_star + 0.01 * jax.random.normal(jax.random.key(7), (3, 10), jnp.float32)
    keys = jax.random.split(jax.random.key(3), 3)
    f = regression_estimator()
    batched = jax.jit(jax.vmap(f, (0, 0, None)))(w_B, keys, data)
    for i in range(3):
      one = f(w_B[i], keys[i], data)
      for name in ("llc_per_chain", "loss_init", "loss_trace"):
        np.testing.assert_allclose(batched[name][i], one[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)

  def test_calibrate_grid_compiles_once_and_flags_divergence(self):
    data, w_star = regression()
    traces = []

    def loss(w, batch):
      traces.append(1)     # runs only while tracing
      return lsq_loss(w, batch)

    eps = [REG_CFG.epsilon, 0.1]            # 0.1: ε·nβ·h ≈ 15, the chains blow up
    nbetas = [50.0, N / math.log(N), 300.0]
    out = llc.calibrate(loss, w_star, llc.batch_sampler(data, REG_CFG.batch_size), N, REG_CFG,
                        jax.random.key(0), eps, nbetas)
    self.assertLessEqual(len(traces), 2)    # one baseline, one SGLD step: not one per grid point
    self.assertEqual(out["llc_mean"].shape, (2, 3))
    self.assertEqual(out["loss_trace"].shape, (2, 3, 8, 2000))
    # A grid point equals estimate() at that setting with the same key.
    alone = regression_estimator()(w_star, jax.random.key(0), data)
    np.testing.assert_allclose(out["llc_per_chain"][0, 1], alone["llc_per_chain"], rtol=1e-4)
    health = llc.trace_health(out["loss_trace"], jnp.full((2, 3), out["loss_init"]))
    np.testing.assert_array_equal(health["healthy"], [[True] * 3, [False] * 3])
    np.testing.assert_array_equal(health["frac_nonfinite"][1], [1.0] * 3)
    # The regular model's λ̂ barely depends on nβ once nβ·h ≫ γ.
    np.testing.assert_allclose(out["llc_mean"][0], 5.0, rtol=0.15)

  def test_config_validation(self):
    with self.assertRaisesRegex(ValueError, "epsilon"):
      llc.LLCConfig(epsilon=0.0)
    with self.assertRaisesRegex(ValueError, "num_chains"):
      llc.LLCConfig(num_chains=0)
    with self.assertRaisesRegex(ValueError, "nbeta"):
      llc.LLCConfig(nbeta=-1.0)


if __name__ == "__main__":
  absltest.main()
