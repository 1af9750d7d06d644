"""Every figure renders from a small synthetic workdir; plotting reads files, never trains."""
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

import synthetic_workdir
from grokjax import figdata, figures, paper, plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  return figdata.Workdir(synthetic_workdir.make(str(tmp_path_factory.mktemp("full"))))


@pytest.fixture(scope="module")
def metrics_only(tmp_path_factory):
  return figdata.Workdir(synthetic_workdir.make(str(tmp_path_factory.mktemp("bare")),
                                                wds=(1.0,), analysis=False))


@pytest.mark.parametrize("spec", figures.MODULAR, ids=lambda s: s.name)
def test_every_figure_renders(full, spec, tmp_path):
  fig = spec.func(full)
  assert isinstance(fig, Figure) and fig.axes
  path = tmp_path / f"{spec.name}.png"
  fig.savefig(path, dpi=40)
  assert path.stat().st_size > 1000


def test_metrics_only_workdir_skips_analysis_figures(metrics_only):
  drawn, skipped = [], {}
  for spec in figures.MODULAR:
    try:
      spec.func(metrics_only)
      drawn.append(spec.name)
    except plotting.Skip as e:
      skipped[spec.name] = str(e)
  assert {"fig02_train_test", "fig20_frac_sweep", "fig21_frac_thresholds",
          "phase_diagram"} <= set(drawn)
  assert "experiments.analyze" in skipped["fig07_progress_measures"]
  assert "weight_decay = 0" in skipped["fig26_no_wd"]
  assert "weight_decay" in skipped["fig27_wd_sweep"]


def test_fig21_pools_the_fractions_of_several_sweeps(metrics_only, tmp_path):
  # a second sweep at the same (p, λ) with another fraction, as a CPU suite's frac_low/frac_high
  other = figdata.Workdir(synthetic_workdir.make(str(tmp_path / "b"), wds=(1.0,), fracs=(0.45,),
                                                 analysis=False))
  fig = plotting.frac_thresholds([metrics_only, other])
  means = {l.get_label(): list(l.get_xdata()) for l in fig.axes[0].get_lines()}
  assert means["train loss < 1e-06 (mean)"] == [0.3, 0.45, 0.6]
  with pytest.raises(plotting.Skip, match="2 data fractions"):
    plotting.fig_frac_thresholds(other)
  elsewhere = figdata.Workdir(synthetic_workdir.make(str(tmp_path / "c"), p=13, wds=(1.0,),
                                                     fracs=(0.45,), analysis=False))
  with pytest.raises(plotting.Skip, match="differ in"):
    plotting.frac_thresholds([metrics_only, elsewhere])


def test_fourier_labels_put_cos_before_sin():
  assert plotting.fourier_labels(7) == ["const", "cos 1", "sin 1", "cos 2", "sin 2", "cos 3",
                                        "sin 3"]


def test_phase_grid_marks_never_and_averages_seeds(full):
  g = full.phase_grid().set_index(["weight_decay", "frac_train"])
  assert g.loc[(0.0, 0.3), "phase"] == "never" and np.isnan(g.loc[(0.0, 0.3), "mean_grok"])
  cell = g.loc[(1.0, 0.3)]
  assert cell["n"] == 2 and cell["n_grokked"] == 2
  t = full.grok_table()
  seeds = t[(t.weight_decay == 1.0) & (t.frac_train == 0.3)]["grokked"]
  assert cell["mean_grok"] == pytest.approx(seeds.mean())


def test_reference_curves_only_for_the_same_setting():
  assert [c.label for c in paper.reference_curves(113, 1.0, 0.3)] == [
      "authors (mainline)", "authors (frac sweep)"]
  assert paper.reference_curves(113, 0.1, 0.3)[0].label.startswith("authors (λ=0.1")
  assert paper.reference_curves(53, 1.0, 0.3) == []
  assert paper.reference_curves(113, 0.0, 0.3) == []  # the saved λ=0 run used frac 0.9
  m = paper.mainline_curves()
  assert paper.first_below(m["epochs"], m["test_loss"], 1e-2) == paper.GROK_EPOCH.value


def test_grok_ratio_reproduces_the_papers_frac_classification():
  eps = paper.frac_sweep_epochs()
  phase = {f: "grokking" if e["test"] / e["train"] >= paper.GROK_RATIO else "immediate"
           for f, e in eps.items()}
  assert all(phase[f] == "grokking" for f in (0.3, 0.4, 0.5))
  assert all(phase[f] == "immediate" for f in (0.6, 0.7, 0.8, 0.9))


def test_plotting_never_imports_training_code():
  code = ("import sys, grokjax.plotting, grokjax.report, grokjax.figdata, grokjax.paper; "
          "bad = [m for m in ('grokjax.train', 'grokjax.sweep', 'grokjax.model', "
          "'grokjax.optim', 'grokjax.checkpoint', 'orbax', 'flax', 'optax') if m in sys.modules]; "
          "print(bad); assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
