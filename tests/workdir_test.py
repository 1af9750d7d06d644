"""A workdir nothing can silently corrupt (issue 10): one test per item of the issue.

One tiny sweep (p = 23, two runs: λ = 1 and λ = 1e9, which halts) is trained once for the module
and copied wherever a test damages something; a copy with one damaged parameter checkpoint is
analysed once. A persistent XLA compilation cache (a module temporary directory) lets the
in-process resumes and the subprocesses reuse the one compile.
"""
import contextlib
import errno
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from absl.testing import absltest
import jax
import numpy as np

from grokjax import analysis, checkpoint, config, report, results, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 600
TINY = dict(p=23, d_model=32, num_heads=4, d_mlp=64, num_epochs=EPOCHS, checkpoint_every=100,
            eval_every=10)
CLI = ["--p=23", "--d_model=32", "--num_heads=4", "--d_mlp=64", f"--num_epochs={EPOCHS}",
       "--checkpoint_every=100", "--eval_every=10", "--seed=0", "--weight_decay=1,1e9"]
TMP = CACHE = W = None  # set by setUpModule: W is the trained workdir (never modified)
_ANALYSED = {}


def cfg(**kw):
  return config.make_config(**{**TINY, "seed": (0,), "weight_decay": (1.0, 1e9), **kw})


def setUpModule():
  global TMP, CACHE, W
  TMP = tempfile.mkdtemp(prefix="workdir_test_")
  CACHE = os.path.join(TMP, "xla_cache")
  _use_cache(CACHE)
  W = os.path.join(TMP, "trained")
  logs = []
  assert runner.run_sweep(cfg(), W, log=logs.append, state_every_s=0) == "trained", logs


def tearDownModule():
  _use_cache(None)
  shutil.rmtree(TMP, ignore_errors=True)


def _use_cache(path):
  from jax._src import compilation_cache
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  compilation_cache.reset_cache()


def env():
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": CACHE,
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def copy(name, analysis_too=False):
  dst = os.path.join(TMP, name)
  src = W if not analysis_too else analysed()[0]
  shutil.copytree(src, dst, ignore=None if analysis_too else shutil.ignore_patterns("analysis"))
  return dst


def rows(workdir):
  return sorted(results.read_metrics_rows(workdir, log=lambda s: None),
                key=lambda r: (r["run"], r["epoch"]))


def damage_arrays(step_dir):
  """Truncates the array data files of an orbax step (its metadata stays intact)."""
  n = 0
  for d, _, files in os.walk(step_dir):
    if os.path.basename(d) == "d":
      for f in files:
        with open(os.path.join(d, f), "r+b") as fh:
          fh.truncate(5)
        n += 1
  assert n, step_dir


def analysed():
  """A copy of W whose params/500 is damaged, analysed once: (workdir, finals, log lines)."""
  if not _ANALYSED:
    wd = os.path.join(TMP, "analysed")
    shutil.copytree(W, wd)
    damage_arrays(os.path.join(wd, "checkpoints", "params", "500"))
    logs = []
    finals = analysis.analyze_workdir(wd, log=logs.append)
    _ANALYSED.update(wd=wd, finals=finals, logs=logs)
  return _ANALYSED["wd"], _ANALYSED["finals"], _ANALYSED["logs"]


def one_line(test, text):
  lines = [l for l in text.splitlines() if l.strip()]
  test.assertNotIn("Traceback", text)
  test.assertLen(lines, 1, text)
  return lines[0]


def cli(module, args, **kw):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env(),
                        capture_output=True, text=True, timeout=120, **kw)


