"""pykd-ext: Windows kernel processes and threads as they really look in memory.

Layers (each a sub-package; lower layers never import higher ones):
- `memory`   address spaces: physical pages, x64 paging, typed faults for unreadable memory;
- `targets`  sources of memory: crash dumps, raw images, minidumps (and later pykd, live VMs);
- `layouts`  per-build structure layouts, generated from real symbol tables into `pykd_ext.structs`;
- `kernel`   kernel objects (processes, threads, tokens, ...) decoded with a layout over a target;
- `commands` one module per command, each returning a result grid;
- `render`   the result grid and its renderers (WinDbg-shaped text, table, JSON, JSONL, CSV);
- `forge`    writes dumps and images for tests and labs.

`import pykd_ext` never imports pykd: it works on any OS, and it stays cheap (inside WinDbg every
`!py` command pays its imports): the API below is loaded on first use.

    import pykd_ext as pk
    dump = pk.open("MEMORY.DMP")            # see docs/api.md; inside WinDbg: pk.open()
"""
from typing import Any

from pykd_ext.version import __version__

#: names served lazily from `pykd_ext.api` (PEP 562)
_API_NAMES = ("open", "Dump", "Process", "Thread", "TypedStruct")


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from pykd_ext import api
        return getattr(api, name)
    raise AttributeError("module 'pykd_ext' has no attribute %r" % name)
