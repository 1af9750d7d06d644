"""The registry of figures: which figure families a workdir gets, in report order.

Each family is a module of figure functions (`plotting.py`: training curves and sweeps;
`plotting_fourier.py`: the algorithm; `plotting_progress.py`: the progress measures;
`plotting_tasks.py`, `plotting_grokfast.py`, `plotting_llc.py`, `plotting_precision.py`); a figure
raises `plotting.Skip` when the workdir lacks what it needs. Figures across several workdirs
(a suite's width scan and precision study) are in `plotting_suite.py`.
"""
from __future__ import annotations

from grokjax import plotting, plotting_fourier, plotting_grokfast, plotting_progress, plotting_tasks
from grokjax import plotting_llc, plotting_precision
from grokjax.config import MODULAR_TASKS
from grokjax.figdata import Workdir

MODULAR = (
    plotting.FigureSpec("fig02_train_test", plotting.fig_train_test,
               "Fig 2: train/test accuracy and loss for every seed of the mainline-like setting "
               "(Fig 22 for a 2-layer model)"),
    plotting.FigureSpec("fig03_fourier_norms", plotting_fourier.fig_fourier_norms,
               "Fig 3: Fourier component norms of W_E and W_L (cos and sin per frequency)"),
    plotting.FigureSpec("fig04_attention_neuron_logits", plotting_fourier.fig_attention_neuron_logits,
               "Fig 4: attention `=`→a (head 0), MLP neuron 0, logits in the 2D Fourier basis"),
    plotting.FigureSpec("fig05_neuron_fve", plotting_fourier.fig_neuron_fve,
               "Fig 5: neuron single-frequency FVE histogram; Ŵ_L columns of one cluster"),
    plotting.FigureSpec("fig06_freq_ablation", plotting_fourier.fig_freq_ablation,
               "Fig 6: loss after ablating each frequency from the logits"),
    plotting.FigureSpec("fig07_progress_measures", plotting_progress.fig_progress_measures,
               "Fig 7: excluded/restricted loss, Gini, sum of squared weights; phases shaded "
               "(Fig 23 for a 2-layer model)"),
    plotting.FigureSpec("fig08_interference", plotting_fourier.fig_interference,
               "Fig 8: constructive interference of the key frequencies"),
    plotting.FigureSpec("fig09_attention_heads", plotting_fourier.fig_attention_heads,
               "Fig 9: attention `=`→a for every head"),
    plotting.FigureSpec("fig10_attention_scores", plotting_fourier.fig_attention_scores,
               "Fig 10: attention score lookup per head in the Fourier basis"),
    plotting.FigureSpec("fig11_ov_circuits", plotting_fourier.fig_ov_circuits,
               "Fig 11: OV circuit output per head in the Fourier basis"),
    plotting.FigureSpec("fig12_neurons", plotting_fourier.fig_neurons, "Fig 12: activations of MLP neurons 1–4"),
    plotting.FigureSpec("fig13_restricted_acc", plotting_progress.fig_restricted_acc, "Fig 13: restricted accuracy"),
    plotting.FigureSpec("fig14_cos_coeffs", plotting_progress.fig_cos_coeffs,
               "Fig 14: coefficients of cos(w_k(a+b−c)) over training"),
    plotting.FigureSpec("fig15_excluded_per_freq", plotting_progress.fig_excluded_per_freq,
               "Fig 15: excluded loss of each key frequency over training"),
    plotting.FigureSpec("fig16_17_seed_norms", plotting_progress.fig_seed_norms, "Figs 16–17: W_E / W_L norms per seed"),
    plotting.FigureSpec("fig18_19_seed_curves", plotting_progress.fig_seed_curves, "Figs 18–19: loss and Gini per seed"),
    plotting.FigureSpec("fig20_frac_sweep", plotting.fig_frac_sweep,
               "Fig 20: data-fraction sweep (Fig 25 at P = 401)"),
    plotting.FigureSpec("fig21_frac_thresholds", plotting.fig_frac_thresholds,
               "Fig 21: epochs until train/test loss < 1e-6 per data fraction"),
    plotting.FigureSpec("fig26_no_wd", plotting.fig_no_wd, "Fig 26: no weight decay"),
    plotting.FigureSpec("fig27_wd_sweep", plotting.fig_wd_sweep,
               "Fig 27: weight-decay sweep (Figs 24–25 at P = 53 / 109 / 401)"),
    plotting.FigureSpec("phase_diagram", plotting.fig_phase_diagram,
               "Beyond the paper: grokking phase diagram over weight decay × data fraction"),
)


def all_names() -> tuple[str, ...]:
  """Every figure name of every task (to check a --figures list before any work)."""
  return tuple(s.name for s in (MODULAR + plotting_precision.FIGURES + plotting_grokfast.FIGURES
                                + plotting_tasks.FIGURES + plotting_llc.FIGURES))


def specs(wd: Workdir) -> tuple[plotting.FigureSpec, ...]:
  """The figures that fit the workdir's task (each may still skip itself)."""
  task = wd.config.get("task", "add")
  if task in MODULAR_TASKS:
    return (MODULAR + plotting_precision.FIGURES + plotting_grokfast.FIGURES
            + plotting_llc.FIGURES)
  regime = "finite" if wd.config.get("num_data", 0) > 0 else "infinite"
  return (tuple(s for s in plotting_tasks.FIGURES if s.name.endswith(f"{task}_{regime}"))
          + plotting_llc.FIGURES)
