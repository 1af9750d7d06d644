"""A suite: named sweeps trained, analysed and reported one after another, then one page that
links every figure of every workdir plus figures across workdirs (`plotting_suite`).

Suite file (`experiments/suites/*.suite`), one entry per line, `#` starts a comment line (the
comment block right above a sweep, up to a blank line, is its note in the suite report; its
leading clause names the paper's figures and tables it reproduces, `# Figs 22-23, Table 5: ...`,
which the report's index of the paper reads, `suite_index`):

  sweep NAME ARG...          a sweep: `experiments.reproduce` arguments (a --flagfile and/or
                             flags; flags after the flagfile override it), trained in ROOT/NAME
  figure KIND NAME NAME...   a figure across those sweeps' workdirs (KIND: plotting_suite's
                             SUITE_FIGURES, e.g. width_scan, loss_precision)

Running a suite (experiments/suite.py) prints the plan first (sweeps, runs, epochs and an
estimated time per sweep, labelled with its source), then runs `python -m experiments.reproduce
ARG... --workdir=ROOT/NAME` for each sweep that is not finished, in a subprocess (a crash of one
sweep stops the suite with its command; rerunning resumes it). A finished sweep (its metrics
reach the planned num_epochs, its analysis and report exist) is skipped; an unfinished one is
resumed by the same command. At the end ROOT/suite_report.md links every workdir's report and
figures and the suite's own figures (ROOT/figures/). The wall time of every command the suite
runs is added to ROOT/suite_times.json (per sweep, summed over invocations, an interrupted one
included), and the report gives it per sweep and in all: the measured cost of the whole suite
however often it was restarted.

The time estimate (grokjax/suite_timing.py) is measured: a started sweep's own pace from its
checkpoints' times ('own rate'), else a few seconds of the sweep's compiled training program
timed on this machine ('measured', cached in ROOT/plan_timings.json), else the instant
FLOP-count model of grokjax/suite_cost.py ('model', `--nomeasure`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Callable

from grokjax import results, suite_index

REPORT = "suite_report.md"
FIG_DIR = "figures"
TIMES = "suite_times.json"   # {sweep: {"seconds": wall time of its commands, "invocations": n}}


@dataclasses.dataclass(frozen=True)
class Sweep:
  name: str
  args: tuple[str, ...]
  note: str = ""   # the comment lines right above it (what it reproduces), for the report


@dataclasses.dataclass(frozen=True)
class Suite:
  path: str
  sweeps: tuple[Sweep, ...]
  figures: tuple[tuple[str, tuple[str, ...]], ...]   # (kind, sweep names)

  def sweep(self, name: str) -> Sweep:
    return next(s for s in self.sweeps if s.name == name)


class SuiteError(ValueError):
  """A suite file that cannot be run; the message names the file and line."""


def parse(path: str) -> Suite:
  """Reads a suite file (see the module docstring); raises SuiteError naming the line."""
  from grokjax.plotting_suite import SUITE_FIGURES
  sweeps: list[Sweep] = []
  figures: list[tuple[str, tuple[str, ...]]] = []
  comment: list[str] = []   # the comment block above the current line (reset by a blank)
  with open(path) as f:
    for n, raw in enumerate(f, 1):
      line = raw.strip()
      if not line:
        comment = []
        continue
      if line.startswith("#"):
        comment.append(line.lstrip("#").strip())
        continue
      note, comment = " ".join(comment), []
      where = f"{path}:{n}"
      words = shlex.split(line)
      if words[0] == "sweep" and len(words) >= 3:
        name = words[1]
        if not name.replace("_", "").replace("-", "").isalnum():
          raise SuiteError(f"{where}: sweep name {name!r}: letters, digits, '_' and '-' only")
        if any(s.name == name for s in sweeps):
          raise SuiteError(f"{where}: sweep {name!r} defined twice")
        if any(a.startswith("--workdir") for a in words[2:]):
          raise SuiteError(f"{where}: --workdir is set by the suite (ROOT/{name})")
        sweeps.append(Sweep(name, tuple(words[2:]), note))
      elif words[0] == "figure" and len(words) >= 3:
        if words[1] not in SUITE_FIGURES:
          raise SuiteError(f"{where}: figure kind {words[1]!r}; known: "
                           + ", ".join(sorted(SUITE_FIGURES)))
        figures.append((words[1], tuple(words[2:])))
      else:
        raise SuiteError(f"{where}: expected 'sweep NAME ARG...' or 'figure KIND NAME...', got "
                         f"{line!r}")
  names = {s.name for s in sweeps}
  for kind, members in figures:
    unknown = [m for m in members if m not in names]
    if unknown:
      raise SuiteError(f"{path}: figure {kind}: unknown sweep(s) {', '.join(unknown)}")
  if not sweeps:
    raise SuiteError(f"{path}: no sweeps")
  return Suite(path, tuple(sweeps), tuple(figures))


# --- the plan --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
  sweep: Sweep
  workdir: str
  runs: int
  epochs: int
  estimate_s: float          # the whole sweep: train, analyse, report
  state: str                 # 'finished', 'new' or 'resume from epoch E'
  remaining_s: float | None = None   # what is left to run (None: estimate_s, 0 when finished)
  source: str = "model"      # of the estimate: 'measured', 'own rate' or 'model'

  @property
  def finished(self) -> bool:
    return self.state == "finished"

  @property
  def left_s(self) -> float:
    if self.remaining_s is not None:
      return self.remaining_s
    return 0.0 if self.finished else self.estimate_s


def _state(workdir: str, epochs: int) -> tuple[str, int | None]:
  """`state` and the epoch reached (None: nothing trained)."""
  if not os.path.exists(os.path.join(workdir, results.CONFIG)):
    return "new", None
  prog = results.progress(workdir)
  analysed = os.path.isdir(os.path.join(workdir, results.ANALYSIS)) and any(
      n.endswith(".csv") for n in os.listdir(os.path.join(workdir, results.ANALYSIS)))
  if (prog.reached is not None and prog.reached >= epochs and analysed
          and os.path.exists(os.path.join(workdir, "report.md"))):
    return "finished", prog.reached
  return f"resume from epoch {prog.reached or 0}", prog.reached


def state(workdir: str, epochs: int) -> str:
  """'finished' when the metrics reach `epochs` and the analysis and report exist; else 'new'
  or 'resume from epoch E'."""
  return _state(workdir, epochs)[0]


def plan(suite: Suite, root: str, config_of: Callable[[Sweep], Any],
         estimator: Any = None) -> list[Step]:
  """One Step per sweep; `config_of` turns a sweep's arguments into its validated Config.
  `estimator`: a `suite_timing.Estimator` (default: one that measures nothing, so new sweeps
  get the model's estimate)."""
  from grokjax import suite_timing
  estimator = estimator or suite_timing.Estimator(root, measure=False)
  steps = []
  for i, s in enumerate(suite.sweeps, 1):
    cfg = config_of(s)
    wd = os.path.join(root, s.name)
    st, reached = _state(wd, cfg.train.num_epochs)
    e = estimator.estimate(s.name, s.args, cfg, wd, reached, st == "finished",
                           label=f"[{i}/{len(suite.sweeps)}]")
    steps.append(Step(s, wd, cfg.sweep.num_runs, cfg.train.num_epochs, e.total_s, st,
                      e.remaining_s, e.source))
  return steps


def hours(seconds: float) -> str:
  return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


SOURCES = {"measured": "timed on this machine (at its load then)",
           "own rate": "the sweep's pace so far",
           "model": "FLOP-count model"}


def plan_text(suite: Suite, steps: list[Step]) -> str:
  todo = sum(s.left_s for s in steps)
  total = sum(s.estimate_s for s in steps)
  used = [k for k in SOURCES if any(s.source == k for s in steps)]
  lines = [f"suite {suite.path}: {len(steps)} sweeps, {sum(s.runs for s in steps)} runs; "
           f"estimated {hours(total)} in all, {hours(todo)} still to run ("
           + "; ".join(f"{k}: {SOURCES[k]}" for k in used) + "; grokjax/suite_timing.py)"]
  w = max(len(s.sweep.name) for s in steps)
  for s in steps:
    shown = s.estimate_s if s.finished else s.left_s
    more = f" ({hours(s.estimate_s)} in all)" if s.state.startswith("resume") else ""
    lines.append(f"  {s.sweep.name:<{w}}  {s.runs:3d} runs × {s.epochs:6d} epochs  "
                 f"≈ {hours(shown):>7}  {s.source:<8}  {s.state}{more}")
  return "\n".join(lines)


# --- running ---------------------------------------------------------------------------------------

def command(step: Step) -> list[str]:
  return [sys.executable, "-m", "experiments.reproduce", *step.sweep.args,
          f"--workdir={step.workdir}"]


def _subprocess(cmd: list[str]) -> int:
  return subprocess.call(cmd)


def run(suite: Suite, root: str, steps: list[Step], log: Callable[[str], None] = print,
        execute: Callable[[list[str]], int] = _subprocess,
        only: tuple[str, ...] | None = None) -> str:
  """Runs every unfinished step (`execute` runs a command and returns its exit status), then
  writes the suite report; returns its path. A failed step raises SuiteError with its command.
  `only` names the sweeps to run (in suite order); the others are left as they are."""
  unknown = sorted(set(only or ()) - {s.sweep.name for s in steps})
  if unknown:
    raise SuiteError(f"--only: no sweep {', '.join(unknown)} in {suite.path}")
  os.makedirs(root, exist_ok=True)
  for i, step in enumerate(steps, 1):
    head = f"[{i}/{len(steps)}] {step.sweep.name}"
    if only is not None and step.sweep.name not in only:
      log(f"{head}: not in --only, left {step.state}")
      continue
    if step.finished:
      log(f"{head}: finished, skipped")
      continue
    cmd = command(step)
    log(f"{head}: {step.state} (≈ {hours(step.left_s)}): {shlex.join(cmd)}")
    t0 = time.time()
    try:
      rc = execute(cmd)
    finally:   # an interrupted command's time counts too: it is work a resume need not redo
      record_time(root, step.sweep.name, time.time() - t0)
    if rc != 0:
      raise SuiteError(f"{step.sweep.name}: exit status {rc}; rerun the suite to resume, or run "
                       f"the sweep alone: {shlex.join(cmd)}")
    log(f"{head}: done in {hours(time.time() - t0)}")
  return write_report(suite, root, steps, log)


def load_times(root: str) -> dict[str, dict[str, float]]:
  try:
    with open(os.path.join(root, TIMES)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def record_time(root: str, name: str, seconds: float) -> None:
  """Adds one invocation of sweep `name` (its wall seconds) to ROOT/suite_times.json."""
  times = load_times(root)
  entry = times.setdefault(name, {"seconds": 0.0, "invocations": 0})
  entry["seconds"] += seconds
  entry["invocations"] += 1
  path = os.path.join(root, TIMES)
  with open(path + ".tmp", "w") as f:
    json.dump(times, f, indent=1)
  os.replace(path + ".tmp", path)


def _times_text(steps: list[Step], times: dict[str, dict[str, float]]) -> list[str]:
  timed = [s for s in steps if s.sweep.name in times]
  if not timed:
    return []
  total = sum(times[s.sweep.name]["seconds"] for s in timed)
  line = (f"Wall time of the suite's commands (training, analysis, figures; `{TIMES}`): "
          f"**{hours(total)}** for {len(timed)} of {len(steps)} sweeps")
  missing = [s.sweep.name for s in steps if s.sweep.name not in times]
  unfinished = [s.sweep.name for s in timed if state(s.workdir, s.epochs) != "finished"]
  if missing:
    line += f"; not run yet: {', '.join(missing)}"
  if unfinished:
    line += f"; started, not finished: {', '.join(unfinished)}"
  return [line + ".", ""]


def _suite_figures(suite: Suite, root: str, states: dict[str, str],
                   log: Callable[[str], None]) -> tuple[list[str], list[tuple[str, str]]]:
  """Each `figure` line drawn from the workdirs there are; a member sweep that is not finished
  is named with its state, so a partial figure says what it lacks. Returns the report's lines
  and the (caption, relative path) of each figure drawn."""
  from grokjax import plotting
  from grokjax.plotting_suite import SUITE_FIGURES, SUITE_TABLES
  out, drawn = [], []
  os.makedirs(os.path.join(root, FIG_DIR), exist_ok=True)
  for kind, members in suite.figures:
    func, caption = SUITE_FIGURES[kind]
    name = f"{kind}_{'_'.join(members)}" if len(members) <= 3 else kind
    rel = os.path.join(FIG_DIR, f"{name}.png")
    try:
      fig = func([os.path.join(root, m) for m in members])
    except plotting.Skip as e:
      out += [f"### {caption}", "", f"_Not drawn: {e}_", ""]
      continue
    fig.savefig(os.path.join(root, rel), dpi=110)
    log(f"wrote {os.path.join(root, rel)}")
    drawn.append((caption, rel))
    listed = [m if states.get(m) == "finished" else f"{m} ({states.get(m, 'not in the suite')})"
              for m in members]
    out += [f"### {caption}", "", f"Sweeps: {', '.join(listed)}.", "", f"![{name}]({rel})", ""]
    if kind in SUITE_TABLES:
      out += [SUITE_TABLES[kind]([os.path.join(root, m) for m in members]), ""]
  return out, drawn


def write_report(suite: Suite, root: str, steps: list[Step],
                 log: Callable[[str], None] = print) -> str:
  """ROOT/suite_report.md: the paper's items and where each is drawn (`suite_index`), the
  figures across sweeps, then per sweep its state, wall time, command, report and figures."""
  times = load_times(root)
  parts = [f"# grokjax suite `{os.path.basename(suite.path)}`", "",
           f"Root `{os.path.abspath(root)}`; generated {time.strftime('%Y-%m-%d %H:%M')}.", ""]
  parts += _times_text(steps, times)
  states = {s.sweep.name: state(s.workdir, s.epochs) for s in steps}
  across, drawn = _suite_figures(suite, root, states, log)
  parts += suite_index.index(root, [(s.sweep.name, s.sweep.note) for s in steps], drawn)
  parts += ["## Figures across sweeps", ""] + (across or ["_None in this suite._", ""])
  parts += ["## Sweeps", ""]
  for step in steps:
    name, wd = step.sweep.name, step.workdir
    st = states[name]
    parts += [f"### {name}", ""] + ([f"> {step.sweep.note}", ""] if step.sweep.note else [])
    took = (f"; {hours(times[name]['seconds'])} of wall time in "
            f"{times[name]['invocations']} invocation(s)" if name in times else "")
    parts += [f"`{shlex.join(step.sweep.args)}`: {step.runs} runs × {step.epochs} epochs; "
              f"{st}{took}.", ""]
    if os.path.exists(os.path.join(wd, "report.md")):
      parts += [f"Report: [{name}/report.md]({name}/report.md)", ""]
    manifest = os.path.join(wd, "figures", "manifest.json")
    entries = json.load(open(manifest)) if os.path.exists(manifest) else []
    drawn = [e for e in entries if e.get("file")]
    parts += [f"- [{e['caption']}]({name}/{e['file']})" for e in drawn]
    parts += ["" if drawn else "_No figures yet._", ""]
  path = os.path.join(root, REPORT)
  with open(path + ".tmp", "w") as f:
    f.write("\n".join(parts))
  os.replace(path + ".tmp", path)
  log(f"wrote {path}")
  return path
