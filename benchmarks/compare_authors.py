"""grokjax vs the authors' PyTorch loop, same machine, same run: ms per training epoch.

Times, interleaved over `--repeats` rounds (medians reported):
  * grokjax doing the authors' per-epoch work: one full-batch train step and a train/test-loss
    evaluation every epoch (`make_config(eval_every=1)`, one run, chunks of `--epochs` epochs
    through `grokjax.sweep.Sweep.chunk_fn`; compile and a warm-up chunk excluded). grokjax's
    evaluation runs the forward pass on all p² pairs (train and test); the authors' loop runs it
    on the test pairs and reuses the train forward of the step: grokjax does slightly more work.
  * the authors' loop (benchmarks/authors_loop.py), with the test pass (their setting) and
    without it, at each of `--torch_threads` (the fastest is reported: on a CPU shared with
    other jobs, torch's one-thread-per-core default can be twice as slow as one thread);
  * grokjax with its default evaluation every 10 epochs.
It also reports a roofline: the FLOPs of grokjax's computation per epoch, counted analytically
(`analytic_flops`, documented there; XLA's own count of the compiled step is reported next to it
as a check) divided by the fp32 matmul rate `jnp.dot` reaches on this machine.

Prints progress to stderr and, as its LAST stdout line, one JSON object.

  python benchmarks/compare_authors.py                 # defaults: a few minutes on 2 cores
  python benchmarks/compare_authors.py --repeats 3 --authors_epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import config as gconfig
from grokjax import sweep, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authors_loop  # noqa: E402  (torch is needed for this benchmark)
import bench_env  # noqa: E402


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ FLOP counts

def analytic_flops(cfg: gconfig.Config, n_train: int) -> dict[str, float]:
  """Matmul FLOPs (2 per multiply-add) of grokjax's one-layer training path, per run.

  The count follows `grokjax.model._last_logits_one_layer` (the path `train_step` and
  `evaluate` take for one-layer models). With L = n_ctx, V = d_vocab, D = d_model, H heads of
  size E, M = d_mlp, C = d_vocab_out:

  Batch-independent tables (computed once per forward pass):
    keys  k[l, v] = (W_E[:, v] + W_pos[l]) · W_K          2·L·V·D·H·E
    query q[v]    = x0[last, v] · W_Q                     2·V·D·H·E
    OV    ov[l,v] = x0[l, v] · W_V · W_O (x0·W_V first,   4·L·V·D·H·E
                    the cheaper einsum order)
  Per example (last position only):
    scores k·q over L positions                           2·L·H·E
    attention-weighted OV sum                             2·L·H·D
    MLP in (D→M) and out (M→D)                            4·D·M
    unembedding (D→C)                                     2·D·C
  Backward: every product above has two differentiable operands, so its gradient costs 2× its
  forward (grads of both operands): a train step = 3 × forward on the train set (+ 3 × tables).
  Evaluation = one forward on all p² pairs (+ tables).
  Not counted: elementwise work (softmaxes, ReLU, the float64 log-softmax, AdamW on ~2.3e5
  parameters, the gathers and their scatter-add gradients): a few % of the total at p = 113.
  """
  m = cfg.model
  if m.num_layers != 1 or not m.use_mlp:
    raise ValueError("analytic_flops counts the one-layer path only")
  L, V, D, H, E, M, C = (m.n_ctx, m.d_vocab, m.d_model, m.num_heads, m.d_head, m.d_mlp,
                         m.d_vocab_out)
  tables = 2 * L * V * D * H * E + 2 * V * D * H * E + 4 * L * V * D * H * E
  per_example = 2 * L * H * E + 2 * L * H * D + 4 * D * M + 2 * D * C
  n_all = cfg.p * cfg.p
  step = 3 * (tables + n_train * per_example)
  evaluation = tables + n_all * per_example
  return {"train_step": float(step), "evaluate": float(evaluation),
          "per_epoch": float(step + evaluation / cfg.train.eval_every),
          "tables_forward": float(tables), "per_example_forward": float(per_example)}


def xla_flops(cfg: gconfig.Config) -> dict[str, float]:
  """XLA's cost-analysis FLOPs of one compiled train step and one evaluation (one run)."""
  runs = sweep.grid(cfg)
  run_data, shared = sweep.build_data(cfg, runs, 1)
  run = jax.tree.map(lambda x: jnp.asarray(x[0]), run_data)
  shared = jax.tree.map(jnp.asarray, shared)
  prog = train.program(cfg)
  state = jax.eval_shape(lambda r: train.init_state(prog, r), run)

  def flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))

  step = flops(lambda s, r, sh: train.train_step(prog, s, r, sh), state, run, shared)
  evaluation = flops(lambda s, r, sh: train.evaluate(prog, s.params, r, sh, s.epoch), state, run,
                     shared)
  return {"train_step": step, "evaluate": evaluation,
          "per_epoch": step + evaluation / cfg.train.eval_every}


