"""The Python API: `pykd_ext.open(path)` and the objects it hands out (see `pykd_ext.api.dump`).

A layer above `kernel` (decoders and finders) and beside `commands`: it never imports the CLI,
the renderers or the forge, and nothing below it imports it.
"""
from pykd_ext.api.dump import Dump, Process, Thread, open
from pykd_ext.api.typed import TypedStruct

__all__ = ["Dump", "Process", "Thread", "TypedStruct", "open"]
