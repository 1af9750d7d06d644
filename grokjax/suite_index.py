"""The suite report's index of the paper: every figure and table of the paper (SPEC §6, plus any
other item a sweep names, e.g. App. D.2), the sweeps that reproduce it and links to what draws it.

Which sweeps reproduce an item is read from the sweep notes of the suite file: a note's leading
clause (up to its first ':') names the paper's items, e.g. `# Figs 22-23, Tables 5-6: 2-layer
transformers`. What draws a figure is read from the captions, which name the paper's figures
they show (`Fig 2: ... (Fig 22 for a 2-layer model)`, `App. D.2: ...`): a claiming sweep's drawn
figures whose caption names the item are linked, and the suite's own figures whose caption names
it. A table links the `### Table N` section of a claiming sweep's report. A claiming sweep that
drew nothing naming the item links its report (unless a figure across sweeps shows it), so
every claimed item has a place to look; an item nobody claims is listed as not in the suite.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable

PAPER_FIGURES = 34   # the paper's Figs 1-34 and Tables 1-6 (SPEC §6)
PAPER_TABLES = 6
NO_DATA = {"Fig 1": "a diagram of the algorithm, nothing to train"}

_NUM = r"\d+(?:\s*[-–]\s*\d+)?"
_REF = re.compile(rf"\b(Figs?|Tables?)\.?\s+({_NUM}(?:\s*(?:,|and)\s*{_NUM})*)"
                  r"|\bApp(?:endix|\.)\s*([A-Z](?:\.\d+)*)")


def refs(text: str) -> list[str]:
  """The paper items a text names, in order, ranges expanded: 'Figs 2-4, Table 5' ->
  ['Fig 2', 'Fig 3', 'Fig 4', 'Table 5']; 'App. D.2' -> ['App. D.2']."""
  out: list[str] = []
  for m in _REF.finditer(text):
    if m.group(3):
      items = [f"App. {m.group(3)}"]
    else:
      kind = "Fig" if m.group(1).startswith("Fig") else "Table"
      items = []
      for part in re.split(r"\s*(?:,|and)\s*", m.group(2)):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", part)]
        items += [f"{kind} {n}" for n in range(ends[0], ends[-1] + 1)]
    out += [i for i in items if i not in out]
  return out


def claims(note: str) -> list[str]:
  """The paper items a sweep note says the sweep reproduces: those named before its first
  ':' (the rest of a note is free text that may cite other figures)."""
  return refs(note.split(":", 1)[0]) if ":" in note else []


def _order(item: str) -> tuple:
  kind, _, num = item.partition(" ")
  rank = {"Fig": 0, "Table": 1}.get(kind, 2)
  return (rank, int(num) if num.isdigit() else 0, num)


def _anchor(heading: str) -> str:
  """GitHub's anchor for a markdown heading."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _table_link(root: str, sweep: str, item: str) -> str | None:
  path = os.path.join(root, sweep, "report.md")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    for line in f:
      if line.startswith("### ") and refs(line[4:].split("(")[0]) == [item]:
        return f"[{sweep}: {item}]({sweep}/report.md#{_anchor(line[4:])})"
  return None


def _drawn(root: str, sweep: str) -> list[dict]:
  manifest = os.path.join(root, sweep, "figures", "manifest.json")
  if not os.path.exists(manifest):
    return []
  with open(manifest) as f:
    return [e for e in json.load(f) if e.get("file")]


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def index(root: str, notes: Iterable[tuple[str, str]],
          suite_figures: Iterable[tuple[str, str]]) -> list[str]:
  """Markdown lines: a table, one row per paper item, of the sweeps that reproduce it and the
  links that show it. `notes`: (sweep, note) in suite order; `suite_figures`: (caption,
  relative .png) of the figures across sweeps that were drawn."""
  notes, suite_figures = list(notes), list(suite_figures)
  items = [f"Fig {n}" for n in range(1, PAPER_FIGURES + 1)]
  items += [f"Table {n}" for n in range(1, PAPER_TABLES + 1)]
  by_item: dict[str, list[str]] = {}
  for sweep, note in notes:
    for item in claims(note):
      by_item.setdefault(item, []).append(sweep)
  for caption, _ in suite_figures:
    items += [i for i in refs(caption) if i not in items]
  items += [i for i in by_item if i not in items]
  rows, absent = [], []
  for item in sorted(items, key=_order):
    sweeps, links = by_item.get(item, []), []
    across = [f"[{_stem(rel)}]({rel})" for caption, rel in suite_figures if item in refs(caption)]
    for sweep in sweeps:
      if item.startswith("Table"):
        found = [link for link in [_table_link(root, sweep, item)] if link]
      else:
        found = [f"[{sweep}/{_stem(e['file'])}]({sweep}/{e['file']})"
                 for e in _drawn(root, sweep) if item in refs(e["caption"])]
      if not found and os.path.exists(os.path.join(root, sweep, "report.md")):
        # nothing of its own names the item: its report, unless a figure across sweeps shows it
        found = [] if across else [f"[{sweep}/report.md]({sweep}/report.md)"]
      elif not found:
        found = [f"{sweep}: not run yet"]
      links += found
    links += across
    if not links:
      absent.append(f"{item} ({NO_DATA[item]})" if item in NO_DATA else item)
      continue
    rows.append(f"| {item} | {', '.join(sweeps) or '(across sweeps)'} | {'; '.join(links)} |")
  out = ["## The paper, item by item", "",
         "Each figure and table of the paper, the sweeps whose note says they reproduce it, and "
         "where to look (the figures whose captions name it; a table's section of the report).",
         "", "| paper | sweeps | where |", "|---|---|---|"] + rows + [""]
  if absent:
    out += [f"Not in this suite: {', '.join(absent)}.", ""]
  return out
