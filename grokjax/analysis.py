"""The analysis step: measures for every checkpoint of every run, written under WORKDIR/analysis/.

Files (one per run i, plus a sweep summary):
  run_{i:04d}.csv         one row per checkpoint epoch: losses (113-way) and accuracies,
                          restricted/excluded loss and accuracy, excluded_loss_train_k{K} and
                          cos_coeff_k{K} per key frequency K, gini_W_E, gini_W_L,
                          sum_sq_weights and sum_sq_{param}
  run_{i:04d}_final.json  the final checkpoint's evidence, key frequencies and phase boundaries
  run_{i:04d}_final.npz   arrays for the figures (attention, neurons, 2D logit spectrum, Ŵ_L)
  summary.csv             one row per run
A run's key frequencies come from its final checkpoint (W_L rule, SPEC §3.4) and are reused for
all its checkpoints, as the paper does. Reruns are incremental: only checkpoints missing from a
run's table are analysed; if the final checkpoint changed and gives a different key set, that
run's table is recomputed (its key-frequency columns would be stale).
"""
from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import (checkpoint, data, evidence, fourier, interop, measures, paper, phases,
                     results)
from grokjax.evidence import (ANALYSIS_VERSION, final_arrays, final_record,  # noqa: F401
                              freqs as _freqs)
from grokjax.config import AXIS_NAMES
from grokjax.lock import WorkdirLock

ANALYSIS = results.ANALYSIS
CKPT_BATCH = 32     # checkpoints read from disk per step of the workdir loop
VMAP_BATCH = 1      # checkpoints per vmapped call inside lax.map (memory ∝ p²·d_mlp each)
GROK_THRESH = paper.GROK_THRESH  # summary.csv's grok_epoch: first logged epoch with test loss below this


def reference_path(name: str) -> str:
  """Path of a file shipped in grokjax/reference_data/."""
  return os.path.join(paper.REF_DIR, name)


def _run_file(workdir: str, run: int, suffix: str) -> str:
  return os.path.join(workdir, ANALYSIS, f"run_{run:04d}{suffix}")


# ----------------------------------------------------------------------------- final evidence

_evidence = jax.jit(evidence.evidence, static_argnames=("act", "frac"))


def _true_float32(fn: Callable) -> Callable:
  """Measures are computed with true float32 matmuls on every backend (no TF32 / bfloat16),
  and with 64-bit types (float64 means and projections; grokjax/x64.py)."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.default_matmul_precision("highest"), jax.enable_x64(True):
      return fn(*args, **kwargs)
  return wrapped


@_true_float32
def analyze_weights(path: str, frac_train: float, split_seed: int, task: str = "add",
                    act: str = "relu") -> dict[str, Any]:
  """The evidence JSON of a weights file in the authors' state-dict format (p from shapes)."""
  params, mcfg = interop.load(path)
  p = mcfg.d_vocab - 1
  n = int(frac_train * p * p)
  if not 0 < n < p * p:
    raise ValueError(f"--frac_train={frac_train} gives {n} training pairs of {p * p}")
  fourier.num_freqs(p)
  labels = jnp.asarray(data.labels(task, p))
  mask = data.train_mask(p, frac_train, split_seed)
  ev = _evidence(jax.tree.map(jnp.asarray, params), labels, jnp.asarray(mask), act=act)
  rec = final_record(ev)
  rec.update(weights_file=os.path.abspath(path), p=p, task=task, frac_train=frac_train,
             split_seed=split_seed, n_train=int(mask.sum()),
             split_fingerprint=data.split_fingerprint(mask))
  return rec


# ----------------------------------------------------------------------------- curves

@functools.lru_cache(maxsize=None)
def _dynamics_fn(act: str, batch: int):
  def many(params_B, labels, train, key_idx, train_idx):
    one = lambda pr: measures.dynamics(pr, labels, train, key_idx, act, train_idx)
    return jax.lax.map(one, params_B, batch_size=batch)
  return jax.jit(many)


@functools.lru_cache(maxsize=None)
def _detected_fn(act: str, batch: int):
  def many(params_B, labels, train):
    one = lambda pr: measures.dynamics_detected(pr, labels, train, act)
    return jax.lax.map(one, params_B, batch_size=batch)
  return jax.jit(many)


def detected_rows(out: dict[str, np.ndarray]) -> list[dict]:
  """Columns of the per-checkpoint key detection (measures.dynamics_detected)."""
  return [dict(key_freqs_detected=" ".join(map(str, _freqs(out["key_K"][j]))),
               restricted_loss_all_detected=float(out["restricted_loss_all"][j]),
               excluded_loss_train_detected=float(out["excluded_loss_train"][j]))
          for j in range(len(out["key_K"]))]


