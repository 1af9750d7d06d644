"""The local learning coefficient (LLC) of every checkpoint of every run of a workdir, any task.

For each run and each (every k-th) parameter checkpoint w*, `llc.estimate` by localised SGLD on
the run's own training data (`task.train_sample`: minibatches drawn with replacement from its
training set; fresh examples for infinite data). The loss is the cross-entropy of the training
objective (`train.per_target_nll` with the batch's target weights, the loss dtype of the config)
without the L1 penalty and without dropout: the LLC measures the degeneracy of the fit to the
data, and the L1 term (like AdamW's decoupled weight decay, which is no loss term at all) is a
prior, not part of it. nβ is per run n / log n with n = `task.num_train` (for infinite data its
nominal 10 · batch_size), unless a fixed nβ is given.

One program for the whole workdir: jit(vmap over a batch of checkpoints (vmap over runs (vmap
over chains (scan over SGLD steps)))), compiled once (the last batch is padded by repeating a
checkpoint). Keys: fold_in(fold_in(key(seed), run), epoch): a checkpoint's value depends on the
seed, the run and the epoch only, not on which other checkpoints are computed with it.

Files, per run i (under WORKDIR/analysis/):
  run_{i:04d}.csv             the per-checkpoint table, gains columns llc, llc_std (over chains)
                              and llc_loss_init (the baseline L(w*)). Modular tasks: merged by
                              epoch into the table of `grokjax.analysis` (run that first). Other
                              tasks (no modular analysis): this module writes the table: epoch,
                              train/test loss and accuracy and the per-group test losses of
                              metrics.jsonl at the checkpoint epochs, sum_sq_weights.
  run_{i:04d}_llc_traces.npz  epoch (E,), llc, llc_std, loss_init, nbeta (E,), llc_per_chain
                              (E, C), loss_trace (E, C, draws) float32, the trace_health fields
                              (E,), and `settings` (a JSON string: the sampler settings and seed).
Incremental and resumable: only the chosen checkpoints whose row lacks `llc` are computed (values
kept in the npz are reused, e.g. after the modular analysis rebuilt a table); files are rewritten
after every batch of checkpoints. Changing any sampler setting or the seed recomputes every
checkpoint (λ̂ depends on ε, γ, nβ: compare checkpoints only at one setting).

Defaults (`DEFAULT`), chosen with `experiments.llc_calibrate` on the quick run (p = 113, 40 % of
pairs, the mainline model: 226k parameters; n = 5107, nβ = n / log n = 598) at its memorised
(epoch 200, train loss 0.024), circuit-forming (1000, 4e-6) and cleaned-up (4000, 1e-7)
checkpoints, grids ε ∈ {1e-5, 3e-5, 1e-4} (and 3e-6 … 1e-3) × nβ ∈ n/log n × {¼, 1, 4}, γ ∈
{100, 1e3, 1e4} (README, "The local learning coefficient"):
  * γ = 1000: the posterior's width in a direction the loss ignores is 1/√γ = 0.03 per
    parameter, a quarter to a half of the parameters' rms (0.13 at epoch 200, 0.065 at 4000). With llc.py's generic γ = 100 (0.1 per
    parameter) the chains do not stay local: at the memorised checkpoint they climb to a mean
    loss of 5.5 nats, worse than chance (4.7), and no ε both settles within 300 steps and stays
    finite. With γ = 1e4 they stay local but every direction is flatter than γ/nβ, so λ̂ at
    the grokked checkpoint is ≈ 1e-4, proportional to nβ: a curvature, not a count.
  * ε = 3e-5: at γ = 1e3 and nβ = n/log n, ε = 1e-4 makes the memorised checkpoint's chains
    oscillate (λ̂ 1380 instead of ≈ 500) and 4·nβ diverge; ε = 1e-5 needs > 200 steps to
    settle. At 3e-5 every trace settles within ≈ 100 steps and λ̂ moves by 9–15 % from
    ε = 1e-5 (517 / 67 / 0.38 at epochs 200 / 1000 / 4000).
  * 150 burn-in steps, 200 draws, 4 chains (spread over chains: 1 % of λ̂ at epoch 200, 6 % at
    1000, 18 % at 4000 where λ̂ ≈ 0.4 and the trace is a few spikes of single hard batches),
    minibatches of 256, 8 baseline batches.
A model of another size, task or data size needs its own check (`experiments.llc_calibrate`):
keep the chains local (mean draw loss L̄ well below chance) and finite, settled after the
burn-in, and λ̂ insensitive to ε.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import checkpoint, llc, results, sweep, tasks, train, x64
from grokjax.lock import WorkdirLock

ANALYSIS = "analysis"
COLUMNS = ("llc", "llc_std", "llc_loss_init")
TRACES = "_llc_traces.npz"
# Checkpoints per call of the compiled program. 1: on the 2-core CPU a vmapped pair of the quick
# run's checkpoints took 12.2 s per checkpoint against 10.5 s one at a time, and compiled in 41 s
# against 24 s (benchmarks/llc_throughput.py --limit=3 --ckpt_batch=1/2, loaded machine).
CKPT_BATCH = 1
DEFAULT = llc.LLCConfig(epsilon=3e-5, gamma=1000.0, nbeta=None, num_chains=4, num_draws=200,
                        num_burnin=150, thin=1, batch_size=256, num_baseline_batches=8)


def _log_default(s: str) -> None:
  print(s, file=sys.stderr, flush=True)


def _file(workdir: str, run: int, suffix: str) -> str:
  return os.path.join(workdir, ANALYSIS, f"run_{run:04d}{suffix}")


# ----------------------------------------------------------------------------- the estimator

def objective(prog: train.Program) -> llc.LossFn:
  """(params, batch) -> the weighted mean cross-entropy of the training objective (no L1, no
  dropout)."""
  def loss(params, batch):
    nll, _ = train.per_target_nll(prog, params, batch)
    w = batch.weights.reshape(-1).astype(nll.dtype)
    return jnp.sum(w * nll) / jnp.sum(w)
  return loss


def run_nbeta(prog: train.Program, settings: llc.LLCConfig, data: Any) -> jax.Array:
  """nβ of one run: settings.nbeta, or n / log n with n = task.num_train (traced)."""
  if settings.nbeta is not None:
    return jnp.float32(settings.nbeta)
  n = prog.task.num_train(data).astype(jnp.float32)
  return n / jnp.log(n)


def estimate_run(prog: train.Program, settings: llc.LLCConfig, params: Any, run: train.RunData,
                 shared: Any, key: jax.Array) -> dict[str, jax.Array]:
  """`llc.estimate` at one run's checkpoint `params` (pure; vmap it over runs)."""
  sample = lambda k: prog.task.train_sample(run.data, shared, k, settings.batch_size)
  return llc.estimate_traced(objective(prog), params, sample, settings, key, settings.epsilon,
                             run_nbeta(prog, settings, run.data))


