"""The authors' modular-addition training loop, re-expressed in PyTorch: the benchmark baseline.

This is what grokjax is compared against (issue 5). It follows SPEC §1.2–1.6 operation for
operation, written in our own words:

* model as in their `transformers.py`: Embed (W_E indexed by token, then 'dbp->bpd'), PosEmbed,
  one block of Attention (W_Q/W_K/W_V of shape (heads, d_head, d_model) applied by einsum to
  *all three* positions; scores = tril(q·k) − 1e10·(1 − mask), then / sqrt(d_head); softmax;
  z flattened head-major; W_O) and MLP (W_in, b_in, ReLU, W_out, b_out), residual adds, Unembed.
  Their identity hook points (13 per forward) are kept, so the Python overhead is theirs too.
* init scales (SPEC §1.3): N(0,1)/sqrt(d_model) for everything except W_U (1/sqrt(d_vocab));
  biases zero.
* AdamW(lr 1e-3, weight_decay 1, betas (0.9, 0.98)) over all parameters; LambdaLR with
  min(step/10, 1); full batch; per epoch: train loss, test loss (autograd on, as theirs), both
  `.item()`-ed into lists, backward on the train loss, optimizer step, scheduler step, zero_grad.
* loss: last-position logits cast to float64, log_softmax, gather, mean (their notebook version).

One deliberate difference, in the authors' favour: their `full_loss` rebuilt the input tensor and
the label list from Python tuples on every call; here the token/label tensors are built once, so
the measured per-epoch time is a lower bound on theirs.

torch is an optional benchmark dependency (`pip install torch==2.13.0`, a CPU wheel).

  python benchmarks/authors_loop.py --epochs 10     # prints one JSON line
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import time
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from grokjax import data


class HookPoint(nn.Module):
  """Identity module standing in for the authors' hook points (they cost one module call each)."""

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x


class Embed(nn.Module):

  def __init__(self, d_vocab: int, d_model: int):
    super().__init__()
    self.W_E = nn.Parameter(torch.randn(d_model, d_vocab) / math.sqrt(d_model))

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    return torch.einsum("dbp->bpd", self.W_E[:, tokens])


class PosEmbed(nn.Module):

  def __init__(self, n_ctx: int, d_model: int):
    super().__init__()
    self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model) / math.sqrt(d_model))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x + self.W_pos[: x.shape[-2]]


class Attention(nn.Module):

  def __init__(self, d_model: int, num_heads: int, d_head: int, n_ctx: int):
    super().__init__()
    s = math.sqrt(d_model)
    self.W_K = nn.Parameter(torch.randn(num_heads, d_head, d_model) / s)
    self.W_Q = nn.Parameter(torch.randn(num_heads, d_head, d_model) / s)
    self.W_V = nn.Parameter(torch.randn(num_heads, d_head, d_model) / s)
    self.W_O = nn.Parameter(torch.randn(d_model, d_head * num_heads) / s)
    self.register_buffer("mask", torch.tril(torch.ones((n_ctx, n_ctx))))
    self.d_head = d_head
    self.hook_k, self.hook_q, self.hook_v = HookPoint(), HookPoint(), HookPoint()
    self.hook_z, self.hook_attn, self.hook_attn_pre = HookPoint(), HookPoint(), HookPoint()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    # Axis letters: b batch, i head, p/q key/query position, h d_head, d d_model.
    k = self.hook_k(torch.einsum("ihd,bpd->biph", self.W_K, x))
    q = self.hook_q(torch.einsum("ihd,bpd->biph", self.W_Q, x))
    v = self.hook_v(torch.einsum("ihd,bpd->biph", self.W_V, x))
    scores = torch.einsum("biph,biqh->biqp", k, q)
    n = x.shape[-2]
    masked = torch.tril(scores) - 1e10 * (1 - self.mask[:n, :n])
    pattern = self.hook_attn(F.softmax(self.hook_attn_pre(masked / math.sqrt(self.d_head)),
                                       dim=-1))
    z = self.hook_z(torch.einsum("biph,biqp->biqh", v, pattern))
    b, i, qn, h = z.shape
    z_flat = z.permute(0, 2, 1, 3).reshape(b, qn, i * h)  # 'b i q h -> b q (i h)'
    return torch.einsum("df,bqf->bqd", self.W_O, z_flat)


