"""What the paper and the authors' recorded runs say: numbers with their sources, and curves.

Every number carries the place it comes from (a SPEC section and its evidence tag: [PAPER] paper
text, [PAPER*] paper text via verbatim quotations, [NB-OUT] saved outputs of the authors'
notebook, [DATA] computed from the authors' saved runs). The recorded curves are copies of
`../shared/reference` in `grokjax/reference_data/` (see its README). No training code is imported.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np

REF_DIR = os.path.join(os.path.dirname(__file__), "reference_data")
MAINLINE = dict(p=113, weight_decay=1.0, frac_train=0.3)


@dataclasses.dataclass(frozen=True)
class Number:
  value: Any
  source: str


# The mainline run (p=113, frac 0.3, lambda=1, 40k epochs; SPEC §4.1).
KEY_FREQS = Number([14, 35, 41, 42, 52], "SPEC §4.1 [NB-OUT][PAPER*]; init-dependent")
PHASES = Number((1400, 9400, 14000), "SPEC §4.1 [PAPER] (paper §5.2; notebook vlines)")
GROK_EPOCH = Number(10700, "SPEC §4.1 [NB-OUT] (test loss first < 1e-2)")
TRAIN_LOSS = Number(9.93e-8, "SPEC §4.1 [NB-OUT] (epoch 39 900)")
TEST_LOSS = Number(3.02e-7, "SPEC §4.1 [NB-OUT] (epoch 39 900)")
LOSS_ALL = Number(2.412e-7, "SPEC §1.5, §4.1 [NB-OUT] (epoch 40 000, all p² pairs)")
RESTRICTED_LOSS = Number(5.547e-8, "SPEC §4.1 [NB-OUT] (all pairs, epoch 39 900)")
EXCLUDED_LOSS = Number(6.147, "SPEC §4.1 [NB-OUT] (train, epoch 39 900)")
SUM_SQ_WEIGHTS = Number(955.5, "SPEC §4.1 [NB-OUT] (epoch 39 900; 1783.4 at init)")
NEURON_FVE_FRAC = Number(0.846, "SPEC §3.10, §4.1 [PAPER*] (433/512 neurons FVE > 0.85)")
TABLE1_FVE = Number([0.932, 0.935, 0.968, 0.965, 0.970, 0.970, 0.964, 0.964, 0.974, 0.982],
                    "SPEC §4.1 [PAPER] (paper Table 1; row order UNVERIFIED)")
TABLE2_ATTENTION = Number([(0, 35, 0.9903), (1, 42, 0.9849), (2, 52, 0.9907), (3, 42, 0.9791)],
                          "SPEC §3.14 [PAPER*] (paper Table 2: head, frequency, FVE)")
LOGIT_FVE = Number(0.95, "SPEC §3.7, §4.1 [PAPER*] (paper §4.2)")
W_L_RESIDUAL = Number(0.0055, "SPEC §3.12, §4.1 [PAPER*] (\"under 0.55 %\"; norm vs squared UNVERIFIED)")
LATE_SPIKES = Number("none", "authors' float64 curves: mainline to 39 900 (SPEC §4.1 [NB-OUT]), "
                     "λ = 0.1 run to 107 790 (SPEC §5 [DATA]); App. D.2 ties slingshots to the "
                     "float32 loss (SPEC §1.5)")
TABLE6 = Number({"mainline (App. A.1)": "loss 2.4e-7 → 9.12e-7 (zero) / 7.25e-7 (mean)",
                 "dropout rows (Table 6, e.g.)": "0.215 (0.091), 99.7 % → 0.205 (0.075), 99.7 %"},
                "SPEC §3.13 [PAPER*][PAPER] (loss on all p² pairs; Table 6's other rows lost)")
GINI_NOTE = ("no mainline value in the paper (SPEC §8); Table 5 generalising models: "
             "W_E 0.55–0.80, W_L 0.71–0.91 (SPEC §3.8, §4.2 [PAPER])")

# Table 5, data-fraction rows (SPEC §4.2 [PAPER]): frac -> (Gini W_E, Gini W_L, key freqs,
# logit FVE, MLP FVE mean, MLP FVE sd).
TABLE5_FRAC = {
    0.4: (0.76, 0.79, [17, 43, 49, 55], 0.949, 0.833, 0.261),
    0.5: (0.75, 0.77, [2, 17, 31, 41, 44], 0.912, 0.852, 0.282),
    0.6: (0.79, 0.84, [2, 23, 34, 51], 0.964, 0.957, 0.014),
    0.7: (0.80, 0.91, [14, 15, 26], 0.990, 0.989, 0.004),
    0.8: (0.62, 0.80, [38, 41], 0.639, 0.941, 0.025),
    0.9: (0.79, 0.88, [3, 26, 34, 43], 0.986, 0.987, 0.003),
}
TABLE5_SOURCE = "SPEC §4.2 [PAPER] (paper Table 5)"
# Table 5's other rows, as ranges over the paper's models of that kind (SPEC §4.2 [PAPER]).
TABLE5_KINDS = {
    "2-layer": "2-layer (×5): Gini 0.55–0.68/0.71–0.80, 3–5 key freqs, logit FVE 84–92 %, "
               "MLP FVE 72–95 %",
    "dropout": "dropout (×6): Gini 0.19–0.26/0.45–0.56, 5–9 key freqs, logit FVE 71–89 %, "
               "MLP FVE 65–89 %",
    "p53": "unnamed rows with k ≤ 26 (P = 53? UNVERIFIED; ×6): Gini 0.56–0.76/0.68–0.83, 3–4 "
           "key freqs, logit FVE 88–98 %, MLP FVE 90–98 %",
}

FRAC_BOUNDARY = Number(
    "groks for 30–50 % of pairs; ≥ 60 % generalises immediately; 10 % and 20 % do not grok "
    "within 40k epochs", "SPEC §2 [PAPER*] (paper App. C.2.2, Figs 20–21)")
WD_TEXT = Number(
    "≈3k epochs at λ=0.3, 5–10k at λ=1, 20k at λ=3 (likely transposed: smaller λ groks later)",
    "SPEC §2 [PAPER*] (paper App. D.1); SPEC §7.14")
WD01_GROK = Number(98730, "SPEC §5.2 [DATA] (authors' λ=0.1 run, frac 0.3, split seed 1)")
P53_TEXT = Number("P=53: λ=1 never generalises, λ=5 groks", "SPEC §2 [PAPER*] (paper Fig 24)")
NO_WD_TEXT = Number("λ=0: no grokking, excluded loss does not rise", "SPEC §2 [PAPER] (paper Fig 26)")

# Phase classification of a run that generalises (calibrated on the authors' saved data-fraction
# sweep, SPEC §5.2): grokking when the epoch of test loss < 1e-2 is at least this many times the
# epoch of train loss < 1e-2. Their sweep gives ratios 1.1–2.8 for 60–95 % ("immediate") and
# 4.1–84 for 25–50 % ("grokking"), matching the paper's classification.
GROK_RATIO = 3.0
GROK_THRESH = 1e-2


def _load(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  with np.load(os.path.join(REF_DIR, name + ".npz")) as z:
    arrays = {k: z[k] for k in z.files}
  with open(os.path.join(REF_DIR, name + ".json")) as f:
    meta = json.load(f)
  return arrays, meta


@functools.lru_cache(maxsize=None)
def mainline_curves() -> dict[str, np.ndarray]:
  """epochs, train_loss, test_loss, excluded_loss_full_train, restricted_loss_all,
  sum_sq_weights_total at epochs 0..39 900 step 100 (SPEC §5.3)."""
  return _load("mainline_notebook_curves")[0]


@functools.lru_cache(maxsize=None)
def frac_sweep() -> dict[float, tuple[np.ndarray, np.ndarray]]:
  """frac -> (train_loss, test_loss), one value per epoch (index = epoch); SPEC §5.1."""
  arrays, meta = _load("mod_addition_frac_train_sweep")
  return {float(r["frac_train"]): (arrays[r["key_train"]], arrays[r["key_test"]])
          for r in meta["runs"]}


@dataclasses.dataclass(frozen=True)
class Curve:
  label: str
  train_epochs: np.ndarray
  train_loss: np.ndarray
  test_epochs: np.ndarray
  test_loss: np.ndarray
  source: str


def _close(a: float, b: float) -> bool:
  return abs(float(a) - float(b)) < 1e-9


def reference_curves(p: int, weight_decay: float, frac_train: float) -> list[Curve]:
  """The authors' recorded train/test loss curves for exactly this setting (maybe none)."""
  out = []
  if p != 113:
    return out
  if _close(weight_decay, 1.0) and _close(frac_train, 0.3):
    m = mainline_curves()
    out.append(Curve("authors (mainline)", m["epochs"], m["train_loss"], m["epochs"],
                     m["test_loss"], "SPEC §5.3 [NB-OUT]"))
  if _close(weight_decay, 1.0):
    for f, (tr, te) in frac_sweep().items():
      if _close(f, frac_train):
        e = np.arange(len(tr))
        out.append(Curve("authors (frac sweep)", e, tr, e, te, "SPEC §5.1 [DATA]"))
  if _close(weight_decay, 0.1) and _close(frac_train, 0.3):
    a, _ = _load("wd_10-1_mod_addition_loss_curve")
    out.append(Curve("authors (λ=0.1, split seed 1)", a["train_epochs"], a["train_loss"],
                     a["test_epochs"], a["test_loss"], "SPEC §5.1 [DATA]"))
  if _close(weight_decay, 0.0) and _close(frac_train, 0.9):
    a, _ = _load("mod_addition_no_wd")
    out.append(Curve("authors (λ=0, frac 0.9)", a["epochs"], a["train_loss"], a["epochs"],
                     a["test_loss"], "SPEC §5.1 [DATA]"))
  return out