def checkpoint_key(seed: int | jax.Array, run: int | jax.Array,
                   epoch: int | jax.Array) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), run), epoch)


@functools.lru_cache(maxsize=8)
def program(cfg, settings: llc.LLCConfig) -> Callable:
  """jit((params (K, R, ...), run_data (R), shared, seed, run ids (R,), epochs (K,)) ->
  estimates (K, R, ...)), true float32 matmuls (as the analysis)."""
  prog = train.program(cfg)

  def one(params, run, shared, seed, run_id, epoch):
    out = estimate_run(prog, settings, params, run, shared, checkpoint_key(seed, run_id, epoch))
    out.update(llc.trace_health(out["loss_trace"], out["loss_init"]))
    out["llc"] = out.pop("llc_mean")
    return out

  over_runs = jax.vmap(one, in_axes=(0, 0, None, None, 0, None))
  over_ckpts = jax.vmap(over_runs, in_axes=(0, None, None, None, None, 0))

  def f(*args):
    with jax.default_matmul_precision("highest"):
      return over_ckpts(*args)
  return jax.jit(f)


def settings_json(settings: llc.LLCConfig, seed: int) -> str:
  return json.dumps(dict(dataclasses.asdict(settings), seed=seed), sort_keys=True)


# ----------------------------------------------------------------------------- tables

