"""Local learning coefficient (LLC) of a trained model, estimated by localised SGLD.

The LLC λ(w*) of singular learning theory measures how degenerate the loss is around a minimum w*:
the volume of {w near w* : L(w) − L(w*) < δ} scales as δ^λ. A regular model with d parameters has
λ = d/2; directions the loss ignores add nothing, flat-but-curved (e.g. quartic) directions add
less than 1/2. Estimator (Lau et al. 2023, "Quantifying degeneracy in singular models via the
learning coefficient"; as in devinterp): sample the tempered, localised posterior
    p(w) ∝ exp(−nβ·L(w) − γ/2·|w − w*|²)
and report λ̂ = nβ · (E_p[L(w)] − L(w*)), with L the mean training loss and nβ = n·β.

Sampler (SGLD, chains start at w*), one minibatch B_t per step:
    w ← w + ε/2 · (−nβ·∇L_{B_t}(w) + γ·(w* − w)) + N(0, ε·I)
Draw j of a chain is L_{B_t}(w_t), the minibatch loss of step t = num_burnin + j·thin, taken at the
state before that step's update (so with num_burnin = 0, draw 0 is at w*). L(w*) is the mean loss
of num_baseline_batches fresh minibatches. Chains are vmapped, steps are one lax.scan; everything
jits (loss_fn and sample_batch static) and vmaps over a leading axis of `params`.

Defaults (`LLCConfig`), for a small network at a near-zero training loss such as the grokking
transformer; check any new setting with `calibrate` and `trace_health`:
  * nβ = n / log n: Watanabe's WBIC inverse temperature β = 1/log n.
  * γ = 100: keeps chains near w* (a grokked model sits in a long flat valley) while biasing a
    direction of curvature h only by a factor ≈ nβ·h / (nβ·h + γ).
  * ε = 1e-3 with 100 burn-in steps and 400 draws × 4 chains, batches of 256 (the batch size is
    for `batch_sampler`; `estimate` calls whatever sampler it is given).
  * 8 baseline batches.
Stationarity needs ε·(nβ·h_max + γ) ≪ 1 (a Gaussian direction's variance is inflated by
1/(1 − ε·a/4), a = nβ·h + γ) and enough steps for the flattest direction to mix, ~1/(ε·a_min).

Pitfalls:
  * Baseline from one batch: λ̂ is a difference of two losses multiplied by nβ (hundreds), so the
    baseline's noise, nβ·sd(per-example loss)/sqrt(num_baseline_batches·batch), adds directly to
    every chain (it is common to all chains and invisible in llc_std). Use several batches and
    more of them when the per-example loss at w* varies a lot.
  * ε too large: chains leave the basin (loss_trace grows, then turns inf/nan) or oscillate; ε too
    large or γ too small can also give λ̂ < 0, i.e. the chain found lower loss than w* (w* is not
    a local minimum at this scale, or the trace is dominated by noise). ε too small: the trace
    still climbs at the end (drift in `trace_health`) and λ̂ is underestimated.
  * λ̂ depends on nβ and γ: compare checkpoints only at one setting.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]     # (params, batch) -> mean loss
Sampler = Callable[[jax.Array], PyTree]            # key -> batch


@dataclasses.dataclass(frozen=True)
class LLCConfig:
  """Localised SGLD settings (see the module docstring for the defaults' reasons)."""
  epsilon: float = 1e-3            # SGLD step size ε (noise variance per step)
  gamma: float = 100.0             # localisation strength γ
  nbeta: float | None = None       # nβ; None: n / log n
  num_chains: int = 4
  num_draws: int = 400             # draws averaged per chain (after burn-in)
  num_burnin: int = 100            # steps before the first averaged draw
  thin: int = 1                    # steps between draws
  batch_size: int = 256            # for batch_sampler (estimate takes any sampler)
  num_baseline_batches: int = 8    # batches averaged for L(w*)

  def __post_init__(self):
    for name in ("epsilon", "gamma"):
      v = getattr(self, name)
      if not (v > 0 if name == "epsilon" else v >= 0) or not math.isfinite(v):
        raise ValueError(f"LLCConfig.{name} must be {'> 0' if name == 'epsilon' else '>= 0'}, "
                         f"got {v}")
    if self.nbeta is not None and not (self.nbeta > 0 and math.isfinite(self.nbeta)):
      raise ValueError(f"LLCConfig.nbeta must be > 0 or None, got {self.nbeta}")
    for name in ("num_chains", "num_draws", "thin", "batch_size", "num_baseline_batches"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"LLCConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.num_burnin < 0:
      raise ValueError(f"LLCConfig.num_burnin must be >= 0, got {self.num_burnin}")

  @property
  def num_steps(self) -> int:
    return self.num_burnin + self.num_draws * self.thin


def default_nbeta(n: int) -> float:
  """nβ = n / log n (WBIC's β = 1 / log n), for n training examples."""
  if n < 2:
    raise ValueError(f"need n >= 2 training examples for nβ = n / log n, got {n}")
  return n / math.log(n)


def batch_sampler(data: PyTree, batch_size: int) -> Sampler:
  """key -> a batch of `batch_size` rows drawn with replacement from `data` (leading axis n).

  Called inside a jitted function with `data` an argument of that function, the data stays an
  input; built outside, `data` is baked into the compiled program as a constant.
  """
  n = jax.tree_util.tree_leaves(data)[0].shape[0]

  def sample(key: jax.Array) -> PyTree:
    # bits % n: one threefry call (randint makes three; each costs compile time on CPU); the
    # modulo bias, n / 2^32, is negligible.
    idx = (jax.random.bits(key, (batch_size,), jnp.uint32) % n).astype(jnp.int32)
    return jax.tree_util.tree_map(lambda x: x[idx], data)
  return sample


def _tree_normal(key: jax.Array, like: PyTree) -> PyTree:
  """N(0, 1) noise shaped like `like`, from one draw (one random call however many leaves)."""
  leaves, treedef = jax.tree_util.tree_flatten(like)
  sizes = [x.size for x in leaves]
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
  parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1])
  return treedef.unflatten([p.reshape(x.shape).astype(x.dtype) for p, x in zip(parts, leaves)])


