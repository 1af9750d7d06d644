"""The modular tasks' data: the p² grid of pairs, labels, and the authors' split (SPEC §1.1).

`grokjax.tasks.modular` wraps this as a Task; the Fourier analysis reads the grid directly.

Modular arithmetic: every input is `[a, b, =]` with `=` = token p; all p² pairs are
enumerated a-major (row n = a·p + b), and every 2D analysis reshapes that axis to (a, b).
"""
from __future__ import annotations

import hashlib
import random

import numpy as np

RAND_TABLE_SEED = 0  # the 'rand' task's fixed label table (not a swept value)


def all_tokens(p: int) -> np.ndarray:
  """(p², 3) int32 tokens [a, b, p] in a-major order."""
  a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
  return np.stack([a, b, np.full_like(a, p)], axis=1).astype(np.int32)


def labels(task: str, p: int) -> np.ndarray:
  """(p²,) int32 labels of every pair for `task`."""
  a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
  if task == "add":
    y = (a + b) % p
  elif task == "subtract":
    y = (a - b) % p
  elif task == "multiply":
    y = (a * b) % p
  elif task == "x2xyy2":
    y = (a * a + a * b + b * b) % p
  elif task == "rand":
    y = np.random.default_rng(RAND_TABLE_SEED).integers(0, p, size=(p, p)).reshape(-1)
  else:
    raise ValueError(f"unknown task {task!r}")
  return y.astype(np.int32)


def train_indices(p: int, frac_train: float, split_seed: int) -> np.ndarray:
  """Flat a-major indices of the training pairs, in the authors' shuffled order.

  Exactly the authors' procedure: the a-major list of (a, b, p) tuples, Python
  `random.seed(split_seed); random.shuffle(...)`, the first ⌊frac·p²⌋ are train.
  """
  pairs = [(a, b) for a in range(p) for b in range(p)]
  random.Random(split_seed).shuffle(pairs)
  n_train = int(frac_train * len(pairs))
  return np.array([a * p + b for a, b in pairs[:n_train]], dtype=np.int32)


def train_mask(p: int, frac_train: float, split_seed: int) -> np.ndarray:
  """(p²,) bool, True for training pairs (a-major)."""
  mask = np.zeros(p * p, dtype=bool)
  mask[train_indices(p, frac_train, split_seed)] = True
  return mask


def split_fingerprint(mask: np.ndarray) -> str:
  """First 16 hex digits of sha256 of the uint8 a-major train mask (SPEC §1.1)."""
  return hashlib.sha256(np.asarray(mask, dtype=np.uint8).tobytes()).hexdigest()[:16]
