"""The loss forms: the stable float32 loss against float64, its gradient where float32's dies,
and the softmax-collapse count on hand-built logits."""
from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import losses


class LossesTest(absltest.TestCase):

  def test_stable_float32_matches_float64(self):
    logits = jax.random.normal(jax.random.key(0), (64, 11), jnp.float32) * 8
    labels = jnp.arange(64) % 11
    ref = losses.log_softmax_ce(logits, labels, jnp.float64)
    got = losses.cross_entropy(logits, labels, "float32_stable")
    self.assertEqual(got.dtype, jnp.float32)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)

  def test_collapse_and_the_gradient_that_survives_it(self):
    # Example 0: label logit 20 above the rest: float32 softmax gives exactly 1 (collapsed);
    # example 1: 5 above: not collapsed; example 2: wrong prediction.
    logits = jnp.array([[20.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 3.0, 0.0]], jnp.float32)
    labels = jnp.array([0, 0, 0])
    np.testing.assert_array_equal(losses.softmax_collapsed(logits, labels), [True, False, False])
    g32 = jax.grad(lambda z: losses.cross_entropy(z, labels, "float32").sum())(logits)
    gst = jax.grad(lambda z: losses.cross_entropy(z, labels, "float32_stable").sum())(logits)
    g64 = jax.grad(lambda z: losses.log_softmax_ce(z.astype(jnp.float64), labels,
                                                   jnp.float64).sum())(logits)
    self.assertEqual(float(g32[0, 0]), 0.0)          # float32 softmax: p_y − 1 rounds to 0
    s = 2 * np.exp(-20.0)
    np.testing.assert_allclose(float(gst[0, 0]), -s / (1 + s), rtol=1e-5)   # −S/(1+S)
    np.testing.assert_allclose(gst, g64, rtol=1e-5, atol=1e-12)
    loss = losses.cross_entropy(logits, labels, "float32_stable")
    np.testing.assert_allclose(float(loss[0]), np.log1p(s), rtol=1e-5)   # float32: log-softmax
    self.assertEqual(float(losses.cross_entropy(logits, labels, "float32")[0]), 0.0)  # says 0


if __name__ == "__main__":
  absltest.main()
