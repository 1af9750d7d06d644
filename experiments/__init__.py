"""Command-line entry points (`python -m experiments.NAME`)."""
import sys

if sys.argv[:1] == ["-m"]:  # `python -m experiments.NAME`: runpy imports this package first
  import os
  import signal

  def _interrupted_while_starting(signum, frame):
    # Until grokjax.console takes over: a Ctrl-C during the first imports would otherwise be lost
    # inside jax's (the sweep then ran to its end) or turn into an ImportError traceback.
    print(f"interrupted ({signal.Signals(signum).name}) while starting", file=sys.stderr,
          flush=True)
    os._exit(128 + signum)

  signal.signal(signal.SIGINT, _interrupted_while_starting)
  signal.signal(signal.SIGTERM, _interrupted_while_starting)

  # The command-line programs use 64-bit types for their whole process (the library enables
  # them only inside its entry points: grokjax/x64.py); a float32-loss sweep still runs its
  # programs without them (train.x64). Set for jax to read when it is first imported (by the
  # task registry that validates the config, or later): a flag that does not parse, or a bad
  # flagfile, fails before jax is imported.
  os.environ["JAX_ENABLE_X64"] = "1"
