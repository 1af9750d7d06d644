"""grokjax: the grokking paper (Nanda et al., ICLR 2023) as vmapped, jitted JAX programs.

Importing grokjax changes no JAX setting: 64-bit types (the paper's float64 loss, SPEC §1.5)
are enabled only inside the entry points that need them (`grokjax/x64.py`).
"""
__version__ = "0.1.0"
