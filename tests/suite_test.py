"""The suite runner end to end on a tiny 2-sweep suite (a 2-layer and an attention-only model,
p = 23, 200 epochs; one CLI run, shared by every test of this module), and what it leaves: the
analysis that fits each model (the final block's MLP for 2 layers; the MLP / W_L measures
skipped and recorded for attention-only), Table 6 against a direct computation, the suite
report, and a rerun that skips the finished sweeps."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from grokjax import (checkpoint, data, evidence, measures, model, report, results, suite,
                     suite_cost, suite_index, suite_timing)
from grokjax.config import ModelConfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TINY = "--p=23 --d_model=16 --num_epochs=200 --checkpoint_every=100 --eval_every=10"
# A sweep line takes experiments.reproduce's flags too: each sweep draws only some figures
# (plotting_test draws every figure; these read what differs for 2 layers / no MLP).
TWO_FIGURES = "fig02_train_test,fig03_fourier_norms,fig05_neuron_fve,fig07_progress_measures"
ATTN_FIGURES = "fig02_train_test,fig03_fourier_norms,loss_precision"
SUITE = f"""# a tiny suite

# Figs 22-23: a 2-layer model
sweep two_layer {TINY} --num_layers=2 --figures={TWO_FIGURES}
sweep attn_only {TINY} --attn_only --loss_dtype=float32 --figures={ATTN_FIGURES}
figure loss_precision two_layer attn_only
figure regularisers two_layer attn_only
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory):
  base = tmp_path_factory.mktemp("suite")
  path, root = str(base / "tiny.suite"), str(base / "runs")
  with open(path, "w") as f:
    f.write(SUITE)
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, "-m", "experiments.suite", f"--suite={path}",
                        f"--root={root}", "--nomeasure"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=580)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  return dict(path=path, root=root, stdout=out.stdout)


def _final(done, name: str) -> dict:
  with open(os.path.join(done["root"], name, "analysis", "run_0000_final.json")) as f:
    return json.load(f)


def test_plan_printed_and_report_links_every_figure(done):
  out = done["stdout"]
  assert "2 sweeps, 2 runs; estimated" in out and "two_layer" in out and "new" in out
  # --nomeasure (read before the plan reparses the flags): the model's estimate, nothing timed
  assert "model: FLOP-count model" in out and "measuring" not in out
  assert not os.path.exists(os.path.join(done["root"], suite_timing.CACHE))
  md = open(os.path.join(done["root"], suite.REPORT)).read()
  assert "![loss_precision_two_layer_attn_only](figures/loss_precision_two_layer_attn_only.png)" in md
  assert os.path.exists(os.path.join(done["root"], "figures",
                                     "loss_precision_two_layer_attn_only.png"))
  # Fig 28's panels (one per regulariser setting) and its table, a row per run
  assert ("Sweeps: two_layer, attn_only.\n\n"
          "![regularisers_two_layer_attn_only](figures/regularisers_two_layer_attn_only.png)") in md
  assert md.count("| λ 1 | 0 |") == 2
  # the precision table under it: a row per dtype and the authors' float32 run
  assert "| train loss vs float64 |" in md and "| float32 | " in md and "| authors, float32" in md
  # a sweep's comment block is its note (the file's header, above a blank line, is not)
  assert "### two_layer\n\n> Figs 22-23: a 2-layer model\n" in md and "a tiny suite" not in md
  assert "### attn_only\n\n`" in md
  for name in ("two_layer", "attn_only"):
    assert f"({name}/report.md)" in md
    manifest = json.load(open(os.path.join(done["root"], name, "figures", "manifest.json")))
    drawn = [e["file"] for e in manifest if e.get("file")]
    assert drawn and all(f"({name}/{f})" in md for f in drawn)
  # the float32 workdir draws its own precision figure; the float64 one skips it
  assert "figures/loss_precision.png" in open(os.path.join(done["root"], "attn_only",
                                                           "report.md")).read()
  # --figures: the others are listed as not drawn; fig03 skips itself (no MLP, no W_L)
  manifest = {e["name"]: e for e in json.load(open(os.path.join(
      done["root"], "attn_only", "figures", "manifest.json")))}
  assert manifest["fig09_attention_heads"]["skipped"] == "not drawn (--figures)"
  assert "W_L" in manifest["fig03_fourier_norms"]["skipped"]
  assert [n for n, e in manifest.items() if "file" in e] == ["fig02_train_test", "loss_precision"]


