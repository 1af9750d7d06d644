"""Continue a grokjax run from one of its saved states in the authors' PyTorch loop.

A fidelity check for late-training instabilities ("slingshots", paper App. D.2): take the whole
training state of one run at a state checkpoint — parameters, AdamW moments and step count —
load it into the authors' loop (`authors_loop.py`: their model, float64 loss, torch AdamW), and
train on from there. If grokjax's own continuation spikes and the authors' loop from the *same
state* does not (or the other way round), the difference lies in the numerics of the two
implementations, not in the initialisation or the optimiser's state.

  python benchmarks/authors_continue.py --workdir=runs/ml24 --epochs=12000 --out=/tmp/torch.jsonl

Writes one JSON row per `--log_every` epochs ({"epoch", "train_loss", "test_loss"}; train loss
before that epoch's update, as grokjax logs it) and prints the spike events found, then a JSON
summary as its last line. torch is an optional dependency (`pip install torch==2.13.0`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authors_loop  # pylint: disable=g-import-not-at-top,wrong-import-position

from grokjax import checkpoint, phases, results, sweep  # pylint: disable=wrong-import-position


def _adam_state(opt_state: Any) -> Any:
  """The ScaleByAdamState (count, mu, nu) inside an optax adamw state, wherever it sits."""
  if hasattr(opt_state, "mu") and hasattr(opt_state, "nu"):
    return opt_state
  children = opt_state if isinstance(opt_state, (tuple, list)) else getattr(
      opt_state, "inner_state", None)
  for child in (children if isinstance(children, (tuple, list)) else [children]):
    if child is None:
      continue
    found = _adam_state(child)
    if found is not None:
      return found
  return None


def _lane(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def load_into_torch(workdir: str, run_index: int = 0, state_epoch: int | None = None
                    ) -> tuple[Any, torch.optim.Optimizer, tuple[torch.Tensor, ...], int]:
  """(model, AdamW, split, epoch): run `run_index` of `workdir` at a state checkpoint (default
  the newest), in the authors' model and optimizer with grokjax's parameters, moments and step."""
  cfg = results.load_config(workdir)
  run = results.load_runs(workdir)[run_index]
  if cfg.model.num_layers != 1 or not cfg.model.use_mlp or cfg.model.act != "relu" or (
      run.get("dropout") or run.get("l1") or cfg.train.loss_dtype != "float64"
      or cfg.train.grokfast != "none" or cfg.task not in ("add",)):
    raise SystemExit("authors_continue: only the paper's one-layer ReLU model on addition with "
                     "float64 loss, no dropout, L1 or Grokfast is supported")
  sw = sweep.Sweep(cfg)
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    epoch = state_epoch if state_epoch is not None else ckpt.latest_state_epoch()
    if epoch is None:
      raise SystemExit(f"authors_continue: no state checkpoint in {workdir}")
    if epoch < cfg.train.warmup_steps:
      raise SystemExit("authors_continue: the state must be past the learning-rate warm-up")
    state = ckpt.restore_state(epoch, sw.abstract_state())
  finally:
    ckpt.close()
  adam = _adam_state(state.opt_state)
  if adam is None:
    raise SystemExit("authors_continue: no Adam moments found in the optimizer state")
  count = int(np.asarray(adam.count)[run_index])
  if count != epoch:
    raise SystemExit(f"authors_continue: Adam's step count {count} != state epoch {epoch}")

  def net(tree):
    m = authors_loop.Transformer(p=cfg.p, d_model=cfg.model.d_model,
                                 num_heads=cfg.model.num_heads, d_mlp=cfg.model.d_mlp)
    authors_loop.load_grokjax_params(m, _lane(tree, run_index))
    return m

  model, exp_avg, exp_avg_sq = net(state.params), net(adam.mu), net(adam.nu)
  # Constant lr past the warm-up (the authors' LambdaLR is min(step/10, 1) = 1 there).
  opt = torch.optim.AdamW(model.parameters(), lr=float(run["lr"]),
                          weight_decay=float(run["weight_decay"]),
                          betas=(cfg.train.b1, cfg.train.b2), eps=cfg.train.eps)
  m1, m2 = dict(exp_avg.named_parameters()), dict(exp_avg_sq.named_parameters())
  for name, param in model.named_parameters():
    opt.state[param] = {"step": torch.tensor(float(count)),
                        "exp_avg": m1[name].detach().clone(),
                        "exp_avg_sq": m2[name].detach().clone()}
  split = authors_loop.split_tensors(cfg.p, float(run["frac_train"]), int(run["split_seed"]))
  return model, opt, split, epoch


def _plot(torch_rows: list[dict], grokjax_rows: list[dict], epoch: int, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(9, 4.2))
  for rows, name, style in ((grokjax_rows, "grokjax", "-"), (torch_rows, "authors' loop (torch)", "--")):
    e = [r["epoch"] for r in rows]
    for key, color in (("train_loss", "C0"), ("test_loss", "C1")):
      y = [np.nan if r[key] is None else r[key] for r in rows]
      ax.plot(e, y, style, color=color, lw=1, label=f"{name}: {key.replace('_', ' ')}")
  ax.set_yscale("log")
  ax.set_xlabel("epoch")
  ax.set_ylabel("loss (114-way, float64 log-softmax)")
  ax.set_title(f"the same saved state (epoch {epoch}: parameters, AdamW moments, step) "
               "trained on by both")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="a grokjax workdir with a state checkpoint")
  ap.add_argument("--state_epoch", type=int, default=None, help="default: the newest state")
  ap.add_argument("--run", type=int, default=0, help="which run of the sweep")
  ap.add_argument("--epochs", type=int, required=True, help="epochs to train on from the state")
  ap.add_argument("--log_every", type=int, default=10)
  ap.add_argument("--out", required=True, help="JSON-lines file for the logged losses")
  ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
  ap.add_argument("--plot", default=None, help="PNG: train/test loss of both continuations")
  ap.add_argument("--grokjax_workdir", default=None,
                  help="workdir holding grokjax's own continuation of the same run (default: "
                       "--workdir; raise its --num_epochs to train on there)")
  args = ap.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  model, opt, split, epoch = load_into_torch(args.workdir, args.run, args.state_epoch)
  train_x, train_y, test_x, test_y = split
  rows, t0 = [], time.time()
  with open(args.out, "w") as f:
    for i in range(args.epochs + 1):
      e = epoch + i
      loss = authors_loop.full_loss(model, train_x, train_y)
      if i % args.log_every == 0:
        with torch.no_grad():
          test = authors_loop.full_loss(model, test_x, test_y).item()
        row = {"epoch": e, "train_loss": loss.item(), "test_loss": test}
        rows.append(row)
        f.write(json.dumps(row) + "\n")
        f.flush()
        if i % (100 * args.log_every) == 0:
          rate = i / max(time.time() - t0, 1e-9)
          print(f"epoch {e}  train {row['train_loss']:.3e}  test {test:.3e}  "
                f"{rate:.1f} epochs/s", flush=True)
      if i == args.epochs:
        break
      loss.backward()
      opt.step()
      opt.zero_grad()

  ep = np.array([r["epoch"] for r in rows])
  tl = np.array([r["train_loss"] for r in rows])
  events = phases.loss_spikes(ep, tl)
  for e, x in events:
    print(f"spike at epoch {e}: train loss up to {x:.3g}")
  theirs = None
  gj = [r for r in results.read_metrics_rows(args.grokjax_workdir or args.workdir)
        if r["run"] == args.run and epoch <= r["epoch"] <= epoch + args.epochs]
  if gj:
    gj.sort(key=lambda r: r["epoch"])
    ge = np.array([r["epoch"] for r in gj])
    gt = np.array([np.nan if r["train_loss"] is None else r["train_loss"] for r in gj])
    theirs = phases.loss_spikes(ge, gt)
    print(f"grokjax's own continuation ({len(gj)} rows to epoch {ge[-1]}): spikes {theirs}")
    if args.plot:
      _plot(rows, gj, epoch, args.plot)
  print(json.dumps({"workdir": args.workdir, "run": args.run, "state_epoch": epoch,
                    "epochs": args.epochs, "spikes": events, "grokjax_spikes": theirs, "final_train_loss": float(tl[-1]),
                    "min_train_loss": float(tl.min()), "seconds": round(time.time() - t0, 1),
                    "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()