def curve_rows(out: dict[str, np.ndarray], epochs: list[int], key: list[int]) -> list[dict]:
  """Table rows from measures.dynamics outputs stacked over checkpoints."""
  rows = []
  for j, e in enumerate(epochs):
    row: dict[str, Any] = {"epoch": int(e)}
    for k, v in out.items():
      if k == "excluded_loss_train_per_freq":
        row.update({f"excluded_loss_train_k{K}": float(v[j, i]) for i, K in enumerate(key)})
      elif k == "cos_coeff":
        row.update({f"cos_coeff_k{K}": float(v[j, i]) for i, K in enumerate(key)})
      else:
        row[k] = float(v[j])
    rows.append(row)
  return rows


def _read_csv(path: str):
  import pandas as pd
  return pd.read_csv(path) if os.path.exists(path) else None


def _write_csv(path: str, rows: list[dict]) -> None:
  import pandas as pd
  df = pd.DataFrame(rows).sort_values("epoch").drop_duplicates("epoch", keep="last")
  first = ["epoch", "loss_train", "loss_test", "loss_all", "acc_train", "acc_test", "acc_all"]
  cols = [c for c in first if c in df] + [c for c in df.columns if c not in first]
  tmp = path + ".tmp"
  df[cols].to_csv(tmp, index=False, float_format="%.10g")
  os.replace(tmp, path)


def _csv_keys(df) -> list[int]:
  return sorted(int(c[len("excluded_loss_train_k"):]) for c in df.columns
                if c.startswith("excluded_loss_train_k"))


def grok_epoch(metrics, run: int, thresh: float = GROK_THRESH) -> int | None:
  if metrics is None or len(metrics) == 0:
    return None
  m = metrics[(metrics["run"] == run) & (metrics["test_loss"] < thresh)]
  return int(m["epoch"].min()) if len(m) else None


def analyze_workdir(workdir: str, log: Callable[[str], None] | None = None,
                    ckpt_batch: int = CKPT_BATCH, vmap_batch: int = VMAP_BATCH,
                    detect_per_checkpoint: bool = False) -> dict:
  """Analyses every new checkpoint of every run in `workdir`; returns {run: final record}.

  With `detect_per_checkpoint`, the tables also get each checkpoint's own key frequencies (W_L
  rule) and the restricted / excluded loss with them (columns *_detected), next to the
  fixed-key curves of the paper.

  Holds the workdir's analysis lock (a second analysis is refused; a sweep may go on training).
  The final checkpoint is the one of the newest trained epoch: when it is missing or damaged
  this raises (WorkdirError) instead of taking an earlier one as final; missing or damaged
  earlier checkpoints are reported and skipped. An unfinished sweep is analysed as far as it
  got, and said so; a halted run (non-finite loss) is named in the log and its record."""
  log = log or (lambda s: print(s, file=sys.stderr, flush=True))
  if not os.path.isdir(workdir):
    raise results.WorkdirError(f"--workdir: {workdir} " + (
        "is a file, not a workdir" if os.path.exists(workdir) else "does not exist"))
  with WorkdirLock(workdir, "analysis", log):
    return _analyze_workdir(workdir, log, ckpt_batch, vmap_batch, detect_per_checkpoint)


def _check_params(workdir: str, prog: results.Progress, epochs: list[int],
                  log: Callable[[str], None]) -> int:
  """The final epoch to analyse (raises when its checkpoint is missing or damaged); logs the
  checkpoints missing before it."""
  final = prog.final_epoch
  if not epochs or final is None:
    raise results.WorkdirError(f"{workdir}: no parameter checkpoints (train the sweep first)")
  if not prog.finished:
    log(f"note: {workdir}: {prog.text()}; analysing the checkpoints up to epoch {final}")
  problem = "missing" if final not in epochs else checkpoint.params_problem(workdir, final)
  if problem:
    raise results.WorkdirError(
        f"{workdir}: the final parameter checkpoint (epoch {final}, where training got to) is "
        f"{problem}; its measures cannot be computed, and an earlier epoch is not the final "
        f"state (checkpoints present: {checkpoint.epochs_text(epochs)})")
  missing = [e for e in prog.missing_params() if e not in epochs]
  if missing:
    log(f"warning: {workdir}: parameter checkpoint(s) missing at epoch(s) "
        f"{checkpoint.epochs_text(missing)}: their rows are absent from the tables")
  return final