def test_report_indexes_the_papers_items(done):
  md = open(os.path.join(done["root"], suite.REPORT)).read()
  index = md[md.index("## The paper, item by item"):md.index("## Figures across sweeps")]
  # a claimed figure links the claiming sweep's figure whose caption names it
  assert ("| Fig 22 | two_layer | [two_layer/fig02_train_test]"
          "(two_layer/figures/fig02_train_test.png) |") in index
  assert ("| Fig 23 | two_layer | [two_layer/fig07_progress_measures]"
          "(two_layer/figures/fig07_progress_measures.png) |") in index
  # figures across sweeps name their own items; nobody claims Fig 2 here (attn_only has no note)
  assert ("| Fig 28 | (across sweeps) | [regularisers_two_layer_attn_only]"
          "(figures/regularisers_two_layer_attn_only.png) |") in index
  assert "| App. D.2 | (across sweeps) | [loss_precision_two_layer_attn_only]" in index
  assert "| Fig 2 |" not in index and "| Table 5 |" not in index
  absent = index[index.index("Not in this suite: "):]
  assert absent.startswith("Not in this suite: Fig 1 (a diagram") and "Fig 34, Table 1" in absent
  assert "Fig 22" not in absent and "Fig 28" not in absent


def test_paper_refs_parse_ranges_lists_and_appendices(tmp_path):
  assert suite_index.refs("Figs 2-4, Tables 5–6 and App. D.2; SPEC §8") == [
      "Fig 2", "Fig 3", "Fig 4", "Table 5", "Table 6", "App. D.2"]
  assert suite_index.refs("Fig 27: sweep (Figs 24–25 at P = 53 / 109)") == [
      "Fig 27", "Fig 24", "Fig 25"]
  assert suite_index.refs("Figs 24, 27 and 28") == ["Fig 24", "Fig 27", "Fig 28"]
  # only a note's leading clause claims; later text may cite anything
  assert suite_index.claims("Fig 28, Tables 5-6, the other reading: unlike Fig 2") == [
      "Fig 28", "Table 5", "Table 6"]
  assert suite_index.claims("The L1 coefficient (SPEC §8) is chosen: see Fig 28") == []
  assert suite_index.claims("no colon, Fig 3") == []
  # a claimed table links its section of the sweep's report; a sweep with nothing that names
  # an item links its report; one not run yet says so
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "report.md").write_text("# r\n\n### Table 3 (other runs)\n\n### Table 4\n")
  lines = "\n".join(suite_index.index(str(tmp_path), [("a", "Tables 3-4, Fig 9: x"),
                                                      ("b", "Fig 9: y")], []))
  assert "| Table 3 | a | [a: Table 3](a/report.md#table-3-other-runs) |" in lines
  assert "| Table 4 | a | [a: Table 4](a/report.md#table-4) |" in lines
  assert "| Fig 9 | a, b | [a/report.md](a/report.md); b: not run yet |" in lines


@pytest.mark.parametrize("name", ["paper_cpu", "paper_full"])
def test_shipped_suites_claim_every_figure_and_table_of_the_paper(name, tmp_path):
  s = suite.parse(os.path.join(ROOT, "experiments", "suites", f"{name}.suite"))
  lines = suite_index.index(str(tmp_path), [(w.name, w.note) for w in s.sweeps], [])
  absent = [line for line in lines if line.startswith("Not in this suite:")]
  assert absent == ["Not in this suite: Fig 1 (a diagram of the algorithm, nothing to train)."]
  rows = [line for line in lines if line.startswith("| Fig") or line.startswith("| Table")]
  assert len(rows) == suite_index.PAPER_FIGURES - 1 + suite_index.PAPER_TABLES
  assert any(r.startswith("| Fig 24 | p53, p109 |") for r in rows)


