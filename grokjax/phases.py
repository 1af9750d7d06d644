"""The three phases of grokking (paper §5.1) detected from a run's curves.

The paper draws its phase lines by eye (1.4k / 9.4k / 14k on the mainline run). grokjax reads
them off the curves with this rule, chosen so that each boundary is a landmark of a progress
measure rather than a tuned epoch:

* **circuit_formation_end** — the first epoch at which the restricted loss (all inputs, key
  frequencies only, SPEC §3.5) is below `RESTRICTED_THRESH` = 1e-2: the Fourier circuit alone
  now fits the task, while the test loss is still high (mainline: 9 400, test loss 4.15).
* **memorization_end** — the epoch of the test-loss maximum before circuit_formation_end (or
  over the whole curve when the circuit never forms): train loss has converged and test loss
  stops rising (mainline: 1 400, also the excluded-loss minimum).
* **cleanup_end** — the first epoch after circuit_formation_end at which the test loss is within
  a factor `CLEANUP_FACTOR` = 3 of its final value (the median of the last 10 % of the curve):
  weight decay has removed the memorising components (mainline: 13 800).

Boundaries that are not reached are None (e.g. a run that never groks has no circuit formation
end and no cleanup end). NaN values (diverged checkpoints) are ignored.

`loss_spikes` finds the late instabilities (slingshot-like spikes, paper App. D.2) in a logged
train-loss curve: sudden rises above 10 × the loss's minimum over the previous 200 epochs,
after a given epoch.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RESTRICTED_THRESH = 1e-2
CLEANUP_FACTOR = 3.0
FINAL_FRACTION = 0.1


def _first(epochs: np.ndarray, cond: np.ndarray) -> int | None:
  idx = np.flatnonzero(cond)
  return int(epochs[idx[0]]) if idx.size else None


def _sorted_curve(epochs: Sequence[float], values: Sequence[float], name: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(epochs, values, order) as int64/float64 arrays sorted by epoch; checks the shapes."""
  e = np.asarray(epochs, dtype=np.int64)
  x = np.asarray(values, dtype=np.float64)
  if e.shape != x.shape or e.ndim != 1:
    raise ValueError(f"epochs {e.shape} and {name} {x.shape} must be 1-D of one length")
  order = np.argsort(e, kind="stable")
  return e[order], x[order], order


def detect(epochs: Sequence[float], test_loss: Sequence[float],
           restricted_loss: Sequence[float] | None) -> dict[str, Any]:
  """{'memorization_end', 'circuit_formation_end', 'cleanup_end'} (ints or None)."""
  e, test, order = _sorted_curve(epochs, test_loss, "test_loss")
  out: dict[str, Any] = dict(memorization_end=None, circuit_formation_end=None, cleanup_end=None)
  if e.size == 0 or not np.any(np.isfinite(test)):
    return out
  if restricted_loss is not None:
    r = np.asarray(restricted_loss, dtype=np.float64)[order]
    out["circuit_formation_end"] = _first(e, np.nan_to_num(r, nan=np.inf) < RESTRICTED_THRESH)
  cf = out["circuit_formation_end"]
  before = e <= cf if cf is not None else np.ones_like(e, dtype=bool)
  t = np.where(before & np.isfinite(test), test, -np.inf)
  out["memorization_end"] = int(e[int(np.argmax(t))])
  if cf is not None:
    tail = test[int(np.floor(e.size * (1 - FINAL_FRACTION))):]
    final = np.nanmedian(tail) if np.any(np.isfinite(tail)) else np.nan
    if np.isfinite(final):
      out["cleanup_end"] = _first(e, (e > cf) & (np.nan_to_num(test, nan=np.inf)
                                                 <= CLEANUP_FACTOR * final))
  return out


SPIKE_FACTOR = 10.0
SPIKE_FLOOR = 1e-6
SPIKE_GAP = 500
SPIKE_WINDOW = 200   # epochs: a slingshot rises ≥ 10× within a few epochs


def _trailing_min(e: np.ndarray, x: np.ndarray, window: float) -> np.ndarray:
  """min(x[j]) over the points with e[i] − window ≤ e[j] ≤ e[i] (NaN skipped): a monotonic
  deque, O(n) for any spacing of the epochs."""
  from collections import deque
  x = np.where(np.isfinite(x), x, np.inf)
  out, q = np.empty_like(x), deque()
  for i in range(x.size):
    while q and x[q[-1]] >= x[i]:
      q.pop()
    q.append(i)
    while e[q[0]] < e[i] - window:
      q.popleft()
    out[i] = x[q[0]]
  return out


def loss_spikes(epochs: Sequence[float], loss: Sequence[float], after: float | None = None,
                factor: float = SPIKE_FACTOR, floor: float = SPIKE_FLOOR,
                gap: int = SPIKE_GAP, window: int = SPIKE_WINDOW) -> list[tuple[int, float]]:
  """[(first epoch, peak loss)] of each excursion of `loss` above `factor` × its minimum over
  the previous `window` epochs (and above `floor`) at epochs > `after` (None: the whole curve).
  Excursions less than `gap` epochs apart are one spike. NaN values (diverged checkpoints) are
  skipped. The trailing minimum (not the all-time one) ends an excursion once the loss decays
  again: slingshots that recur before the loss regains its old minimum (the float32 loss, App.
  D.2) are separate spikes, and a slow drift up is none."""
  e, x, _ = _sorted_curve(epochs, loss, "loss")
  running_min = _trailing_min(e, x, window)
  out: list[list[Any]] = []
  last = None
  for ei, xi, mi in zip(e, x, running_min):
    if (after is not None and ei <= after) or not (xi > factor * mi and xi > floor):
      continue  # (NaN compares False)
    if last is None or ei - last > gap:
      out.append([int(ei), float(xi)])
    else:
      out[-1][1] = max(out[-1][1], float(xi))
    last = ei
  return [(int(a), float(b)) for a, b in out]


def late_spikes(epochs: Sequence[float], train_loss: Sequence[float], test_loss: Sequence[float],
                thresh: float = 1e-2) -> list[tuple[int, float]]:
  """`loss_spikes` of the train loss after the test loss first fell below `thresh` (after the
  train loss did, for a run that never generalises; none for a run that never memorises)."""
  e = np.asarray(epochs, dtype=np.int64)
  tr, te = np.asarray(train_loss, dtype=np.float64), np.asarray(test_loss, dtype=np.float64)
  after = None
  for curve in (te, tr):
    below = e[np.nan_to_num(curve, nan=np.inf) < thresh]
    if below.size:
      after = int(below.min())
      break
  return [] if after is None else loss_spikes(e, tr, after)