def _chain(loss_fn: LossFn, params: PyTree, sample_batch: Sampler, cfg: LLCConfig,
           key: jax.Array, epsilon: jax.Array, nbeta: jax.Array) -> jax.Array:
  """One SGLD chain from w* = params; returns the minibatch loss of every step, (num_steps,)."""
  grad_fn = jax.value_and_grad(loss_fn)

  def update(w, w0, g, z):
    e = epsilon.astype(w.dtype)   # keep float32 params float32 under jax_enable_x64
    return w + e / 2 * (-nbeta.astype(w.dtype) * g + cfg.gamma * (w0 - w)) + jnp.sqrt(e) * z

  def step(w, keys):
    loss, g = grad_fn(w, sample_batch(keys[0]))
    z = _tree_normal(keys[1], w)
    return jax.tree_util.tree_map(update, w, params, g, z), loss

  # All step keys up front: one random call instead of a fold_in and a split inside every step.
  _, losses = jax.lax.scan(step, params, jax.random.split(key, (cfg.num_steps, 2)))
  return losses


def _estimate(loss_fn: LossFn, params: PyTree, sample_batch: Sampler, cfg: LLCConfig,
              key: jax.Array, epsilon: jax.Array, nbeta: jax.Array) -> dict[str, jax.Array]:
  """`estimate` with ε and nβ as traced scalars (so a grid of them compiles once)."""
  keys = jax.random.split(key, cfg.num_baseline_batches + cfg.num_chains)
  base_keys, chain_keys = keys[:cfg.num_baseline_batches], keys[cfg.num_baseline_batches:]
  loss_init = jnp.mean(jax.vmap(lambda k: loss_fn(params, sample_batch(k)))(base_keys))
  losses = jax.vmap(lambda k: _chain(loss_fn, params, sample_batch, cfg, k, epsilon, nbeta))(
      chain_keys)                                                       # (C, steps)
  trace = losses[:, cfg.num_burnin::cfg.thin]                          # (C, draws)
  nbeta = nbeta.astype(trace.dtype)
  per_chain = nbeta * (jnp.mean(trace, axis=1) - loss_init)
  return dict(llc_mean=jnp.mean(per_chain),
              llc_std=jnp.std(per_chain, ddof=1 if cfg.num_chains > 1 else 0),
              llc_per_chain=per_chain, loss_trace=trace, loss_init=loss_init, nbeta=nbeta)


def estimate(loss_fn: LossFn, params: PyTree, sample_batch: Sampler, n: int, cfg: LLCConfig,
             key: jax.Array) -> dict[str, jax.Array]:
  """λ̂ at w* = params by localised SGLD.

  Args:
    loss_fn: (params, batch) -> scalar mean loss over the batch.
    params: w*, any pytree of float arrays.
    sample_batch: key -> batch of the run's training data (pure; see `batch_sampler`).
    n: number of training examples (for the default nβ = n / log n).
    cfg: sampler settings.
    key: PRNG key; the result is a deterministic function of it.
  Returns:
    llc_mean, llc_std (over chains), llc_per_chain (C,), loss_trace (C, num_draws),
    loss_init (the baseline L(w*)), nbeta. Pure: jit it with loss_fn and sample_batch closed
    over, and vmap it over a leading axis of params (and keys).
  """
  nbeta = cfg.nbeta if cfg.nbeta is not None else default_nbeta(n)
  return _estimate(loss_fn, params, sample_batch, cfg, key,
                   jnp.asarray(cfg.epsilon, jnp.float32), jnp.asarray(nbeta, jnp.float32))


