"""x64 stack unwinding with the `.pdata` of modules whose images are in the dump.

Why: a stack scan (`kernel.stack.scan_stack`) reports every pointer into a module, stale ones
too. Where a module's exception directory and unwind data are in the dump (complete and kernel
dumps keep driver images), the frames can be walked as the CPU built them: each function's
UNWIND_INFO says how many bytes its prolog pushed and allocated, so the return address is at
`rsp + that`, exactly. A frame whose module has no unwind data in the dump, or whose function sets
a frame pointer (its rsp depends on a register value a dump does not keep per frame), ends the
unwind; `kernel.stack.stack_for` continues from there with a scan. An instruction pointer inside
an epilog (stack already partly released) is not recognised as such: the prolog's codes are
applied in full there, as for any offset past the prolog.

Format facts (declared once, here): Microsoft Learn, "x64 exception handling" and the PE format
specification, ".pdata section": RUNTIME_FUNCTION {ULONG BeginAddress, EndAddress,
UnwindInfoAddress} (12 bytes, sorted by BeginAddress); UNWIND_INFO {UBYTE Version:3, Flags:5;
UBYTE SizeOfProlog; UBYTE CountOfCodes; UBYTE FrameRegister:4, FrameOffset:4; UNWIND_CODE
UnwindCode[CountOfCodes rounded up to even]; then, with UNW_FLAG_CHAININFO, the chained
RUNTIME_FUNCTION}; UNWIND_CODE {UBYTE CodeOffset; UBYTE UnwindOp:4, OpInfo:4} with the slot counts
and stack effects of `UNWIND_OPS`; a leaf function (no RUNTIME_FUNCTION) has its return address
at [rsp].
"""
from typing import Any, Dict, List, Optional, Tuple

from construct import Int32ul, Struct

from pykd_ext.errors import DumpFormatError, MemoryReadError

RUNTIME_FUNCTION = Struct("BeginAddress" / Int32ul, "EndAddress" / Int32ul, "UnwindData" / Int32ul)
RUNTIME_FUNCTION_SIZE = 12
#: IMAGE_DIRECTORY_ENTRY_EXCEPTION (PE format specification, optional header data directories)
IMAGE_DIRECTORY_ENTRY_EXCEPTION = 3
UNW_FLAG_CHAININFO = 0x4
#: UnwindOp -> (name, UNWIND_CODE slots it takes; None: depends on OpInfo, see `_slots`)
UNWIND_OPS: Dict[int, Tuple[str, Optional[int]]] = {
    0: ("UWOP_PUSH_NONVOL", 1), 1: ("UWOP_ALLOC_LARGE", None), 2: ("UWOP_ALLOC_SMALL", 1),
    3: ("UWOP_SET_FPREG", 1), 4: ("UWOP_SAVE_NONVOL", 2), 5: ("UWOP_SAVE_NONVOL_FAR", 3),
    6: ("UWOP_EPILOG", 2), 7: ("UWOP_SPARE_CODE", 3), 8: ("UWOP_SAVE_XMM128", 2),
    9: ("UWOP_SAVE_XMM128_FAR", 3), 10: ("UWOP_PUSH_MACHFRAME", 1),
}
#: bounds: an exception directory larger than this is corrupt; chains deeper than this are loops
MAX_PDATA_BYTES = 0x400000
MAX_CHAIN = 32


class UnwindError(Exception):
    """This frame cannot be unwound from the dump (why, in the message)."""


def _slots(op: int, info: int) -> int:
    if op == 1:
        return 2 if info == 0 else 3
    found = UNWIND_OPS.get(op)
    if found is None or found[1] is None:
        raise UnwindError("unknown unwind op %d" % op)
    return found[1]