class WorkdirTest(absltest.TestCase):

  # 1 -------------------------------------------------------------------------------------------
  def test_1_second_writer_refused_and_stale_lock_taken_over(self):
    from grokjax import lock
    with lock.WorkdirLock(W, "sweep"):
      with self.assertRaisesRegex(lock.WorkdirLocked,
                                  rf"being trained .*pid {os.getpid()} on "
                                  rf"{socket.gethostname()}, started 20"):
        runner.run_sweep(cfg(), W, log=lambda s: None)
    with lock.WorkdirLock(W, "analysis"):
      with self.assertRaisesRegex(lock.WorkdirLocked, rf"being analysed .*pid {os.getpid()}"):
        analysis.analyze_workdir(W, log=lambda s: None)
    # A process killed while holding the lock: the kernel drops the flock, its record stays.
    code = ("import os, signal; from grokjax import lock; "
            f"lock.WorkdirLock({W!r}, 'sweep').acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    dead = subprocess.run([sys.executable, "-c", code], cwd=ROOT)
    self.assertEqual(dead.returncode, -signal.SIGKILL)
    holder = lock.WorkdirLock(W).holder()
    self.assertIsNotNone(holder)
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), W, log=logs.append), "finished")
    self.assertTrue(any(f"taking over the lock left by pid {holder['pid']}" in l
                        and "no longer running" in l for l in logs), logs)
    self.assertIsNone(lock.WorkdirLock(W).holder())  # released cleanly

  # 2 -------------------------------------------------------------------------------------------
  def test_2_damaged_middle_line_is_reported_and_nothing_after_it_is_lost(self):
    wd = copy("damaged_line")
    path = os.path.join(wd, results.METRICS)
    with open(path) as f:
      lines = f.readlines()
    lost = json.loads(lines[12])
    lines[12] = lines[12][:25] + "\n"  # line 13 cut in the middle
    with open(path, "w") as f:
      f.writelines(lines + lines[:5])  # and five rows written twice
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), wd, log=logs.append), "finished")
    self.assertTrue(any("line 13: damaged" in l for l in logs), logs)
    self.assertTrue(any(f"run {lost['run']} epoch {lost['epoch']}" in l for l in logs), logs)
    want = [r for r in rows(W) if (r["run"], r["epoch"]) != (lost["run"], lost["epoch"])]
    self.assertEqual(rows(wd), want)  # every row after the damaged line survives, no duplicates
    df = results.load_metrics(wd)
    self.assertLen(df, len(want))
    self.assertEqual(len(df), len(results.read_metrics_rows(wd)))
    # On a resume the rows before the resume epoch are kept, the damaged text set aside.
    results.truncate_metrics(wd, 300, log=lambda s: None)
    self.assertEqual(rows(wd), [r for r in want if r["epoch"] < 300])
    with open(path + ".damaged") as f:
      self.assertIn("line 13:", f.read())
    # A cut LAST line is a crash artefact: dropped without a warning, never glued to.
    with open(path, "a") as f:
      f.write('{"run": 0, "epo')
    scan = results.scan_metrics(wd)
    self.assertTrue(scan.cut_last_line)
    self.assertEmpty(scan.damaged)
    results.append_metrics(wd, [dict(run=0, epoch=300, train_loss=1.0)])
    scan = results.scan_metrics(wd)
    self.assertIn(dict(run=0, epoch=300, train_loss=1.0), scan.rows)
    self.assertEqual([text for _, text in scan.damaged], ['{"run": 0, "epo'])

  # 3 -------------------------------------------------------------------------------------------
  def test_3_workdir_without_config_needs_its_checkpoints_to_prove_it(self):
    wd = copy("no_config")
    for name in (results.CONFIG, results.SWEEP):
      os.remove(os.path.join(wd, name))
    for other in (cfg(seed=(5,)), cfg(seed=(5, 6))):  # another sweep, another run count
      with self.assertRaisesRegex(config.ConfigError, "different sweep .*seed"):
        runner.run_sweep(other, wd, log=lambda s: None)
      self.assertFalse(os.path.exists(os.path.join(wd, results.CONFIG)))
      self.assertFalse(os.path.exists(os.path.join(wd, results.SWEEP)))
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), wd, log=logs.append), "finished")
    self.assertTrue(any("restored" in l for l in logs), logs)
    for name in (results.CONFIG, results.SWEEP):
      with open(os.path.join(W, name)) as a, open(os.path.join(wd, name)) as b:
        self.assertEqual(json.load(a), json.load(b))
    # Without the copy in checkpoints/ nothing proves which sweep the checkpoints are.
    os.remove(os.path.join(wd, results.CONFIG))
    os.remove(os.path.join(wd, results.CHECKPOINTS, results.CONFIG))
    with self.assertRaisesRegex(results.WorkdirError, "no config.json.*nothing proves"):
      runner.run_sweep(cfg(), wd, log=lambda s: None)
    self.assertFalse(os.path.exists(os.path.join(wd, results.CONFIG)))

  # 4 -------------------------------------------------------------------------------------------
  def test_4_damaged_checkpoints(self):
    # The newest state is damaged: the resume falls back to the previous one, same numbers.
    wd = copy("damaged_state")
    self.assertEqual(checkpoint.state_epochs(wd), [500, EPOCHS])
    damage_arrays(os.path.join(wd, "checkpoints", "state", str(EPOCHS)))
    path = os.path.join(wd, results.METRICS)
    with open(path) as f:
      kept = [l for l in f if json.loads(l)["epoch"] != EPOCHS]  # the final rows: not finished
    with open(path, "w") as f:
      f.writelines(kept)
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), wd, log=logs.append), "trained")
    self.assertTrue(any(f"state checkpoint {EPOCHS} cannot be restored" in l
                        and "trying 500" in l for l in logs), logs)
    self.assertTrue(any("resuming 2 runs at epoch 500" in l for l in logs), logs)
    self.assertEqual(rows(wd), rows(W))
    np.testing.assert_array_equal(checkpoint.load_params(wd, EPOCHS)["W_E"],
                                  checkpoint.load_params(W, EPOCHS)["W_E"])
    # A missing params checkpoint is reported by a finished sweep ...
    wd = copy("missing_params")
    shutil.rmtree(os.path.join(wd, "checkpoints", "params", "300"))
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), wd, log=logs.append), "finished")
    self.assertTrue(any("parameter checkpoint(s) 300 (missing)" in l for l in logs), logs)
    # ... and by the analysis, which never takes an earlier epoch as the final one.
    shutil.rmtree(os.path.join(wd, "checkpoints", "params", str(EPOCHS)))
    with self.assertRaisesRegex(results.WorkdirError,
                                f"final parameter checkpoint \\(epoch {EPOCHS}.* missing"):
      analysis.analyze_workdir(wd, log=lambda s: None)
    shutil.copytree(os.path.join(W, "checkpoints", "params", str(EPOCHS)),
                    os.path.join(wd, "checkpoints", "params", str(EPOCHS)))
    damage_arrays(os.path.join(wd, "checkpoints", "params", str(EPOCHS)))
    with self.assertRaisesRegex(results.WorkdirError, f"epoch {EPOCHS} cannot be read.*damaged"):
      analysis.analyze_workdir(wd, log=lambda s: None)
    # A damaged earlier one is reported and skipped (its table row is absent).
    awd, finals, logs = analysed()
    self.assertTrue(any("epoch 500 cannot be read" in l for l in logs), logs)
    csv = np.loadtxt(os.path.join(awd, "analysis", "run_0000.csv"), delimiter=",", skiprows=1,
                     usecols=0)
    self.assertEqual(sorted(csv), [0, 100, 200, 300, 400, EPOCHS])
    self.assertEqual(finals[0]["epoch"], EPOCHS)

  # 5 -------------------------------------------------------------------------------------------
  def test_5_paths_fail_in_one_line(self):
    flagdir = os.path.join(TMP, "flags_dir")
    os.makedirs(flagdir)
    p = cli("experiments.sweep", [f"--flagfile={flagdir}", "--workdir=" + TMP + "/x"])
    self.assertEqual(p.returncode, 2)
    self.assertIn("is a directory", one_line(self, p.stderr))
    p = cli("experiments.analyze", [f"--workdir={TMP}/missing"])
    self.assertEqual(p.returncode, 2)
    self.assertIn("does not exist", one_line(self, p.stderr))
    a_file = os.path.join(TMP, "a_file")  # (the CLI prints a WorkdirError as above)
    open(a_file, "w").close()
    with self.assertRaisesRegex(results.WorkdirError, "a_file is a file, not a directory"):
      runner.run_sweep(cfg(), a_file, log=lambda s: None)
    with self.assertRaisesRegex(results.WorkdirError, "a_file is a file, not a workdir"):
      analysis.analyze_workdir(a_file, log=lambda s: None)

  # 6 -------------------------------------------------------------------------------------------
  def test_6_sigterm_and_sigint_stop_cleanly_and_resume(self):
    wd = os.path.join(TMP, "sigterm")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *CLI, f"--workdir={wd}"],
                            cwd=ROOT, env=env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    killer = threading.Timer(150, proc.kill)
    killer.start()
    seen = []
    for line in proc.stderr:
      seen.append(line)
      if line.startswith("epoch "):  # the first progress line: training is under way
        proc.send_signal(signal.SIGTERM)
        break
    err = "".join(seen) + proc.stderr.read()
    proc.wait()
    killer.cancel()
    self.assertEqual(proc.returncode, 128 + signal.SIGTERM, err)
    self.assertNotIn("Traceback", err)
    last = err.strip().splitlines()[-1]
    self.assertRegex(last, r"stopped by SIGTERM at epoch \d+/600; .* resume with: python -m "
                           r"experiments.sweep .*--workdir=")
    stopped = int(last.split("at epoch ")[1].split("/")[0])
    self.assertLess(stopped, EPOCHS)
    self.assertIn(stopped, checkpoint.state_epochs(wd))  # the state at the stop was saved
    logs = []
    self.assertEqual(runner.run_sweep(cfg(), wd, log=logs.append), "trained")
    self.assertTrue(any(f"resuming 2 runs at epoch {stopped}/" in l for l in logs), logs)
    self.assertEqual(rows(wd), rows(W))
    # Ctrl-C while the first chunk compiles: no crash, a clean stop at the chunk's end.
    wd = os.path.join(TMP, "sigint")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *CLI, f"--workdir={wd}"],
                            cwd=ROOT, env=env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    killer = threading.Timer(150, proc.kill)
    killer.start()
    for line in proc.stderr:
      if "compiling" in line:
        proc.send_signal(signal.SIGINT)
        break
    err = proc.stderr.read()
    proc.wait()
    killer.cancel()
    self.assertEqual(proc.returncode, 128 + signal.SIGINT, err)
    self.assertNotIn("Traceback", err)
    self.assertIn("stopped by SIGINT at epoch", err)

  # 7 -------------------------------------------------------------------------------------------
  def test_7_halted_run_is_named_by_analysis_and_report(self):
    halted = results.halted_runs(rows(W))
    self.assertEqual(list(halted), [1])
    h = halted[1]
    self.assertTrue(all(r["halted_at"] == -1 for r in rows(W) if r["run"] == 1
                        and r["epoch"] < h))  # not stamped on rows before the halt
    self.assertTrue(all(r["halted_at"] == h for r in rows(W) if r["run"] == 1
                        and r["epoch"] > h))
    wd, finals, logs = analysed()
    self.assertEqual(finals[1]["halted_at"], h)
    self.assertIsNone(finals[0]["halted_at"])
    self.assertTrue(any(f"run 1: halted at epoch {h}" in l for l in logs), logs)
    self.assertIn(f"HALTED at epoch {h}", analysis.final_line(1, finals[1]))
    analysis.final_line(1, {**finals[1], "loss_test": None})  # no format(None)
    text = report.build_report(wd, [])
    self.assertIn(f"**Halted run.** Run 1", text)
    self.assertIn(f"| 1 (halted at {h}) |", text)

  # 8 -------------------------------------------------------------------------------------------
  def test_8_unfinished_training_is_reported_as_unfinished(self):
    wd = copy("unfinished", analysis_too=True)
    for path in (os.path.join(wd, results.CONFIG),
                 os.path.join(wd, results.CHECKPOINTS, results.CONFIG)):
      with open(path) as f:
        c = json.load(f)
      c["train"]["num_epochs"] = 2 * EPOCHS  # asked for more, stopped at EPOCHS
      results.write_json(path, c)
    says = f"trained to {EPOCHS} of {2 * EPOCHS} epochs (unfinished)"
    self.assertEqual(results.progress(wd).text(), says)
    logs = []
    finals = analysis.analyze_workdir(wd, log=logs.append)
    self.assertTrue(any(says in l for l in logs), logs)
    self.assertEqual(finals[0]["epoch"], EPOCHS)
    self.assertEqual((finals[0]["trained_to"], finals[0]["num_epochs"]), (EPOCHS, 2 * EPOCHS))
    text = report.build_report(wd, [])
    self.assertIn("**Unfinished.**", text)
    self.assertIn(says, text)
    self.assertNotIn(f"{2 * EPOCHS} epochs,", text.replace(" ", ""))

  # 9 -------------------------------------------------------------------------------------------
  def test_9_notebook_loaders_name_the_path_and_the_epochs(self):
    missing = os.path.join(TMP, "mistyped")
    with self.assertRaisesRegex(FileNotFoundError, missing):
      results.load_metrics(missing)
    with self.assertRaisesRegex(FileNotFoundError, missing):
      checkpoint.load_params(missing, 0)
    with self.assertRaisesRegex(FileNotFoundError,
                                f"{W}/checkpoints/params/250: .* epoch 250; available: "
                                f"0, 100, 200, 300, 400, 500, {EPOCHS}$"):
      checkpoint.load_params(W, 250)
    self.assertLen(results.load_metrics(W), 2 * (EPOCHS // 10 + 1))

  # 10 ------------------------------------------------------------------------------------------
  def test_10_disk_full_is_one_line_and_orbax_reads_are_quiet(self):
    from grokjax import console
    # Orbax's 'read only' warnings are not shown when the analysis reads checkpoints.
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logging.getLogger("absl").addHandler(handler)
    try:
      checkpoint.param_epochs(W)
      checkpoint.load_params(W, 0)
    finally:
      logging.getLogger("absl").removeHandler(handler)
    self.assertEmpty([r.getMessage() for r in seen if "read only" in r.getMessage()
                      or "read_only" in r.getMessage()])
    # A full disk (as orbax reports it: a ValueError chained to OSError ENOSPC) ends in one line.
    def main(argv):
      try:
        raise OSError(errno.ENOSPC, "No space left on device")
      except OSError as e:
        raise ValueError('RESOURCE_EXHAUSTED: Error writing local file "/w/checkpoints/params/'
                         '300.orbax-checkpoint-tmp/x": No space left on device') from e
    code = console.guard(main, "python -m experiments.sweep --workdir=/w")
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
      self.assertEqual(code([]), 1)
    line = one_line(self, buf.getvalue())
    self.assertRegex(line, r"^error: disk full while writing /w/checkpoints/params/300: .*"
                           r"resume with: python -m experiments.sweep --workdir=/w$")
    # ... also for a real full disk, where one can be made (a small tmpfs needs root).
    mnt = os.path.join(TMP, "full")
    os.makedirs(mnt)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
      self.skipTest("cannot mount a small tmpfs here (not root): real disk-full case skipped")
    try:
      p = cli("experiments.sweep", CLI + [f"--workdir={mnt}/w"])
    finally:
      subprocess.run(["umount", mnt], capture_output=True)
    self.assertEqual(p.returncode, 1, p.stderr[-3000:])
    self.assertNotIn("Traceback", p.stderr)
    self.assertRegex(p.stderr.strip().splitlines()[-1], r"^error: disk full while writing ")
    self.assertLess(len(p.stderr.strip().splitlines()), 6, p.stderr)


if __name__ == "__main__":
  absltest.main()
