"""Thread CONTEXT record layouts (integer registers) as stored in dumps, one per architecture.

Why: kernel triage dumps, user minidumps and legacy user dumps all store a Win32 `CONTEXT`
record per thread (or for the crashing thread).  Only the integer/control part is decoded here
(cheap, enough for `info` and stack walking); floating-point/vector state is left as bytes.
Which layout a dump uses is its architecture's (`arch.Arch.context`).

Format facts: Windows SDK `winnt.h` `CONTEXT` (AMD64: 0x4d0 bytes, Rip at 0xf8; x86: 0x2cc
bytes, the 112-byte FLOATING_SAVE_AREA after the debug registers, Eip at 0xb8), as documented
on Microsoft Learn "CONTEXT structure (winnt.h)"; ARM64: winnt.h `ARM64_NT_CONTEXT` (the
`CONTEXT` of `_M_ARM64`, Microsoft Learn "ARM64_NT_CONTEXT structure (winnt.h)": ContextFlags,
Cpsr, X0-X28, Fp, Lr, Sp, Pc, then 32 NEON128 V registers, Fpcr, Fpsr and the ARM64_MAX_BREAKPOINTS
(8) / ARM64_MAX_WATCHPOINTS (2) debug registers: 0x390 bytes); ARM (32-bit): winnt.h `CONTEXT` of
`_M_ARM` (ContextFlags, R0-R12, Sp, Lr, Pc, Cpsr, Fpscr, Padding, 32 D registers,
ARM_MAX_BREAKPOINTS (8) / ARM_MAX_WATCHPOINTS (1) debug registers, Padding2[2]: 0x1a0 bytes).
No ISF here describes the ARM records; the real ARM64 and ARM32 triage dumps confirm them (their
context's Sp equals the TRIAGE_DUMP's TopOfStack, tests/targets/test_triage_arm.py).
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

from construct import Array, Bytes, Int16ul, Int32ul, Int64ul, Struct

CONTEXT_AMD64_SIZE = 0x4D0
CONTEXT_X86_SIZE = 0x2CC
CONTEXT_ARM64_SIZE = 0x390
CONTEXT_ARM_SIZE = 0x1A0

# winnt.h CONTEXT (AMD64), integer part; the XMM/vector area follows at 0x100.
CONTEXT_AMD64_INTEGER = Struct(
    "PHome" / Array(6, Int64ul),     # +0x00 P1Home..P6Home
    "ContextFlags" / Int32ul,        # +0x30
    "MxCsr" / Int32ul,               # +0x34
    "SegCs" / Int16ul,               # +0x38
    "SegDs" / Int16ul,               # +0x3a
    "SegEs" / Int16ul,               # +0x3c
    "SegFs" / Int16ul,               # +0x3e
    "SegGs" / Int16ul,               # +0x40
    "SegSs" / Int16ul,               # +0x42
    "EFlags" / Int32ul,              # +0x44
    "Dr0" / Int64ul,                 # +0x48
    "Dr1" / Int64ul,                 # +0x50
    "Dr2" / Int64ul,                 # +0x58
    "Dr3" / Int64ul,                 # +0x60
    "Dr6" / Int64ul,                 # +0x68
    "Dr7" / Int64ul,                 # +0x70
    "Rax" / Int64ul,                 # +0x78
    "Rcx" / Int64ul,                 # +0x80
    "Rdx" / Int64ul,                 # +0x88
    "Rbx" / Int64ul,                 # +0x90
    "Rsp" / Int64ul,                 # +0x98
    "Rbp" / Int64ul,                 # +0xa0
    "Rsi" / Int64ul,                 # +0xa8
    "Rdi" / Int64ul,                 # +0xb0
    "R8" / Int64ul,                  # +0xb8
    "R9" / Int64ul,                  # +0xc0
    "R10" / Int64ul,                 # +0xc8
    "R11" / Int64ul,                 # +0xd0
    "R12" / Int64ul,                 # +0xd8
    "R13" / Int64ul,                 # +0xe0
    "R14" / Int64ul,                 # +0xe8
    "R15" / Int64ul,                 # +0xf0
    "Rip" / Int64ul,                 # +0xf8
)                                    # 0x100 bytes decoded of 0x4d0

# winnt.h CONTEXT (x86), up to ExtendedRegisters (which follow at 0xcc, 512 bytes).
CONTEXT_X86_INTEGER = Struct(
    "ContextFlags" / Int32ul,        # +0x00
    "Dr0" / Int32ul,                 # +0x04
    "Dr1" / Int32ul,                 # +0x08
    "Dr2" / Int32ul,                 # +0x0c
    "Dr3" / Int32ul,                 # +0x10
    "Dr6" / Int32ul,                 # +0x14
    "Dr7" / Int32ul,                 # +0x18
    "FloatSave" / Bytes(112),        # +0x1c FLOATING_SAVE_AREA
    "SegGs" / Int32ul,               # +0x8c
    "SegFs" / Int32ul,               # +0x90
    "SegEs" / Int32ul,               # +0x94
    "SegDs" / Int32ul,               # +0x98
    "Edi" / Int32ul,                 # +0x9c
    "Esi" / Int32ul,                 # +0xa0
    "Ebx" / Int32ul,                 # +0xa4
    "Edx" / Int32ul,                 # +0xa8
    "Ecx" / Int32ul,                 # +0xac
    "Eax" / Int32ul,                 # +0xb0
    "Ebp" / Int32ul,                 # +0xb4
    "Eip" / Int32ul,                 # +0xb8
    "SegCs" / Int32ul,               # +0xbc
    "EFlags" / Int32ul,              # +0xc0
    "Esp" / Int32ul,                 # +0xc4
    "SegSs" / Int32ul,               # +0xc8
)                                    # 0xcc bytes decoded of 0x2cc


# winnt.h ARM64_NT_CONTEXT, integer part; V[32] (NEON128), Fpcr, Fpsr and the debug registers
# follow at 0x110.
CONTEXT_ARM64_INTEGER = Struct(
    "ContextFlags" / Int32ul,        # +0x00
    "Cpsr" / Int32ul,                # +0x04
    *[("X%d" % n) / Int64ul for n in range(29)],   # +0x08 .. +0xe8
    "Fp" / Int64ul,                  # +0xf0 (X29)
    "Lr" / Int64ul,                  # +0xf8 (X30)
    "Sp" / Int64ul,                  # +0x100
    "Pc" / Int64ul,                  # +0x108
)                                    # 0x110 bytes decoded of 0x390

# winnt.h CONTEXT (ARM), integer part; Fpscr, Padding, D[32] and the debug registers follow.
CONTEXT_ARM_INTEGER = Struct(
    "ContextFlags" / Int32ul,        # +0x00
    *[("R%d" % n) / Int32ul for n in range(13)],   # +0x04 .. +0x34
    "Sp" / Int32ul,                  # +0x38
    "Lr" / Int32ul,                  # +0x3c
    "Pc" / Int32ul,                  # +0x40
    "Cpsr" / Int32ul,                # +0x44
)                                    # 0x48 bytes decoded of 0x1a0


class ContextLayout(NamedTuple):
    """One architecture's CONTEXT record: its size and the integer registers decoded from it."""

    name: str                    # winnt.h's name for the flavour ("AMD64", "x86")
    size: int                    # bytes of the whole record (what dumps store per thread)
    integer: Any                 # construct Struct of the leading integer/control part
    registers: Tuple[str, ...]   # fields reported, in this order, as lower-case keys

    def decode(self, data: bytes) -> Optional[Dict[str, int]]:
        """Integer registers ({"rip": ..., "rsp": ...}), None when the record is too short."""
        need = self.integer.sizeof()
        if len(data) < need:
            return None
        parsed = self.integer.parse(bytes(data[:need]))
        return {name.lower(): int(parsed[name]) for name in self.registers}


