"""A small synthetic workdir in the file formats of the sweep and the analysis, for plot tests.

Curves are made up (smooth grokking-like shapes), not trained: the tests check that figures and
the report render from these formats, not what the numbers are.
"""
from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pandas as pd


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def make(path: str, p: int = 11, d_mlp: int = 16, heads: int = 4, epochs: int = 1000,
         seeds=(0, 1), wds=(0.0, 1.0), fracs=(0.3, 0.6), analysis: bool = True) -> str:
  os.makedirs(path, exist_ok=True)
  cfg = {"task": "add", "p": p,
         "model": {"d_vocab": p + 1, "d_vocab_out": p + 1, "n_ctx": 3, "d_model": 8,
                   "num_heads": heads, "d_mlp": d_mlp, "num_layers": 1, "act": "relu",
                   "use_mlp": True, "dropout": 0.0},
         "train": {"num_epochs": epochs, "lr": 1e-3, "b1": 0.9, "b2": 0.98, "eps": 1e-8,
                   "warmup_steps": 10, "l1": 0.0, "loss_dtype": "float64", "eval_every": 10,
                   "checkpoint_every": 100},
         "sweep": {"seed": list(seeds), "weight_decay": list(wds), "frac_train": list(fracs),
                   "split_seed": [0]}}
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(cfg, f)
  runs = []
  for i, (s, w, fr) in enumerate(itertools.product(seeds, wds, fracs)):
    runs.append(dict(run=i, seed=s, weight_decay=w, frac_train=fr, split_seed=0,
                     n_train=int(fr * p * p), split_fingerprint="0" * 16))
  with open(os.path.join(path, "sweep.json"), "w") as f:
    json.dump({"runs": runs}, f)
  e = np.arange(0, epochs + 1, 10)
  rows = []
  grok_at = {}
  for r in runs:
    # Grokking epoch: earlier with more data and more weight decay; never without decay.
    g = None if r["weight_decay"] == 0 else 700 - 800 * (r["frac_train"] - 0.3) - 30 * r["seed"]
    grok_at[r["run"]] = g
    train = 4.0 * np.exp(-e / 40) + 1e-7
    test = (4.0 + 10 * _sigmoid((e - 100) / 30)) * (1.0 if g is None else _sigmoid(-(e - g) / 25))
    test = test + 1e-7
    for j, ep in enumerate(e):
      rows.append(dict(run=r["run"], epoch=int(ep), seed=r["seed"],
                       weight_decay=r["weight_decay"], frac_train=r["frac_train"],
                       split_seed=0, train_loss=float(train[j]), test_loss=float(test[j]),
                       train_acc=float(min(1, 1 - np.exp(-ep / 50))),
                       test_acc=float(np.exp(-test[j])), halted_at=-1))
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  if analysis:
    _analysis(path, p, d_mlp, heads, epochs, runs, grok_at)
  return path


