"""Kernel stacks as `module+0xoffset` frames, without symbols.

Why a scan: a triage dump keeps the crashing thread's stack memory and the driver list, but not
the modules' code or `.pdata`, so a stack cannot be unwound there; WinDbg itself falls back to
"stack scanning" in that case. The scan reads the stack once (one bulk read, bounded) and keeps
every pointer-sized slot whose value lies inside a loaded module: return-address candidates.
Where the module's code is in the dump, a candidate is checked for a `call` instruction right
before it (`call_verified`), which separates real return addresses from stale data.

Frame 0 is the thread's own instruction pointer when the dump states it (the crash context of
the bugcheck processor, or a triage dump's context record); every frame says how it was found
(`context`, `scan`), so nobody mistakes a scan for an unwind.
"""
import bisect
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from pykd_ext.errors import MemoryReadError

#: at most this many bytes of stack are scanned (x64 kernel stacks are 24 KiB, 0x6000; a larger
#: span means the start or end pointer is corrupt)
MAX_SCAN_BYTES = 0x8000
#: at most this many frames are reported
MAX_FRAMES = 256
#: a return address never points into a module's first page: that page holds the PE headers
#: (a pointer there is a module base or header field kept on the stack, not code)
HEADER_PAGE = 0x1000

#: x64 `call` encodings by length before the return address: E8 rel32 (5), FF /2 with ModRM
#: forms of 2, 3, 6 and 7 bytes (register, disp8, disp32/RIP-relative, SIB+disp32; with REX 1 more)
_CALL_LENGTHS = (2, 3, 5, 6, 7)


class Frame:
    """One stack frame: where it was found, the code address, and module+offset."""

    __slots__ = ("index", "slot", "address", "module", "offset", "method", "call_verified")

    def __init__(self, index: int, slot: Optional[int], address: int, module: Optional[str],
                 offset: Optional[int], method: str, call_verified: Optional[bool] = None) -> None:
        self.index = index
        self.slot = slot                  # stack address holding the return address (None: context)
        self.address = address
        self.module = module
        self.offset = offset
        self.method = method              # "context" | "scan"
        self.call_verified = call_verified

    @property
    def symbol(self) -> str:
        """`amdppm+0x334c` (module name without its extension, as WinDbg prints it), or the address."""
        if self.module is None or self.offset is None:
            return "0x%x" % self.address
        stem = self.module.rsplit(".", 1)[0] if "." in self.module else self.module
        return "%s+0x%x" % (stem, self.offset)

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "slot": self.slot, "address": self.address,
                "module": self.module, "offset": self.offset, "symbol": self.symbol,
                "method": self.method, "call_verified": self.call_verified}

    def __repr__(self) -> str:
        return "Frame(%d, %s, %s)" % (self.index, self.symbol, self.method)


class Locator(Protocol):
    """What `scan_stack` asks of its module map (a `ModuleMap`, or a caller's adapter)."""

    def locate(self, address: int) -> Optional[Tuple[str, int]]: ...


class ModuleMap:
    """Address -> (module name, offset) over a sorted list of (base, size, name)."""

    def __init__(self, modules: Sequence[Tuple[int, int, str]]) -> None:
        self.modules = sorted(m for m in modules if m[1] > 0)
        self.bases = [m[0] for m in self.modules]

    def locate(self, address: int) -> Optional[Tuple[str, int]]:
        index = bisect.bisect_right(self.bases, address) - 1
        if index >= 0:
            base, size, name = self.modules[index]
            if address < base + size:
                return name, address - base
        return None


def _call_before(space: Any, address: int) -> Optional[bool]:
    """True when a call instruction ends at `address`, False when not, None when the code is
    not in the dump."""
    try:
        code = space.read(address - 7, 7)
    except MemoryReadError:
        return None
    for length in _CALL_LENGTHS:
        insn = code[7 - length:]
        if length == 5 and insn[0] == 0xE8:
            return True
        # FF /2: opcode FF, ModRM reg field 2 (optionally behind a REX prefix 0x40-0x4F)
        body = insn[1:] if 0x40 <= insn[0] <= 0x4F else insn
        if len(body) >= 2 and body[0] == 0xFF and (body[1] >> 3) & 7 == 2:
            return True
    return False


def scan_stack(space: Any, modules: Locator, start: int, end: int, first_index: int = 0,
               pointer_size: int = 8, max_frames: int = MAX_FRAMES) -> List[Frame]:
    """Return-address candidates between `start` (the stack pointer) and `end` (the stack base)."""
    if not start or end <= start:
        return []
    start -= start % pointer_size
    end = min(end, start + MAX_SCAN_BYTES)
    data, _fault = space.read_partial(start, end - start)
    frames: List[Frame] = []
    for pos in range(0, len(data) - pointer_size + 1, pointer_size):
        value = int.from_bytes(data[pos:pos + pointer_size], "little")
        found = modules.locate(value)
        if found is None or found[1] < HEADER_PAGE:
            continue
        frames.append(Frame(first_index + len(frames), start + pos, value, found[0], found[1], "scan",
                            _call_before(space, value)))
        if len(frames) >= max_frames:
            break
    return frames


def _context_registers(ctx: Any) -> Optional[Tuple[int, int]]:
    """(rip, rsp) of the dump's crash context, when it states one."""
    context = (ctx.info.extra or {}).get("context")
    if not isinstance(context, dict):
        return None
    ip = context.get("rip", context.get("eip", context.get("pc")))
    sp = context.get("rsp", context.get("esp", context.get("sp")))
    if isinstance(ip, int) and isinstance(sp, int):
        return ip, sp
    return None


def _stack_end(ctx: Any, sp: int, thread: Any) -> int:
    """Where a scan from `sp` stops: the thread's stack base, else the triage dump's saved stack
    range, else MAX_SCAN_BYTES above `sp`."""
    if thread is not None:
        for path in ("Tcb.InitialStack", "Tcb.StackBase"):
            value = thread.field(path)
            if isinstance(value, int) and sp < value <= sp + MAX_SCAN_BYTES:
                return value
    saved = (ctx.info.extra or {}).get("stack")
    if isinstance(saved, (tuple, list)) and len(saved) == 2:
        base, size = saved
        if isinstance(base, int) and isinstance(size, int) and base <= sp < base + size:
            return base + size
    return sp + MAX_SCAN_BYTES


def crash_stack(ctx: Any, thread: Any = None) -> List[Frame]:
    """The crashing thread's frames: the context's instruction pointer, then a scan from its stack
    pointer. Empty when the dump states no crash context."""
    regs = _context_registers(ctx)
    if regs is None:
        return []
    ip, sp = regs
    modules = ModuleMap(ctx.modules())
    found = modules.locate(ip)
    first = Frame(0, None, ip, found[0] if found else None, found[1] if found else None, "context")
    return [first] + scan_stack(ctx.space, modules, sp, _stack_end(ctx, sp, thread), 1, ctx.pointer_size)


def thread_stack(ctx: Any, thread: Any) -> List[Frame]:
    """A thread's frames: scanned from its saved kernel stack pointer (`Tcb.KernelStack`) to its
    stack base. A thread that is running has no saved pointer worth scanning from."""
    sp = thread.field("Tcb.KernelStack")
    if not isinstance(sp, int) or not sp:
        return []
    modules = ModuleMap(ctx.modules())
    return scan_stack(ctx.space, modules, sp, _stack_end(ctx, sp, thread), 0, ctx.pointer_size)


__all__ = ["Frame", "MAX_FRAMES", "MAX_SCAN_BYTES", "ModuleMap", "crash_stack", "scan_stack",
           "thread_stack"]
