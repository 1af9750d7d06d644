"""Calibration of the LLC sampler on one checkpoint (`experiments.llc_calibrate`): a grid of SGLD
step sizes ε × inverse temperatures nβ, vmapped in one jitted program (`llc.calibrate`), with the
workdir LLC's loss, data and randomness (`llc_analysis`), so that a grid cell at the workdir's
settings reproduces the workdir's estimate at that checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import checkpoint, llc, results, sweep, train, x64
from grokjax.llc_analysis import DEFAULT, checkpoint_key, objective, settings_json


@x64.of_workdir
def calibrate_workdir(workdir: str, run: int = 0, epoch: int | None = None,
                      epsilons=(1e-5, 3e-5, 1e-4), nbetas=None,
                      settings: llc.LLCConfig | None = None, seed: int = 0) -> dict[str, Any]:
  """`llc.calibrate` on one checkpoint of one run: a grid of (ε, nβ), one jitted program, the
  same randomness in every cell (and the same as `analyze_workdir` at that checkpoint).
  nbetas None: n/log n × (1/4, 1, 4). Returns numpy arrays: llc_mean, llc_std (E, B),
  llc_per_chain (E, B, C), loss_trace (E, B, C, burn-in + draws: the whole chain, the estimate
  uses the draws after the burn-in), the trace_health fields (E, B), mean_loss (E, B: the mean
  draw loss L̄, to compare with L(w*) and with chance_loss = log(classes)), loss_init, epsilon,
  nbeta; and run, epoch, n, default_nbeta, settings."""
  settings = settings or DEFAULT
  cfg = results.load_config(workdir)
  runs = sweep.grid(cfg)
  lane = next((j for j, r in enumerate(runs) if r["run"] == run), None)
  if lane is None:
    raise ValueError(f"--run: no run {run} in {workdir} (runs 0..{len(runs) - 1})")
  with checkpoint.ParamsReader(workdir) as reader:
    if epoch is None:
      epoch = reader.epochs()[-1]
    params = jax.tree.map(lambda t: jnp.asarray(t[lane]), reader(epoch))
  prog = train.program(cfg)
  run_data, shared = sweep.build_data(cfg, runs, len(runs))
  one = jax.tree.map(lambda t: jnp.asarray(t[lane]), run_data)
  shared = jax.tree.map(jnp.asarray, shared)
  n = int(prog.task.num_train(one.data))
  if nbetas is None:
    nbetas = [llc.default_nbeta(n) * f for f in (0.25, 1.0, 4.0)]
  # The whole chain as draws (same steps and keys as with the burn-in): the figure shows it.
  whole = dataclasses.replace(settings, num_burnin=0,
                              num_draws=settings.num_burnin + settings.num_draws * settings.thin,
                              thin=1)
  sample = lambda k: prog.task.train_sample(one.data, shared, k, settings.batch_size)
  with jax.default_matmul_precision("highest"):
    out = llc.calibrate(objective(prog), params, sample, n, whole,
                        checkpoint_key(seed, run, epoch), epsilons, nbetas)
  out = jax.tree.map(np.asarray, jax.device_get(out))
  draws = out["loss_trace"][..., settings.num_burnin::settings.thin]
  per_chain = out["nbeta"][None, :, None] * (draws.mean(-1) - out["loss_init"])
  out.update(llc_per_chain=per_chain, llc_mean=per_chain.mean(-1),
             llc_std=per_chain.std(-1, ddof=1 if settings.num_chains > 1 else 0),
             mean_loss=draws.mean((-2, -1)), chance_loss=math.log(cfg.model.d_vocab_out))
  out.update(jax.tree.map(np.asarray, llc.trace_health(draws, np.broadcast_to(
      out["loss_init"], per_chain.shape[:2]))))
  out.update(run=run, epoch=int(epoch), n=n, settings=json.loads(settings_json(settings, seed)),
             default_nbeta=llc.default_nbeta(n))
  return out