def estimate_traced(loss_fn: LossFn, params: PyTree, sample_batch: Sampler, cfg: LLCConfig,
                    key: jax.Array, epsilon: jax.Array, nbeta: jax.Array) -> dict[str, jax.Array]:
  """`estimate` with ε and nβ given as (possibly traced) scalars, ignoring cfg.epsilon and
  cfg.nbeta: e.g. a per-run nβ = n / log n computed inside a program vmapped over runs."""
  return _estimate(loss_fn, params, sample_batch, cfg, key, jnp.asarray(epsilon, jnp.float32),
                   jnp.asarray(nbeta, jnp.float32))


def calibrate(loss_fn: LossFn, params: PyTree, sample_batch: Sampler, n: int, cfg: LLCConfig,
              key: jax.Array, epsilons, nbetas) -> dict[str, jax.Array]:
  """`estimate` on the grid epsilons (E,) × nbetas (B,), one jitted program.

  Every grid point uses the same key (common random numbers: the same batches, noise and baseline),
  so differences across the grid come from ε and nβ, not from sampling noise. cfg.epsilon and
  cfg.nbeta are ignored; `n` is unused (kept for symmetry with `estimate`).
  Returns llc_mean, llc_std (E, B), llc_per_chain (E, B, C), loss_trace (E, B, C, draws),
  loss_init, epsilon (E,), nbeta (B,).
  """
  del n
  eps = jnp.asarray(epsilons, jnp.float32).reshape(-1)
  nbs = jnp.asarray(nbetas, jnp.float32).reshape(-1)

  @jax.jit
  def grid(params, key, eps, nbs):
    one = lambda e, b: _estimate(loss_fn, params, sample_batch, cfg, key, e, b)
    return jax.vmap(jax.vmap(one, (None, 0)), (0, None))(eps, nbs)

  out = grid(params, key, eps, nbs)
  return dict(llc_mean=out["llc_mean"], llc_std=out["llc_std"],
              llc_per_chain=out["llc_per_chain"], loss_trace=out["loss_trace"],
              loss_init=out["loss_init"][0, 0], epsilon=eps, nbeta=nbs)


def trace_health(loss_trace: jax.Array, loss_init: jax.Array) -> dict[str, jax.Array]:
  """Readable diagnostics of loss traces (..., C, draws) against baselines (...).

  Returns, per leading index (a calibrate grid point, a checkpoint):
    frac_nonfinite: fraction of chains with a non-finite draw (ε too large: the chain diverged).
    frac_negative: fraction of chains whose mean loss is below L(w*) (negative λ̂: ε too large,
      γ too small, or w* is not a minimum).
    drift: (mean of the draws' second half − mean of the first half) / (mean − L(w*)), chains
      pooled: the change of the excess loss within the trace. Near 0 when the chains have settled;
      > 0.2: still climbing (more burn-in or draws, larger ε); < −0.2: the excess is shrinking
      (the chains are sliding to lower loss than w*). Noise alone gives about
      ±(per-draw sd / excess) / sqrt(effective draws).
    healthy: all chains finite, none negative, |drift| < 0.2.
  """
  trace = jnp.asarray(loss_trace)
  base = jnp.asarray(loss_init)
  finite = jnp.all(jnp.isfinite(trace), axis=-1)                        # (..., C)
  mean = jnp.mean(trace, axis=-1)                                       # (..., C)
  half = trace.shape[-1] // 2
  first = jnp.mean(trace[..., :half], axis=(-2, -1))
  second = jnp.mean(trace[..., trace.shape[-1] - half:], axis=(-2, -1))
  excess = jnp.mean(mean, axis=-1) - base
  drift = (second - first) / jnp.where(excess == 0, jnp.finfo(trace.dtype).tiny, excess)
  frac_nonfinite = jnp.mean(~finite, axis=-1)
  frac_negative = jnp.mean(finite & (mean < base[..., None]), axis=-1)
  return dict(frac_nonfinite=frac_nonfinite, frac_negative=frac_negative, drift=drift,
              healthy=(frac_nonfinite == 0) & (frac_negative == 0) & (jnp.abs(drift) < 0.2))