def _read_table(path: str) -> tuple[list[str], dict[int, dict]]:
  """(column order, {epoch: row}) of a per-checkpoint csv ([] and {} when absent)."""
  import pandas as pd
  if not os.path.exists(path):
    return [], {}
  df = pd.read_csv(path)
  return list(df.columns), {int(r["epoch"]): r for r in df.to_dict("records")}


def _write_table(path: str, columns: list[str], rows: dict[int, dict]) -> None:
  import pandas as pd
  cols = list(columns)
  for r in rows.values():
    cols += [c for c in r if c not in cols]
  cols = [c for c in cols if c not in COLUMNS] + [c for c in COLUMNS if c in cols]  # llc last
  df = pd.DataFrame([rows[e] for e in sorted(rows)], columns=cols)
  df["epoch"] = df["epoch"].astype(int)
  tmp = path + ".tmp"
  df.to_csv(tmp, index=False, float_format="%.10g")
  os.replace(tmp, path)


def _missing(row: dict, col: str = "llc") -> bool:
  v = row.get(col)
  return v is None or (isinstance(v, float) and math.isnan(v))


def base_row(metrics: dict | None, group_names: tuple[str, ...], params: Any) -> dict:
  """A row of the table this module writes for tasks without the modular analysis."""
  row: dict[str, Any] = {}
  for k in ("train_loss", "test_loss", "train_acc", "test_acc") + tuple(
      f"test_loss_{g}" for g in group_names):
    v = None if metrics is None else metrics.get(k)
    row[k] = float("nan") if v is None else float(v)
  row["sum_sq_weights"] = float(sum(np.sum(np.square(x, dtype=np.float64))
                                    for x in jax.tree.leaves(params)))
  return row


class _Traces:
  """One run's npz of per-checkpoint estimates, kept in memory and rewritten whole."""
  KEYS = ("llc", "llc_std", "loss_init", "nbeta", "llc_per_chain", "loss_trace",
          "frac_nonfinite", "frac_negative", "drift", "healthy")

  def __init__(self, path: str, settings: str, log: Callable[[str], None]):
    self.path, self.settings, self.by_epoch = path, settings, {}
    self.reset = False
    if not os.path.exists(path):
      return
    try:
      with np.load(path) as z:
        old = str(z["settings"])
        if old != settings:
          log(f"{path}: LLC settings changed ({old} -> {settings}); recomputing every "
              "checkpoint of this run")
          self.reset = True
          return
        for j, e in enumerate(z["epoch"]):
          self.by_epoch[int(e)] = {k: z[k][j] for k in self.KEYS}
    except (OSError, ValueError, KeyError) as err:
      log(f"warning: {path} unreadable ({err}); recomputing")
      self.reset = True

  def add(self, epoch: int, out: dict[str, np.ndarray]) -> None:
    self.by_epoch[epoch] = {k: np.asarray(out[k]) for k in self.KEYS}

  def save(self) -> None:
    es = sorted(self.by_epoch)
    arrs = {k: np.stack([self.by_epoch[e][k] for e in es]) for k in self.KEYS}
    arrs["loss_trace"] = arrs["loss_trace"].astype(np.float32)
    tmp = self.path + ".tmp.npz"
    np.savez(tmp, epoch=np.asarray(es, np.int64), settings=np.asarray(self.settings), **arrs)
    os.replace(tmp, self.path)


def row_values(out: dict[str, np.ndarray]) -> dict[str, float]:
  return dict(llc=float(out["llc"]), llc_std=float(out["llc_std"]),
              llc_loss_init=float(out["loss_init"]))


# ----------------------------------------------------------------------------- the workdir

