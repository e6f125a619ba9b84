"""capstone, per architecture: bytes in, `Instruction` records out (with the addresses they name).

Why a thin layer: the listing and the faulting-instruction text need the same three things from
every instruction (its bytes, its text, and which absolute addresses it refers to: a branch
target, a RIP-relative memory operand, an ARM64 `adr`/`adrp`/literal address), whatever the
processor. capstone's detail mode gives them as operand records; this module turns those into
plain integers once, so nothing above it touches capstone objects.

Architecture -> capstone mode: x64 = CS_ARCH_X86 + CS_MODE_64, x86 = CS_ARCH_X86 + CS_MODE_32,
arm64 = CS_ARCH_ARM64 (AArch64, little endian), arm = CS_ARCH_ARM + CS_MODE_THUMB (Windows on
ARM runs Thumb-2 only).  Syntax: Intel for x86, capstone's default everywhere.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.targets.arch import arch_named

#: Longest instruction of each architecture (x86: 15 bytes, Intel SDM 2.3.11; ARM: 4).
MAX_INSTRUCTION = {"x64": 15, "x86": 15, "arm64": 4, "arm": 4}
#: Bytes a listing skips over an undecodable instruction (x86: one byte; fixed-width ISAs: one
#: instruction; Thumb-2: one halfword).
SKIP_UNDECODABLE = {"x64": 1, "x86": 1, "arm64": 4, "arm": 2}

#: ARM64 mnemonics whose immediate operand is an address (PC-relative, already made absolute by
#: capstone): address generation and literal loads; branches are found through their groups.
_ARM64_ADDRESS_MNEMONICS = ("adr", "adrp", "ldr", "ldrsw", "prfm")


class DisassemblerMissing(PykdExtError):
    """capstone is not installed (the `disasm` extra)."""


@dataclass
class Instruction:
    """One decoded instruction, plain data."""

    address: int
    raw: bytes
    mnemonic: str
    operands: str
    #: absolute addresses the instruction names: (address, kind) with kind "branch" (jump/call
    #: target), "memory" (RIP-relative operand) or "address" (ARM64 adr/adrp/literal)
    references: List[Tuple[int, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def text(self) -> str:
        """`mnemonic operands` as capstone writes them."""
        return ("%s %s" % (self.mnemonic, self.operands)).strip()


_ENGINES: Dict[str, Any] = {}


def engine(arch: str) -> Any:
    """The (cached) capstone disassembler of an architecture name ("x64", "x86", "arm64",
    "arm"), detail mode on. Raises DisassemblerMissing / PykdExtError."""
    found = _ENGINES.get(arch)
    if found is not None:
        return found
    try:
        import capstone
    except ImportError:
        raise DisassemblerMissing("disassembly needs capstone: pip install 'pykd-ext[disasm]'") \
            from None
    modes = {
        "x64": (capstone.CS_ARCH_X86, capstone.CS_MODE_64),
        "x86": (capstone.CS_ARCH_X86, capstone.CS_MODE_32),
        "arm64": (getattr(capstone, "CS_ARCH_AARCH64", getattr(capstone, "CS_ARCH_ARM64", None)),
                  capstone.CS_MODE_ARM),
        "arm": (capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB),
    }
    if arch not in modes:
        raise PykdExtError("no disassembler for architecture %r (x64, x86, arm64, arm)" % arch)
    md = capstone.Cs(*modes[arch])
    md.detail = True
    _ENGINES[arch] = md
    return md


def _references(arch: str, insn: Any) -> List[Tuple[int, str]]:
    import capstone
    out: List[Tuple[int, str]] = []
    groups = set(insn.groups)
    branch = bool(groups & {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL})
    if arch in ("x64", "x86"):
        from capstone import x86
        for op in insn.operands:
            if op.type == x86.X86_OP_IMM and branch:
                out.append((op.imm & _mask(arch), "branch"))
            elif op.type == x86.X86_OP_MEM and op.mem.base == x86.X86_REG_RIP \
                    and op.mem.index == 0:
                out.append(((insn.address + insn.size + op.mem.disp) & _mask(arch), "memory"))
        return out
    imm_type = _imm_type(arch)
    if branch or (arch == "arm64" and insn.mnemonic in _ARM64_ADDRESS_MNEMONICS):
        for op in insn.operands:
            if op.type == imm_type and "[" not in insn.op_str:
                out.append((op.imm & _mask(arch), "branch" if branch else "address"))
    return out


def _imm_type(arch: str) -> int:
    if arch == "arm64":
        try:                                    # capstone 5 names it arm64, capstone 6 aarch64
            from capstone import arm64
            return int(arm64.ARM64_OP_IMM)
        except ImportError:                     # pragma: no cover - capstone 6
            from capstone import aarch64
            return int(aarch64.AARCH64_OP_IMM)
    from capstone import arm
    return int(arm.ARM_OP_IMM)


def _mask(arch: str) -> int:
    """An address of the architecture (its pointer size, `targets.arch`; 64-bit when unknown)."""
    known = arch_named(arch)
    return (known.address_limit if known is not None else 1 << 64) - 1


def decode(code: bytes, address: int, arch: str, count: int) -> Iterator[Instruction]:
    """Up to `count` instructions from the start of `code` (at `address`); stops early at bytes
    that do not decode (the caller decides how to skip them) or at the end of `code`."""
    md = engine(arch)
    for n, insn in enumerate(md.disasm(bytes(code), address)):
        if n >= count:
            return
        yield Instruction(insn.address, bytes(insn.bytes), insn.mnemonic, insn.op_str,
                          _references(arch, insn))


def decode_one(code: bytes, address: int, arch: str) -> Optional[Instruction]:
    """The instruction at the start of `code`, None when those bytes do not decode."""
    for insn in decode(code, address, arch, 1):
        return insn
    return None