AMD64_CONTEXT = ContextLayout(
    "AMD64", CONTEXT_AMD64_SIZE, CONTEXT_AMD64_INTEGER,
    ("Rax", "Rbx", "Rcx", "Rdx", "Rsi", "Rdi", "Rbp", "Rsp", "R8", "R9", "R10", "R11", "R12",
     "R13", "R14", "R15", "Rip", "EFlags", "SegCs", "SegSs", "ContextFlags"))

X86_CONTEXT = ContextLayout(
    "x86", CONTEXT_X86_SIZE, CONTEXT_X86_INTEGER,
    ("Eax", "Ebx", "Ecx", "Edx", "Esi", "Edi", "Ebp", "Esp", "Eip", "EFlags", "SegCs", "SegSs",
     "SegFs", "ContextFlags"))

ARM64_CONTEXT = ContextLayout(
    "ARM64", CONTEXT_ARM64_SIZE, CONTEXT_ARM64_INTEGER,
    tuple("X%d" % n for n in range(29)) + ("Fp", "Lr", "Sp", "Pc", "Cpsr", "ContextFlags"))

ARM_CONTEXT = ContextLayout(
    "ARM", CONTEXT_ARM_SIZE, CONTEXT_ARM_INTEGER,
    tuple("R%d" % n for n in range(13)) + ("Sp", "Lr", "Pc", "Cpsr", "ContextFlags"))

#: Bytes of every layout's decoded integer part must end where winnt.h puts the next member.
for _layout, _end in ((ARM64_CONTEXT, 0x110), (ARM_CONTEXT, 0x48)):
    if _layout.integer.sizeof() != _end:        # pragma: no cover - a typo in the tables above
        raise RuntimeError("%s CONTEXT integer part is 0x%x bytes" % (_layout.name,
                                                                      _layout.integer.sizeof()))