def _analysis(path, p, d_mlp, heads, epochs, runs, grok_at):
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(path, "analysis"), exist_ok=True)
  K = (p - 1) // 2
  ck = np.arange(0, epochs + 1, 100)
  summary = []
  a = np.arange(p)
  for r in runs:
    i, g = r["run"], grok_at[r["run"]]
    key = [1, 3] if r["seed"] == 0 else [2, 4]
    g_eff = g if g is not None else 10 * epochs
    df = pd.DataFrame({"epoch": ck})
    df["loss_train"] = 4.0 * np.exp(-ck / 40) + 1e-7
    df["loss_test"] = 12 * _sigmoid(-(ck - g_eff) / 25) + 1e-7
    df["loss_all"] = r["frac_train"] * df["loss_train"] + (1 - r["frac_train"]) * df["loss_test"]
    df["acc_train"] = 1 - np.exp(-ck / 50)
    df["acc_test"] = _sigmoid((ck - g_eff) / 25)
    for split in ("all", "train", "test"):
      df[f"restricted_loss_{split}"] = 4.0 * _sigmoid(-(ck - g_eff + 150) / 40) + 1e-8
    df["restricted_acc_all"] = _sigmoid((ck - g_eff + 150) / 40)
    df["excluded_loss_train"] = 1e-4 + 8 * _sigmoid((ck - g_eff + 150) / 40)
    df["excluded_acc_train"] = 1 - _sigmoid((ck - g_eff + 150) / 40)
    for k in key:
      df[f"excluded_loss_train_k{k}"] = 1e-4 + 2 * _sigmoid((ck - g_eff + 100) / 40)
      df[f"cos_coeff_k{k}"] = 50 * _sigmoid((ck - g_eff + 150) / 40)
    df["gini_W_E"] = 0.05 + 0.6 * _sigmoid((ck - g_eff) / 60)
    df["gini_W_L"] = 0.05 + 0.7 * _sigmoid((ck - g_eff) / 60)
    df["sum_sq_weights"] = 100 + 50 * np.exp(-ck / 500)
    for name in ("W_E", "W_L", "W_in"):
      df[f"sum_sq_{name}"] = df["sum_sq_weights"] / 3
    df.to_csv(os.path.join(path, "analysis", f"run_{i:04d}.csv"), index=False)
    norms = rng.uniform(0, 0.3, p)
    for k in key:
      norms[2 * k - 1], norms[2 * k] = 3.0, 2.0
    nfreq = rng.choice(key, d_mlp)
    fve = rng.uniform(0.5, 1.0, d_mlp)
    abl = {s: list(rng.uniform(1e-6, 1e-5, K) + np.isin(np.arange(1, K + 1), key) * 3)
           for s in ("all", "train", "test")}
    phases = ({"memorization_end": 100, "circuit_formation_end": int(g_eff - 100),
               "cleanup_end": int(g_eff + 100)} if g is not None else
              {"memorization_end": 100, "circuit_formation_end": None, "cleanup_end": None})
    last = df.iloc[-1]
    final = dict(run=i, epoch=epochs, loss_train=last["loss_train"], loss_test=last["loss_test"],
                 loss_all=last["loss_all"], key_freqs=key, key_freqs_neuron_rule=key,
                 gini_W_E=last["gini_W_E"], gini_W_L=last["gini_W_L"],
                 restricted_loss_all=last["restricted_loss_all"],
                 restricted_loss_train=last["restricted_loss_train"],
                 restricted_loss_test=last["restricted_loss_test"],
                 excluded_loss_train=last["excluded_loss_train"],
                 excluded_loss_train_per_freq={str(k): 2.0 for k in key},
                 logit_fve=0.95, table1_fve_mean=0.96, W_L_residual_ratio=0.01,
                 sum_sq_weights=last["sum_sq_weights"],
                 neuron_clusters={str(k): int((nfreq == k).sum()) for k in key},
                 W_E_fourier_norms=list(norms), W_L_fourier_norms=list(norms[::-1].copy()),
                 neuron_freq=[int(x) for x in nfreq], neuron_fve=list(fve),
                 ablation_per_freq=abl,
                 table1_fve=[dict(k=k, kind=t, fve=0.95) for k in key for t in ("cos", "sin")],
                 attention_fits=[dict(head=h, freq=key[h % len(key)], fve=0.97,
                                      score_freq=key[h % len(key)], score_fve=0.98,
                                      score_cos=1.0, score_sin=-2.0)
                                 for h in range(heads)],
                 phases=phases, mlp_fve_mean=0.9, mlp_fve_std=0.05)
    with open(os.path.join(path, "analysis", f"run_{i:04d}_final.json"), "w") as f:
      json.dump(final, f)
    w = 2 * np.pi * key[0] / p
    np.savez(os.path.join(path, "analysis", f"run_{i:04d}_final.npz"),
             attn_eq_to_a=_sigmoid(np.cos(w * a)[None, :, None] - np.cos(w * a)[None, None, :]
                                   + np.zeros((heads, 1, 1))),
             neuron_acts=np.maximum(0, np.cos(w * (a[:, None] + a[None, :])))[None].repeat(5, 0),
             logits_fourier_norms_2d=rng.uniform(0, 1, (p, p)),
             W_L_hat=rng.normal(size=(p, d_mlp)), neuron_freq=nfreq,
             attn_score_hat=rng.normal(size=(heads, p)),
             attn_ov_fourier_norms=rng.uniform(0, 1, (heads, p)))
    summary.append(dict(run=i, seed=r["seed"], weight_decay=r["weight_decay"],
                        frac_train=r["frac_train"], split_seed=0,
                        key_freqs=" ".join(map(str, key)), gini_W_E=last["gini_W_E"],
                        gini_W_L=last["gini_W_L"], logit_fve=0.95, mlp_fve_mean=0.9,
                        mlp_fve_std=0.05, loss_test=last["loss_test"],
                        memorization_end=phases["memorization_end"],
                        circuit_formation_end=phases["circuit_formation_end"],
                        cleanup_end=phases["cleanup_end"], grok_epoch=g))
  pd.DataFrame(summary).to_csv(os.path.join(path, "analysis", "summary.csv"), index=False)