def chosen_epochs(epochs: list[int], every: int, checkpoint_every: int) -> list[int]:
  """Every `every`-th checkpoint (epoch / checkpoint_every divisible by `every`) and the last."""
  if every < 1:
    raise ValueError(f"--llc_every: must be >= 1, got {every}")
  return [e for e in epochs if (e // checkpoint_every) % every == 0 or e == epochs[-1]]


@x64.of_workdir
def analyze_workdir(workdir: str, settings: llc.LLCConfig | None = None, *, every: int = 1,
                    seed: int = 0, with_llc: bool = True, ckpt_batch: int = CKPT_BATCH,
                    runs: Sequence[int] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
  """Writes the LLC (and, for non-modular tasks, the per-checkpoint table) of `workdir`.

  Holds the workdir's analysis lock. Returns dict(computed=number of (checkpoint, run)
  estimates computed now, reused=taken from the npz files, epochs=the chosen epochs).
  With with_llc=False only the tables of non-modular tasks are written. `runs`: the run ids to
  estimate (default all; the others' tables are still written for non-modular tasks); a value
  does not depend on which other runs are estimated with it."""
  log = log or _log_default
  settings = settings or DEFAULT
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{workdir}: no such directory")
  with WorkdirLock(workdir, "analysis", log):
    return _analyze(workdir, settings, every, seed, with_llc, max(1, ckpt_batch), runs, log)


def _analyze(workdir, settings, every, seed, with_llc, ckpt_batch, only, log) -> dict[str, Any]:
  cfg = results.load_config(workdir)
  runs = sweep.grid(cfg)  # the config's grid (sweep.json of older workdirs lacks some axes)
  all_ids = [r["run"] for r in runs]
  if only is not None:
    bad = sorted(set(only) - set(all_ids))
    if bad or not only:
      raise ValueError(f"--llc_runs: {bad or 'empty'} not among the runs {all_ids} of {workdir}")
  est = sorted(set(all_ids if only is None else only))   # the runs whose LLC is estimated
  prog = train.program(cfg)
  modular = tasks.is_modular(cfg.task)
  rows_m = results.read_metrics_rows(workdir)
  progress = results.progress(workdir, rows_m)
  final = progress.final_epoch
  epochs = [e for e in checkpoint.param_epochs(workdir) if final is not None and e <= final]
  if not epochs:
    raise results.WorkdirError(f"{workdir}: no parameter checkpoints (train the sweep first)")
  if not progress.finished:
    log(f"note: {workdir}: {progress.text()}; using the checkpoints up to epoch {epochs[-1]}")
  os.makedirs(os.path.join(workdir, ANALYSIS), exist_ok=True)
  metrics = {(r["run"], r["epoch"]): r for r in rows_m}
  ids = [r["run"] for r in runs]
  cols, tables, base = {}, {}, {}
  for i in ids:
    cols[i], tables[i] = _read_table(_file(workdir, i, ".csv"))
    # Modular tables are the modular analysis's; rows are only added where there is none.
    base[i] = set(epochs) - set(tables[i]) if (not modular or not tables[i]) else set()
    if not modular:  # rows read while a resumed sweep rewrote its metrics: filled in now
      base[i] |= {e for e, r in tables[i].items()
                  if e in epochs and _missing(r, "train_loss") and (i, e) in metrics}
    if not cols[i]:
      cols[i] = ["epoch", "train_loss", "test_loss"]
  chosen = chosen_epochs(epochs, every, cfg.train.checkpoint_every) if with_llc else []
  sjson = settings_json(settings, seed)
  traces, todo, reused = {}, {}, 0
  dirty = {i for i in ids if base[i]}   # tables to rewrite before the LLC loop
  for i in ids:
    if not with_llc or i not in est:
      todo[i] = set()
      continue
    traces[i] = _Traces(_file(workdir, i, TRACES), sjson, log)
    if traces[i].reset:
      dirty.add(i)
      for r in tables[i].values():
        for c in COLUMNS:
          r.pop(c, None)
    want = {e for e in chosen if e in base[i] or (e in tables[i] and _missing(tables[i][e]))}
    for e in sorted(want & set(traces[i].by_epoch)):   # kept in the npz: nothing to compute
      tables[i].setdefault(e, {"epoch": e}).update(row_values(traces[i].by_epoch[e]))
      want.discard(e)
      reused += 1
      dirty.add(i)
    todo[i] = want
  reader = checkpoint.ParamsReader(workdir)

  def read(e: int) -> Any:
    try:
      return reader(e)
    except (results.WorkdirError, FileNotFoundError) as err:
      log(f"warning: {err}; its rows are left out")
      return None

  grown: set[int] = set()   # tables that gained rows since they were last written

  def add_base(e: int, params: Any) -> None:
    for i in ids:
      if e in base[i]:
        row = {"epoch": e, **base_row(metrics.get((i, e)), prog.task.group_names,
                                       jax.tree.map(lambda t: t[i], params))}
        tables[i][e] = {**tables[i].get(e, {}), **row}
        base[i].discard(e)
        grown.add(i)

  llc_epochs = sorted(set().union(*todo.values()))
  for e in sorted(set().union(*base.values()) - set(llc_epochs)):
    params = read(e)
    if params is not None:
      add_base(e, params)
  for i in sorted(dirty):
    if tables[i]:
      _write_table(_file(workdir, i, ".csv"), cols[i], tables[i])
  grown.clear()   # every table with rows added so far was dirty: written
  computed = 0
  if llc_epochs:
    lanes = [ids.index(i) for i in est]
    run_data, shared = sweep.build_data(cfg, [runs[k] for k in lanes], len(lanes))
    fn = program(cfg, settings)
    run_ids = jnp.asarray(est, jnp.int32)
    total, t0, done = len(llc_epochs), time.time(), 0
    log(f"llc: {total} checkpoints × {len(est)} runs × {settings.num_chains} chains × "
        f"{settings.num_steps} SGLD steps (batch {settings.batch_size}, ε {settings.epsilon:g}, "
        f"γ {settings.gamma:g}, nβ "
        f"{'n/log n' if settings.nbeta is None else format(settings.nbeta, 'g')})")
    for b in range(0, total, ckpt_batch):
      batch = [(e, p) for e in llc_epochs[b:b + ckpt_batch] for p in [read(e)] if p is not None]
      if not batch:
        continue
      for e, p in batch:
        add_base(e, p)
      picks = batch + [batch[-1]] * (ckpt_batch - len(batch))
      params = jax.tree.map(lambda *ts: np.stack(ts)[:, lanes], *[p for _, p in picks])
      out = jax.device_get(fn(params, run_data, shared, seed, run_ids,
                              jnp.asarray([e for e, _ in picks], jnp.int32)))
      for k, (e, _) in enumerate(batch):
        for j, i in enumerate(est):
          if e in todo[i]:
            one = {key: v[k, j] for key, v in out.items()}
            traces[i].add(e, one)
            tables[i][e].update(row_values(one))
            computed += 1
      for i in ids:
        if any(e in todo[i] for e, _ in batch):
          traces[i].save()
        if i in grown or any(e in todo[i] for e, _ in batch):
          _write_table(_file(workdir, i, ".csv"), cols[i], tables[i])
          grown.discard(i)
      done += len(llc_epochs[b:b + ckpt_batch])
      rate = done / max(time.time() - t0, 1e-9)
      log(f"llc: {done}/{total} checkpoints ({rate:.2f}/s, ETA {(total - done) / rate:.0f}s)")
  reader.close()
  if with_llc and not llc_epochs:
    log(f"llc: all {len(chosen)} chosen checkpoints of {len(ids)} runs already have an LLC"
        + (f" ({reused} taken from the trace files)" if reused else ""))
  if with_llc:
    bad = [(i, e) for i in est for e, v in traces[i].by_epoch.items() if not bool(v["healthy"])]
    if bad:
      log(f"llc: {len(bad)} of {sum(len(t.by_epoch) for t in traces.values())} estimates have "
          "unhealthy traces (llc.trace_health: non-finite, negative or drifting); see "
          "experiments.llc_calibrate")
  return dict(computed=computed, reused=reused, epochs=chosen)
