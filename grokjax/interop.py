"""The authors' PyTorch state dicts as grokjax parameters (SPEC §1.2).

Their names map one to one: `embed.W_E` → W_E, `pos_embed.W_pos` → W_pos,
`blocks.{i}.attn.W_{Q,K,V,O}` → blocks_i/W_*, `blocks.{i}.mlp.{W_in,b_in,W_out,b_out}` →
blocks_i/*, `unembed.W_U` → W_U; the causal-mask buffer `blocks.{i}.attn.mask` is dropped. The
shapes are the same on both sides. Reads our `.npz` exports, and `.pth` files when torch is
installed (a bare state dict, or a checkpoint dict holding one under 'model').
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from grokjax.config import ModelConfig

_BLOCK = re.compile(r"^blocks\.(\d+)\.(attn|mlp)\.(\w+)$")
_TOP = {"embed.W_E": "W_E", "pos_embed.W_pos": "W_pos", "unembed.W_U": "W_U"}
_ATTN, _MLP = ("W_Q", "W_K", "W_V", "W_O"), ("W_in", "b_in", "W_out", "b_out")


class WeightsError(ValueError):
  """A weights file that is not a state dict of the paper's model; the message says why."""


def from_state_dict(sd: Mapping[str, Any]) -> tuple[dict[str, Any], ModelConfig]:
  """(params, ModelConfig inferred from the shapes) from a name → array mapping."""
  sd = {k: np.asarray(v, dtype=np.float32) for k, v in sd.items()
        if not re.fullmatch(r"blocks\.\d+\.attn\.mask", k)}
  missing = [k for k in _TOP if k not in sd]
  blocks: dict[int, dict[str, np.ndarray]] = {}
  unknown = []
  for k, v in sd.items():
    m = _BLOCK.match(k)
    if k in _TOP:
      continue
    if m and m.group(3) in (_ATTN if m.group(2) == "attn" else _MLP):
      blocks.setdefault(int(m.group(1)), {})[m.group(3)] = v
    else:
      unknown.append(k)
  if not blocks:
    missing.append("blocks.0.attn.W_Q (and the rest of block 0)")
  n = max(blocks) + 1 if blocks else 0
  for i in range(n):
    for part, names in (("attn", _ATTN), ("mlp", _MLP)):
      missing += [f"blocks.{i}.{part}.{nm}" for nm in names if nm not in blocks.get(i, {})]
  if missing or unknown:
    raise WeightsError("not a state dict of the paper's transformer: "
                       + (f"missing {', '.join(missing)}" if missing else "")
                       + ("; " if missing and unknown else "")
                       + (f"unexpected {', '.join(unknown)}" if unknown else ""))
  W_E = sd["embed.W_E"]
  if W_E.ndim != 2:
    raise WeightsError(f"embed.W_E must be 2-D (d_model, d_vocab), got shape {W_E.shape}")
  D, V = W_E.shape
  H, E, _ = blocks[0]["W_Q"].shape if blocks[0]["W_Q"].ndim == 3 else (0, 0, 0)
  M = blocks[0]["W_in"].shape[0] if blocks[0]["W_in"].ndim == 2 else 0
  n_ctx = sd["pos_embed.W_pos"].shape[0]
  V_out = sd["unembed.W_U"].shape[-1]
  want = {"embed.W_E": (D, V), "pos_embed.W_pos": (n_ctx, D), "unembed.W_U": (D, V_out)}
  for i in range(n):
    pre = f"blocks.{i}."
    want.update({pre + "attn.W_Q": (H, E, D), pre + "attn.W_K": (H, E, D),
                 pre + "attn.W_V": (H, E, D), pre + "attn.W_O": (D, H * E),
                 pre + "mlp.W_in": (M, D), pre + "mlp.b_in": (M,),
                 pre + "mlp.W_out": (D, M), pre + "mlp.b_out": (D,)})
  bad = [f"{k} has shape {tuple(sd[k].shape)}, expected {s}" for k, s in want.items()
         if tuple(sd[k].shape) != s]
  if H == 0 or M == 0:
    bad.insert(0, "blocks.0.attn.W_Q must be (heads, d_head, d_model) and blocks.0.mlp.W_in "
               "(d_mlp, d_model)")
  if n_ctx != 3 or V_out < V - 1:
    bad.append(f"expected the modular-arithmetic model (n_ctx 3, d_vocab_out >= p), got n_ctx "
               f"{n_ctx}, d_vocab {V}, d_vocab_out {V_out}")
  if bad:
    raise WeightsError("shapes do not fit the paper's transformer: " + "; ".join(bad))
  params: dict[str, Any] = {_TOP[k]: sd[k] for k in _TOP}
  for i in range(n):
    params[f"blocks_{i}"] = dict(blocks[i])
  cfg = ModelConfig(d_vocab=V, d_vocab_out=V_out, n_ctx=n_ctx, d_model=D, num_heads=H,
                    d_mlp=M, num_layers=n)
  return params, cfg


def to_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse mapping (no mask buffer)."""
  inv = {v: k for k, v in _TOP.items()}
  sd = {inv[k]: np.asarray(v) for k, v in params.items() if k in inv}
  for k, blk in params.items():
    if k.startswith("blocks_"):
      i = int(k.split("_")[1])
      for nm, v in blk.items():
        sd[f"blocks.{i}.{'attn' if nm in _ATTN else 'mlp'}.{nm}"] = np.asarray(v)
  return sd


def load(path: str) -> tuple[dict[str, Any], ModelConfig]:
  """(params, ModelConfig) from an .npz export or, with torch installed, a .pth file."""
  if not os.path.exists(path):
    raise WeightsError(f"{path}: no such file")
  if path.endswith(".pth") or path.endswith(".pt"):
    try:
      import torch
    except ImportError as e:
      raise WeightsError(f"{path}: reading .pth files needs torch (pip install torch), "
                         "or export the state dict to .npz") from e
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
      obj = obj["model"]
    if not isinstance(obj, Mapping):
      raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    sd = {k: v.detach().cpu().numpy() for k, v in obj.items() if hasattr(v, "detach")}
  else:
    try:
      with np.load(path, allow_pickle=False) as z:
        sd = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
      raise WeightsError(f"{path}: not a readable .npz file ({e})") from e
  try:
    return from_state_dict(sd)
  except WeightsError as e:
    raise WeightsError(f"{path}: {e}") from None
