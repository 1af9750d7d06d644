"""The FLOP-count model of a sweep's cost: the plan's instant time estimate (`--nomeasure`, and
the fallback of `grokjax.suite_timing`), on the reference 2-core CPU.

`estimate_s`:
  epochs × (STEP_OVERHEAD_S + runs × MODEL_EPOCH_S × work / MAINLINE_WORK) + per-sweep overhead
  + analysis, with `work` a count of multiply-adds per epoch (training rows × 3 for the backward,
  evaluation rows × 1). MODEL_EPOCH_S is calibrated on this project's 2-core CPU (one mainline
  run 31 ms per epoch, 16 vmapped runs 34 ms per model-epoch: benchmarks/RESULTS.md); it is
  within a factor ≈ 1.5 for the paper's one-layer shapes on a similar CPU, but ≈ 3.5x low for
  the 2-layer attention-only induction model. The analysis term (per checkpoint and run) is used
  by every source.
"""
from __future__ import annotations

STEP_OVERHEAD_S = 0.009   # per epoch, independent of size (≈ 190 small operations per step)
MODEL_EPOCH_S = 0.031     # one mainline model-epoch's work (p = 113, frac 0.3, d_model 128)
SWEEP_OVERHEAD_S = 90.0   # start-up, compiles of the sweep and the analysis, figures, report
ANALYSIS_CKPT_S = 0.024   # per checkpoint and run at the mainline size (9.5 s / 400 checkpoints)


def _work_per_epoch(cfg) -> float:
  """Multiply-adds per epoch of one run (see the module docstring)."""
  m, t = cfg.model, cfg.train
  d, f = m.d_model, m.d_mlp if m.use_mlp else 0
  block = 4 * d * d + 2 * d * f + 2 * m.n_ctx * d          # QKVO, MLP, attention mixing
  if cfg.task in _modular_tasks():
    p = cfg.p
    train_rows = max(int(fr * p * p) for fr in cfg.sweep.frac_train)
    eval_rows = p * p / t.eval_every
  else:
    train_rows = cfg.num_data or cfg.batch_size
    eval_rows = cfg.eval_size / t.eval_every
  one_position = m.num_layers == 1 and m.use_mlp and cfg.task in _modular_tasks()
  per_row = (2 * d * f + d * m.d_vocab_out if one_position          # the one-layer fast path
             else m.n_ctx * (m.num_layers * block + d * m.d_vocab_out))
  return (3 * train_rows + eval_rows) * per_row


def _modular_tasks() -> tuple[str, ...]:
  from grokjax.config import MODULAR_TASKS
  return tuple(MODULAR_TASKS)


def _mainline_work() -> float:
  from grokjax.config import make_config
  return _work_per_epoch(make_config())


def model_s_per_epoch(cfg) -> float:
  """The FLOP-count model's seconds per epoch of the whole sweep (see the module docstring)."""
  scale = _work_per_epoch(cfg) / _mainline_work()
  return STEP_OVERHEAD_S + cfg.sweep.num_runs * MODEL_EPOCH_S * scale


def analysis_s(cfg) -> float:
  """The modelled analysis time: per checkpoint and run, scaled by the model's size."""
  if cfg.task not in _modular_tasks():
    return 0.0
  ckpts = cfg.train.num_epochs // cfg.train.checkpoint_every + 1
  size = (cfg.p / 113) ** 2 * (max(cfg.model.d_mlp, cfg.model.d_model) / 512)
  return ckpts * cfg.sweep.num_runs * ANALYSIS_CKPT_S * max(size, 0.05)


def estimate_s(cfg) -> float:
  """The model's seconds to train, analyse and report one sweep on the reference CPU."""
  return cfg.train.num_epochs * model_s_per_epoch(cfg) + analysis_s(cfg) + SWEEP_OVERHEAD_S
