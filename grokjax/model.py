"""The paper's transformer (SPEC §1.2–1.3) in flax.linen, parameters named as in the paper.

Parameter shapes follow the authors' PyTorch state dict, so their weights load as they are:
W_E (d_model, d_vocab), W_pos (n_ctx, d_model), per block W_Q/W_K/W_V (heads, d_head, d_model),
W_O (d_model, heads·d_head), W_in (d_mlp, d_model), b_in, W_out (d_model, d_mlp), b_out, and
W_U (d_model, d_vocab_out). No LayerNorm; biases only in the MLP.

`Transformer` is the plain, readable model (all positions; activations sown into
'intermediates'); `use_mlp=False` makes its blocks attention-only. `logits_at` is the one
forward that training, evaluation and the analysis call: the logits at a task's loss positions.
For a one-layer model whose loss reads only the last position (the modular tasks, the skip
trigram with an MLP) it computes that position from per-(position, token) tables — exact
algebra, tested equal to the plain model. Deeper models and sequence tasks (without dropout)
run the earlier blocks at all positions and the last block at the loss positions only; the rest
slices the plain model's logits.

`grid_forward` is the analysis' special case of the same model: the last position of all p²
modular inputs at once (per-token tables broadcast over the (a, b) grid), with the neurons and
attention pattern the measures need; also tested equal to `apply`.

Dropout (on MLP neurons, inverted scaling) is `(keep_prob, key)`: a per-run keep probability
(a traced value under vmap) and the key of this step; None at evaluation.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from grokjax.config import ModelConfig

Params = dict[str, Any]
Dropout = tuple[jax.Array, jax.Array] | None  # (keep probability, PRNG key)
MASK_VALUE = 1e10  # the authors subtract 1e10 from future positions' scores (SPEC §7.15)


def _normal(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return scale * jax.random.normal(key, shape, dtype)
  return init


def _act(name: str):
  return {"relu": jax.nn.relu, "gelu": jax.nn.gelu}[name]


class Block(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, dropout: Dropout = None,
               queries: tuple[int, ...] | None = None) -> jax.Array:
    """The block's output at every position, or only at the static positions `queries` (keys
    and values still come from every position: exact, for the last block)."""
    c = self.cfg
    s = c.d_model ** -0.5
    H, E, D = c.num_heads, c.d_head, c.d_model
    W_Q = self.param("W_Q", _normal(s), (H, E, D))
    W_K = self.param("W_K", _normal(s), (H, E, D))
    W_V = self.param("W_V", _normal(s), (H, E, D))
    W_O = self.param("W_O", _normal(s), (D, H * E))
    L = x_BxLxD.shape[1]
    qpos = jnp.arange(L) if queries is None else jnp.asarray(queries)
    x_q = x_BxLxD if queries is None else x_BxLxD[:, qpos]
    q = jnp.einsum("hed,bqd->bhqe", W_Q, x_q)
    k = jnp.einsum("hed,bkd->bhke", W_K, x_BxLxD)
    v = jnp.einsum("hed,bkd->bhke", W_V, x_BxLxD)
    causal = jnp.arange(L)[None, :] <= qpos[:, None]
    scores = jnp.where(causal, jnp.einsum("bhqe,bhke->bhqk", q, k), -MASK_VALUE)
    pattern_BxHxQxK = jax.nn.softmax(scores / jnp.sqrt(jnp.float32(E)), axis=-1)
    self.sow("intermediates", "attn_pattern", pattern_BxHxQxK)
    z = jnp.einsum("bhqk,bhke->bqhe", pattern_BxHxQxK, v).reshape(*x_q.shape[:2], H * E)
    x = x_q + jnp.einsum("df,bqf->bqd", W_O, z)
    if not c.use_mlp:
      return x
    W_in = self.param("W_in", _normal(s), (c.d_mlp, D))
    b_in = self.param("b_in", nn.initializers.zeros, (c.d_mlp,), jnp.float32)
    W_out = self.param("W_out", _normal(s), (D, c.d_mlp))  # 1/sqrt(d_model), as the authors
    b_out = self.param("b_out", nn.initializers.zeros, (D,), jnp.float32)
    post = _act(c.act)(jnp.einsum("md,bqd->bqm", W_in, x) + b_in)
    post = _dropout(post, dropout)
    self.sow("intermediates", "mlp_post", post)
    return x + jnp.einsum("dm,bqm->bqd", W_out, post) + b_out


class Transformer(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BxL: jax.Array, dropout: Dropout = None,
               positions: tuple[int, ...] | None = None) -> jax.Array:
    """Logits at every position, or (B, P, ·) at the static `positions` only: then the last
    block computes its queries, MLP and unembedding at those positions alone."""
    c = self.cfg
    W_E = self.param("W_E", _normal(c.embed_std or c.d_model ** -0.5), (c.d_model, c.d_vocab))
    W_pos = self.param("W_pos", _normal(c.d_model ** -0.5), (c.n_ctx, c.d_model))
    x = W_E.T[tokens_BxL] + W_pos[: tokens_BxL.shape[1]]
    for i in range(c.num_layers):
      drop = None if dropout is None else (dropout[0], jax.random.fold_in(dropout[1], i))
      last = i == c.num_layers - 1
      x = Block(c, name=f"blocks_{i}")(x, drop, positions if last else None)
      self.sow("intermediates", f"resid_post_{i}", x)
    W_U = self.param("W_U", _normal(c.d_vocab ** -0.5), (c.d_model, c.d_vocab_out))
    return x @ W_U


def _dropout(x: jax.Array, dropout: Dropout) -> jax.Array:
  """Inverted dropout; identity without (evaluation). A keep probability of 1 keeps every
  neuron unscaled, so runs without dropout are exact inside a sweep that has some."""
  if dropout is None:
    return x
  keep_prob, key = dropout  # float64 under x64: the uniforms are drawn in its dtype
  keep = jax.random.bernoulli(key, keep_prob, x.shape)
  return jnp.where(keep, x / keep_prob.astype(x.dtype), 0.0)


@functools.partial(jax.jit, static_argnums=0)
def init_params(cfg: ModelConfig, key: jax.Array) -> Params:
  """The authors' init (one compiled program: called eagerly, flax's init would compile every
  op of the forward pass one by one, seconds on a CPU)."""
  tokens = jnp.zeros((1, cfg.n_ctx), jnp.int32)
  return Transformer(cfg).init(key, tokens)["params"]


def apply(cfg: ModelConfig, params: Params, tokens_BxL: jax.Array,
          dropout: Dropout = None, positions: tuple[int, ...] | None = None) -> jax.Array:
  """Logits (B, L, d_vocab_out) at every position (the plain model), or (B, P, ·) at the
  static `positions`."""
  return Transformer(cfg).apply({"params": params}, tokens_BxL, dropout, positions)


def apply_with_cache(cfg: ModelConfig, params: Params,
                     tokens_BxL: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
  """Logits and the sown activations ('blocks_i': attn_pattern, mlp_post; resid_post_i)."""
  logits, state = Transformer(cfg).apply({"params": params}, tokens_BxL,
                                         mutable=["intermediates"])
  cache = jax.tree.map(lambda t: t[0], state["intermediates"],
                       is_leaf=lambda t: isinstance(t, tuple))
  return logits, cache


def logits_at(cfg: ModelConfig, params: Params, tokens_BxL: jax.Array,
              positions: tuple[int, ...], dropout: Dropout = None) -> jax.Array:
  """Logits (B, P, d_vocab_out) at the static `positions` (a task's loss positions)."""
  L = tokens_BxL.shape[1]
  if cfg.num_layers == 1 and cfg.use_mlp and tuple(positions) == (L - 1,):
    return _last_logits_one_layer(cfg, params, tokens_BxL, dropout)[:, None]
  if tuple(positions) == tuple(range(L)):
    return apply(cfg, params, tokens_BxL, dropout)
  if dropout is None and (L > 3 or cfg.num_layers > 1):
    # Sequence tasks read few positions (5-digit addition 6 of 18, the skip trigram 1) and a
    # 2-layer modular model reads 1 of 3: the last block runs its queries, MLP and unembedding
    # there alone. Tested equal to the slice of the plain model. (With dropout the masks' shape
    # would change; the 1-layer modular path above and dropout runs keep the path their golden
    # metrics were recorded with.)
    return apply(cfg, params, tokens_BxL, None, tuple(positions))
  return apply(cfg, params, tokens_BxL, dropout)[:, jnp.asarray(positions)]


def last_logits(cfg: ModelConfig, params: Params, tokens_BxL: jax.Array,
                dropout: Dropout = None) -> jax.Array:
  """Logits (B, d_vocab_out) at the last position: the only ones the modular tasks' loss reads."""
  return logits_at(cfg, params, tokens_BxL, (tokens_BxL.shape[1] - 1,), dropout)[:, 0]


def _last_logits_one_layer(cfg: ModelConfig, params: Params, tokens_BxL: jax.Array,
                           dropout: Dropout) -> jax.Array:
  """One-layer last-position logits from per-(position, token) tables.

  In a one-layer model the residual stream entering attention at position j depends only on
  (j, token_j), so queries, keys and values are small (L, V, heads, d_head) tables shared by
  the whole batch; only the attention mixing, the MLP and the unembedding are per example.
  """
  blk = params["blocks_0"]
  H, E = cfg.num_heads, cfg.d_head
  L = tokens_BxL.shape[1]
  x0_LxVxD = params["W_E"].T[None] + params["W_pos"][:L, None]
  k_LxVxHxE = jnp.einsum("lvd,hed->lvhe", x0_LxVxD, blk["W_K"])
  v_LxVxHxE = jnp.einsum("lvd,hed->lvhe", x0_LxVxD, blk["W_V"])
  q_VxHxE = jnp.einsum("vd,hed->vhe", x0_LxVxD[-1], blk["W_Q"])
  # Every (query token, key position, key token, head) score is one entry of a small table;
  # each example gathers L·H scalars from it (and the backward scatters only those).
  scores_VxLxVxH = jnp.einsum("qhe,lkhe->qlkh", q_VxHxE, k_LxVxHxE) / jnp.sqrt(jnp.float32(E))
  pos = jnp.arange(L)
  scores_BxLxH = scores_VxLxVxH[tokens_BxL[:, -1:], pos, tokens_BxL]
  pattern_BxLxH = jax.nn.softmax(scores_BxLxH, axis=1)  # last query sees every position
  v_BxLxHxE = v_LxVxHxE[pos, tokens_BxL]
  # z = Σ_j pattern_j · v_j with each head's weight spread over its d_head lanes by a 0/1 matmul
  # and the few key positions unrolled: written as broadcasts and reductions instead, XLA:CPU
  # lowers the backward pass to slow YNNPACK reductions (3× slower steps under vmap).
  spread_HxF = jnp.repeat(jnp.eye(H, dtype=jnp.float32), E, axis=1)
  v_BxLxF = v_BxLxHxE.reshape(*v_BxLxHxE.shape[:2], H * E)
  z_BxF = sum((pattern_BxLxH[:, j] @ spread_HxF) * v_BxLxF[:, j] for j in range(L))
  attn_BxD = z_BxF @ blk["W_O"].T
  resid_BxD = x0_LxVxD[-1][tokens_BxL[:, -1]] + attn_BxD
  post_BxM = _act(cfg.act)(resid_BxD @ blk["W_in"].T + blk["b_in"])
  post_BxM = _dropout(post_BxM, dropout)
  resid_BxD = resid_BxD + post_BxM @ blk["W_out"].T + blk["b_out"]
  return resid_BxD @ params["W_U"]


# ----------------------------------------------------------------- the p² grid (analysis)

def grid_forward(params: Params, act: str = "relu", dtype=jnp.float32) -> dict[str, jnp.ndarray]:
  """Last-position quantities on the p² grid: logits (p², p), mlp_post (p², d_mlp), mlp_logits
  = mlp_post·W_Lᵀ (p², p) (the neurons' part of the logits), pattern (p², H, 3) (attention of
  the `=` query to positions 0, 1, 2).

  One-layer models use exact per-token tables: the residual entering attention depends only on
  (position, token) and the query is always `=`, so scores, OV outputs, their images under W_in
  and W_U are small tables; the per-input work is the attention mix, the ReLU and post·W_Lᵀ
  (tested equal to `apply`): the fast path of the analysis, as `_last_logits_one_layer` is
  training's. Deeper and attention-only models fall back to the plain model; an attention-only
  model has no neurons, so it returns logits and pattern only.
  """
  params = jax.tree.map(lambda t: jnp.asarray(t, dtype), params)
  if sum(1 for k in params if k.startswith("blocks_")) != 1 or "W_in" not in params["blocks_0"]:
    return _grid_forward_plain(params, act)
  p, blk = params["W_E"].shape[1] - 1, params["blocks_0"]
  H, E, D = blk["W_Q"].shape
  W_E, W_pos, W_U = params["W_E"], params["W_pos"], params["W_U"][:, :p]
  x_a = W_E[:, :p].T + W_pos[0]                    # (p, D) token a at position 0
  x_b = W_E[:, :p].T + W_pos[1]                    # (p, D) token b at position 1
  x_e = W_E[:, p] + W_pos[2]                       # (D,) '=' at position 2
  q_HxE = jnp.einsum("hed,d->he", blk["W_Q"], x_e)
  scale = jnp.sqrt(jnp.asarray(E, dtype))
  s_a = jnp.einsum("hed,td,he->th", blk["W_K"], x_a, q_HxE) / scale    # (p, H)
  s_b = jnp.einsum("hed,td,he->th", blk["W_K"], x_b, q_HxE) / scale    # (p, H)
  s_e = jnp.einsum("hed,d,he->h", blk["W_K"], x_e, q_HxE) / scale      # (H,)
  scores = jnp.stack([jnp.broadcast_to(s_a[:, None], (p, p, H)),
                      jnp.broadcast_to(s_b[None, :], (p, p, H)),
                      jnp.broadcast_to(s_e, (p, p, H))], axis=-1)
  A_PxPxHx3 = jax.nn.softmax(scores, axis=-1)
  W_O = blk["W_O"].T.reshape(H, E, D)
  ov_a, ov_b, ov_e = (jnp.einsum("td,hed,hef->thf", x, blk["W_V"], W_O)
                      for x in (x_a, x_b, x_e[None]))                    # (p|1, H, D)

  def mix(W_DxN, base_N):
    """base + Σ_h Σ_j A[a,b,h,j]·(ov_j W)[token_j, h]: the attention output pushed through W.
    The head sum is unrolled into one elementwise fusion (4 heads; faster than a K=4 GEMM)."""
    t_a, t_b, t_e = ov_a @ W_DxN, ov_b @ W_DxN, ov_e[0] @ W_DxN
    x = base_N
    for h in range(H):
      x = (x + A_PxPxHx3[:, :, h, 0, None] * t_a[:, None, h]
           + A_PxPxHx3[:, :, h, 1, None] * t_b[None, :, h] + A_PxPxHx3[:, :, h, 2, None] * t_e[h])
    return x.reshape(p * p, -1)

  W_in = blk["W_in"].T
  # The barriers keep XLA:CPU from pulling the elementwise mixes into the matmul's library
  # fusion together with downstream reductions, which ran ~4x slower than the plain loops.
  post = jax.lax.optimization_barrier(_act(act)(mix(W_in, x_e @ W_in + blk["b_in"])))
  direct = jax.lax.optimization_barrier(mix(W_U, (x_e + blk["b_out"]) @ W_U))
  mlp_logits = post @ (W_U.T @ blk["W_out"]).T                         # post · W_Lᵀ
  return dict(logits=direct + mlp_logits, mlp_logits=mlp_logits, mlp_post=post,
              pattern=A_PxPxHx3.reshape(p * p, H, 3))


def _grid_forward_plain(params: Params, act: str) -> dict[str, jnp.ndarray]:
  from grokjax import data  # the modular tasks' grid
  p, n = params["W_E"].shape[1] - 1, sum(1 for k in params if k.startswith("blocks_"))
  H, E, D = params["blocks_0"]["W_Q"].shape
  last = params[f"blocks_{n - 1}"]
  cfg = ModelConfig(d_vocab=p + 1, d_vocab_out=params["W_U"].shape[1], n_ctx=3, d_model=D,
                    num_heads=H, d_mlp=last["W_in"].shape[0] if "W_in" in last else 4 * D,
                    num_layers=n, act=act, use_mlp="W_in" in last)
  logits, cache = apply_with_cache(cfg, params, jnp.asarray(data.all_tokens(p)))
  pattern = cache["blocks_0"]["attn_pattern"][:, :, -1, :]
  if not cfg.use_mlp:
    return dict(logits=logits[:, -1, :p], pattern=pattern)
  post = cache[f"blocks_{n - 1}"]["mlp_post"][:, -1]
  W_L = params["W_U"][:, :p].T @ params[f"blocks_{n - 1}"]["W_out"]
  return dict(logits=logits[:, -1, :p], mlp_post=post, mlp_logits=post @ W_L.T, pattern=pattern)
