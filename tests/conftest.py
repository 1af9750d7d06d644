"""The test session runs with jax_enable_x64 on, as a user of grokjax's float64 building blocks
(fourier, measures, losses, llc: called directly, they compute in float64 only with the flag on)
would set it. The library's entry points set their own scope (grokjax/x64.py); x64_test.py
checks them, and the golden numbers, in subprocesses that leave the flag off."""
import jax

jax.config.update("jax_enable_x64", True)
