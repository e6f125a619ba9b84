"""Kernel stacks as `module+0xoffset` frames, without symbols.

Why a scan: a triage dump keeps the crashing thread's stack memory and the driver list, but not
the modules' code or `.pdata`, so a stack cannot be unwound there; WinDbg itself falls back to
"stack scanning" in that case. The scan reads the stack once (one bulk read, bounded) and keeps
every pointer-sized slot whose value lies inside a loaded module: return-address candidates.
Where the module's code is in the dump, a candidate is checked for a `call` instruction right
before it (`call_verified`), which separates real return addresses from stale data.

Frame 0 is the thread's own instruction pointer when the dump states it (the crash context of
the bugcheck processor, or a triage dump's context record); every frame says how it was found
(`context`, `unwind`, `scan`), so nobody mistakes a scan for an unwind. Where the dump holds a
module's `.pdata` and unwind data (`kernel.unwind`), the crash thread's frames are unwound
exactly first, and the scan continues from where the unwind stopped.
"""
import bisect
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Sequence, Tuple

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.crash_context import crash_context, header_context, stack_holds
from pykd_ext.kernel.unwind import unwind_frames
from pykd_ext.targets.arch import arch_named

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

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


def module_map(ctx: Any) -> ModuleMap:
    """The context's loaded modules as a ModuleMap, built once per context (`threads -v` asks
    for every thread)."""
    cached = getattr(ctx, "_stack_module_map", None)
    if cached is None:
        cached = ModuleMap(ctx.modules())
        try:
            ctx._stack_module_map = cached
        except AttributeError:      # a context without a writable __dict__
            pass
    return cached


def _stack_end(ctx: "KernelContext", sp: int, thread: Any) -> int:
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


def crash_stack(ctx: "KernelContext", thread: Any = None) -> List[Frame]:
    """The crashing thread's frames: the context's instruction pointer, the frames x64 unwind
    data in the dump can walk (`kernel.unwind`), then a scan from where the unwind stopped.
    Empty when the dump states no crash context."""
    return _crash_frames(ctx, thread)[0]


def _crash_frames(ctx: "KernelContext", thread: Any) -> Tuple[List[Frame], str]:
    """(frames, how they were found: one sentence)."""
    regs = header_context(ctx)
    if regs is None:
        return [], "the dump states no crash context"
    ip, sp = regs
    modules = module_map(ctx)
    found = modules.locate(ip)
    frames = [Frame(0, None, ip, found[0] if found else None, found[1] if found else None, "context")]
    end = _stack_end(ctx, sp, thread)
    scan_from = sp
    arch = arch_named(str(ctx.info.arch or ""))
    ip_name = arch.instruction_pointer.lower() if arch and arch.instruction_pointer else "ip"
    sp_name = arch.stack_pointer.lower() if arch and arch.stack_pointer else "sp"
    how = "frame 0 from the crash context (%s 0x%x)" % (ip_name, ip)
    if arch is not None and arch.pdata_unwind:
        walked, scan_from, why = unwind_frames(ctx.space, modules, ip, sp, end, MAX_FRAMES - 1)
        for slot, ret, _rsp in walked:
            where = modules.locate(ret)
            frames.append(Frame(len(frames), slot, ret, where[0] if where else None,
                                where[1] if where else None, "unwind"))
        if walked:
            how += "; %d frame(s) unwound with the modules' .pdata (stopped: %s)" % (len(walked), why)
    how += "; then a stack scan from %s 0x%x: return-address candidates, not an unwind" % (sp_name, scan_from)
    frames += scan_stack(ctx.space, modules, scan_from, end, len(frames), ctx.pointer_size,
                         MAX_FRAMES - len(frames))
    return frames, how


def thread_stack(ctx: "KernelContext", thread: Any) -> List[Frame]:
    """A thread's frames: scanned from its saved kernel stack pointer (`Tcb.KernelStack`) to its
    stack base. A thread that is running has no saved pointer worth scanning from."""
    sp = thread.field("Tcb.KernelStack")
    if not isinstance(sp, int) or not sp:
        return []
    modules = module_map(ctx)
    return scan_stack(ctx.space, modules, sp, _stack_end(ctx, sp, thread), 0, ctx.pointer_size)


class ThreadStack:
    """A thread's frames and how they were found (`how`: one sentence for the text and JSON)."""

    __slots__ = ("frames", "how", "crash", "sp")

    def __init__(self, frames: List[Frame], how: str, crash: bool, sp: Optional[int] = None) -> None:
        self.frames = frames
        self.how = how
        self.crash = crash
        self.sp = sp            # the stack pointer the walk started from

    def to_dict(self) -> Dict[str, Any]:
        return {"how": self.how, "crash_context": self.crash, "sp": self.sp,
                "frames": [f.to_dict() for f in self.frames]}


def stack_for(ctx: "KernelContext", thread: Any) -> ThreadStack:
    """The stack `ethread`/`threads -v` show for a thread: the crash context's (instruction
    pointer, then a scan from its stack pointer) when this is the crash thread and the dump's
    context belongs to it (a triage dump's thread, or a CONTEXT whose stack pointer lies in this
    thread's stack); otherwise a scan from the thread's saved `Tcb.KernelStack`."""
    crash = crash_context(ctx)
    regs = header_context(ctx)
    if crash is not None and crash.thread == thread.address and regs is not None and (
            (ctx.info.extra or {}).get("thread") == thread.address or stack_holds(ctx, thread.address, regs[1])):
        frames, how = _crash_frames(ctx, thread)
        return ThreadStack(frames, how, True, regs[1])
    sp = thread.field("Tcb.KernelStack")
    if not isinstance(sp, int) or not sp:
        return ThreadStack([], "no saved kernel stack pointer (Tcb.KernelStack) to scan from", False)
    return ThreadStack(thread_stack(ctx, thread), "stack scan from the saved Tcb.KernelStack 0x%x: "
                       "return-address candidates, not an unwind" % sp, False, sp)


__all__ = ["Frame", "MAX_FRAMES", "MAX_SCAN_BYTES", "ModuleMap", "ThreadStack", "crash_stack", "module_map",
           "scan_stack", "stack_for", "thread_stack"]
