"""The real Fourier basis over Z_p and the transforms the analysis uses (SPEC §3.1, §3.3).

Rows of the basis F (p×p): 0 = constant, 2k−1 = cos k, 2k = sin k for k = 1…(p−1)/2, each of
unit norm, so F Fᵀ = I. Grid functions over the p² inputs are indexed a-major (n = a·p + b).

Every constant here is a numpy array built once per p (cached) and enters traced code as a
compile-time constant, none larger than p² entries (the grid directions c_k, s_k of §3.3 are
never built inside traced code: they depend on (a + b) mod p only); all functions are pure and
jit/vmap.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


def num_freqs(p: int) -> int:
  """K = (p−1)/2 frequencies (p odd)."""
  if p < 3 or p % 2 == 0:
    raise ValueError(f"p must be an odd number >= 3 for the real Fourier basis, got {p}")
  return (p - 1) // 2


@functools.lru_cache(maxsize=None)
def basis(p: int) -> np.ndarray:
  """F (p, p) float64: rows const, cos 1, sin 1, …, cos K, sin K; columns x = 0…p−1."""
  K = num_freqs(p)
  x = np.arange(p)
  w = 2 * np.pi * np.arange(1, K + 1)[:, None] * x[None, :] / p  # (K, p)
  F = np.empty((p, p))
  F[0] = 1.0 / np.sqrt(p)
  F[1::2] = np.sqrt(2.0 / p) * np.cos(w)
  F[2::2] = np.sqrt(2.0 / p) * np.sin(w)
  F.setflags(write=False)
  return F


@functools.lru_cache(maxsize=None)
def component_names(p: int) -> tuple[str, ...]:
  """'Const', 'cos 1', 'sin 1', … (the authors' labels, cos before sin)."""
  K = num_freqs(p)
  return ("Const",) + tuple(f"{t} {k}" for k in range(1, K + 1) for t in ("cos", "sin"))


def _const(a: np.ndarray, dtype) -> jnp.ndarray:
  return jnp.asarray(a, dtype=dtype)


def transform_1d(x: jnp.ndarray, axis: int = 0) -> jnp.ndarray:
  """F applied along `axis` (length p): the Fourier coefficients of each function on Z_p."""
  x = jnp.moveaxis(x, axis, 0)
  F = _const(basis(x.shape[0]), x.dtype)
  return jnp.moveaxis(jnp.tensordot(F, x, axes=1), 0, axis)


def _along_both_axes(T_NxM: jnp.ndarray, M_pxp: jnp.ndarray, p: int) -> jnp.ndarray:
  """Applies M (p×p) along the a axis and the b axis of grid-ordered rows (any trailing axes)."""
  T = T_NxM.reshape(p, p, -1)
  out = jnp.einsum("fa,abm->fbm", M_pxp, T)
  out = jnp.einsum("gb,fbm->fgm", M_pxp, out)
  return out.reshape(T_NxM.shape)


def transform_2d(T_NxM: jnp.ndarray, p: int) -> jnp.ndarray:
  """T̂[f·p+g, m] = Σ_{a,b} F[f,a] F[g,b] T[a·p+b, m] (rows in grid order, any trailing axes)."""
  return _along_both_axes(T_NxM, _const(basis(p), T_NxM.dtype), p)


def inverse_2d(That_NxM: jnp.ndarray, p: int) -> jnp.ndarray:
  """Inverse of transform_2d (F is orthogonal, so its inverse is Fᵀ)."""
  return _along_both_axes(That_NxM, _const(basis(p), That_NxM.dtype).T, p)


def per_freq_norms(c: jnp.ndarray) -> jnp.ndarray:
  """(…, p) component norms → (…, K) per-frequency norms √(c_cos k² + c_sin k²)."""
  return jnp.sqrt(c[..., 1::2] ** 2 + c[..., 2::2] ** 2)


@functools.lru_cache(maxsize=None)
def sum_index(p: int) -> np.ndarray:
  """(p²,) int32: s = (a + b) mod p of each grid row n = a·p + b."""
  a, b = np.divmod(np.arange(p * p), p)
  out = ((a + b) % p).astype(np.int32)
  out.setflags(write=False)
  return out


@functools.lru_cache(maxsize=None)
def _antidiagonals(p: int) -> np.ndarray:
  """(p, p) int32: row a, column s holds the grid row of (a, (s − a) mod p)."""
  a, s = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
  out = (a * p + (s - a) % p).astype(np.int32)
  out.setflags(write=False)
  return out


@functools.lru_cache(maxsize=None)
def sum_basis(p: int) -> np.ndarray:
  """D (2K, p) float64: rows √2/p·cos(w_k s), √2/p·sin(w_k s) over s = (a + b) mod p, so the
  unit grid vectors c_k, s_k of `sum_directions` are D's rows read at `sum_index(p)`."""
  K = num_freqs(p)
  w = 2 * np.pi * np.arange(1, K + 1)[:, None] * np.arange(p)[None, :] / p  # (K, p)
  D = np.empty((2 * K, p))
  D[0::2] = np.sqrt(2.0) / p * np.cos(w)
  D[1::2] = np.sqrt(2.0) / p * np.sin(w)
  D.setflags(write=False)
  return D


def sum_directions(p: int) -> np.ndarray:
  """C (2K, p²) float64: rows c_1, s_1, c_2, s_2, …, unit vectors over the grid.

  c_k = (√2/p) cos(w_k(a+b)) = (B_{cos k, cos k} − B_{sin k, sin k})/√2,
  s_k = (√2/p) sin(w_k(a+b)) = (B_{sin k, cos k} + B_{cos k, sin k})/√2 (SPEC §3.3).
  They depend on (a + b) mod p alone, so traced code never builds C (2K·p² values: 0.5 GB at
  p = 401): it sums the grid over anti-diagonals (`antidiagonal_sums`) and works with D.
  """
  return sum_basis(p)[:, sum_index(p)]


def antidiagonal_sums(L_NxC: jnp.ndarray, p: int) -> jnp.ndarray:
  """(p, C) float64: S[s] = Σ_{(a+b) mod p = s} L[a·p+b] (rows in grid order, any trailing
  axes). In float64 because the coefficients below are small differences of such sums: in
  float32 they would lose ≈ √p times more digits than a float32 product with the p²-long C."""
  return jnp.sum(jnp.take(L_NxC, jnp.asarray(_antidiagonals(p)), axis=0).astype(jnp.float64),
                 axis=0)


def sum_coeffs(L_NxC: jnp.ndarray, p: int) -> jnp.ndarray:
  """(2K, C): the coefficients ⟨c_k, L[:, c]⟩, ⟨s_k, L[:, c]⟩ of every column (L's dtype,
  computed in float64)."""
  return (jnp.asarray(sum_basis(p)) @ antidiagonal_sums(L_NxC, p)).astype(L_NxC.dtype)


def sum_synthesis(coef_RxC: jnp.ndarray, D_Rxp: jnp.ndarray, p: int) -> jnp.ndarray:
  """(p², C) float64: Σ_r c_r coef[r] over the directions whose rows of `sum_basis` are D_Rxp,
  i.e. Cᵀ @ coef without C."""
  synth = jnp.asarray(D_Rxp, jnp.float64).T @ jnp.asarray(coef_RxC, jnp.float64)
  return jnp.take(synth, jnp.asarray(sum_index(p)), axis=0)


def project_sum(L_NxC: jnp.ndarray, weights_K: jnp.ndarray, p: int) -> jnp.ndarray:
  """Σ_k weights_k · P_k(L), P_k(L) = c_k c_kᵀ L + s_k s_kᵀ L (weights 0/1 for a key set); in
  L's dtype, computed in float64."""
  D = jnp.asarray(sum_basis(p))
  w2 = jnp.repeat(jnp.asarray(weights_K, jnp.float64), 2)
  coef = w2[:, None] * (D @ antidiagonal_sums(L_NxC, p))
  return sum_synthesis(coef, D, p).astype(L_NxC.dtype)


def project_one(L_NxC: jnp.ndarray, k: jnp.ndarray, p: int) -> jnp.ndarray:
  """P_k(L) for one (possibly traced) frequency k in 1…K."""
  Dk = jnp.take(jnp.asarray(sum_basis(p)), jnp.stack([2 * k - 2, 2 * k - 1]), axis=0)
  return sum_synthesis(Dk @ antidiagonal_sums(L_NxC, p), Dk, p).astype(L_NxC.dtype)


def cos_abc_coeffs(L_NxC: jnp.ndarray, p: int) -> jnp.ndarray:
  """α_k = ⟨Ĉ_k, L⟩ for k = 1…K, Ĉ_k = cos(w_k(a+b−c)) normalised over the p×p×p cube.

  cos(w(a+b−c)) = cos(w(a+b))cos(wc) + sin(w(a+b))sin(wc), so Ĉ_k = (c_k⊗F[cos k] +
  s_k⊗F[sin k])/√2 and α_k needs only the (2K, p) sum coefficients (SPEC §3.7).
  """
  coef = sum_coeffs(L_NxC[:, :p], p)  # (2K, p)
  F = _const(basis(p), L_NxC.dtype)
  return (jnp.sum(coef[0::2] * F[1::2], axis=1) + jnp.sum(coef[1::2] * F[2::2], axis=1)) / jnp.sqrt(
      jnp.asarray(2.0, L_NxC.dtype))


@functools.lru_cache(maxsize=None)
def block_indices(p: int) -> np.ndarray:
  """(K, 3) int: the basis rows {0, cos k, sin k} of each frequency's 3×3 block."""
  k = np.arange(1, num_freqs(p) + 1)
  return np.stack([np.zeros_like(k), 2 * k - 1, 2 * k], axis=1)


def block_mask_2d(p: int, key_K: jnp.ndarray, kind: str = "3x3") -> jnp.ndarray:
  """(p, p) 0/1 mask of the 2D components kept for a key set (key_K: (K,) 0/1 weights).

  '3x3': the constant plus, per key k, the {0, cos k, sin k}² block minus the constant (8 terms:
  linear and quadratic in frequency k, SPEC §3.13); '2x2': the constant plus {cos k, sin k}².
  """
  if kind not in ("3x3", "2x2"):
    raise ValueError(f"kind must be '3x3' or '2x2', got {kind!r}")
  freq_of = np.concatenate([[0], np.repeat(np.arange(1, num_freqs(p) + 1), 2)])  # (p,)
  same = freq_of[:, None] == freq_of[None, :]
  if kind == "3x3":
    same = same | (freq_of[:, None] == 0) | (freq_of[None, :] == 0)
  key = jnp.concatenate([jnp.ones((1,)), jnp.asarray(key_K, jnp.float64)])
  on = jnp.take(key, freq_of)  # (p,) 1 for the constant and the key components
  if kind == "2x2":
    on = on.at[0].set(0.0)
  m = jnp.asarray(same, jnp.float64) * on[:, None] * on[None, :]
  return m.at[0, 0].set(1.0)
