"""The report lists only figures that exist, cites a source for every paper number, and the
plot entry point works on a workdir without analysis."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import synthetic_workdir
from grokjax import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A few figures of each kind (metrics, final analysis, curves, sweep) keep the test fast;
# plotting_test renders every figure.
SPECS = tuple(s for s in report.figures.MODULAR
              if s.name in ("fig02_train_test", "fig03_fourier_norms", "fig07_progress_measures",
                            "phase_diagram"))


def _images(md: str) -> list[str]:
  return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  path = synthetic_workdir.make(str(tmp_path_factory.mktemp("full")))
  manifest = report.render_figures(path, dpi=30, specs=SPECS, echo=lambda s: None)
  report.write_report(path, manifest)
  return path


def test_report_references_only_existing_figures(full):
  md = open(os.path.join(full, "report.md")).read()
  imgs = _images(md)
  assert len(imgs) == len(SPECS)  # the synthetic workdir supports every figure
  for img in imgs:
    assert os.path.exists(os.path.join(full, img)), img


def test_paper_vs_grokjax_rows_cite_sources(full):
  rows = report.comparison_rows(report.Workdir(full))
  assert len(rows) >= 15
  for quantity, paper_value, source, ours, note in rows:
    assert "SPEC §" in source, (quantity, source)
  names = " ".join(r[0] for r in rows)
  for q in ("Grokking epoch", "Phase ends", "Key frequencies", "Final train / test loss",
            "Gini", "FVE", "phase boundary", "Train-loss spikes after grokking"):
    assert q in names


def test_tables_render(full):
  wd = report.Workdir(full)
  assert "FVE (paper)" in report.table1_markdown(wd)
  assert "FVE (paper)" in report.table2_markdown(wd) and "99.0" in report.table2_markdown(wd)
  others = [r for r in wd.analysed_runs() if r != wd.main_run()]
  assert others  # the synthetic workdir has several analysed runs
  t3 = report.table3_markdown(wd)
  assert t3.count("\n") == 1 + sum(len(wd.final(r)["table1_fve"]) // 2 for r in others)
  t4 = report.table4_markdown(wd)
  assert t4.count("\n") == 1 + len(wd.analysed_runs()) and "key freqs removed" in t4
  t5 = report.table5_markdown(wd)
  assert t5.count("\n") == 1 + len(wd.analysed_runs())
  assert "never" in report.grok_markdown(wd) and "spikes after that" in report.grok_markdown(wd)
  assert report.spikes_text([(26690, 0.0164), (30150, 0.212)]) == "26 690 (0.016), 30 150 (0.21)"
  assert report.spikes_text([(e, 1.0) for e in range(6)], most=4).endswith("+2 more")
  grid = report.phase_grid_markdown(wd)
  assert "λ = 0 | never" in grid and "frac 0.6" in grid


def test_rerun_after_losing_analysis_drops_stale_figures(tmp_path, full):
  path = str(tmp_path / "wd")
  shutil.copytree(full, path)
  shutil.rmtree(os.path.join(path, "analysis"))
  manifest = report.render_figures(path, dpi=30, specs=SPECS, echo=lambda s: None)
  md = open(report.write_report(path, manifest)).read()
  for img in _images(md):
    assert os.path.exists(os.path.join(path, img))
  assert not os.path.exists(os.path.join(path, "figures", "fig07_progress_measures.png"))
  assert "Figures not drawn" in md and "experiments.analyze" in md


def test_only_some_figures_keep_the_others(tmp_path, full):
  path = str(tmp_path / "wd")
  shutil.copytree(full, path)
  before = os.path.getmtime(os.path.join(path, "figures", "fig07_progress_measures.png"))
  manifest = report.render_figures(path, dpi=30, specs=SPECS, echo=lambda s: None,
                                   only=["fig02_train_test"])
  assert [e["name"] for e in manifest] == [s.name for s in SPECS]
  assert all("file" in e for e in manifest)  # the others keep their last drawing's entries
  assert os.path.getmtime(os.path.join(path, "figures", "fig07_progress_measures.png")) == before
  os.remove(os.path.join(path, "figures", "fig03_fourier_norms.png"))  # a kept file went missing
  manifest = report.render_figures(path, dpi=30, specs=SPECS, echo=lambda s: None,
                                   only=["fig02_train_test"])
  assert {e["name"]: e.get("skipped") for e in manifest}["fig03_fourier_norms"] == (
      "not drawn (--figures)")
  with pytest.raises(report.ConfigError, match="--figures: no figure fig99; the figures: fig02"):
    report.render_figures(path, specs=SPECS, only=["fig99"])
  # the command line refuses an unknown name before anything else
  r = subprocess.run([sys.executable, "-m", "experiments.reproduce", f"--workdir={path}/new",
                      "--figures=fig02_train_test,fig99"], cwd=ROOT, capture_output=True,
                     text=True)
  assert r.returncode == 2 and "--figures: no figure fig99" in r.stderr, r.stderr
  assert not os.path.exists(f"{path}/new")


def test_plot_entry_point(tmp_path):
  path = synthetic_workdir.make(str(tmp_path / "wd"), wds=(1.0,), analysis=False)
  subprocess.run([sys.executable, "-m", "experiments.plot", f"--workdir={path}", "--dpi=30"],
                 cwd=ROOT, check=True, capture_output=True)
  manifest = json.load(open(os.path.join(path, "figures", "manifest.json")))
  assert any("file" in e for e in manifest) and any("skipped" in e for e in manifest)
  md = open(os.path.join(path, "report.md")).read()
  for img in _images(md):
    assert os.path.exists(os.path.join(path, img))


def test_reproduce_entry_point_reuses_a_workdir(tmp_path):
  """reproduce on a workdir whose training and analysis are done: plot + report only."""
  path = synthetic_workdir.make(str(tmp_path / "wd"), wds=(1.0,), analysis=False)
  r = subprocess.run([sys.executable, "-m", "experiments.reproduce", f"--workdir={path}",
                      "--skip_sweep", "--skip_analysis", "--dpi=30"], cwd=ROOT, capture_output=True,
                     text=True)
  assert r.returncode == 0, r.stderr
  assert "4/4 report" in r.stderr
  md = open(os.path.join(path, "report.md")).read()
  assert "Paper vs grokjax" in md and _images(md)