class MLP(nn.Module):

  def __init__(self, d_model: int, d_mlp: int):
    super().__init__()
    s = math.sqrt(d_model)
    self.W_in = nn.Parameter(torch.randn(d_mlp, d_model) / s)
    self.b_in = nn.Parameter(torch.zeros(d_mlp))
    self.W_out = nn.Parameter(torch.randn(d_model, d_mlp) / s)  # 1/sqrt(d_model), as theirs
    self.b_out = nn.Parameter(torch.zeros(d_model))
    self.hook_pre, self.hook_post = HookPoint(), HookPoint()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    pre = self.hook_pre(torch.einsum("md,bpd->bpm", self.W_in, x) + self.b_in)
    post = self.hook_post(F.relu(pre))
    return torch.einsum("dm,bpm->bpd", self.W_out, post) + self.b_out


class TransformerBlock(nn.Module):

  def __init__(self, d_model: int, d_mlp: int, d_head: int, num_heads: int, n_ctx: int):
    super().__init__()
    self.attn = Attention(d_model, num_heads, d_head, n_ctx)
    self.mlp = MLP(d_model, d_mlp)
    self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()
    self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = (
        HookPoint(), HookPoint(), HookPoint())

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.hook_resid_pre(x))))
    return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(x)))


class Unembed(nn.Module):

  def __init__(self, d_vocab: int, d_model: int):
    super().__init__()
    self.W_U = nn.Parameter(torch.randn(d_model, d_vocab) / math.sqrt(d_vocab))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x @ self.W_U


