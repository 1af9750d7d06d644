"""Progress measures and mechanistic evidence (SPEC §3), as pure functions of parameters.

Everything works on the p² inputs [a, b, =] (a-major grid) and the 113-way logits (the `=`
class dropped). A split is `labels` (p²,) int plus `train` (p²,) bool (test = ~train). Key
frequencies come in two forms:
  * a 0/1 mask `key_K` over k = 1…K (K = (p−1)/2): any key set in one static shape, so the
    functions vmap over checkpoints whose key sets differ (per-checkpoint detection);
  * an int array `key_idx` of the key frequencies themselves: the training-dynamics path, where a
    run's key set is fixed from its final checkpoint (as the paper does) and only those
    frequencies' directions are touched.
Every function here jits and vmaps; none loops in Python over neurons, frequencies or checkpoints.

Losses: per-example cross-entropy in a log1p form that singles out the label by index
(`ce_and_correct`): exact to the rounding of the logits even at ℓ ~ 1e-9, where a float32
log-softmax returns 0 (the slingshot cause of SPEC §7.1). The curves therefore run it on the
float32 logits (float64 exp is ~10x slower on CPU; the relative error against a float64
log-softmax of the same logits is ~1e-7, tested) and every mean is taken in float64; the final
evidence does its projections in float64.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import fourier, losses, model

Params = dict[str, Any]
F64 = jnp.float64
CLUSTER_FVE = 0.85          # neuron-cluster threshold (SPEC §3.4 rule 1, §3.10)
KEY_FRAC = 0.25             # W_L rule: per-frequency norm > KEY_FRAC · max (SPEC §3.4 rule 2)
# A model without a Fourier circuit (no weight decay, not yet grokked) has a dense W_L spectrum:
# nearly every frequency passes the rule, and "excluding" all of them removes the whole logit
# table. Above KEY_MAX such frequencies the key set is the KEY_FALLBACK largest instead (the
# paper's mainline has 5), so the excluded loss of Fig 26 still asks "does the model rely on its
# strongest frequencies?".
KEY_MAX = 10
KEY_FALLBACK = 5


# ----------------------------------------------------------------------------- model pieces

def vocab_size(params: Params) -> int:
  """p, read from W_E (d_model, p + 1)."""
  return params["W_E"].shape[1] - 1


def _last_block(params: Params) -> Params:
  n = sum(1 for k in params if k.startswith("blocks_"))
  return params[f"blocks_{n - 1}"]


def has_mlp(params: Params) -> bool:
  """Whether the blocks have MLPs (static: read from the parameter names). An attention-only
  model (`--attn_only`) has no neurons and no W_L: the measures built on them do not apply."""
  return "W_out" in _last_block(params)


def W_L(params: Params) -> jnp.ndarray:
  """Neuron-logit map W_L = W_U[:, :p]ᵀ W_out (p, d_mlp), logit axis first (SPEC §3.2)."""
  p = vocab_size(params)
  return params["W_U"][:, :p].T @ _last_block(params)["W_out"]


def forward(params: Params, act: str = "relu", dtype=jnp.float32) -> dict[str, jnp.ndarray]:
  """Last-position quantities on the p² grid (`model.grid_forward`): logits (p², p),
  mlp_post (p², d_mlp), mlp_logits = mlp_post·W_Lᵀ (p², p), pattern (p², H, 3)."""
  return model.grid_forward(params, act, dtype)


# ----------------------------------------------------------------------------- losses

def ce_and_correct(L_NxC: jnp.ndarray, labels_N: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Per-example cross-entropy (float64) and correctness (bool): `losses.stable_ce_and_correct`
  (the log1p form, exact at ℓ ~ 1e-9 in float32)."""
  return losses.stable_ce_and_correct(L_NxC, labels_N, F64)


def per_example_ce(L_NxC: jnp.ndarray, labels_N: jnp.ndarray) -> jnp.ndarray:
  """Per-example cross-entropy, float64 (see ce_and_correct)."""
  return ce_and_correct(L_NxC, labels_N)[0]


