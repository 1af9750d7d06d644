"""Analysis throughput on the mainline model: seconds per checkpoint, grokjax vs the authors' code.

grokjax (jitted; compile time reported separately, excluded from the per-checkpoint times):
  * dynamics — the training-dynamics measures of one CSV row (`measures.dynamics`): 113-way
    losses and accuracies on all/train/test, restricted and excluded loss and accuracy, the
    per-key-frequency excluded loss, the cos(w(a+b−c)) coefficients, Gini(W_E), Gini(W_L), the
    sums of squared weights; for one checkpoint, and for `--n` checkpoints mapped in one call
    (lax.map over vmapped batches of `--vmap_batch`), as `experiments.analyze` runs them;
  * evidence — the full final-checkpoint evidence set (`evidence.evidence`: the above plus key
    frequencies by both rules, neuron FVEs and clusters, Table-1 and logit FVE, the W_L residual,
    the 56-frequency ablation, the block / projection / degree-2 ablations, attention fits,
    the 2D logit spectrum), for one checkpoint and for `--evidence_n` mapped checkpoints.
The checkpoints are the authors' λ = 0.1 final weights (mainline shapes: p = 113, d_model 128,
4 heads, d_mlp 512) plus small per-checkpoint noise; key frequencies are theirs (W_L rule).

The authors (when torch is installed): a re-expression, in our own words, of their
per-checkpoint metric code (`Trainer.take_metrics` plus the notebook's progress-measure cells),
their Python loops included: the Fourier basis built row by row, the train/test masks by list
membership over the p² pairs, the label list, key frequencies recomputed by looping over 512
neurons × 55 frequencies, a second forward for the logits, the per-key-frequency excluded loss,
the full excluded loss, the restricted ("trig") loss with bias correction, the cos(w(a+b−c))
coefficients from the full (56, p, p, p) cosine cube, the sum of squared weights, train/test loss.

Prints progress to stderr and, as its LAST stdout line, one JSON object. On a CPU shared with
other jobs the wall times are noisy: the load averages before and after are part of the JSON,
and so are the process CPU seconds (all threads), which depend less on the others' load.

  python benchmarks/analysis_throughput.py                 # a few minutes on 2 cores
  python benchmarks/analysis_throughput.py --n 20 --authors_ckpts 1   # quicker
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import analysis, data, evidence, interop, measures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

try:
  import torch
except ImportError:  # optional dependency
  torch = None

P, FRAC, SPLIT_SEED = 113, 0.3, 1
WEIGHTS = "authors_wd0.1_final_weights.npz"


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def checkpoints(n: int, noise: float = 1e-3):
  params, _ = interop.load(analysis.reference_path(WEIGHTS))
  rng = np.random.default_rng(0)
  return params, jax.tree.map(
      lambda t: jnp.asarray(t[None] * (1 + noise * rng.standard_normal((n,) + t.shape)),
                            jnp.float32), params)


CPU_S: dict[int, float] = {}  # id(fn) -> median process CPU seconds of its last timing


def timed(fn, *args, repeats: int = 1) -> float:
  """Median wall seconds of fn(*args) (results blocked on), after one untimed call. The
  process CPU seconds (all threads) are kept in CPU_S: less sensitive to other jobs' load."""
  jax.block_until_ready(fn(*args))
  ts, cs = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
    cs.append(time.process_time() - c0)
  CPU_S[id(fn)] = statistics.median(cs)
  return statistics.median(ts)


def compile_seconds(fn, *args) -> float:
  t0 = time.perf_counter()
  fn.lower(*args).compile()
  return time.perf_counter() - t0


