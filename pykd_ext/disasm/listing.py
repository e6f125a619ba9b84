"""The lines of `u` and the one-line faulting instruction, from any target's memory.

Why here and not in the command: the batch crash record (`batch.analyze`) and `ethread` show the
faulting instruction too; all of them read the code the same way: one bounded read of the
readable prefix (a triage dump keeps only some pages of code), decode what is there, and say
"not in dump" where the bytes stop (never guess the rest of an instruction).
"""
import re
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

from pykd_ext.disasm.engine import (MAX_INSTRUCTION, SKIP_UNDECODABLE, DisassemblerMissing,
                                    Instruction, decode_one)
from pykd_ext.disasm.mode import code_arch
from pykd_ext.disasm.names import AddressNamer, modules_of_target
from pykd_ext.errors import PykdExtError
from pykd_ext.memory.faults import NOT_IN_DUMP

#: WinDbg's default count of `u`, and the most one listing decodes.
DEFAULT_COUNT = 8
MAX_COUNT = 4096

_RIP_RELATIVE = re.compile(r"\[rip [+-] 0x[0-9a-f]+\]")


def windbg_address(address: int, pointer_size: int) -> str:
    """`fffff804`4a24d2d4` (64-bit) / `80c31e40` (32-bit), as WinDbg prints code addresses."""
    if pointer_size == 8:
        return "%08x`%08x" % (address >> 32, address & 0xFFFFFFFF)
    return "%08x" % address


@dataclass
class UnassembledLine:
    """One line of a listing: an instruction, undecodable bytes, or where the dump stops."""

    address: int
    raw: Optional[bytes]              # the instruction's bytes (None: not in dump)
    mnemonic: Optional[str]
    operands: str                     # with addresses named (module+0xoff (address))
    label: Optional[str] = None       # `module+0xoff` when a new module/export starts here
    fault: Optional[str] = None       # "not in dump" (or the read fault's reason)

    @property
    def text(self) -> str:
        return ("%s %s" % (self.mnemonic or "", self.operands)).strip()

    def to_dict(self) -> dict:
        return {"address": self.address, "bytes": self.raw.hex() if self.raw is not None else None,
                "mnemonic": self.mnemonic, "operands": self.operands, "label": self.label,
                "fault": self.fault}


def _named(insn: Instruction, namer: Optional[AddressNamer], pointer_size: int) -> str:
    """The operands with each referenced address written as WinDbg does: `name (address)`."""
    text = insn.operands
    for address, kind in insn.references:
        name = namer.name(address) if namer is not None else None
        shown = "%s (%s)" % (name, windbg_address(address, pointer_size)) if name else None
        if kind == "memory":
            text = _RIP_RELATIVE.sub("[%s]" % (shown or windbg_address(address, pointer_size)),
                                     text, count=1)
        elif shown:
            literal = "0x%x" % address
            if ("#" + literal) in text:
                text = text.replace("#" + literal, shown, 1)
            else:
                text = re.sub(r"(?<![0-9a-fx])%s(?![0-9a-f])" % literal, shown, text, count=1)
    return text


def _bytes_column(raw: bytes, arch: str) -> str:
    """x86: the bytes in order; ARM64: the instruction word (as WinDbg shows it)."""
    if arch == "arm64" and len(raw) == 4:
        return "%08x" % int.from_bytes(raw, "little")
    return raw.hex()


def unassemble(space: Any, address: int, count: int, arch: str,
               namer: Optional[AddressNamer] = None, pointer_size: int = 8) -> Iterator[UnassembledLine]:
    """Up to `count` lines from `address` (`u address L count`). Raises DisassemblerMissing
    (no capstone) or PykdExtError (no disassembler for `arch`); unreadable code is a line."""
    count = max(0, min(count, MAX_COUNT))
    if arch == "arm":
        address &= ~1                 # a Thumb code address carries bit 0 (interworking)
    widest = MAX_INSTRUCTION.get(arch, 15)
    data, fault = space.read_partial(address, count * widest)
    data = bytes(data)
    complete = fault is None
    reason = NOT_IN_DUMP if fault is None else (getattr(fault, "reason", None) or NOT_IN_DUMP)
    pos = 0
    previous_key: Optional[str] = None
    for _ in range(count):
        at = address + pos
        label = None
        if namer is not None:
            name = namer.name(at)
            key = name.split("+0x", 1)[0] if name else None
            if key is not None and key != previous_key:
                label = name
            previous_key = key
        insn = decode_one(data[pos:pos + widest], at, arch) if pos < len(data) else None
        if insn is None:
            if not complete and len(data) - pos < widest:
                yield UnassembledLine(at, None, None, "", label, reason)
                return
            skip = min(SKIP_UNDECODABLE.get(arch, 1), len(data) - pos)
            if skip <= 0:
                return
            yield UnassembledLine(at, data[pos:pos + skip], "???", "", label)
            pos += skip
            continue
        yield UnassembledLine(at, insn.raw, insn.mnemonic, _named(insn, namer, pointer_size), label)
        pos += insn.size


def format_line(line: UnassembledLine, arch: str, pointer_size: int) -> List[str]:
    """WinDbg's `u` layout: an optional `label:` line, then `address bytes mnemonic operands`."""
    out = ["%s:" % line.label] if line.label else []
    where = windbg_address(line.address, pointer_size)
    if line.raw is None:
        out.append("%s ?? %s" % (where, line.fault or NOT_IN_DUMP))
    else:
        out.append(("%s %-16s %-7s %s" % (where, _bytes_column(line.raw, arch), line.mnemonic,
                                          line.operands)).rstrip())
    return out


def namer_for(target: Any, extra_modules: Any = None) -> AddressNamer:
    """An `AddressNamer` over the modules the target states (see `names.modules_of_target`),
    kept in the kernel space's memo (one per target and module list)."""
    space = target.kernel
    memo = space.memo()
    extra = tuple(sorted(tuple(m) for m in extra_modules)) if extra_modules else ()
    key = ("disasm namer", extra)
    found = memo.get(key)
    if found is None:
        found = memo[key] = AddressNamer(space, modules_of_target(target, extra))
    return found


def faulting_instruction(target: Any, address: Any) -> Optional[str]:
    """The instruction at `address` as one line (`bt dword ptr [rax], edx`, addresses named),
    or None: no address, code not in the dump, bytes that do not decode, no capstone, or an
    architecture without a disassembler."""
    if not isinstance(address, int) or isinstance(address, bool) or address <= 0:
        return None
    try:
        arch = code_arch(target, address)[0]          # a WoW64 dump's 32-bit code is x86
        space = target.kernel
        for line in unassemble(space, address, 1, arch, namer_for(target), space.pointer_size):
            if line.raw is None or line.mnemonic in (None, "???"):
                return None
            return line.text
    except DisassemblerMissing:
        return None
    except PykdExtError:
        return None
    return None
