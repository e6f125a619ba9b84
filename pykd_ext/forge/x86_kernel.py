"""Forged 32-bit Windows kernels (PAE and non-PAE): the x86 face of `typesonly_kernel`.

Kept as its own name because the x86 tests and the brief speak of it; the builder itself is
architecture-neutral (types-only layouts of x86 and x64 builds share it).
"""
from pykd_ext.forge.typesonly_kernel import (ForgedX86, ProcessSpec32, ThreadSpec32,
                                             TokenSpec32, X86Scenario, build_types_only, build_x86,
                                             volatility_isf)

__all__ = ["ForgedX86", "ProcessSpec32", "ThreadSpec32", "TokenSpec32", "X86Scenario",
           "build_types_only", "build_x86", "volatility_isf"]
