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
`MAX_FRAMES`, reads the stack once and unpacks it with one `struct.iter_unpack`.
"""
import struct
from typing import Any, Dict, List, Optional

from pykd_ext.batch.modules import ModuleMap

MAX_SCAN_BYTES = 0x8000           # the x64 kernel stack is 0x6000 bytes (+ a guard page)
MAX_FRAMES = 256


def frame(index: int, source: str, stack_address: Optional[int], address: int,
          modules: ModuleMap) -> Dict[str, Any]:
    found = modules.find(address)
    return {"frame": index, "source": source, "stack_address": stack_address, "address": address,
            "module": found[0] if found else None, "offset": found[1] if found else None}


def scan_bytes(data: bytes, start_address: int, modules: ModuleMap, first_index: int = 0,
               limit: int = MAX_FRAMES, pointer_size: int = 8) -> List[Dict[str, Any]]:
    """Candidates in `data` (the stack bytes from `start_address`), in stack order."""
    usable = len(data) - len(data) % pointer_size
    code = "<Q" if pointer_size == 8 else "<I"
    out: List[Dict[str, Any]] = []
    index = first_index
    low, high = modules.span()
    for slot, (value,) in enumerate(struct.iter_unpack(code, data[:usable])):
        if value < low or value >= high or modules.find(value) is None:
            continue
        out.append(frame(index, "scan", start_address + slot * pointer_size, value, modules))
        index += 1
        if len(out) >= limit:
            break
    return out


def scan_stack(read: Any, top: int, size: int, modules: ModuleMap, start: Optional[int] = None,
               first_index: int = 0, pointer_size: int = 8) -> List[Dict[str, Any]]:
    """Scan [start or top, top+size) through `read(address, size) -> bytes` (the target's
    address space); an unreadable stack gives no frames (the caller notes it)."""
    begin = top
    if start is not None and top <= start < top + size:
        begin = start - start % pointer_size
    length = min(top + size - begin, MAX_SCAN_BYTES)
    if length <= 0:
        return []
    data = read(begin, length)
    return scan_bytes(bytes(data), begin, modules, first_index, pointer_size=pointer_size)
