"""Grokfast transforms against a NumPy transcription of the authors' filters (ironjr/grokfast)."""
import collections
import os
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from grokjax import grokfast

SHAPES = {"a": (3, 4), "b": (5,)}
STEPS = 6


def grads_seq(seed=0, steps=STEPS, runs=None):
  rng = np.random.default_rng(seed)
  lead = (steps,) if runs is None else (runs, steps)
  return {k: rng.standard_normal(lead + s).astype(np.float32) for k, s in SHAPES.items()}


def params0():
  return {k: jnp.ones(s, jnp.float32) for k, s in SHAPES.items()}


def ref_ema(gs, alpha, lamb):
  """The authors' gradfilter_ema, step by step, in float32 NumPy."""
  out, h = [], None
  for t in range(STEPS):
    g = {k: v[t] for k, v in gs.items()}
    if h is None:
      h = dict(g)
    h = {k: h[k] * np.float32(alpha) + g[k] * np.float32(1 - alpha) for k in g}
    out.append({k: g[k] + h[k] * np.float32(lamb) for k in g})
  return out


def ref_ma(gs, window, lamb, warmup=True, filter_type="mean"):
  """The authors' gradfilter_ma (a deque of raw gradients; append, then maybe filter)."""
  out, buf = [], {k: collections.deque(maxlen=window) for k in gs}
  for t in range(STEPS):
    o = {}
    for k, v in gs.items():
      g = v[t]
      buf[k].append(g)
      if not warmup or len(buf[k]) == window:
        avg = sum(buf[k]) / (len(buf[k]) if filter_type == "mean" else 1)
        g = g + avg * np.float32(lamb)
      o[k] = g
    out.append(o)
  return out


def run_tx(tx, gs, steps=STEPS):
  """Filtered gradients of each step (no params needed by the filters)."""
  state, outs = tx.init(params0()), []
  for t in range(steps):
    u, state = tx.update({k: jnp.asarray(v[t]) for k, v in gs.items()}, state)
    outs.append(u)
  return outs, state