@_true_float32
def _analyze_workdir(workdir: str, log: Callable[[str], None], ckpt_batch: int,
                     vmap_batch: int, detect_per_checkpoint: bool) -> dict:
  cfg = results.load_config(workdir)
  runs = results.load_runs(workdir)
  metrics = results.load_metrics(workdir)
  prog = results.progress(workdir, metrics.to_dict("records"))
  epochs = checkpoint.param_epochs(workdir)
  last = _check_params(workdir, prog, epochs, log)
  epochs = [e for e in epochs if e <= last]
  for i, h in sorted(prog.halted.items()):
    log(f"run {i}: halted at epoch {h} (non-finite loss): its parameters are frozen there, "
        "and its measures are those of the frozen parameters")
  if cfg.task != "add":
    log(f"note: task {cfg.task!r}: the Fourier measures use the a+b directions of addition")
  os.makedirs(os.path.join(workdir, ANALYSIS), exist_ok=True)
  p, act = cfg.p, cfg.model.act
  labels = jnp.asarray(data.labels(cfg.task, p))
  masks = {r["run"]: jnp.asarray(data.train_mask(p, r["frac_train"], r["split_seed"]))
           for r in runs}

  finals, arrays = _final_evidence(workdir, runs, last, labels, masks, act)
  _curves(workdir, runs, epochs, finals, labels, masks, act, log, ckpt_batch, vmap_batch,
          detect_per_checkpoint)
  _write_finals(workdir, runs, finals, arrays, metrics, prog)
  return finals


def _final_evidence(workdir: str, runs: list[dict], last: int, labels, masks: dict,
                    act: str) -> tuple[dict[int, dict], dict[int, dict]]:
  """Key frequencies and the final evidence of each run's final checkpoint (reused when the
  run's final record is already that epoch's, at this analysis version)."""
  finals: dict[int, dict] = {}
  arrays: dict[int, dict] = {}
  stacked = None
  for r in runs:
    i = r["run"]
    old = _read_json(_run_file(workdir, i, "_final.json"))
    if (old is not None and old.get("epoch") == last
        and old.get("analysis_version") == ANALYSIS_VERSION
        and evidence.has_final_arrays(_run_file(workdir, i, "_final.npz"), old)):
      finals[i] = old
      continue
    if stacked is None:
      stacked = checkpoint.load_params(workdir, last)
    ev = _evidence(jax.tree.map(lambda t: jnp.asarray(t[i]), stacked), labels, masks[i], act=act)
    finals[i], arrays[i] = final_record(ev), final_arrays(ev)
    finals[i].update(run=i, epoch=last)
  return finals, arrays


def _curves(workdir: str, runs: list[dict], epochs: list[int], finals: dict, labels,
            masks: dict, act: str, log: Callable[[str], None], ckpt_batch: int,
            vmap_batch: int, detect_per_checkpoint: bool) -> None:
  """The training-dynamics tables: the checkpoints each run's table lacks, in batches."""
  train_idx = {i: jnp.asarray(np.flatnonzero(np.asarray(m)), jnp.int32) for i, m in masks.items()}
  rows: dict[int, list[dict]] = {}
  todo: dict[int, set[int]] = {}
  for r in runs:
    i, key = r["run"], finals[r["run"]]["key_freqs"]
    df = _read_csv(_run_file(workdir, i, ".csv"))
    if df is not None and _csv_keys(df) != sorted(key):
      log(f"run {i}: key frequencies changed to {key}; recomputing its table")
      df = None
    rows[i] = [] if df is None else df.to_dict("records")
    todo[i] = set(epochs) - ({int(e) for e in df["epoch"]} if df is not None else set())
  pending = sorted(set().union(*todo.values()))
  chunks = [pending[b:b + ckpt_batch] for b in range(0, len(pending), ckpt_batch)]
  fn = _dynamics_fn(act, vmap_batch)
  t0, done, sizes = time.time(), 0, set()
  total = sum(len(t) for t in todo.values())
  reader = checkpoint.ParamsReader(workdir)

  def load(chunk: list[int]) -> list[Any]:
    out = []
    for e in chunk:  # a damaged checkpoint before the final one is reported and skipped
      try:
        out.append(reader(e))
      except (results.WorkdirError, FileNotFoundError) as err:
        log(f"warning: {err}; its rows are absent from the tables")
        out.append(None)
    return out
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # reads the next chunk meanwhile
  nxt = pool.submit(load, chunks[0]) if chunks else None
  for c, chunk in enumerate(chunks):
    loaded = nxt.result()
    nxt = pool.submit(load, chunks[c + 1]) if c + 1 < len(chunks) else None
    for r in runs:
      i = r["run"]
      mine = [j for j, e in enumerate(chunk) if e in todo[i] and loaded[j] is not None]
      if not mine:
        continue
      key = finals[i]["key_freqs"]
      # Pad the batch by repeating its last checkpoint, to a size already compiled in this
      # call if there is one (a compile costs more than a batch of checkpoints), else to a
      # power of two: a handful of compiled sizes, at most 2x the work.
      n = len(mine)
      size = min([z for z in sizes if z >= n],
                 default=min(1 << (n - 1).bit_length(), max(ckpt_batch, n)))
      sizes.add(size)
      picks = mine + [mine[-1]] * (size - n)
      params_B = jax.tree.map(lambda *ts: jnp.asarray(np.stack([t[i] for t in ts])),
                              *[loaded[j] for j in picks])
      out = jax.device_get(fn(params_B, labels, masks[i], jnp.asarray(key, jnp.int32),
                              train_idx[i]))
      out = jax.tree.map(lambda v: v[:n], out)
      new_rows = curve_rows(out, [chunk[j] for j in mine], key)
      if detect_per_checkpoint:
        det = jax.device_get(_detected_fn(act, vmap_batch)(params_B, labels, masks[i]))
        for row, extra in zip(new_rows, detected_rows(jax.tree.map(lambda v: v[:n], det))):
          row.update(extra)
      rows[i] += new_rows
      done += len(mine)
    for r in runs:
      if any(e in todo[r["run"]] and x is not None for e, x in zip(chunk, loaded)):
        _write_csv(_run_file(workdir, r["run"], ".csv"), rows[r["run"]])
    rate = done / max(time.time() - t0, 1e-9)
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
    log(f"analysis: {done}/{total} checkpoints ({rate:.1f}/s, ETA {eta})")
  pool.shutdown()
  reader.close()
  if not pending:
    log(f"analysis: all {len(epochs)} checkpoints of {len(runs)} runs already analysed")