def bench_grokjax(n: int, vmap_batch: int, evidence_n: int, repeats: int) -> dict:
  base, stacked = checkpoints(max(n, evidence_n))
  labels = jnp.asarray(data.labels("add", P))
  train = jnp.asarray(data.train_mask(P, FRAC, SPLIT_SEED))
  train_idx = jnp.asarray(np.flatnonzero(np.asarray(train)), jnp.int32)
  key = jnp.asarray(np.flatnonzero(np.asarray(measures.key_freqs_W_L(base))) + 1, jnp.int32)
  first = jax.tree.map(lambda t: t[0], stacked)
  out: dict = {"key_freqs": [int(k) for k in key]}

  dyn = lambda prm: measures.dynamics(prm, labels, train, key, train_idx=train_idx)
  one = jax.jit(dyn)
  many = jax.jit(lambda s: jax.lax.map(dyn, s, batch_size=vmap_batch))
  batch_n = jax.tree.map(lambda t: t[:n], stacked)
  out["compile_s"] = {"dynamics_1": compile_seconds(one, first),
                      f"dynamics_{n}": compile_seconds(many, batch_n)}
  log("dynamics: compiled")
  out["dynamics_s_per_ckpt_1"] = timed(one, first, repeats=repeats)
  out["dynamics_cpu_s_per_ckpt_1"] = CPU_S[id(one)]
  log(f"dynamics, one checkpoint: {out['dynamics_s_per_ckpt_1']:.4f} s")
  out[f"dynamics_s_per_ckpt_{n}_vmapped"] = timed(many, batch_n) / n
  out[f"dynamics_cpu_s_per_ckpt_{n}_vmapped"] = CPU_S[id(many)] / n
  log(f"dynamics, {n} mapped (vmap batch {vmap_batch}): "
      f"{out[f'dynamics_s_per_ckpt_{n}_vmapped']:.4f} s/ckpt")
  best = min(out["dynamics_s_per_ckpt_1"], out[f"dynamics_s_per_ckpt_{n}_vmapped"])
  out["dynamics_400_ckpts_s"] = 400 * best

  ev_one = jax.jit(lambda prm: evidence.evidence(prm, labels, train))
  ev_many = jax.jit(lambda s: jax.lax.map(lambda prm: evidence.evidence(prm, labels, train), s,
                                          batch_size=1))
  batch_e = jax.tree.map(lambda t: t[:evidence_n], stacked)
  out["compile_s"]["evidence_1"] = compile_seconds(ev_one, first)
  out["compile_s"][f"evidence_{evidence_n}"] = compile_seconds(ev_many, batch_e)
  log("evidence: compiled")
  out["evidence_s_1"] = timed(ev_one, first, repeats=repeats)
  out["evidence_cpu_s_1"] = CPU_S[id(ev_one)]
  log(f"evidence, one checkpoint: {out['evidence_s_1']:.3f} s")
  out[f"evidence_s_per_ckpt_{evidence_n}_mapped"] = timed(ev_many, batch_e) / evidence_n
  log(f"evidence, {evidence_n} mapped: {out[f'evidence_s_per_ckpt_{evidence_n}_mapped']:.3f} "
      "s/ckpt")
  return out


# ----------------------------------------------------------------------------- the authors' code

