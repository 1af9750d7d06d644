"""The final-checkpoint evidence (SPEC §3–4) of one model, and its JSON record.

`evidence` bundles every measure of `measures` for a final checkpoint, together with the MLP
ablations of SPEC §3.13 defined here (projection onto the key directions, degree-2 neurons, and
Table 6's skip connection around the final MLP). It fits the architecture:
  * one or more layers: the MLP measures (W_L, neurons, Table 1 / 5 FVEs, the MLP ablations,
    Table 6) read the FINAL block's MLP, as the paper's Table 5 does for its 2-layer models; the
    attention measures read block 0; the logit measures (restricted / excluded loss, Fig 6, logit
    FVE) read the model's logits whatever its depth;
  * attention-only models (`--attn_only`): no MLP, so no neurons and no W_L: the measures in
    `MLP_MEASURES` are not computed, the record lists them under `skipped` with the reason, and
    the key frequencies come from W_E's spectrum (SPEC §3.4 rule 3) instead of W_L's.
"""
from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import fourier, measures

Params = dict[str, Any]
F64 = jnp.float64

# The measures that need an MLP: absent (None) from an attention-only model's record, and listed
# in its `skipped` entry.
MLP_MEASURES = (
    "gini_W_L", "W_L_residual_ratio", "table1_fve", "mlp_fve_mean", "mlp_fve_std",
    "neuron_clusters", "neuron_freq", "neuron_fve", "key_freqs_neuron_rule",
    "W_L_fourier_norms", "W_L_per_freq_norms", "mlp_onto_key_loss_all", "mlp_off_key_loss_all",
    "neuron_degree2_loss_all", "mlp_skip_ablation")
SKIP_REASON = "attention-only model: no MLP, hence no neurons and no W_L"


