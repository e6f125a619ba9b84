"""The 32-bit dump writer's former module: `dumpfile` writes both widths (the spec's machine type
chooses the header). Kept so callers importing these names from here keep working."""
from pykd_ext.forge.dumpfile import (DumpSpec32, build_header32, write_bitmap_dump32,  # noqa: F401
                                     write_full_dump32)
from pykd_ext.targets.dumpheader import FILL  # noqa: F401

__all__ = ["DumpSpec32", "build_header32", "write_bitmap_dump32", "write_full_dump32", "FILL"]