def _write_finals(workdir: str, runs: list[dict], finals: dict, arrays: dict, metrics,
                  prog) -> None:
  """Phases and grokking facts into each run's final record; the final files; summary.csv."""
  summary = []
  for r in runs:
    i = r["run"]
    df = _read_csv(_run_file(workdir, i, ".csv"))
    fin = finals[i]
    fin["phases"] = phases.detect(df["epoch"], df["loss_test"], df["restricted_loss_all"])
    fin["grok_epoch"] = grok_epoch(metrics, i)
    m = metrics[metrics["run"] == i]
    fin["loss_spikes"] = phases.late_spikes(m["epoch"], m["train_loss"], m["test_loss"],
                                            GROK_THRESH)
    fin.update({k: r[k] for k in AXIS_NAMES if k in r})
    fin.update(halted_at=prog.halted.get(i), trained_to=prog.trained, num_epochs=prog.total)
    results.write_json(_run_file(workdir, i, "_final.json"), fin)
    if i in arrays:  # written whole (an interrupted write would leave a damaged npz)
      path = _run_file(workdir, i, "_final.npz")
      np.savez(path + ".tmp.npz", **arrays[i])
      os.replace(path + ".tmp.npz", path)
    summary.append(dict(
        run=i, **{k: r[k] for k in AXIS_NAMES if k in r},
        key_freqs=" ".join(map(str, fin["key_freqs"])),
        gini_W_E=fin["gini_W_E"], gini_W_L=fin["gini_W_L"], logit_fve=fin["logit_fve"],
        mlp_fve_mean=fin["mlp_fve_mean"], mlp_fve_std=fin["mlp_fve_std"],
        loss_test=fin["loss_test"], **fin["phases"], grok_epoch=fin["grok_epoch"],
        loss_spikes=" ".join(f"{e}:{x:.3g}" for e, x in fin["loss_spikes"]),
        restricted_loss_all=fin["restricted_loss_all"],
        excluded_loss_train=fin["excluded_loss_train"], epoch=fin["epoch"],
        halted_at=fin["halted_at"],
        skipped=f"{', '.join(fin['skipped']['measures'])} ({fin['skipped']['reason']})"
        if fin.get("skipped") else ""))
  import pandas as pd
  df = pd.DataFrame(summary)
  for c in ("memorization_end", "circuit_formation_end", "cleanup_end", "grok_epoch",
            "halted_at"):
    df[c] = df[c].astype("Int64")
  tmp = os.path.join(workdir, ANALYSIS, "summary.csv.tmp")
  df.to_csv(tmp, index=False)
  os.replace(tmp, os.path.join(workdir, ANALYSIS, "summary.csv"))


def final_line(run: int, f: dict) -> str:
  """The console line of one run's final record (a halted run, a missing value say so)."""
  num = lambda x: "—" if x is None else f"{x:.3g}"
  line = (f"run {run}: key freqs {f.get('key_freqs')}  test loss {num(f.get('loss_test'))}  "
          f"phases {f.get('phases')}")
  if f.get("halted_at") is not None:
    line += f"  HALTED at epoch {f['halted_at']} (non-finite loss; parameters frozen there)"
  return line


def _read_json(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError:
    return None