def first_below(epochs: np.ndarray, values: np.ndarray, thresh: float) -> int | None:
  """First epoch whose value is below `thresh` (NaN never counts), or None."""
  v = np.asarray(values, float)
  hit = np.nonzero(np.nan_to_num(v, nan=np.inf) < thresh)[0]
  return int(np.asarray(epochs)[hit[0]]) if len(hit) else None


def frac_sweep_epochs(thresh: float = GROK_THRESH) -> dict[float, dict[str, int | None]]:
  """Per fraction of the authors' sweep: first epoch below `thresh` of train and test loss,
  and the run length (each run stopped once test loss < ≈3e-6)."""
  out = {}
  for f, (tr, te) in frac_sweep().items():
    e = np.arange(len(tr))
    out[f] = dict(train=first_below(e, tr, thresh), test=first_below(e, te, thresh),
                  length=len(tr))
  return out


# --- The paper's other tasks (App. D.3, Figs 29–34; SPEC §2, §5.2) ------------------------------

# Per (task, finite): the authors' recorded run (reference_data/NAME.{npz,json}), the SPEC source
# and what the paper's text says.
TASK_RUNS = {
    ("digit_addition", False): ("5_digit_addition_infinite", "SPEC §5.1–5.2 [DATA]",
                                "5-digit addition, infinite data: sudden per-digit phase changes "
                                "(Fig 29), no grokking gap"),
    ("digit_addition", True): ("5_digit_addition_finite", "SPEC §5.1–5.2 [DATA]",
                               "5-digit addition, 700 examples: grokking (Fig 30)"),
    ("repeated_subsequence", False): ("induction_head_infinite", "SPEC §5.1–5.2 [DATA]",
                                      "induction heads form in a phase change (Fig 31)"),
    ("repeated_subsequence", True): ("induction_head_finite", "SPEC §5.1–5.2 [DATA]",
                                     "512 sequences: the test loss drops late (≈199k epochs, "
                                     "Fig 32)"),
    ("skip_trigram", False): ("skip_trigram_infinite", "SPEC §5.1–5.2 [DATA]",
                              "skip trigram, infinite data (Fig 33)"),
    ("skip_trigram", True): ("skip_trigram_finite", "SPEC §5.1–5.2 [DATA]",
                             "skip trigram, 512 examples: grokking (Fig 34)"),
}
# Fig 29 bottom: first step each answer digit's loss is < 0.1 (SPEC §5.2 [DATA], the authors'
# per-token file; digit 0 is the carry digit).
DIGIT_PHASES = Number([288, 1818, 2180, 2056, 1963, 1761], "SPEC §5.2 [DATA]")


