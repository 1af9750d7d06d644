"""The test session runs with jax_enable_x64 on, as a user of grokjax's float64 building blocks
(fourier, measures, losses, llc: called directly, they compute in float64 only with the flag on)
would set it. The library's entry points set their own scope (grokjax/x64.py); x64_test.py
checks them, and the golden numbers, in subprocesses that leave the flag off.

Compiled programs are kept in a persistent compilation cache for the session (a fresh temporary
folder unless JAX_COMPILATION_CACHE_DIR is set), shared with the subprocesses the tests start:
most tests build the same small programs again (a resumed sweep, a CLI run, a second process), and
a cache hit costs milliseconds where a CPU compile costs seconds."""
import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="grokjax-test-jit-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (after the cache settings: jax reads them when imported)

jax.config.update("jax_enable_x64", True)