def split_means(v_N: jnp.ndarray, train_N: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Means of a per-example quantity over all / train / test (float64)."""
  v, w = v_N.astype(F64), train_N.astype(F64)
  return dict(all=jnp.mean(v), train=jnp.sum(v * w) / jnp.sum(w),
              test=jnp.sum(v * (1 - w)) / jnp.sum(1 - w))


# ----------------------------------------------------------------------------- weights

def fourier_norms_W_E(params: Params) -> jnp.ndarray:
  """e_j = ‖(W_E[:, :p] Fᵀ)[:, j]‖, j = 0…p−1 (SPEC §3.2, Fig 3 left)."""
  p = vocab_size(params)
  return jnp.linalg.norm(fourier.transform_1d(params["W_E"][:, :p].astype(F64), axis=1), axis=0)


def fourier_W_L(params: Params) -> jnp.ndarray:
  """Ŵ_L = F W_L (p, d_mlp); row 2k−1 is u_k, row 2k is v_k."""
  return fourier.transform_1d(W_L(params).astype(F64), axis=0)


def fourier_norms_W_L(params: Params) -> jnp.ndarray:
  """ℓ_j = ‖Ŵ_L[j, :]‖ (norm over neurons), j = 0…p−1 (SPEC §3.2, Fig 3 right)."""
  return jnp.linalg.norm(fourier_W_L(params), axis=1)


def key_matrix(params: Params) -> str:
  """The matrix whose Fourier spectrum gives the key frequencies: W_L (SPEC §3.4 rule 2), or
  W_E (rule 3) for an attention-only model, which has no W_L."""
  return "W_L" if has_mlp(params) else "W_E"


def _key_rule(params: Params, frac: float, matrix: str | None = None
              ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Per-frequency norms (K,) of the key matrix's spectrum, those above frac · max (K,), and
  whether the spectrum is dense (more than KEY_MAX above)."""
  matrix = matrix or key_matrix(params)
  norms = fourier_norms_W_L(params) if matrix == "W_L" else fourier_norms_W_E(params)
  n = fourier.per_freq_norms(norms)
  above = n > frac * jnp.max(n)
  return n, above, jnp.sum(above) > KEY_MAX


def _rule_mask(n: jnp.ndarray, above: jnp.ndarray, dense: jnp.ndarray) -> jnp.ndarray:
  return jnp.where(dense, n >= jnp.sort(n)[-KEY_FALLBACK], above)


def W_L_dense(params: Params, frac: float = KEY_FRAC) -> jnp.ndarray:
  """() bool: more than KEY_MAX frequencies pass the key rule (no sparse Fourier spectrum)."""
  return _key_rule(params, frac)[2]


def key_freqs_W_L(params: Params, frac: float = KEY_FRAC) -> jnp.ndarray:
  """(K,) bool: per-frequency norms of Ŵ_L above frac · max (SPEC §3.4 rule 2); for a dense
  spectrum (W_L_dense) the KEY_FALLBACK largest."""
  return _rule_mask(*_key_rule(params, frac, "W_L"))


def key_freqs(params: Params, frac: float = KEY_FRAC) -> jnp.ndarray:
  """(K,) bool: the key frequencies by the rule of `key_matrix` (W_L; W_E without MLPs)."""
  return _rule_mask(*_key_rule(params, frac))


def gini(v: jnp.ndarray) -> jnp.ndarray:
  """Hurley–Rickard Gini of a non-negative vector (SPEC §3.8)."""
  v = jnp.sort(jnp.asarray(v, F64))
  N = v.shape[-1]
  i = jnp.arange(1, N + 1)
  return 1.0 - 2.0 * jnp.sum(v / jnp.sum(v) * (N - i + 0.5) / N)


def sum_sq_weights(params: Params) -> dict[str, jnp.ndarray]:
  """Σθ² per parameter ('W_E', 'blocks_0.W_Q', …) and 'total' (SPEC §3.9), float64."""
  flat = {".".join(str(getattr(k, "key", k)) for k in path): jnp.sum(jnp.asarray(x, F64) ** 2)
          for path, x in jax.tree_util.tree_leaves_with_path(params)}
  flat["total"] = sum(flat.values())
  return flat


def W_L_residual_ratio(params: Params, key_K: jnp.ndarray) -> jnp.ndarray:
  """‖W_L − P_Key W_L‖_F / ‖W_L‖_F, P_Key projecting on the key cos/sin rows (SPEC §3.12)."""
  sq = fourier_norms_W_L(params) ** 2
  keep = jnp.concatenate([jnp.zeros(1), jnp.repeat(jnp.asarray(key_K, F64), 2)])
  return jnp.sqrt(jnp.sum(sq * (1 - keep)) / jnp.sum(sq))


# ----------------------------------------------------------------------------- neurons

def neuron_fve_from_hat(hat_PxPxM: jnp.ndarray) -> jnp.ndarray:
  """(K, d_mlp) from the 2D transform of the activations (see neuron_fve_by_freq)."""
  p = hat_PxPxM.shape[0]
  power = hat_PxPxM.astype(F64).at[0, 0].set(0.0) ** 2  # centring removes exactly (0, 0)
  idx = fourier.block_indices(p)
  block = jnp.sum(power[idx[:, :, None], idx[:, None, :]], axis=(1, 2))  # (K, M)
  total = jnp.sum(power, axis=(0, 1))
  return jnp.where(total > 0, block / jnp.where(total > 0, total, 1.0), 0.0)


def neuron_fve_by_freq(post_NxM: jnp.ndarray, p: int) -> jnp.ndarray:
  """(K, d_mlp): fraction of each neuron's centred variance in the 3×3 block {0, cos k, sin k}²
  of its 2D Fourier transform (SPEC §3.4 rule 1, §3.10); 0 for a dead (constant) neuron."""
  return neuron_fve_from_hat(fourier.transform_2d(post_NxM, p).reshape(p, p, -1))


def best_freqs(fve_KxM: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """(freq (M,) int in 1…K, fve (M,), alive (M,) bool): each neuron's best frequency."""
  best = jnp.max(fve_KxM, axis=0)
  return jnp.argmax(fve_KxM, axis=0) + 1, best, best > 0


def neuron_freqs(post_NxM: jnp.ndarray, p: int) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """best_freqs of the activations' neuron_fve_by_freq."""
  return best_freqs(neuron_fve_by_freq(post_NxM, p))


def key_freqs_neuron_rule(post_NxM: jnp.ndarray, p: int) -> jnp.ndarray:
  """(K,) bool: every live neuron's best frequency, no threshold (SPEC §3.4 rule 1)."""
  freq, _, alive = neuron_freqs(post_NxM, p)
  K = fourier.num_freqs(p)
  return jnp.any((freq[:, None] == jnp.arange(1, K + 1)) & alive[:, None], axis=0)


def neuron_clusters(post_NxM: jnp.ndarray, p: int, thresh: float = CLUSTER_FVE) -> jnp.ndarray:
  """(K,) int: neurons whose best-frequency FVE exceeds thresh, per frequency."""
  freq, fve, _ = neuron_freqs(post_NxM, p)
  K = fourier.num_freqs(p)
  return jnp.sum((freq[:, None] == jnp.arange(1, K + 1)) & (fve > thresh)[:, None], axis=0)


def table1_fve(mlp_logits_NxP: jnp.ndarray) -> jnp.ndarray:
  """(K, 2): FVE of u_kᵀMLP by c_k (col 0, cos) and v_kᵀMLP by s_k (col 1, sin) (SPEC §3.11).

  u_kᵀMLP(a,b) = Ŵ_L[cos k]·MLP(a,b) is column cos k of (MLP·W_Lᵀ)·Fᵀ: the neurons' logits
  read along the Fourier basis of the output."""
  p = mlp_logits_NxP.shape[1]
  G = fourier.transform_1d(mlp_logits_NxP.astype(F64), axis=1)
  Gc = G - jnp.mean(G, axis=0)
  coef = fourier.sum_coeffs(Gc, p)  # (2K, p): ⟨c_k or s_k, column⟩ of every column of Gc
  num = jnp.stack([jnp.diagonal(coef[0::2, 1::2]), jnp.diagonal(coef[1::2, 2::2])], axis=1) ** 2
  den = jnp.stack([jnp.sum(Gc[:, 1::2] ** 2, axis=0), jnp.sum(Gc[:, 2::2] ** 2, axis=0)], axis=1)
  return num / jnp.where(den > 0, den, 1.0)


# ----------------------------------------------------------------------------- logits

def restricted_logits(L: jnp.ndarray, key_K: jnp.ndarray, p: int) -> jnp.ndarray:
  """L_R = Σ_{k∈Key} P_k(L) + per-class mean of L (SPEC §3.5)."""
  return fourier.project_sum(L, key_K, p) + jnp.mean(L, axis=0)


def excluded_logits(L: jnp.ndarray, key_K: jnp.ndarray, p: int) -> jnp.ndarray:
  """L_X = L − Σ_{k∈Key} P_k(L), no bias correction (SPEC §3.6)."""
  return L - fourier.project_sum(L, key_K, p)


def logit_fve(L: jnp.ndarray, key_K: jnp.ndarray, p: int) -> jnp.ndarray:
  """1 − ‖L̃ − Σ_Key α_k Ĉ_k‖²/‖L̃‖², L̃ globally centred; the Ĉ_k are orthonormal and
  zero-mean, so this is Σ_Key α_k² / ‖L̃‖² (SPEC §3.7)."""
  alpha = fourier.cos_abc_coeffs(L, p)
  Lc = L - jnp.mean(L)
  return jnp.sum(jnp.asarray(key_K, L.dtype) * alpha ** 2) / jnp.sum(Lc ** 2)


def ablation_per_freq(L: jnp.ndarray, labels: jnp.ndarray, train: jnp.ndarray,
                      p: int) -> jnp.ndarray:
  """(K, 3): loss on all / train / test after removing P_k from the logits, k = 1…K (Fig 6)."""
  D = jnp.asarray(fourier.sum_basis(p))
  coef = D @ fourier.antidiagonal_sums(L, p)  # (2K, p) float64

  def one(k):  # noqa: the lax.map below runs the K frequencies sequentially, bounding memory
    Dk = jax.lax.dynamic_slice_in_dim(D, 2 * k, 2)
    ak = jax.lax.dynamic_slice_in_dim(coef, 2 * k, 2)
    Pk = fourier.sum_synthesis(ak, Dk, p).astype(L.dtype)
    m = split_means(per_example_ce(L - Pk, labels), train)
    return jnp.stack([m["all"], m["train"], m["test"]])

  return jax.lax.map(one, jnp.arange(fourier.num_freqs(p)))


def keep_blocks_loss(L_hat: jnp.ndarray, labels: jnp.ndarray, key_K: jnp.ndarray, p: int,
                     kind: str = "3x3") -> jnp.ndarray:
  """Loss on all inputs keeping only the constant and the key 2D blocks of the logits, given
  their 2D transform L_hat (p², p) (SPEC §3.13)."""
  kept = fourier.block_mask_2d(p, key_K, kind).astype(L_hat.dtype).reshape(-1, 1) * L_hat
  return jnp.mean(per_example_ce(fourier.inverse_2d(kept, p), labels))


def attention_fits(params: Params, pattern_NxHx3: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Single-frequency fits per head (SPEC §3.14).

  score_*: C_h[t] = x₂ᵀ W_Q[h]ᵀ W_K[h] W_E[:, t] fitted by α cos(w_k t) + β sin(w_k t) + const
  (score_hat: all of C_h's Fourier coefficients, Fig 10);
  ov_fourier_norms: Fourier norms of each head's OV output over the token at position 0 (Fig 11);
  freq/fve: the attention `=`→a over (a, b) fitted by const + cos/sin(w_k a) + cos/sin(w_k b)
  (the linearised sigmoid of App. C.1.3, Table 2).
  """
  p, blk = vocab_size(params), params["blocks_0"]
  W_E = params["W_E"].astype(F64)
  x2 = W_E[:, p] + params["W_pos"][2].astype(F64)
  C_HxP = jnp.einsum("d,hed,hef,ft->ht", x2, blk["W_Q"].astype(F64), blk["W_K"].astype(F64),
                     W_E[:, :p])
  c_hat = fourier.transform_1d(C_HxP, axis=1)
  pw = fourier.per_freq_norms(c_hat) ** 2
  s_fve = pw / jnp.sum(c_hat[:, 1:] ** 2, axis=1, keepdims=True)
  s_k = jnp.argmax(s_fve, axis=1)
  scale = np.sqrt(2.0 / p)
  A_hat = fourier.transform_2d(pattern_NxHx3[:, :, 0].astype(F64), p).reshape(p, p, -1)
  A_hat = A_hat.at[0, 0].set(0.0) ** 2
  lin = (A_hat[0, 1::2] + A_hat[0, 2::2] + A_hat[1::2, 0] + A_hat[2::2, 0])  # (K, H)
  a_fve = lin / jnp.sum(A_hat, axis=(0, 1))
  # Fig 11: each head's OV output for token a at position 0, W_O^h W_V^h (W_E[:, a] + W_pos[0]),
  # in the Fourier basis over a; norms over d_model.
  H, E, _ = blk["W_V"].shape
  x_a = W_E[:, :p] + params["W_pos"][0].astype(F64)[:, None]
  ov_HxDxP = jnp.einsum("fhe,hed,dt->hft", blk["W_O"].astype(F64).reshape(-1, H, E),
                        blk["W_V"].astype(F64), x_a)
  ov_norms = jnp.linalg.norm(fourier.transform_1d(ov_HxDxP, axis=2), axis=1)
  return dict(freq=jnp.argmax(a_fve, axis=0) + 1, fve=jnp.max(a_fve, axis=0),
              score_hat=c_hat, ov_fourier_norms=ov_norms,
              score_freq=s_k + 1, score_fve=jnp.max(s_fve, axis=1),
              score_cos=jnp.take_along_axis(c_hat[:, 1::2], s_k[:, None], 1)[:, 0] * scale,
              score_sin=jnp.take_along_axis(c_hat[:, 2::2], s_k[:, None], 1)[:, 0] * scale)


# ----------------------------------------------------------------------------- bundles

def dynamics(params: Params, labels: jnp.ndarray, train: jnp.ndarray, key_idx: jnp.ndarray,
             act: str = "relu", train_idx: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
  """The training-dynamics measures of one checkpoint for a fixed key set `key_idx` (int, the
  frequencies themselves): losses/accuracies, restricted and excluded loss and accuracy, the
  per-key excluded loss (train), α_k, Gini(W_E), Gini(W_L) and the sums of squared weights.

  `train_idx` (optional, the indices of the True entries of `train`) lets the per-key excluded
  losses read only the training rows: the same numbers, 1/frac_train times less work."""
  p = vocab_size(params)
  L = forward(params, act)["logits"]
  rows = jnp.stack([2 * key_idx - 2, 2 * key_idx - 1], axis=1).reshape(-1)
  Dk = jnp.take(jnp.asarray(fourier.sum_basis(p)), rows, axis=0)  # (2n, p) float64
  coef = Dk @ fourier.antidiagonal_sums(L, p)                      # (2n, p) float64
  proj = fourier.sum_synthesis(coef, Dk, p).astype(L.dtype)
  out = {}
  for name, logits in (("", L), ("restricted_", proj + jnp.mean(L, axis=0)),
                       ("excluded_", L - proj)):
    loss, ok = ce_and_correct(logits, labels)
    m, a = split_means(loss, train), split_means(ok, train)
    out.update({f"{name}loss_{s}": m[s] for s in m})
    out.update({f"{name}acc_{s}": a[s] for s in a})
  # Per key frequency: CE(L − c_k a_cᵀ − s_k a_sᵀ) on train, one frequency at a time (lax.map;
  # written as two outer products, which XLA:CPU fuses into the loss loops).
  coef_2xNxP = coef.astype(L.dtype).reshape(-1, 2, coef.shape[1])
  s_idx = jnp.asarray(fourier.sum_index(p))
  if train_idx is not None:
    L_r, y_r, w_r = jnp.take(L, train_idx, axis=0), jnp.take(labels, train_idx), None
    s_idx = jnp.take(s_idx, train_idx)
  else:
    L_r, y_r, w_r = L, labels, train
  Ck_r = jnp.take(Dk.astype(L.dtype), s_idx, axis=1).reshape(-1, 2, s_idx.shape[0])  # c_k, s_k

  def excl_one(ca):
    c, a = ca
    loss = per_example_ce(L_r - c[0][:, None] * a[0] - c[1][:, None] * a[1], y_r)
    return jnp.mean(loss) if w_r is None else split_means(loss, w_r)["train"]

  out["excluded_loss_train_per_freq"] = jax.lax.map(excl_one, (Ck_r, coef_2xNxP))
  F = jnp.asarray(fourier.basis(p), L.dtype)
  out["cos_coeff"] = (jnp.sum(coef[0::2] * F[2 * key_idx - 1], 1)
                      + jnp.sum(coef[1::2] * F[2 * key_idx], 1)).astype(F64) / np.sqrt(2.0)
  out["gini_W_E"] = gini(fourier_norms_W_E(params))
  if has_mlp(params):  # attention-only: no W_L (the column is absent from the tables)
    out["gini_W_L"] = gini(fourier_norms_W_L(params))
  out.update({f"sum_sq_{k}" if k != "total" else "sum_sq_weights": v
              for k, v in sum_sq_weights(params).items()})
  return out


def dynamics_detected(params: Params, labels: jnp.ndarray, train: jnp.ndarray,
                      act: str = "relu", frac: float = KEY_FRAC) -> dict[str, jnp.ndarray]:
  """Restricted/excluded loss with the key set detected on this checkpoint (`key_freqs`), for
  comparing against the fixed-key curves (the authors' Trainer recomputed them per call)."""
  p = vocab_size(params)
  L = forward(params, act)["logits"]
  key = key_freqs(params, frac)
  r = split_means(per_example_ce(restricted_logits(L, key, p), labels), train)
  x = split_means(per_example_ce(excluded_logits(L, key, p), labels), train)
  return dict(key_K=key, restricted_loss_all=r["all"], excluded_loss_train=x["train"])