def test_rerun_skips_finished_sweeps(done):
  s = suite.parse(done["path"])
  steps = [suite.Step(sw, os.path.join(done["root"], sw.name), 1, 200, 1.0,
                      suite.state(os.path.join(done["root"], sw.name), 200)) for sw in s.sweeps]
  assert [st.state for st in steps] == ["finished", "finished"]

  def never(cmd):
    raise AssertionError(f"a finished sweep was run again: {cmd}")
  logs = []
  suite.run(s, done["root"], steps, log=logs.append, execute=never)
  assert sum("finished, skipped" in line for line in logs) == 2
  # asking for more epochs makes the same workdir a resume, not a restart
  assert suite.state(os.path.join(done["root"], "two_layer"), 400) == "resume from epoch 200"
  assert suite.state(os.path.join(done["root"], "absent"), 200) == "new"


def test_partial_suite_figure_names_its_missing_sweeps(done, tmp_path):
  # a figure over a finished sweep and one never run is drawn from what there is, and says so
  os.symlink(os.path.join(done["root"], "two_layer"), tmp_path / "two_layer")
  path = tmp_path / "partial.suite"
  path.write_text(f"sweep two_layer {TINY} --num_layers=2\nsweep absent {TINY}\n"
                  "figure regularisers two_layer absent\n")
  s = suite.parse(str(path))
  steps = [suite.Step(sw, str(tmp_path / sw.name), 1, 200, 1.0, "new") for sw in s.sweeps]
  md = open(suite.write_report(s, str(tmp_path), steps, log=lambda _: None)).read()
  assert "Sweeps: two_layer, absent (new).\n\n![regularisers_two_layer_absent]" in md
  assert "### absent\n" in md


def test_only_runs_the_named_sweeps_in_suite_order(tmp_path):
  path = tmp_path / "two.suite"
  path.write_text("sweep a --p=23\nsweep b --p=29\nsweep c --p=31\n")
  s = suite.parse(str(path))
  steps = [suite.Step(sw, str(tmp_path / sw.name), 1, 10, 1.0, "new") for sw in s.sweeps]
  ran = []
  suite.run(s, str(tmp_path), steps, log=lambda _: None,
            execute=lambda cmd: ran.append(cmd[-1]) or 0, only=("c", "a"))
  assert ran == [f"--workdir={tmp_path / 'a'}", f"--workdir={tmp_path / 'c'}"]
  # each command's wall time is summed per sweep over invocations, a failed one included
  md = (tmp_path / suite.REPORT).read_text()
  assert "for 2 of 3 sweeps; not run yet: b; started, not finished: a, c." in md
  assert md.count("of wall time in 1 invocation(s).") == 2
  with pytest.raises(suite.SuiteError, match="exit status 3"):
    suite.run(s, str(tmp_path), steps, log=lambda _: None, execute=lambda cmd: 3, only=("a",))
  times = suite.load_times(str(tmp_path))
  assert sorted(times) == ["a", "c"] and times["a"]["invocations"] == 2
  assert times["c"]["invocations"] == 1 and times["c"]["seconds"] >= 0
  with pytest.raises(suite.SuiteError, match="no sweep d"):
    suite.run(s, str(tmp_path), steps, execute=lambda cmd: 0, only=("d",))


def test_regulariser_panels_keep_the_weight_decay_apart():
  from grokjax.plotting_suite import _regulariser
  run = dict(weight_decay=0.0, dropout=0.0, l1=0.0)
  assert _regulariser(run) == "λ 0"
  assert _regulariser({**run, "dropout": 0.2}) == "dropout 0.2"
  assert _regulariser({**run, "dropout": 0.5, "weight_decay": 1.0}) == "dropout 0.5 + λ 1"
  assert _regulariser({**run, "l1": 1e-4}) == "L1 0.0001"