def matmul_gflops(sizes: list[int], repeats: int = 5) -> dict[str, float]:
  """Best median fp32 GFLOP/s of a jitted jnp.dot of two n×n matrices, over `sizes`."""
  out = {}
  dot = jax.jit(jnp.dot)
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      dot(a, b).block_until_ready()
      times.append(time.perf_counter() - t0)
    out[str(n)] = 2 * n**3 / np.median(times) / 1e9
  return out


# ------------------------------------------------------------------ timers

class GrokjaxTimer:
  """One compiled Sweep; each call times one chunk and returns ms per epoch."""

  def __init__(self, cfg: gconfig.Config):
    self.sw = sweep.Sweep(cfg)
    self.epochs = cfg.train.checkpoint_every
    t0 = time.perf_counter()
    self.state = self.sw.init()
    self._chunk()  # compile + warm-up, not timed
    self.compile_s = time.perf_counter() - t0

  def _chunk(self) -> None:
    self.state, metrics = self.sw.chunk_fn(self.state, self.sw.run_data, self.sw.shared)
    jax.block_until_ready((self.state, metrics))

  def __call__(self) -> float:
    t0 = time.perf_counter()
    self._chunk()
    return (time.perf_counter() - t0) * 1e3 / self.epochs


def mainline_config(eval_every: int, epochs: int) -> gconfig.Config:
  return gconfig.make_config(eval_every=eval_every, checkpoint_every=epochs, num_epochs=epochs)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians reported")
  ap.add_argument("--epochs", type=int, default=50,
                  help="grokjax epochs per timed chunk with eval every epoch")
  ap.add_argument("--default_epochs", type=int, default=100,
                  help="grokjax epochs per timed chunk with the default eval every 10 epochs")
  ap.add_argument("--authors_epochs", type=int, default=4, help="authors' epochs per timing")
  ap.add_argument("--authors_warmup", type=int, default=1, help="untimed authors' epochs")
  ap.add_argument("--no_authors_without_test", action="store_true",
                  help="skip timing the authors' loop without its per-epoch test pass")
  ap.add_argument("--torch_threads", default="1,2",
                  help="comma-separated torch thread counts to time the authors' loop with; "
                       "authors_* fields report the fastest (0 = torch's default)")
  ap.add_argument("--matmul_sizes", default="1024,2048",
                  help="comma-separated n for the n×n fp32 jnp.dot rate")
  args = ap.parse_args()
  if args.default_epochs % 10:
    ap.error("--default_epochs must be a multiple of 10 (the default eval_every)")

  env = {**bench_env.environment(),
         **{k: v for k, v in authors_loop.torch_info().items() if k != "python"}}
  load_start = bench_env.loadavg()
  log(f"compare_authors: {env['device']}, {env['cpu_count']} CPUs, load {load_start}")

  cfg1 = mainline_config(1, args.epochs)
  cfg10 = mainline_config(10, args.default_epochs)
  n_train = int(sweep.grid(cfg1)[0]["n_train"])

  gflops = matmul_gflops([int(s) for s in args.matmul_sizes.split(",")])
  peak = max(gflops.values())
  log(f"jnp.dot fp32 GFLOP/s: {gflops}")

  t0 = time.perf_counter()
  g1, g10 = GrokjaxTimer(cfg1), GrokjaxTimer(cfg10)
  log(f"grokjax compile + warm-up: {g1.compile_s:.1f} s (eval every epoch), "
      f"{g10.compile_s:.1f} s (default) [{time.perf_counter() - t0:.1f} s]")

  threads = [int(t) for t in args.torch_threads.split(",")]
  variants = [(f"authors_t{t}", True, t) for t in threads]
  if not args.no_authors_without_test:
    variants += [(f"authors_no_test_t{t}", False, t) for t in threads]
  times: dict[str, list[float]] = {"grokjax": [], "grokjax_default": [],
                                   **{name: [] for name, _, _ in variants}}
  for r in range(args.repeats):
    times["grokjax"].append(g1())
    for i, (name, with_test, t) in enumerate(variants):
      times[name].append(authors_loop.time_authors_epochs(
          args.authors_epochs, with_test, warmup_epochs=args.authors_warmup, seed=r,
          num_threads=t or None))
      if i == len(variants) // 2 - 1 or len(variants) == 1:
        times["grokjax_default"].append(g10())  # interleave the two grokjax timings
    log(f"round {r + 1}/{args.repeats}: " + ", ".join(
        f"{k} {v[-1]:.1f}" for k, v in times.items()) + " ms/epoch")
  med = {k: float(np.median(v)) for k, v in times.items()}
  best = lambda prefix: min((v, k) for k, v in med.items()
                            if k.startswith(prefix) and k[len(prefix):].isdigit())
  med["authors"], authors_best = best("authors_t")
  if not args.no_authors_without_test:
    med["authors_no_test"], _ = best("authors_no_test_t")

  fl1, fl10 = analytic_flops(cfg1, n_train), analytic_flops(cfg10, n_train)
  xl1 = xla_flops(cfg1)
  xl10_epoch = xl1["train_step"] + xl1["evaluate"] / 10
  result = {
      "grokjax_ms_per_epoch": med["grokjax"],
      "authors_ms_per_epoch": med["authors"],
      "speedup": med["authors"] / med["grokjax"],
      "grokjax_default_ms_per_epoch": med["grokjax_default"],
      "authors_no_test_ms_per_epoch": med.get("authors_no_test"),
      "roofline_ms_per_epoch": fl1["per_epoch"] / (peak * 1e9) * 1e3,
      "roofline_default_ms_per_epoch": fl10["per_epoch"] / (peak * 1e9) * 1e3,
      "fraction_of_roofline": fl1["per_epoch"] / (peak * 1e9) * 1e3 / med["grokjax"],
      "flops_per_epoch": fl1["per_epoch"], "flops_per_epoch_default": fl10["per_epoch"],
      "flops_train_step": fl1["train_step"], "flops_evaluate": fl1["evaluate"],
      "xla_flops_per_epoch": xl1["per_epoch"], "xla_flops_per_epoch_default": xl10_epoch,
      "matmul_gflops": peak, "matmul_gflops_by_size": gflops,
      "authors_torch_threads": int(authors_best.rsplit("_t", 1)[1]) or None,
      "median_ms_per_epoch": {k: round(v, 2) for k, v in med.items()},
      "all_ms_per_epoch": {k: [round(t, 2) for t in v] for k, v in times.items()},
      "repeats": args.repeats, "grokjax_epochs_per_chunk": args.epochs,
      "grokjax_default_epochs_per_chunk": args.default_epochs,
      "authors_epochs": args.authors_epochs, "n_train": n_train,
      "loadavg_start": load_start, "loadavg_end": bench_env.loadavg(),
      **env,
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
