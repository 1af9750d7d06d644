"""Where and with what a benchmark ran: date, device, CPU, load, library versions, git commit."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any

import jax
import numpy as np

# Benchmarks are command-line programs: 64-bit types for the whole process, as before grokjax
# scoped them (grokjax/x64.py); the measured building blocks keep their float64 numerics.
jax.config.update("jax_enable_x64", True)


def environment() -> dict[str, Any]:
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  cpu = ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
  except OSError:
    pass
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "grokjax"],
                           capture_output=True, text=True, check=True).stdout.strip()
    commit += "+dirty" if dirty else ""  # uncommitted changes under grokjax/
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  d = jax.devices()[0]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
      "device": f"{d.platform}:{d.device_kind}", "jax_devices": jax.device_count(),
      "cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
      "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
      "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
      "grokjax_commit": commit,
  }


def loadavg() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]