def test_width_scan_figure_plots_each_workdir_at_its_width(done):
  from grokjax import plotting_suite
  paths = [os.path.join(done["root"], n) for n in ("two_layer", "attn_only")]
  fig = plotting_suite.fig_width_scan(paths)
  left = fig.axes[0]
  ours = {l.get_label(): l for l in left.get_lines()}
  # both tiny models have d_model 16: one grokjax point each at x = 16, beside the authors' 8 widths
  np.testing.assert_array_equal(ours["grokjax train"].get_xdata(), [16, 16])
  assert len(ours["authors test"].get_xdata()) == 8
  assert "grokjax frac 0.3 (" in fig._suptitle.get_text()


def test_suite_file_errors(tmp_path):
  bad = {"sweep a --p=23\nsweep a --p=29\n": "defined twice",
         "figure width_scan b\nsweep a --p=23\n": "unknown sweep",
         "figure nope a\nsweep a --p=23\n": "figure kind",
         "sweep a --workdir=x\n": "set by the suite",
         "train a\n": "expected"}
  for text, msg in bad.items():
    p = tmp_path / "bad.suite"
    p.write_text(text)
    with pytest.raises(suite.SuiteError, match=msg):
      suite.parse(str(p))


def test_estimate_scales_with_the_work():
  from grokjax.config import make_config
  main = suite_cost.estimate_s(make_config())
  assert 0.9 * 40_000 * 0.031 < main - suite_cost.SWEEP_OVERHEAD_S < 2.0 * 40_000 * 0.031
  assert suite_cost.estimate_s(make_config(p=401)) > 5 * main
  assert suite_cost.estimate_s(make_config(num_layers=2)) > 3 * main
  assert suite_cost.estimate_s(make_config(seed=(0, 1, 2, 3))) > 3 * main


def _one_sweep(tmp_path, **kw):
  """A one-sweep suite and its config (p = 23, as TINY), without absl's flag parsing."""
  from grokjax.config import make_config
  path = tmp_path / "one.suite"
  path.write_text(f"sweep tiny {TINY}\n")
  cfg = make_config(p=23, d_model=16, num_epochs=200, checkpoint_every=100, eval_every=10, **kw)
  return suite.parse(str(path)), cfg


def test_measured_estimate_scales_with_epochs_and_is_cached(tmp_path):
  s, cfg = _one_sweep(tmp_path)
  root, calls, logs = str(tmp_path / "runs"), [], []

  def timed(c):
    calls.append(c)
    return suite_timing.measure_sweep(c, timed_s=0.3)
  step, = suite.plan(s, root, lambda _: cfg,
                     suite_timing.Estimator(root, log=logs.append, measure_fn=timed))
  assert (step.source, step.state, len(calls)) == ("measured", "new", 1)
  assert suite_timing.Estimator(root).measure_fn is suite_timing.measure_sweep  # the default
  assert any("measuring [1/1] tiny (1 run)…" in line for line in logs)
  assert step.left_s == step.estimate_s > suite_timing.REST_OVERHEAD_S
  entry, = json.load(open(os.path.join(root, suite_timing.CACHE)))["entries"].values()
  assert entry["s_per_epoch"] > 0 and entry["epochs_timed"] >= 10
  assert entry["args"] == list(s.sweeps[0].args)
  assert entry["machine"]["cpu_count"] == os.cpu_count()
  # a second plan (a new estimator: from the file) times nothing; the pace is per epoch
  again = suite_timing.Estimator(root, measure_fn=timed)
  longer = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_epochs=400))
  e2, e4 = (again.estimate("tiny", (), c, "unused", None, False) for c in (cfg, longer))
  assert len(calls) == 1 and e2.cached and e2.s_per_epoch == entry["s_per_epoch"]
  assert e2.total_s == pytest.approx(step.estimate_s)
  assert e4.total_s - e2.total_s == pytest.approx(
      200 * entry["s_per_epoch"] + suite_cost.analysis_s(longer) - suite_cost.analysis_s(cfg))