class Transformer(nn.Module):
  """The authors' model with the mainline defaults (p = 113: d_vocab 114, 1 layer, no LN)."""

  def __init__(self, p: int = 113, d_model: int = 128, num_heads: int = 4,
               d_mlp: int | None = None, num_layers: int = 1, n_ctx: int = 3):
    super().__init__()
    d_vocab = p + 1
    d_mlp = 4 * d_model if d_mlp is None else d_mlp
    self.embed = Embed(d_vocab, d_model)
    self.pos_embed = PosEmbed(n_ctx, d_model)
    self.blocks = nn.ModuleList([
        TransformerBlock(d_model, d_mlp, d_model // num_heads, num_heads, n_ctx)
        for _ in range(num_layers)])
    self.unembed = Unembed(d_vocab, d_model)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    x = self.pos_embed(self.embed(tokens))
    for block in self.blocks:
      x = block(x)
    return self.unembed(x)


def cross_entropy_high_precision(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
  """The notebook's loss: log-softmax in float64 (SPEC §1.5)."""
  logprobs = F.log_softmax(logits.to(torch.float64), dim=-1)
  return -torch.mean(torch.gather(logprobs, index=labels[:, None], dim=-1))


def full_loss(model: Transformer, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
  return cross_entropy_high_precision(model(tokens)[:, -1], labels)


@functools.lru_cache(maxsize=8)
def split_tensors(p: int = 113, frac_train: float = 0.3, split_seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
  """(train_tokens, train_labels, test_tokens, test_labels) of the authors' split (int64).

  Train is in the authors' shuffled order; test is the rest of the grid in a-major order (the
  authors' test set in another order: the same mean loss).
  """
  tokens, y = data.all_tokens(p).astype(np.int64), data.labels("add", p).astype(np.int64)
  tr = data.train_indices(p, frac_train, split_seed)
  te = np.flatnonzero(~data.train_mask(p, frac_train, split_seed))
  t = torch.from_numpy
  return t(tokens[tr]), t(y[tr]), t(tokens[te]), t(y[te])


def make_optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1.0
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
  opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                          betas=(0.9, 0.98))
  sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 10, 1))
  return opt, sched


def train(model: Transformer, opt: torch.optim.Optimizer, sched: Any, n_epochs: int,
          split: tuple[torch.Tensor, ...], with_test: bool = True
          ) -> tuple[list[float], list[float]]:
  """The authors' loop: returns (train_losses, test_losses), each logged *before* its update."""
  train_x, train_y, test_x, test_y = split
  train_losses, test_losses = [], []
  for _ in range(n_epochs):
    train_loss = full_loss(model, train_x, train_y)
    train_losses.append(train_loss.item())
    if with_test:  # autograd left on, as in the authors' loop
      test_loss = full_loss(model, test_x, test_y)
      test_losses.append(test_loss.item())
    train_loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()
  return train_losses, test_losses


_GROKJAX_TO_TORCH = {
    "W_E": "embed.W_E", "W_pos": "pos_embed.W_pos", "W_U": "unembed.W_U",
    **{f"blocks_0/{n}": f"blocks.0.attn.{n}" for n in ("W_Q", "W_K", "W_V", "W_O")},
    **{f"blocks_0/{n}": f"blocks.0.mlp.{n}" for n in ("W_in", "b_in", "W_out", "b_out")},
}


def load_grokjax_params(model: Transformer, params: Mapping[str, Any]) -> None:
  """Copies a one-layer grokjax params pytree (same shapes as the state dict) into `model`."""
  flat = {"W_E": params["W_E"], "W_pos": params["W_pos"], "W_U": params["W_U"],
          **{f"blocks_0/{k}": v for k, v in params["blocks_0"].items()}}
  state = {_GROKJAX_TO_TORCH[k]: torch.from_numpy(np.array(v, dtype=np.float32))
           for k, v in flat.items()}
  missing, unexpected = model.load_state_dict(state, strict=False)
  missing = [m for m in missing if not m.endswith(".mask")]
  if missing or unexpected:
    raise ValueError(f"parameter mismatch: missing {missing}, unexpected {unexpected}")


def time_authors_epochs(n_epochs: int, with_test: bool = True, *, p: int = 113,
                        frac_train: float = 0.3, split_seed: int = 0, warmup_epochs: int = 2,
                        seed: int = 0, num_threads: int | None = None) -> float:
  """Milliseconds per epoch of the authors' loop (mainline model), after `warmup_epochs`.

  `num_threads` sets torch's intra-op threads for this call only (None: torch's default, one
  per core). On a CPU shared with other jobs, fewer threads than cores can be faster.
  """
  old_threads = torch.get_num_threads()
  if num_threads:
    torch.set_num_threads(num_threads)
  try:
    torch.manual_seed(seed)
    model = Transformer(p=p)
    opt, sched = make_optimizer(model)
    split = split_tensors(p, frac_train, split_seed)
    train(model, opt, sched, warmup_epochs, split, with_test)
    t0 = time.perf_counter()
    train(model, opt, sched, n_epochs, split, with_test)
    return (time.perf_counter() - t0) * 1e3 / n_epochs
  finally:
    torch.set_num_threads(old_threads)


def torch_info() -> dict[str, Any]:
  return {"torch": torch.__version__, "torch_default_threads": torch.get_num_threads(),
          "python": platform.python_version()}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--epochs", type=int, default=10, help="timed epochs per measurement")
  ap.add_argument("--repeats", type=int, default=3, help="measurements; the median is printed")
  ap.add_argument("--no_test", action="store_true", help="skip the per-epoch test-loss pass")
  ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
  args = ap.parse_args()
  times = [time_authors_epochs(args.epochs, not args.no_test, seed=r,
                               num_threads=args.threads or None) for r in range(args.repeats)]
  print(json.dumps({"authors_ms_per_epoch": float(np.median(times)),
                    "all_ms_per_epoch": [round(t, 2) for t in times],
                    "with_test": not args.no_test, "epochs": args.epochs, **torch_info(),
                    "torch_threads": args.threads or torch.get_num_threads()}))


if __name__ == "__main__":
  main()