def authors_take_metrics(net, p: int, train_pairs: list, key_hint=None) -> dict:
  """One checkpoint's metrics the authors' way (see the module docstring). Returns timings."""
  t: dict[str, float] = {}
  tick = time.perf_counter()

  def lap(name):
    nonlocal tick
    now = time.perf_counter()
    t[name] = now - tick
    tick = now

  with torch.inference_mode():
    # Fourier basis, one row at a time, each normalised.
    rows = [torch.ones(p)]
    for k in range(1, p // 2 + 1):
      rows.append(torch.cos(2 * torch.pi * torch.arange(p) * k / p))
      rows.append(torch.sin(2 * torch.pi * torch.arange(p) * k / p))
    basis = torch.stack([r / r.norm() for r in rows])
    all_pairs = [(a, b, p) for a in range(p) for b in range(p)]
    all_data = torch.tensor(all_pairs)
    lap("basis_and_data")
    is_train, is_test = [], []
    for a in range(p):
      for b in range(p):
        if (a, b, 113) in train_pairs:  # list membership, the literal 113 included
          is_train.append(True)
          is_test.append(False)
        else:
          is_train.append(False)
          is_test.append(True)
    is_train, is_test = torch.tensor(is_train), torch.tensor(is_test)
    labels = torch.tensor([(a + b) % p for a, b, _ in all_pairs])
    lap("train_test_masks_and_labels")

    # Key frequencies: cache the neurons, 2D transform, loop over neurons and frequencies.
    cache = {}
    hook = net.blocks[0].mlp.hook_post.register_forward_hook(
        lambda mod, inp, out: cache.__setitem__("post", out))
    net(all_data)
    hook.remove()
    acts = cache["post"][:, -1]
    acts = acts - acts.mean(0, keepdim=True)
    fourier_acts = torch.einsum("ai,bj,abn->ijn", basis, basis, acts.reshape(p, p, -1))
    neuron_freqs = []
    for ni in range(acts.shape[1]):
      square = fourier_acts[:, :, ni]
      total = square.pow(2).sum().item()  # once per neuron (in the authors' favour)
      best, best_freq = -1e6, -1
      for freq in range(1, p // 2):  # 1…55, as their calculate_key_freqs
        idx = [0, 2 * freq - 1, 2 * freq]
        frac = square[idx][:, idx].pow(2).sum() / total
        if frac > best:
          best, best_freq = frac, freq
      neuron_freqs.append(best_freq)
    key_freqs = np.unique(neuron_freqs) if key_hint is None else key_hint
    lap("key_freqs_neuron_loops")

    logits = net(all_data)[:, -1, :-1]
    lap("forward_logits")

    def ce(lg, mask=None):
      lg = lg if mask is None else lg[mask]
      lb = labels if mask is None else labels[mask]
      lp = torch.log_softmax(lg.to(torch.float64), dim=-1)
      return -lp.gather(-1, lb[:, None]).mean()

    def component(lg, freq, kind):
      cx, sx = basis[2 * freq - 1], basis[2 * freq]
      if kind == "cos":
        d = (cx[:, None] * cx[None, :] - sx[:, None] * sx[None, :]).flatten() / math.sqrt(2)
      else:
        d = (sx[:, None] * cx[None, :] + cx[:, None] * sx[None, :]).flatten() / math.sqrt(2)
      return d[:, None] @ (d[None, :] @ lg)

    excluded = []
    for freq in key_freqs:
      excluded.append(ce(logits - component(logits, freq, "cos") - component(logits, freq, "sin"),
                         is_train).item())
    lap("excluded_per_freq")
    removed = sum(component(logits, f, "cos") + component(logits, f, "sin") for f in key_freqs)
    ce(logits - removed, is_train).item()
    lap("excluded_full")
    trig = sum(component(logits, f, "cos") + component(logits, f, "sin") for f in key_freqs)
    trig = trig + (logits - trig).mean(0, keepdim=True)
    ce(trig).item()
    lap("restricted")

    x = torch.arange(p)[None, :, None, None]
    y = torch.arange(p)[None, None, :, None]
    z = torch.arange(p)[None, None, None, :]
    w = torch.arange(1, p // 2 + 1)[:, None, None, None]
    cube = torch.cos(2 * torch.pi * w * (x + y - z) / p).reshape(p // 2, p * p, p)
    cube = cube / cube.pow(2).sum((-2, -1), keepdim=True).sqrt()
    (cube * logits[None]).sum((-2, -1))
    lap("cos_coefficients")
    sum(prm.pow(2).sum().item() for name, prm in net.named_parameters())
    ce(logits, is_train).item()
    ce(logits, is_test).item()
    lap("sum_sq_and_losses")
  return t


def bench_authors(n_ckpts: int) -> dict:
  import authors_loop  # pylint: disable=g-import-not-at-top
  base, stacked = checkpoints(n_ckpts)
  train_pairs = [(a, b, P) for a, b in map(lambda i: divmod(int(i), P),
                                          data.train_indices(P, FRAC, SPLIT_SEED))]
  runs = []
  for i in range(n_ckpts):
    net = authors_loop.Transformer(p=P)
    authors_loop.load_grokjax_params(net, jax.tree.map(lambda t: np.asarray(t[i]), stacked))
    runs.append(authors_take_metrics(net, P, train_pairs))
    log(f"authors, checkpoint {i}: {sum(runs[-1].values()):.2f} s")
  parts = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
  total = statistics.median(sum(r.values()) for r in runs)
  return {"authors_s_per_ckpt": total, "authors_breakdown_s": parts,
          "authors_s_per_ckpt_without_mask_building": total - parts["train_test_masks_and_labels"],
          "authors_ckpts": n_ckpts, "torch": torch.__version__,
          "torch_threads": torch.get_num_threads()}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--n", type=int, default=100, help="checkpoints in the mapped dynamics call")
  ap.add_argument("--vmap_batch", type=int, default=analysis.VMAP_BATCH,
                  help="checkpoints per vmapped batch inside lax.map")
  ap.add_argument("--evidence_n", type=int, default=10, help="checkpoints in the mapped "
                  "evidence call")
  ap.add_argument("--repeats", type=int, default=3, help="timings of one checkpoint (median)")
  ap.add_argument("--authors_ckpts", type=int, default=2, help="checkpoints through the "
                  "authors' code (0: skip)")
  args = ap.parse_args()
  result = {"benchmark": "analysis_throughput", **bench_env.environment(),
            "loadavg_start": bench_env.loadavg(), "n": args.n, "vmap_batch": args.vmap_batch,
            "evidence_n": args.evidence_n}
  result.update(bench_grokjax(args.n, args.vmap_batch, args.evidence_n, args.repeats))
  if torch is None:
    result["authors"] = "skipped: torch is not installed (pip install torch==2.13.0)"
    log(result["authors"])
  elif args.authors_ckpts > 0:
    result.update(bench_authors(args.authors_ckpts))
    best = min(result["dynamics_s_per_ckpt_1"], result[f"dynamics_s_per_ckpt_{args.n}_vmapped"])
    result["speedup_dynamics_vs_authors"] = result["authors_s_per_ckpt"] / best
    result["speedup_evidence_vs_authors"] = result["authors_s_per_ckpt"] / result["evidence_s_1"]
  result["loadavg_end"] = bench_env.loadavg()
  result["targets"] = {"dynamics_400_ckpts_under_20s": result["dynamics_400_ckpts_s"] < 20,
                       "evidence_1_under_2s": result["evidence_s_1"] < 2}
  print(json.dumps(result))


if __name__ == "__main__":
  main()
