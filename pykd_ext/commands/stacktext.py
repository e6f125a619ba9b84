"""A thread's kernel stack as `!thread` prints its stack table (`Child-SP  RetAddr  : Call Site`).

Why a table of WinDbg's shape from a scan: a WinDbg user reads a stack by those three columns.
Row k: Child-SP is the stack pointer inside frame k (for a scanned frame: just above the slot its
return address was found in), RetAddr is where frame k returns to (frame k+1's address), Call
Site is frame k's code address as `module+0xoffset` (no symbols needed). A line above the table
says how the frames were found, and every row ends with its method (`context`, `scan`,
`scan, call verified`), so nobody mistakes a scan for an unwind. 64-bit values carry WinDbg's
backtick (`fffff804\u20188b58334c`).
"""
from typing import Any, List, Optional

#: the table heading of `!thread` (windbg-output.md), without the Args to Child column
HEADER = "Child-SP          RetAddr               : Call Site"


def tick(value: Optional[int], pointer_size: int = 8) -> str:
    """A pointer as WinDbg prints it: `fffff804`8b58334c` on 64-bit targets, 8 digits on 32-bit."""
    if not isinstance(value, int):
        return "?".ljust(17 if pointer_size == 8 else 8)
    if pointer_size == 8:
        return "%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)
    return "%08x" % value


def _method(frame: Any) -> str:
    if frame.method != "scan":
        return frame.method
    if frame.call_verified:
        return "scan, call verified"
    if frame.call_verified is False:
        return "scan, no call before it"
    return "scan"


def stack_lines(stack: Any, pointer_size: int = 8) -> List[str]:
    """The stack table of a `kernel.stack.ThreadStack` (empty frames: one line saying why)."""
    frames = stack.frames
    out = ["Stack: %s" % stack.how]
    if not frames:
        out.append("    (no return-address candidates found)")
        return out
    out.append(HEADER)
    for k, frame in enumerate(frames):
        if frame.slot is not None:
            child_sp: Optional[int] = frame.slot + pointer_size
        else:
            child_sp = stack.sp
        ret = frames[k + 1].address if k + 1 < len(frames) else None
        out.append("%s %s     : %s  [%s]" % (tick(child_sp, pointer_size), tick(ret, pointer_size),
                                             frame.symbol, _method(frame)))
    return out


__all__ = ["HEADER", "stack_lines", "tick"]