def task_curve(task: str, finite: bool) -> Curve | None:
  """The authors' recorded train (and test, for finite data) loss of a sequence task."""
  if (task, finite) not in TASK_RUNS:
    return None
  name, source, _ = TASK_RUNS[(task, finite)]
  a, meta = _load(name)
  tr = a["train_loss"]
  e_tr = np.arange(len(tr))
  if "test_loss" in a:
    te = a["test_loss"]
    e_te = a["test_epochs"] if "test_epochs" in a else np.arange(len(te))
  else:
    te, e_te = np.array([]), np.array([], int)
  return Curve(f"authors ({'finite' if finite else 'infinite'})", e_tr, tr, e_te, te, source)


def digit_curves() -> np.ndarray:
  """(3000, 6) the authors' per-answer-digit loss of the infinite 5-digit run (Fig 29)."""
  return _load("5_digit_addition_infinite_per_token")[0]["per_token_loss"]


def low_precision_curve() -> Curve:
  """The authors' float32-loss run (App. D.2; frac 0.3, split seed 1, same init as their λ = 0.1
  run): per-epoch train loss, test loss every 10 epochs (SPEC §5.1)."""
  a, _ = _load("low_precision_mod_addition")
  return Curve("authors (float32 loss, frac 0.3, split seed 1)", a["train_epochs"],
               a["train_loss"], a["test_epochs"], a["test_loss"], "SPEC §5.1 [DATA]")


def width_scan() -> dict[int, Curve]:
  """d_model -> the authors' no-weight-decay width-scan run (3 000 epochs, per-epoch losses;
  frac and seed not stored; not in the paper, SPEC §2, §5.1)."""
  a, meta = _load("no_wd_width_scan")
  out = {}
  for r in meta["runs"]:
    d = int(r["d_model"])
    e = np.arange(len(a[f"train_loss_d{d}"]))
    out[d] = Curve(f"authors (d_model={d}, λ=0)", e, a[f"train_loss_d{d}"], e,
                   a[f"test_loss_d{d}"], "SPEC §5.1 [DATA]")
  return out
