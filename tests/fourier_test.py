"""The real Fourier basis (SPEC §3.1) and the grid transforms and projections (SPEC §3.3)."""
from absl.testing import absltest, parameterized
import jax
import jax.numpy as jnp
import numpy as np

from grokjax import fourier


class BasisTest(parameterized.TestCase):

  @parameterized.parameters(5, 13, 113)
  def test_orthonormal(self, p):
    F = fourier.basis(p)
    np.testing.assert_allclose(F @ F.T, np.eye(p), atol=1e-12)
    np.testing.assert_allclose(F.T @ F, np.eye(p), atol=1e-12)

  def test_rows_and_names(self):
    p, x = 13, np.arange(13)
    F = fourier.basis(p)
    np.testing.assert_allclose(F[0], np.full(p, p ** -0.5))
    np.testing.assert_allclose(F[5], np.sqrt(2 / p) * np.cos(2 * np.pi * 3 * x / p))  # cos 3
    np.testing.assert_allclose(F[6], np.sqrt(2 / p) * np.sin(2 * np.pi * 3 * x / p))  # sin 3
    names = fourier.component_names(p)
    self.assertEqual(names[:4], ("Const", "cos 1", "sin 1", "cos 2"))
    self.assertEqual(names[-1], "sin 6")

  def test_even_p_rejected(self):
    with self.assertRaisesRegex(ValueError, "odd"):
      fourier.basis(12)

  def test_1d_and_2d_roundtrip(self):
    p = 11
    rng = np.random.default_rng(0)
    v = rng.normal(size=(p, 4))
    vh = fourier.transform_1d(jnp.asarray(v), axis=0)
    np.testing.assert_allclose(fourier.basis(p).T @ np.asarray(vh), v, atol=1e-12)
    T = rng.normal(size=(p * p, 3))
    That = fourier.transform_2d(jnp.asarray(T), p)
    np.testing.assert_allclose(np.asarray(fourier.inverse_2d(That, p)), T, atol=1e-12)
    # transform_2d = the 2D basis B_fg(a, b) = F[f, a] F[g, b], f along a.
    F = fourier.basis(p)
    brute = np.einsum("fa,gb,abm->fgm", F, F, T.reshape(p, p, 3)).reshape(p * p, 3)
    np.testing.assert_allclose(np.asarray(That), brute, atol=1e-12)

  def test_per_freq_norms(self):
    c = np.arange(7.0)  # p = 7: const, cos1, sin1, cos2, sin2, cos3, sin3
    np.testing.assert_allclose(fourier.per_freq_norms(jnp.asarray(c)),
                               np.sqrt([1 + 4, 9 + 16, 25 + 36]))


class SumDirectionsTest(absltest.TestCase):

  def test_unit_orthogonal_zero_mean_and_from_2d_basis(self):
    p = 13
    C = fourier.sum_directions(p)
    np.testing.assert_allclose(C @ C.T, np.eye(p - 1), atol=1e-12)
    np.testing.assert_allclose(C.sum(axis=1), 0, atol=1e-12)
    F = fourier.basis(p)
    k = 4
    B = lambda f, g: np.outer(F[f], F[g]).reshape(-1)
    np.testing.assert_allclose(C[2 * k - 2], (B(2 * k - 1, 2 * k - 1) - B(2 * k, 2 * k)) / np.sqrt(2),
                               atol=1e-12)
    np.testing.assert_allclose(C[2 * k - 1], (B(2 * k, 2 * k - 1) + B(2 * k - 1, 2 * k)) / np.sqrt(2),
                               atol=1e-12)

  def test_sums_over_antidiagonals_equal_the_grid_directions(self):
    p = 11
    rng = np.random.default_rng(3)
    L = rng.normal(size=(p * p, 4))
    C = fourier.sum_directions(p)
    a, b = np.divmod(np.arange(p * p), p)
    S = np.stack([L[(a + b) % p == s].sum(axis=0) for s in range(p)])
    np.testing.assert_allclose(fourier.antidiagonal_sums(jnp.asarray(L), p), S, atol=1e-12)
    np.testing.assert_allclose(fourier.sum_coeffs(jnp.asarray(L), p), C @ L, atol=1e-12)
    coef = rng.normal(size=(p - 1, 4))
    np.testing.assert_allclose(fourier.sum_synthesis(jnp.asarray(coef), fourier.sum_basis(p), p),
                               C.T @ coef, atol=1e-12)
    # float32 logits: the coefficients are summed in float64, as accurate as C @ L in float64
    L32 = jnp.asarray(L * 100, jnp.float32)
    ref = C @ np.asarray(L32, np.float64)
    np.testing.assert_allclose(fourier.sum_coeffs(L32, p), ref, atol=2e-5)

  def test_projection(self):
    p = 11
    rng = np.random.default_rng(1)
    L = jnp.asarray(rng.normal(size=(p * p, p)))
    w = jnp.zeros(5).at[jnp.array([1, 3])].set(1.0)
    P = fourier.project_sum(L, w, p)
    np.testing.assert_allclose(fourier.project_sum(P, w, p), P, atol=1e-12)  # idempotent
    one = fourier.project_one(L, jnp.int32(2), p) + fourier.project_one(L, jnp.int32(4), p)
    np.testing.assert_allclose(np.asarray(P), np.asarray(one), atol=1e-12)
    np.testing.assert_allclose(np.asarray(P).sum(axis=0), 0, atol=1e-10)  # constant untouched

  def test_cos_abc_coeffs_match_brute_force(self):
    p = 7
    rng = np.random.default_rng(2)
    L = rng.normal(size=(p * p, p))
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    want = []
    for k in range(1, 4):
      cube = np.cos(2 * np.pi * k * (a + b - c) / p)
      cube /= np.linalg.norm(cube)
      want.append(np.sum(cube.reshape(p * p, p) * L))
    got = jax.jit(fourier.cos_abc_coeffs, static_argnums=1)(jnp.asarray(L), p)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-10)

  def test_block_masks(self):
    p = 113
    key = jnp.zeros(56).at[jnp.array([5, 22, 36, 38, 40])].set(1.0)
    m3, m2 = fourier.block_mask_2d(p, key, "3x3"), fourier.block_mask_2d(p, key, "2x2")
    self.assertEqual(float(m3.sum()), 41.0)  # const + 8 per key frequency (SPEC §3.13)
    self.assertEqual(float(m2.sum()), 21.0)
    self.assertEqual(float(m3[0, 11]), 1.0)   # (const, cos 6)
    self.assertEqual(float(m3[11, 12]), 1.0)  # (cos 6, sin 6)
    self.assertEqual(float(m3[11, 45]), 0.0)  # cos 6 × cos 23: two frequencies
    self.assertEqual(float(m2[0, 11]), 0.0)


if __name__ == "__main__":
  absltest.main()