class GrokfastTest(absltest.TestCase):

  def assert_steps_close(self, got, want):
    for t, (g, w) in enumerate(zip(got, want)):
      for k in SHAPES:
        np.testing.assert_allclose(g[k], w[k], rtol=2e-6, atol=2e-6, err_msg=f"step {t} {k}")

  def test_ema_matches_reference_loop(self):
    gs = grads_seq(1)
    got, state = run_tx(grokfast.grokfast_ema(0.8, 3.0), gs)
    self.assert_steps_close(got, ref_ema(gs, 0.8, 3.0))
    # First step: h = g (not (1-α)·g from a zero start), so ĝ₁ = (1 + λ)·g₁.
    np.testing.assert_allclose(got[0]["a"], 4.0 * gs["a"][0], rtol=1e-6)
    self.assertEqual(int(state.count), STEPS)

  def test_ma_matches_reference_loop(self):
    gs = grads_seq(2)
    for kw in (dict(), dict(warmup=False), dict(filter_type="sum"),
               dict(warmup=False, filter_type="sum")):
      with self.subTest(**kw):
        got, _ = run_tx(grokfast.grokfast_ma(3, 2.5, **kw), gs)
        self.assert_steps_close(got, ref_ma(gs, 3, 2.5, **kw))
    # Warm-up: the first window-1 steps pass g through untouched; step `window` is filtered.
    got, _ = run_tx(grokfast.grokfast_ma(3, 2.5), gs)
    for t in (0, 1):
      np.testing.assert_array_equal(got[t]["b"], gs["b"][t])
    want = gs["b"][2] + 2.5 * gs["b"][:3].mean(0)
    np.testing.assert_allclose(got[2]["b"], want, rtol=2e-6, atol=2e-6)
    # Window 1: the mean is the current gradient alone.
    got, _ = run_tx(grokfast.grokfast_ma(1, 2.0), gs)
    np.testing.assert_allclose(got[4]["a"], 3.0 * gs["a"][4], rtol=1e-6)

  def test_lambda_zero_is_bit_identical_to_plain_adamw(self):
    gs = grads_seq(3)
    gs["a"][0::2, 0, 0], gs["a"][1::2, 0, 0] = 1.0, -0.0   # a signed zero must survive too
    adamw = lambda: optax.adamw(1e-2, b1=0.9, b2=0.98, weight_decay=0.5)
    for gf in (grokfast.grokfast_ema(0.98, 0.0), grokfast.grokfast_ma(2, 0.0, warmup=False)):
      filtered, _ = run_tx(gf, gs)   # the filter alone returns g, bit for bit
      for t in range(STEPS):
        for k in SHAPES:
          np.testing.assert_array_equal(np.asarray(filtered[t][k]).view(np.uint32),
                                        gs[k][t].view(np.uint32))
      txs = (adamw(), optax.chain(gf, adamw()))
      params = [params0(), params0()]
      states = [tx.init(p) for tx, p in zip(txs, params)]
      for t in range(STEPS):
        g = {k: jnp.asarray(v[t]) for k, v in gs.items()}
        for i, tx in enumerate(txs):
          u, states[i] = tx.update(g, states[i], params[i])
          params[i] = optax.apply_updates(params[i], u)
          if i == 1:
            for k in SHAPES:   # bit patterns, so -0.0 vs 0.0 would fail
              np.testing.assert_array_equal(np.asarray(u[k]).view(np.uint32),
                                            np.asarray(u_plain[k]).view(np.uint32))
          u_plain = u
      for k in SHAPES:
        np.testing.assert_array_equal(params[0][k], params[1][k])

  def test_vmap_per_run_hyperparams_one_trace(self):
    runs, gs = 3, grads_seq(4, runs=3)
    adamw = optax.adamw(1e-2, b1=0.9, b2=0.98, weight_decay=0.5)
    txs = {"ema": optax.chain(grokfast.grokfast_ema(), adamw),
           "ma": optax.chain(grokfast.grokfast_ma(2), adamw)}   # built once, outside vmap

    def train(tx, g_seq, alpha=None, lamb=None):   # one run; alpha, lamb traced
      p = params0()
      s = grokfast.set_hyperparams(tx.init(p), alpha=alpha, lamb=lamb)

      def step(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None
      (p, s), _ = jax.lax.scan(step, (p, s), g_seq)
      return p, s

    for name, tx in txs.items():
      traces = []

      def one_run(a, l, g, tx=tx, traces=traces):
        traces.append(1)   # runs only while tracing
        return train(tx, g, a, l)
      sweep = jax.jit(jax.vmap(one_run))
      plain = jax.jit(jax.vmap(lambda g: train(adamw, g)[0]))(gs)
      # One run at a time, the other route: the transform built with (traced) α, λ.
      make = ((lambda a, l: grokfast.grokfast_ema(a, l)) if name == "ema"
              else (lambda a, l: grokfast.grokfast_ma(2, l)))
      single = jax.jit(lambda a, l, g, make=make: train(optax.chain(make(a, l), adamw), g)[0])
      for alphas, lambs in (([0.9, 0.5, 0.98], [2.0, 0.0, 5.0]),
                            ([0.7, 0.99, 0.8], [1.0, 3.0, 0.0])):
        a, l = np.float32(alphas), np.float32(lambs)
        got_p, got_s = sweep(a, l, gs)
        self.assertEqual(got_s[0].lamb.shape, (runs,))
        np.testing.assert_array_equal(got_s[0].lamb, l)
        for r in range(runs):
          want = single(a[r], l[r], {k: v[r] for k, v in gs.items()})
          for k in SHAPES:
            np.testing.assert_allclose(got_p[k][r], want[k], rtol=1e-6, atol=1e-7)
            if l[r] == 0:   # a plain lane of a mixed sweep is exact
              np.testing.assert_array_equal(got_p[k][r], plain[k][r])
      self.assertLen(traces, 1)   # one program for every α/λ

  def test_state_is_fixed_shape_arrays_and_checkpoints(self):
    tx = optax.chain(grokfast.grokfast_ema(), grokfast.grokfast_ma(4), optax.adamw(1e-3))
    state = jax.vmap(lambda a, l: grokfast.set_hyperparams(tx.init(params0()), alpha=a, lamb=l))(
        jnp.float32([0.9, 0.95]), jnp.float32([1.0, 2.0]))
    gs = grads_seq(5, runs=2)
    state = jax.vmap(lambda s, g: tx.update(g, s, params0())[1])(
        state, {k: v[:, 0] for k, v in gs.items()})
    abstract = jax.eval_shape(lambda: state)
    for leaf in jax.tree.leaves(state):
      self.assertIsInstance(leaf, jax.Array)
    self.assertEqual(state[1].buffer["a"].shape, (2, 4, 3, 4))
    self.assertEqual(state[0].alpha.dtype, jnp.float32)
    with tempfile.TemporaryDirectory() as d:
      path = os.path.join(d, "ckpt")
      with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, state)
        ckpt.wait_until_finished()
        back = ckpt.restore(path, abstract)
    self.assertEqual(jax.tree.structure(back), jax.tree.structure(state))
    jax.tree.map(np.testing.assert_array_equal, back, state)


if __name__ == "__main__":
  absltest.main()
