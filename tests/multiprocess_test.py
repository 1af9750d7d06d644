"""Several processes: a 4-run sweep as 2 processes × 1 CPU device on localhost (gloo) gives the
numbers of the same sweep on one process; its checkpoints are read, and its state resumed, by a
single process (and analysed there); SIGKILL of one process makes the other exit, and a rerun of both resumes exactly.

Every process is a subprocess (jax.distributed is one per process), killed if it outlives its
time limit."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np

from grokjax import analysis, checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sweep_test import ROOT, assert_same_trajectory, metrics  # noqa: E402

ARGS = ["--p=23", "--d_model=32", "--num_heads=4", "--d_mlp=64", "--checkpoint_every=20",
        "--num_epochs=100", "--seed=0,1", "--frac_train=0.3,0.5", "--state_every_s=0"]
LIMIT_S = 300  # any one process


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(args, log, env=None):
  f = open(log, "w")
  p = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args], cwd=ROOT, stdout=f,
                       stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
  f.close()
  return p


def _start_two(workdir, tag, extra=()):
  port = _free_port()
  return [_start([*ARGS, *extra, f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
                  "--num_processes=2", f"--process_id={i}", "--heartbeat_timeout_s=10"],
                 f"{workdir}.{tag}{i}.log") for i in range(2)]


def _finish(procs, timeout=LIMIT_S):
  """Waits for every process; kills those still running after `timeout` seconds."""
  deadline = time.time() + timeout
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(max(1.0, deadline - time.time())))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
      codes.append("timeout")
  return codes


def _read(path):
  with open(path) as f:
    return f.read()


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


class MultiProcessTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.tmp = tempfile.mkdtemp()
    cls.one, cls.two = f"{cls.tmp}/one", f"{cls.tmp}/two"
    procs = [_start([*ARGS, f"--workdir={cls.one}"], f"{cls.one}.log")]
    procs += _start_two(cls.two, "p")
    cls.codes = _finish(procs)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)

  def check_ran(self):
    logs = [f"{self.one}.log", f"{self.two}.p0.log", f"{self.two}.p1.log"]
    self.assertEqual(self.codes, [0, 0, 0], "\n".join(_read(l)[-3000:] for l in logs))

  def test_two_processes_give_the_numbers_of_one(self):
    self.check_ran()
    a, b = metrics(self.one), metrics(self.two)
    self.assertEqual(list(a.index), list(b.index))  # every row written once, by process 0
    self.assertLen(b, 4 * 11)
    assert_same_trajectory(a, b)
    pa, pb = checkpoint.load_params(self.one, 100), checkpoint.load_params(self.two, 100)
    for k in ("W_E", "W_U", "W_pos"):  # the trajectory's tolerance, for the whole matrix
      rel = np.linalg.norm(pa[k] - pb[k]) / np.linalg.norm(pb[k])
      self.assertLess(rel, 2e-2, k)
    self.assertIn("trained: ", _read(f"{self.two}.p0.log"))
    self.assertNotIn("trained: ", _read(f"{self.two}.p1.log"))  # process 0 speaks

  def test_one_process_reads_and_resumes_the_checkpoints(self):
    """Parameters load on one process; the state saved by two processes resumes on one process
    with two devices (the same lanes per device) to exactly the numbers of the 2-process run."""
    self.check_ran()
    self.assertEqual(checkpoint.param_epochs(self.two), [0, 20, 40, 60, 80, 100])
    self.assertEqual(checkpoint.load_params(self.two, 60)["W_E"].shape, (4, 32, 24))
    wd = f"{self.tmp}/resumed"
    shutil.copytree(self.two, wd)
    shutil.rmtree(os.path.join(wd, "checkpoints", "state", "100"))
    code = ("import sys; sys.argv[0] = 'sweep'; from experiments import sweep; "
            "sweep.run(sweep.main)")
    out = subprocess.run([sys.executable, "-c", code, *ARGS, f"--workdir={wd}"], cwd=ROOT,
                         env={**os.environ,
                              "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                         capture_output=True, text=True, timeout=LIMIT_S)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    self.assertIn("resuming 4 runs at epoch 80/100", out.stderr)
    self.assertEqual(_rows(wd), _rows(self.two))
    np.testing.assert_array_equal(checkpoint.load_params(wd, 100)["W_E"],
                                  checkpoint.load_params(self.two, 100)["W_E"])
    finals = analysis.analyze_workdir(self.two, log=lambda s: None)  # here: one process
    self.assertEqual(sorted(finals), [0, 1, 2, 3])

  def test_sigkill_of_one_process_then_rerun_resumes_exactly(self):
    self.check_ran()
    wd = f"{self.tmp}/kill"
    procs = _start_two(wd, "k")
    state_dir = os.path.join(wd, "checkpoints", "state")
    steps, deadline = [], time.time() + LIMIT_S
    while time.time() < deadline and procs[1].poll() is None:
      steps = [int(s) for s in os.listdir(state_dir) if s.isdigit()] if os.path.isdir(state_dir) else []
      if steps and max(steps) >= 40:
        break
      time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    survivor = _finish(procs[:1], timeout=120)[0]
    procs[1].wait()
    self.assertLess(max(steps), 100, "the sweep finished before it could be killed")
    log = _read(f"{wd}.k0.log")
    self.assertNotIn(survivor, (0, "timeout"), log[-3000:])
    self.assertTrue("another process of this sweep stopped" in log
                    or "another task died" in log, log[-3000:])  # ours, or JAX's heartbeat
    codes = _finish(_start_two(wd, "r"))
    self.assertEqual(codes, [0, 0], _read(f"{wd}.r0.log")[-3000:] + _read(f"{wd}.r1.log")[-3000:])
    self.assertIn("resuming 4 runs", _read(f"{wd}.r0.log"))
    self.assertEqual(_rows(wd), _rows(self.two))
    for k in ("W_E", "W_U"):
      np.testing.assert_array_equal(checkpoint.load_params(wd, 100)[k],
                                    checkpoint.load_params(self.two, 100)[k])


if __name__ == "__main__":
  absltest.main()