def mlp_projection_ablation(L: jnp.ndarray, mlp_logits: jnp.ndarray, params: Params,
                            key_K: jnp.ndarray, labels: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Loss (all inputs) with MLP activations projected onto span{u_k, v_k : k ∈ Key} ('onto')
  or onto its orthogonal complement ('off') (SPEC §3.13).

  With U the masked rows (u_k; v_k) of Ŵ_L, the projection is post·Uᵀ(UUᵀ)⁺U, and post·Uᵀ is
  (mlp_logits·Fᵀ)[:, 1:] masked: no (p²×d_mlp)·(d_mlp×d_mlp) product is needed."""
  w2 = jnp.repeat(jnp.asarray(key_K, F64), 2)
  U = measures.fourier_W_L(params)[1:] * w2[:, None]                         # (2K, M)
  W_L = measures.W_L(params).astype(F64)
  R = jnp.linalg.pinv(U @ U.T, hermitian=True) @ (U @ W_L.T)                # (2K, p)
  Z = fourier.transform_1d(mlp_logits.astype(F64), axis=1)[:, 1:] * w2      # post·Uᵀ
  on = Z @ R                                                                 # logits of P·post
  return dict(onto=jnp.mean(measures.per_example_ce(L - mlp_logits + on, labels)),
              off=jnp.mean(measures.per_example_ce(L - on, labels)))


def neuron_degree2_ablation(L: jnp.ndarray, post_hat: jnp.ndarray, fve_KxM: jnp.ndarray,
                            params: Params, labels: jnp.ndarray,
                            thresh: float = measures.CLUSTER_FVE) -> jnp.ndarray:
  """Loss (all inputs) with every neuron of FVE > thresh replaced by its single-frequency
  degree-2 approximation (its mean + its 3×3 block), given the 2D transform post_hat (p, p, M)
  of the activations (SPEC §3.13, §4.4)."""
  p = measures.vocab_size(params)
  freq, fve, _ = measures.best_freqs(fve_KxM)
  comp_freq = jnp.asarray(np.concatenate([[0], np.repeat(np.arange(1, p // 2 + 1), 2)]))
  inblk = (comp_freq[:, None] == 0) | (comp_freq[:, None] == freq[None, :])      # (p, M)
  keep = (inblk[:, None, :] & inblk[None, :, :]) | (fve <= thresh)[None, None, :]
  dropped = fourier.inverse_2d(jnp.where(keep, 0.0, post_hat).reshape(p * p, -1), p)
  W_L = measures.W_L(params).astype(dropped.dtype)
  return jnp.mean(measures.per_example_ce(L - dropped @ W_L.T, labels))


def mlp_skip_ablation(params: Params, fw: dict[str, jnp.ndarray], labels: jnp.ndarray,
                      train: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Table 6 (SPEC §3.13, App. A.1): loss and accuracy on all / train / test when the skip
  connection around the final MLP is zero- or mean-ablated in the logits.

  The logits are (r + W_out·post + b_out)·W_U with r the residual after the final attention
  (the MLP's input and its skip connection). The ablation replaces r by 0 ('zero') or by its mean
  over the p² inputs ('mean') in that sum only; the MLP still reads the real r. r·W_U is the
  logits minus the MLP's part (mlp_logits = post·W_Lᵀ) minus b_out·W_U."""
  p = measures.vocab_size(params)
  L = fw["logits"].astype(F64)
  b_out = measures._last_block(params)["b_out"].astype(F64) @ params["W_U"][:, :p].astype(F64)
  skip = L - fw["mlp_logits"].astype(F64) - b_out
  out = {}
  for name, logits in (("zero", L - skip), ("mean", L - skip + jnp.mean(skip, axis=0))):
    loss, ok = measures.ce_and_correct(logits.astype(jnp.float32), labels)
    m, a = measures.split_means(loss, train), measures.split_means(ok, train)
    out.update({f"{name}_loss_{s}": m[s] for s in m})
    out.update({f"{name}_acc_{s}": a[s] for s in a})
  return out


def evidence(params: Params, labels: jnp.ndarray, train: jnp.ndarray, act: str = "relu",
             frac: float = measures.KEY_FRAC) -> dict[str, jnp.ndarray]:
  """The full final-checkpoint evidence set; key frequencies by `measures.key_freqs` (key_K).
  An attention-only model gets every measure but those of MLP_MEASURES."""
  p = measures.vocab_size(params)
  mlp = measures.has_mlp(params)
  fw = measures.forward(params, act)
  L32 = fw["logits"]
  L = L32.astype(F64)
  key = measures.key_freqs(params, frac)
  keyf = key.astype(F64)
  e_norms = measures.fourier_norms_W_E(params)
  out = dict(key_K=key, W_L_dense=measures.W_L_dense(params, frac), W_E_fourier_norms=e_norms,
             gini_W_E=measures.gini(e_norms))
  for name, logits in (("", L), ("restricted_", measures.restricted_logits(L, keyf, p)),
                       ("excluded_", measures.excluded_logits(L, keyf, p))):
    loss, ok = measures.ce_and_correct(logits.astype(jnp.float32), labels)
    m, a = measures.split_means(loss, train), measures.split_means(ok, train)
    out.update({f"{name}loss_{s}": m[s] for s in m})
    out.update({f"{name}acc_{s}": a[s] for s in a})
  abl = measures.ablation_per_freq(L32, labels, train, p)
  out["ablation_per_freq"] = abl
  out["excluded_loss_train_per_freq_all"] = abl[:, 1]
  alpha = fourier.cos_abc_coeffs(L, p)
  out["cos_coeffs"] = alpha
  out["logit_fve"] = jnp.sum(keyf * alpha ** 2) / jnp.sum((L - jnp.mean(L)) ** 2)
  L_hat = fourier.transform_2d(L, p)
  out["keep_3x3_blocks_loss_all"] = measures.keep_blocks_loss(L_hat, labels, keyf, p, "3x3")
  out["keep_2x2_blocks_loss_all"] = measures.keep_blocks_loss(L_hat, labels, keyf, p, "2x2")
  out.update({f"attn_{k}": v for k, v in measures.attention_fits(params, fw["pattern"]).items()})
  out["sum_sq_weights"] = measures.sum_sq_weights(params)
  out["attn_eq_to_a"] = fw["pattern"][:, :, 0].T.reshape(-1, p, p)
  out["logits_fourier_norms_2d"] = jnp.linalg.norm(L_hat.reshape(p, p, p), axis=-1)
  if mlp:
    out.update(_mlp_evidence(params, fw, L, L32, keyf, labels, train))
  return out


def _mlp_evidence(params: Params, fw: dict[str, jnp.ndarray], L: jnp.ndarray, L32: jnp.ndarray,
                  keyf: jnp.ndarray, labels: jnp.ndarray, train: jnp.ndarray
                  ) -> dict[str, jnp.ndarray]:
  """The measures of the final block's MLP and of W_L (MLP_MEASURES)."""
  p = measures.vocab_size(params)
  post = fw["mlp_post"]
  l_norms = measures.fourier_norms_W_L(params)
  post_hat = fourier.transform_2d(post, p).reshape(p, p, -1)
  fve_KxM = measures.neuron_fve_from_hat(post_hat)
  freq, fve, alive = measures.best_freqs(fve_KxM)
  onehot = freq[:, None] == jnp.arange(1, fourier.num_freqs(p) + 1)
  out = dict(key_K_neuron=jnp.any(onehot & alive[:, None], axis=0),
             W_L_fourier_norms=l_norms, W_L_per_freq_norms=fourier.per_freq_norms(l_norms),
             gini_W_L=measures.gini(l_norms),
             neuron_freq=freq, neuron_fve=fve, n_dead_neurons=jnp.sum(~alive),
             neuron_clusters=jnp.sum(onehot & (fve > measures.CLUSTER_FVE)[:, None], axis=0),
             W_L_residual_ratio=measures.W_L_residual_ratio(params, keyf))
  t1 = measures.table1_fve(fw["mlp_logits"])
  out["table1_fve_all"] = t1
  n2 = 2 * jnp.sum(keyf)
  mean = jnp.sum(keyf[:, None] * t1) / n2
  out["table1_fve_mean"] = mean
  out["table1_fve_std"] = jnp.sqrt(jnp.sum(keyf[:, None] * (t1 - mean) ** 2) / n2)
  proj = mlp_projection_ablation(L, fw["mlp_logits"], params, keyf, labels)
  out["mlp_onto_key_loss_all"], out["mlp_off_key_loss_all"] = proj["onto"], proj["off"]
  out["neuron_degree2_loss_all"] = neuron_degree2_ablation(L32, post_hat, fve_KxM, params, labels)
  out["mlp_skip"] = mlp_skip_ablation(params, fw, labels, train)
  out["neuron_acts"] = post[:, :5].T.reshape(-1, p, p)
  out["W_L_hat"] = measures.fourier_W_L(params)
  return out


# ----------------------------------------------------------------------------- the JSON record

# Bumped when a final record's meaning changes (v2: key-frequency fallback for dense spectra;
# v3: Table 6's skip ablation, attention-only records); a final record of another version is
# recomputed, and the curves with it if its key set moved.
ANALYSIS_VERSION = 3
FINAL_ARRAYS = ("attn_eq_to_a", "neuron_acts", "logits_fourier_norms_2d", "W_L_hat", "neuron_freq",
                "attn_score_hat", "attn_ov_fourier_norms")


def freqs(mask) -> list[int]:
  """The frequencies k = 1…K of a (K,) 0/1 mask."""
  return [int(k) + 1 for k in np.flatnonzero(np.asarray(mask))]


def _f(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def final_record(ev: dict[str, Any]) -> dict[str, Any]:
  """The JSON-able evidence of one checkpoint (numpy values of `evidence`). For an
  attention-only model the MLP_MEASURES are None and `skipped` names them with the reason."""
  ev = jax.tree.map(np.asarray, ev)
  mlp = "W_L_fourier_norms" in ev
  key = freqs(ev["key_K"])
  abl = ev["ablation_per_freq"]
  num = lambda k: _f(ev[k]) if k in ev else None
  rec: dict[str, Any] = {k: num(k) for k in (
      "loss_all", "loss_train", "loss_test", "acc_all", "acc_train", "acc_test",
      "restricted_loss_all", "restricted_loss_train", "restricted_loss_test",
      "restricted_acc_all", "restricted_acc_train", "restricted_acc_test",
      "excluded_loss_all", "excluded_loss_train", "excluded_loss_test",
      "excluded_acc_all", "excluded_acc_train", "excluded_acc_test",
      "gini_W_E", "gini_W_L", "logit_fve", "table1_fve_mean", "W_L_residual_ratio",
      "keep_3x3_blocks_loss_all", "keep_2x2_blocks_loss_all", "mlp_onto_key_loss_all",
      "mlp_off_key_loss_all", "neuron_degree2_loss_all")}
  matrix = "W_L" if mlp else "W_E"
  rec.update(
      key_freqs=key,
      key_freq_rule=(f"{matrix} spectrum dense (> {measures.KEY_MAX} frequencies above "
                     f"{measures.KEY_FRAC} * max): the {measures.KEY_FALLBACK} largest"
                     if bool(ev["W_L_dense"]) else
                     f"{matrix} per-frequency norm > {measures.KEY_FRAC} * max"),
      analysis_version=ANALYSIS_VERSION,
      excluded_loss_train_per_freq={str(k): _f(abl[k - 1, 1]) for k in key},
      cos_coeffs={str(k): _f(ev["cos_coeffs"][k - 1]) for k in key},
      cos_coeffs_all=[_f(x) for x in ev["cos_coeffs"]],
      sum_sq_weights=_f(ev["sum_sq_weights"]["total"]),
      sum_sq_weights_by_param={k: _f(v) for k, v in ev["sum_sq_weights"].items()
                               if k != "total"},
      W_E_fourier_norms=[_f(x) for x in ev["W_E_fourier_norms"]],
      ablation_per_freq={s: [_f(x) for x in abl[:, j]]
                         for j, s in enumerate(("all", "train", "test"))},
      attention_fits=[dict(head=h, freq=int(ev["attn_freq"][h]), fve=_f(ev["attn_fve"][h]),
                           score_freq=int(ev["attn_score_freq"][h]),
                           score_fve=_f(ev["attn_score_fve"][h]),
                           score_cos=_f(ev["attn_score_cos"][h]),
                           score_sin=_f(ev["attn_score_sin"][h]))
                      for h in range(len(ev["attn_freq"]))],
      skipped=None if mlp else dict(measures=list(MLP_MEASURES), reason=SKIP_REASON))
  if not mlp:
    rec.update({k: None for k in MLP_MEASURES})
    return rec
  t1 = ev["table1_fve_all"]
  rec.update(
      key_freqs_neuron_rule=freqs(ev["key_K_neuron"]),
      table1_fve=[dict(k=k, kind=kind, fve=_f(t1[k - 1, j]))
                  for k in key for j, kind in enumerate(("cos", "sin"))],
      mlp_fve_mean=_f(ev["table1_fve_mean"]), mlp_fve_std=_f(ev["table1_fve_std"]),
      neuron_clusters={str(i + 1): int(c) for i, c in enumerate(ev["neuron_clusters"]) if c},
      n_neurons_clustered=int(np.sum(ev["neuron_clusters"])),
      n_dead_neurons=int(ev["n_dead_neurons"]),
      W_L_fourier_norms=[_f(x) for x in ev["W_L_fourier_norms"]],
      W_L_per_freq_norms=[_f(x) for x in ev["W_L_per_freq_norms"]],
      neuron_freq=[int(x) for x in ev["neuron_freq"]],
      neuron_fve=[_f(x) for x in ev["neuron_fve"]],
      mlp_skip_ablation={k: _f(v) for k, v in ev["mlp_skip"].items()})
  return rec


MLP_ARRAYS = ("neuron_acts", "W_L_hat", "neuron_freq")


def has_final_arrays(path: str, rec: dict[str, Any]) -> bool:
  """Whether a run's _final.npz holds every array this version writes for the record's model
  (older analyses lack some; an attention-only model has no MLP_ARRAYS)."""
  if not os.path.exists(path):
    return False
  need = [k for k in FINAL_ARRAYS if not (rec.get("skipped") and k in MLP_ARRAYS)]
  with np.load(path) as z:
    return all(k in z.files for k in need)


def final_arrays(ev: dict[str, Any]) -> dict[str, np.ndarray]:
  """The arrays of FINAL_ARRAYS that the model has (an attention-only one has no neurons)."""
  return {k: np.asarray(ev[k]) for k in FINAL_ARRAYS if k in ev}
