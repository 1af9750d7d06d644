"""Microbenchmark: the MLP input of one mainline train step as a matmul vs through token tables.

In a one-layer model the MLP input at the last position is W_in·resid with
resid = c + Σ_{position l, head h} α_{l,h} · OV_{l,h}[token_l], so W_in·resid can be read from
per-(position, head, token) tables T_{l,h} = W_in·OV_{l,h} (two token positions, `=` is constant)
as eight scaled 512-float gathers per example. This times the two ways (jit of a one-lane vmap, as
the sweep runs) at the mainline's sizes, to bound what the table form could save (RESULTS.md,
"Where an epoch goes"). Prints one JSON line.

  python benchmarks/mlp_input_tables.py
"""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp

B, V, M, D, H = 3830, 113, 512, 128, 4  # train pairs, tokens, d_mlp, d_model, heads


def matmul(resid, W_in):
  return resid @ W_in.T


def tables_unrolled(T, idx, alpha, c):
  out = c
  for l in range(2):
    for h in range(H):
      out = out + alpha[:, l, h, None] * T[l, h][idx[:, l]]
  return out


def tables_einsum(T, idx, alpha, c):
  out = c
  for l in range(2):
    out = out + jnp.einsum("hbm,bh->bm", T[l][:, idx[:, l]], alpha[:, l])
  return out


def bench_ms(f, *args, n: int = 50) -> float:
  f = jax.jit(jax.vmap(f))
  args = [x[None] for x in args]
  jax.block_until_ready(f(*args))
  t = time.perf_counter()
  for _ in range(n):
    jax.block_until_ready(f(*args))
  return (time.perf_counter() - t) / n * 1e3


def main() -> None:
  k = jax.random.split(jax.random.key(0), 6)
  T = jax.random.normal(k[0], (2, H, V, M))
  idx = jax.random.randint(k[1], (B, 2), 0, V)
  alpha = jax.random.uniform(k[2], (B, 2, H))
  c = jax.random.normal(k[3], (M,))
  resid, W_in = jax.random.normal(k[4], (B, D)), jax.random.normal(k[5], (M, D))
  # Random tables and weights: this times the two forms, it does not compare their values.
  with jax.default_matmul_precision("highest"):
    out = {"matmul_ms": bench_ms(matmul, resid, W_in),
           "tables_unrolled_ms": bench_ms(tables_unrolled, T, idx, alpha, c),
           "tables_einsum_ms": bench_ms(tables_einsum, T, idx, alpha, c, n=5)}
  print(json.dumps({k: round(v, 3) for k, v in out.items()} | {"batch": B, "jax": jax.__version__,
                                                              "device": str(jax.devices()[0])}))


if __name__ == "__main__":
  main()
