"""Calibrate the LLC sampler on one checkpoint: a grid of SGLD step sizes ε × inverse
temperatures nβ, vmapped in one compiled program with the same randomness in every cell.

  python -m experiments.llc_calibrate --workdir=D [--run=0] [--epoch=last]
      [--epsilons=1e-5,3e-5,1e-4] [--nbetas=...] [--gamma=100] [--chains=4]
      [--draws=400] [--burnin=100] [--batch_size=256] [--seed=0]

Writes D/figures/llc_calibration[_run{R}_epoch{E}].png (every cell's chains' per-step estimate
nβ·(L_t − L(w*)) with the burn-in shaded; the estimate ± spread over chains against ε, one line
per nβ, cells that fail llc.trace_health crossed) and the same numbers as JSON in
D/analysis/llc_calibration[...].json (D/figures and D/analysis: --out_dir to write elsewhere).
Pick the largest ε whose cells are healthy and whose estimate no longer moves with ε (too
small: the trace still climbs; too large: it explodes or turns negative) and use it with
`experiments.analyze --llc --llc_epsilon=...`. nβ defaults to n/log n × (1/4, 1, 4).
"""
from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("workdir", None, "A trained sweep's workdir.")
flags.DEFINE_integer("run", 0, "The run.")
flags.DEFINE_string("epoch", "last", "The checkpoint epoch ('last': the newest).")
flags.DEFINE_list("epsilons", ["1e-5", "3e-5", "1e-4"], "SGLD step sizes ε.")
flags.DEFINE_list("nbetas", [], "Inverse temperatures nβ (default: n/log n × 1/4, 1, 4).")
flags.DEFINE_float("gamma", None, "Localisation γ (default: llc_analysis.DEFAULT's).")
flags.DEFINE_integer("chains", None, "Chains per cell.")
flags.DEFINE_integer("draws", None, "Draws per chain after the burn-in.")
flags.DEFINE_integer("burnin", None, "Burn-in steps.")
flags.DEFINE_integer("batch_size", None, "SGLD minibatch size.")
flags.DEFINE_integer("seed", 0, "PRNG seed (keys fold in the run and the epoch).")
flags.DEFINE_string("out_dir", None, "Write the PNG and JSON here instead of D/figures, "
                    "D/analysis (for a read-only workdir).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def _jsonable(rec: dict) -> dict:
  import math
  import numpy as np
  def clean(x):
    if isinstance(x, dict):
      return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
      return clean(x.tolist())
    if isinstance(x, (np.floating, float)):
      return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
      return x.item()
    return x
  out = {k: clean(v) for k, v in rec.items() if k != "loss_trace"}
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import dataclasses
  import os
  import time
  from grokjax import llc_analysis, llc_calibration, plotting_llc, results
  wd = FLAGS.workdir
  if not os.path.isdir(wd):
    raise results.WorkdirError(f"--workdir: {wd} does not exist")
  over = dict(gamma=FLAGS.gamma, num_chains=FLAGS.chains, num_draws=FLAGS.draws,
              num_burnin=FLAGS.burnin, batch_size=FLAGS.batch_size)
  settings = dataclasses.replace(llc_analysis.DEFAULT,
                                 **{k: v for k, v in over.items() if v is not None})
  epoch = None if FLAGS.epoch == "last" else int(FLAGS.epoch)
  eps = [float(x) for x in FLAGS.epsilons]
  nbetas = [float(x) for x in FLAGS.nbetas] or None
  t0 = time.time()
  rec = llc_calibration.calibrate_workdir(wd, FLAGS.run, epoch, eps, nbetas, settings, FLAGS.seed)
  secs = time.time() - t0
  rec["seconds"] = secs
  tag = "" if (FLAGS.run == 0 and FLAGS.epoch == "last") else \
      f"_run{FLAGS.run}_epoch{rec['epoch']}"
  fig_dir = FLAGS.out_dir or os.path.join(wd, "figures")
  json_dir = FLAGS.out_dir or os.path.join(wd, "analysis")
  os.makedirs(fig_dir, exist_ok=True)
  os.makedirs(json_dir, exist_ok=True)
  png = os.path.join(fig_dir, f"llc_calibration{tag}.png")
  plotting_llc.calibration_figure(rec).savefig(png, dpi=100)
  js = os.path.join(json_dir, f"llc_calibration{tag}.json")
  results.write_json(js, _jsonable(rec))
  for a, e in enumerate(rec["epsilon"]):
    cells = "  ".join(f"nβ {b:.0f}: {rec['llc_mean'][a, j]:8.3g} ± {rec['llc_std'][a, j]:.2g}"
                      f" (L̄ {rec['mean_loss'][a, j]:.2g})"
                      + ("" if rec["healthy"][a, j] else " (!)")
                      for j, b in enumerate(rec["nbeta"]))
    print(f"ε {e:.1e}  {cells}")
  print(f"run {rec['run']} epoch {rec['epoch']}: n {rec['n']}, L(w*) {rec['loss_init']:.4g}, "
        f"chance {rec['chance_loss']:.3g}; L̄ = mean draw loss; (!) = unhealthy trace; "
        f"{secs:.0f}s; wrote {png}, {js}")


if __name__ == "__main__":
  from grokjax import console
  console.run_app(main, resumable=False)