def test_timings_cache_is_keyed_by_config_and_machine(tmp_path, monkeypatch):
  s, cfg = _one_sweep(tmp_path)
  root, calls = str(tmp_path / "runs"), []
  fake = lambda c: calls.append(c) or {"s_per_epoch": 0.01, "compile_s": 5.0, "epochs_timed": 20,
                                       "timed_s": 2.0}
  plan = lambda c, **kw: suite.plan(s, root, lambda _: c, suite_timing.Estimator(
      root, log=lambda _: None, measure_fn=fake, **kw))[0]
  step = plan(cfg)
  assert step.estimate_s == pytest.approx(200 * 0.01 + 5.0 + suite_timing.REST_OVERHEAD_S
                                          + suite_cost.analysis_s(cfg))
  assert plan(cfg).source == "measured" and len(calls) == 1
  wider = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=32))
  assert plan(wider, measure=False).source == "model"          # --nomeasure: nothing timed
  assert plan(wider, only=("other",)).source == "model"        # --only without this sweep
  assert plan(wider).source == "measured" and len(calls) == 2  # other arguments: measured anew
  other = dict(suite_timing.machine(), cpu_count=(os.cpu_count() or 1) + 1)
  monkeypatch.setattr(suite_timing, "machine", lambda: other)
  assert plan(cfg).source == "measured" and len(calls) == 3    # another machine too
  assert len(json.load(open(os.path.join(root, suite_timing.CACHE)))["entries"]) == 3


def test_started_sweep_estimated_from_its_own_checkpoint_times(tmp_path):
  s, cfg = _one_sweep(tmp_path)
  cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_epochs=1000))
  wd = tmp_path / "runs" / "tiny"
  os.makedirs(wd)
  results.write_json(str(wd / results.CONFIG), cfg.to_dict())
  # epoch 0 at t = 0, a 30 s compile, 10 s per 100 epochs, a 1 000 s gap before epoch 300
  for epoch, t in ((0, 0), (100, 40), (200, 50), (300, 1060), (400, 1070), (500, 1080)):
    meta = wd / "checkpoints" / "params" / str(epoch) / "_CHECKPOINT_METADATA"
    os.makedirs(meta.parent)
    meta.write_text("{}")
    os.utime(meta, (1e9 + t, 1e9 + t))
  assert suite_timing.own_rate(str(wd)) == pytest.approx(0.1)

  def never(c):
    raise AssertionError("a started sweep with checkpoint times was measured")
  step, = suite.plan(s, str(tmp_path / "runs"), lambda _: cfg,
                     suite_timing.Estimator(str(tmp_path / "runs"), measure_fn=never))
  assert (step.source, step.state) == ("own rate", "resume from epoch 500")
  rest = suite_cost.SWEEP_OVERHEAD_S + suite_cost.analysis_s(cfg)
  assert step.left_s == pytest.approx(500 * 0.1 + rest)
  assert step.estimate_s == pytest.approx(1000 * 0.1 + rest)
  assert "own rate: the sweep's pace so far" in suite.plan_text(s, [step])