class ModuleUnwind:
    """One module's exception directory, read from the dump on demand."""

    def __init__(self, space: Any, base: int) -> None:
        from pykd_ext.targets.pe import read_pe_info
        self.space = space
        self.base = base
        try:
            info = read_pe_info(space, base)
        except (MemoryReadError, DumpFormatError) as err:
            raise UnwindError("the module's PE header is not in the dump (%s)" % err) from None
        dirs = info.data_directories
        if len(dirs) <= IMAGE_DIRECTORY_ENTRY_EXCEPTION or not dirs[IMAGE_DIRECTORY_ENTRY_EXCEPTION][1]:
            raise UnwindError("the module has no exception directory")
        rva, size = dirs[IMAGE_DIRECTORY_ENTRY_EXCEPTION]
        if size > MAX_PDATA_BYTES:
            raise UnwindError("exception directory of %d bytes" % size)
        self.pdata = base + rva
        self.count = size // RUNTIME_FUNCTION_SIZE

    def _entry(self, index: int) -> Any:
        try:
            return RUNTIME_FUNCTION.parse(self.space.read(self.pdata + index * RUNTIME_FUNCTION_SIZE,
                                                          RUNTIME_FUNCTION_SIZE))
        except MemoryReadError as err:
            raise UnwindError(".pdata is not in the dump (%s)" % err.fault) from None

    def function(self, rva: int) -> Optional[Any]:
        """The RUNTIME_FUNCTION holding `rva` (a binary search), None for a leaf function."""
        low, high = 0, self.count - 1
        while low <= high:
            mid = (low + high) // 2
            entry = self._entry(mid)
            if rva < entry.BeginAddress:
                high = mid - 1
            elif rva >= entry.EndAddress:
                low = mid + 1
            else:
                return entry
        return None

    def frame_size(self, entry: Any, offset: int) -> Tuple[int, Optional[int]]:
        """(bytes the function's prolog put on the stack below its return address, machine-frame
        displacement or None) at `offset` bytes into the function."""
        total = 0
        unwind = entry.UnwindData
        primary = True
        for _ in range(MAX_CHAIN):
            try:
                head = self.space.read(self.base + unwind, 4)
                count = head[2]
                codes = self.space.read(self.base + unwind + 4, 2 * count) if count else b""
            except MemoryReadError as err:
                raise UnwindError("UNWIND_INFO is not in the dump (%s)" % err.fault) from None
            flags = head[0] >> 3
            i = 0
            while i < count:
                code_offset, op, info = codes[2 * i], codes[2 * i + 1] & 0xF, codes[2 * i + 1] >> 4
                slots = _slots(op, info)
                if i + slots > count:
                    raise UnwindError("unwind codes run past CountOfCodes")
                # in the prolog, only the codes of instructions already executed apply
                if not primary or code_offset <= offset:
                    if op == 0:
                        total += 8
                    elif op == 1:
                        low = int.from_bytes(codes[2 * i + 2:2 * i + 4], "little")
                        total += low * 8 if info == 0 else \
                            low | int.from_bytes(codes[2 * i + 4:2 * i + 6], "little") << 16
                    elif op == 2:
                        total += info * 8 + 8
                    elif op == 3:
                        raise UnwindError("the function sets a frame pointer")
                    elif op == 10:
                        return total, 8 if info else 0
                i += slots
            if not flags & UNW_FLAG_CHAININFO:
                return total, None
            chained = unwind + 4 + 2 * (count + (count & 1))
            try:
                parent = RUNTIME_FUNCTION.parse(self.space.read(self.base + chained, RUNTIME_FUNCTION_SIZE))
            except MemoryReadError as err:
                raise UnwindError("chained unwind data is not in the dump (%s)" % err.fault) from None
            unwind = parent.UnwindData
            primary = False
        raise UnwindError("unwind chain longer than %d" % MAX_CHAIN)


def unwind_frames(space: Any, modules: Any, rip: int, rsp: int, stack_end: int,
                  max_frames: int) -> Tuple[List[Tuple[int, int, int]], int, str]:
    """Walk from (rip, rsp): [(slot of the return address, return address, rsp after)], the rsp
    where the walk stopped, and why it stopped."""
    cache: Dict[int, Any] = {}
    out: List[Tuple[int, int, int]] = []
    while len(out) < max_frames:
        found = modules.locate(rip)
        if found is None:
            return out, rsp, "0x%x is in no loaded module" % rip
        name, offset = found
        base = rip - offset
        try:
            module = cache.get(base)
            if module is None:
                module = cache[base] = ModuleUnwind(space, base)
            entry = module.function(offset)
            if entry is None:
                size, machine = 0, None             # a leaf: the return address is at [rsp]
            else:
                size, machine = module.frame_size(entry, offset - entry.BeginAddress)
        except UnwindError as err:
            return out, rsp, "%s: %s" % (name, err)
        try:
            if machine is not None:                 # KTRAP_FRAME-like machine frame: RIP, CS, EFLAGS, RSP
                slot = rsp + size + machine
                ret = space.read_pointer(slot)
                next_rsp = space.read_pointer(slot + 0x18)
            else:
                slot = rsp + size
                ret = space.read_pointer(slot)
                next_rsp = slot + 8
        except MemoryReadError as err:
            return out, rsp, "the stack at 0x%x is not in the dump (%s)" % (rsp + size, err.fault)
        if not ret or next_rsp <= rsp or next_rsp > stack_end:
            return out, rsp, "the walk left the stack"
        out.append((slot, ret, next_rsp))
        rip, rsp = ret, next_rsp
    return out, rsp, "frame limit"


__all__ = ["IMAGE_DIRECTORY_ENTRY_EXCEPTION", "ModuleUnwind", "RUNTIME_FUNCTION", "UNWIND_OPS",
           "UnwindError", "unwind_frames"]
