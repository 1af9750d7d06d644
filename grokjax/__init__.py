"""grokjax: the grokking paper (Nanda et al., ICLR 2023) as vmapped, jitted JAX programs.

The paper's loss is computed in float64 (SPEC §1.5, §7.1): 64-bit types are enabled here, once,
for every user of the library. Parameters and activations stay float32 explicitly.
"""
import jax

jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