def test_two_layer_analysis_reads_the_final_block(done):
  wd = os.path.join(done["root"], "two_layer")
  f = _final(done, "two_layer")
  assert f["skipped"] is None and f["mlp_skip_ablation"] and f["mlp_fve_mean"] is not None
  params = jax.tree.map(lambda t: jnp.asarray(t[0]), checkpoint.load_params(wd, 200))
  W_L = params["W_U"][:, :23].T @ params["blocks_1"]["W_out"]       # the final block's W_out
  np.testing.assert_allclose(measures.W_L(params), W_L, rtol=1e-6)
  norms = np.linalg.norm(np.asarray(measures.fourier_W_L(params)), axis=1)
  np.testing.assert_allclose(f["W_L_fourier_norms"], norms, rtol=1e-5)
  curve = pd.read_csv(os.path.join(wd, "analysis", "run_0000.csv"))
  assert {"excluded_loss_train", "restricted_loss_all", "gini_W_L"} <= set(curve.columns)
  assert list(curve["epoch"]) == [0, 100, 200]
  # Table 5 sets the paper's 2-layer rows beside it
  assert "2-layer (×5)" in report.table5_markdown(report.Workdir(wd))
  # Figs 2 and 7 of a 2-layer model are titled as the paper's Figs 22 and 23
  from grokjax import plotting, plotting_progress
  titles = [f(report.Workdir(wd))._suptitle.get_text()
            for f in (plotting.fig_train_test, plotting_progress.fig_progress_measures)]
  assert titles[0].startswith("Fig 22: 2-layer") and titles[1].startswith("Fig 23: 2-layer")


def test_table6_matches_a_direct_computation(done):
  """Zero / mean ablation of the final MLP's skip connection, recomputed from the plain model's
  activations: the residual after the last attention is resid_post − (W_out·post + b_out)."""
  wd = os.path.join(done["root"], "two_layer")
  f, p = _final(done, "two_layer"), 23
  params = jax.tree.map(lambda t: jnp.asarray(t[0]), checkpoint.load_params(wd, 200))
  cfg = ModelConfig(d_vocab=p + 1, d_vocab_out=p + 1, d_model=16, d_mlp=64, num_layers=2)
  with jax.default_matmul_precision("highest"):
    _, cache = model.apply_with_cache(cfg, params, jnp.asarray(data.all_tokens(p)))
  blk = jax.tree.map(lambda t: np.asarray(t, np.float64), params["blocks_1"])
  post = np.asarray(cache["blocks_1"]["mlp_post"][:, -1], np.float64)
  mlp_out = post @ blk["W_out"].T + blk["b_out"]
  resid_mid = np.asarray(cache["resid_post_1"][:, -1], np.float64) - mlp_out
  W_U = np.asarray(params["W_U"], np.float64)[:, :p]
  labels = data.labels("add", p)
  for name, skip in (("zero", 0.0), ("mean", resid_mid.mean(0))):
    L = (skip + mlp_out) @ W_U
    logp = L - L.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(p * p), labels].mean()
    acc = (L.argmax(1) == labels).mean()
    rec = f["mlp_skip_ablation"]
    np.testing.assert_allclose(rec[f"{name}_loss_all"], loss, rtol=2e-4)
    assert abs(rec[f"{name}_acc_all"] - acc) <= 1.5 / p ** 2
  assert "### Table 6" in open(os.path.join(wd, "report.md")).read()
  assert "skip zero-ablated" in report.table6_markdown(report.Workdir(wd))


def test_attention_only_analysis_records_what_it_skips(done):
  wd = os.path.join(done["root"], "attn_only")
  f = _final(done, "attn_only")
  assert f["skipped"]["measures"] == list(evidence.MLP_MEASURES)
  assert "no MLP" in f["skipped"]["reason"]
  assert all(f[k] is None for k in evidence.MLP_MEASURES)
  assert f["key_freq_rule"].startswith("W_E") and f["key_freqs"]
  for k in ("loss_test", "restricted_loss_all", "excluded_loss_train", "gini_W_E", "logit_fve"):
    assert f[k] is not None, k
  curve = pd.read_csv(os.path.join(wd, "analysis", "run_0000.csv"))
  assert "excluded_loss_train" in curve and "gini_W_L" not in curve
  summary = pd.read_csv(os.path.join(wd, "analysis", "summary.csv"))
  assert "mlp_skip_ablation" in summary["skipped"][0]
  md = open(os.path.join(wd, "report.md")).read()
  assert "**Measures skipped.**" in md and "skipped (attention-only: no MLP)" in md
  assert "_Table 6 skipped" in md
  assert results.progress(wd).finished
