"""Return-address candidates on a saved kernel stack: every pointer-sized value inside a module.

Why a scan and not an unwind: a triage dump holds the crashing thread's stack (TopOfStack up to
the stack base) and the driver list, but not the modules' unwind data (`.pdata` is not among its
data blocks), so a debugger-grade unwind is impossible. What the stack does hold is every return
address of every active frame; a value that lies inside a loaded module is a *candidate* return
address. Candidates include stale values and pointers to module data, so every frame this module
returns is marked `source="scan"` and the crash record says the stack was scanned, not unwound.

The scan starts at the faulting context's stack pointer when it lies inside the saved stack (what
`.cxr` then `k` would show: the frames below it belong to the bugcheck and exception-dispatch
machinery), else at the top of the saved stack. It is bounded by `MAX_SCAN_BYTES` and
`MAX_FRAMES` (kernel/stack.py), reads the stack once.
"""
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.batch.modules import ModuleMap
from pykd_ext.kernel.stack import MAX_FRAMES, MAX_SCAN_BYTES
from pykd_ext.kernel.stack import scan_stack as kernel_scan



def frame(index: int, source: str, stack_address: Optional[int], address: int,
          modules: ModuleMap) -> Dict[str, Any]:
    found = modules.find(address)
    return {"frame": index, "source": source, "stack_address": stack_address, "address": address,
            "module": found[0] if found else None, "offset": found[1] if found else None}


class _Locator:
    """The batch's ModuleMap seen through the kernel scanner's `locate` interface."""

    def __init__(self, modules: ModuleMap) -> None:
        self.modules = modules

    def locate(self, address: int) -> Optional[Tuple[str, int]]:
        return self.modules.find(address)


def scan_stack(space: Any, top: int, size: int, modules: ModuleMap, start: Optional[int] = None,
               first_index: int = 0, pointer_size: int = 8) -> List[Dict[str, Any]]:
    """Scan [start or top, top+size) of `space` (the target's kernel address space) with the
    kernel's one stack scanner (`kernel/stack.py`), as crash-record rows."""
    begin = top
    if start is not None and top <= start < top + size:
        begin = start - start % pointer_size
    found = kernel_scan(space, _Locator(modules), begin, min(top + size, begin + MAX_SCAN_BYTES),
                        first_index, pointer_size, MAX_FRAMES)
    return [frame(f.index, "scan", f.slot, f.address, modules) for f in found]
