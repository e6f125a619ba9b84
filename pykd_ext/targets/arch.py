"""Architectures as data: one `Arch` per processor family, looked up from what a file states.

Why: what differs between an x64 and an x86 Windows machine is a handful of facts (pointer size,
paging modes, CONTEXT record, how KDBG pointers are stored, which dump header, where the kernel
half begins, how a raw image hides its DTB). Readers look the description up from the file's own
statement (a dump's MachineImageType, a minidump's ProcessorArchitecture, a CONTEXT's size) and
use its fields, instead of testing `machine_type != 0x8664` in a dozen places.

Sources: PE/COFF specification (IMAGE_FILE_MACHINE_*), winnt.h (PROCESSOR_ARCHITECTURE_*,
CONTEXT), wdm.h (KI_USER_SHARED_DATA; the kernel address space starting at MM_SYSTEM_RANGE_START
0x80000000 on x86 and at the canonical high half on x64; MM_HIGHEST_USER_ADDRESS 0x7FFEFFFF on
x86 without /3GB, 0x7FFFFFFEFFFF on x64), wdbgexts.h (KDDEBUGGER_DATA64: a
32-bit kernel stores its pointers sign-extended to 64 bits), mindumpdef.h (DUMP_HEADER32 /
DUMP_HEADER64), Microsoft Learn "WOW64 Implementation Details" (x64 Windows runs x86 programs).

Adding an architecture touches: its paging mode(s) in `memory/paging_modes.py` (data), its CONTEXT
layout in `targets/cpu_context.py` (data), one `Arch` here, a DTB finder in `targets/dtbscan.py`
when raw images of it are to be read, and the tests of each. ARM64 is described as far as it is
known (machine type, paging mode, CONTEXT, 64-bit dump header); 32-bit ARM has a CONTEXT and
its triage dumps are read, but no paging mode.
"""
from typing import Any, Dict, NamedTuple, Optional, Tuple

from pykd_ext.memory.paging_modes import AARCH64_4K, X64_4LEVEL, X86_NONPAE, X86_PAE, PagingMode
from pykd_ext.targets.cpu_context import (AMD64_CONTEXT, ARM64_CONTEXT, ARM_CONTEXT, X86_CONTEXT,
                                          ContextLayout)
from pykd_ext.targets.dtbscan import LOW_STUB_FINDER, RECURSIVE_MAP_FINDER, DtbFinder


class Arch(NamedTuple):
    """What pykd-ext needs to know about one processor architecture."""

    name: str                                   # "x64", "x86" (TargetInfo.arch)
    machine_types: Tuple[int, ...]              # IMAGE_FILE_MACHINE_* (dump headers, PE images)
    processor_architecture: Optional[int]       # PROCESSOR_ARCHITECTURE_* (minidump SystemInfo)
    pointer_size: int
    paging_modes: Tuple[PagingMode, ...] = ()   # its kernels' modes; the first is the default
    context: Optional[ContextLayout] = None     # the thread CONTEXT record
    kernel_dump_width: Optional[int] = None     # dump header flavour: 64 (PAGEDU64), 32 (PAGEDUMP)
    kdbg_sign_extended: bool = False            # KDDEBUGGER_DATA64 pointers sign-extended (32-bit)
    kernel_start: Optional[int] = None          # lowest kernel-space virtual address
    kuser_shared_data: Optional[int] = None     # KI_USER_SHARED_DATA, the kernel's view
    find_dtbs: Optional[DtbFinder] = None       # raw images: where the kernel's tables are
    highest_user_address: Optional[int] = None  # MM_HIGHEST_USER_ADDRESS (no /3GB, no LA57)
    instruction_pointer: Optional[str] = None   # CONTEXT member of the program counter ("Rip")
    stack_pointer: Optional[str] = None         # CONTEXT member of the stack pointer ("Rsp")
    compat_arch: Optional[str] = None           # WoW64: the 32-bit architecture it runs ("x86")
    pdata_unwind: bool = False                  # images' .pdata is x64 UNWIND_INFO (kernel/unwind.py)

    def context_registers(self, registers: Any) -> Optional[Tuple[int, int]]:
        """(instruction pointer, stack pointer) of a decoded CONTEXT (`ContextLayout.decode`'s
        lower-case keys), None when this architecture names no such registers or they are absent."""
        if not isinstance(registers, dict) or not self.instruction_pointer or not self.stack_pointer:
            return None
        ip = registers.get(self.instruction_pointer.lower())
        sp = registers.get(self.stack_pointer.lower())
        if isinstance(ip, int) and isinstance(sp, int):
            return ip, sp
        return None

    def is_user_address(self, address: int) -> bool:
        """At or below the highest user address (False when this architecture does not state it)."""
        return self.highest_user_address is not None and 0 <= address <= self.highest_user_address

    @property
    def address_limit(self) -> int:
        return 1 << (8 * self.pointer_size)

    def is_kernel_address(self, address: int) -> bool:
        if self.kernel_start is None:
            return False
        return self.kernel_start <= address < self.address_limit

    def narrow_pointer(self, value: int) -> Optional[int]:
        """A KDDEBUGGER_DATA64 pointer as this architecture's address (None: not one)."""
        if self.kdbg_sign_extended:
            bits = 8 * self.pointer_size
            if value >> bits == (1 << (64 - bits)) - 1:
                return value & (self.address_limit - 1)
        return value if value < self.address_limit else None

    def kdbg_pointer(self, address: int) -> int:
        """An address as KDDEBUGGER_DATA64 stores it (the inverse of `narrow_pointer`): a 32-bit
        kernel's 0x8xxxxxxx is written sign-extended, 0xFFFFFFFF8xxxxxxx."""
        if self.kdbg_sign_extended and address >> (8 * self.pointer_size - 1) == 1:
            return address | ((1 << 64) - self.address_limit)
        return address

    def kdbg_values(self, kdbg: Dict[str, Any]) -> Dict[str, Any]:
        """A decoded KDBG with sign-extended pointers turned into the addresses they stand for
        (0x8xxxxxxx reads as 0xFFFFFFFF8xxxxxxx in a 32-bit kernel's block); other values kept."""
        if not self.kdbg_sign_extended:
            return dict(kdbg)
        bits = 8 * self.pointer_size
        high = (1 << (64 - bits)) - 1
        out: Dict[str, Any] = {}
        for key, value in kdbg.items():
            if isinstance(value, int) and not isinstance(value, bool) and value >> bits == high:
                value &= self.address_limit - 1
            out[key] = value
        return out

    @property
    def default_mode(self) -> Optional[PagingMode]:
        return self.paging_modes[0] if self.paging_modes else None


X64 = Arch(
    name="x64", machine_types=(0x8664,), processor_architecture=9, pointer_size=8,
    paging_modes=(X64_4LEVEL,), context=AMD64_CONTEXT, kernel_dump_width=64,
    kernel_start=0xFFFF800000000000, kuser_shared_data=0xFFFFF78000000000,
    find_dtbs=LOW_STUB_FINDER, highest_user_address=0x7FFFFFFEFFFF,
    instruction_pointer="Rip", stack_pointer="Rsp", compat_arch="x86", pdata_unwind=True)

X86 = Arch(
    name="x86", machine_types=(0x14C,), processor_architecture=0, pointer_size=4,
    # PAE first: every Windows 8+ x86 kernel and most Windows 7 ones run PAE
    paging_modes=(X86_PAE, X86_NONPAE), context=X86_CONTEXT, kernel_dump_width=32,
    kdbg_sign_extended=True, kernel_start=0x80000000, kuser_shared_data=0xFFDF0000,
    find_dtbs=RECURSIVE_MAP_FINDER, highest_user_address=0x7FFEFFFF,
    instruction_pointer="Eip", stack_pointer="Esp")

#: ARM64 (H8, issue 15): Windows on ARM64 keeps x64's split (kernel in the upper half, translated
#: through TTBR1 with 48-bit VAs; KUSER_SHARED_DATA at the same kernel address, wdm.h), dumps in
#: the 64-bit header; its CONTEXT is ARM64_NT_CONTEXT (Pc, Sp).
ARM64 = Arch(name="arm64", machine_types=(0xAA64,), processor_architecture=12, pointer_size=8,
             paging_modes=(AARCH64_4K,), context=ARM64_CONTEXT, kernel_dump_width=64,
             kernel_start=0xFFFF800000000000, kuser_shared_data=0xFFFFF78000000000,
             highest_user_address=0x7FFFFFFEFFFF, instruction_pointer="Pc", stack_pointer="Sp")

#: 32-bit ARM (Windows RT / Windows 10 IoT): its triage dumps (`PAGEDUMP`) are read (H8, issue
#: 15): kernel from 0x80000000 and KDBG pointers sign-extended as on x86; no paging mode yet, so
#: dumps with physical memory are refused by name.
ARM = Arch(name="arm", machine_types=(0x1C4,), processor_architecture=5, pointer_size=4,
           context=ARM_CONTEXT, kernel_dump_width=32, kdbg_sign_extended=True,
           kernel_start=0x80000000, instruction_pointer="Pc", stack_pointer="Sp")

#: Named only (so files stating them are reported by name): no reader decodes them.
IA64 = Arch(name="ia64", machine_types=(0x200,), processor_architecture=6, pointer_size=8)

#: Every architecture known, in the order raw-image discovery tries them.
ARCHES: Tuple[Arch, ...] = (X64, X86, ARM64, ARM, IA64)


#: The architecture assumed when a symbol file or a debugger does not say, and the one whose
#: layout build ids carry no suffix ("10.0.19041.1288"; others: "6.1.7601.17514-x86").
DEFAULT_ARCH = X64


def decodable_arches() -> Tuple[Arch, ...]:
    """The architectures pykd-ext decodes dumps of (those with a CONTEXT layout; a triage dump
    needs no paging mode): the ones whose symbol tables it builds layouts for."""
    return tuple(arch for arch in ARCHES if arch.context is not None)


def layout_build_id(version: str, arch_name: str) -> str:
    """The layout registry's id of a build: the version, suffixed with the architecture unless
    it is the default one."""
    return version if arch_name == DEFAULT_ARCH.name else "%s-%s" % (version, arch_name)


def arch_named(name: str) -> Optional[Arch]:
    for arch in ARCHES:
        if arch.name == name:
            return arch
    return None


def arch_for_machine(machine_type: int) -> Optional[Arch]:
    """The architecture of an IMAGE_FILE_MACHINE_* value (None when unknown)."""
    for arch in ARCHES:
        if machine_type in arch.machine_types:
            return arch
    return None


def machine_name(machine_type: int) -> str:
    arch = arch_for_machine(machine_type)
    return arch.name if arch is not None else "machine 0x%x" % machine_type


def arch_for_processor(code: int) -> Optional[Arch]:
    """The architecture of a PROCESSOR_ARCHITECTURE_* value (None when unknown)."""
    for arch in ARCHES:
        if arch.processor_architecture == code:
            return arch
    return None


def arch_for_context_size(size: int) -> Optional[Arch]:
    """Whose CONTEXT record has this size (a WoW64 minidump stores x86 ones in a 64-bit file)."""
    for arch in ARCHES:
        if arch.context is not None and arch.context.size == size:
            return arch
    return None


def arch_for_pointer_size(size: int) -> Arch:
    """The decodable architecture with this pointer size (a debugger that says only "64-bit")."""
    for arch in ARCHES:
        if arch.pointer_size == size and arch.context is not None:
            return arch
    raise KeyError("no architecture with %d-byte pointers" % size)


def arch_or_pointer_size(name: Optional[str], pointer_size: int) -> Arch:
    """The architecture named, else the decodable one with this pointer size (a caller that may
    know only "32-bit": an inference, a stand-in context)."""
    named = arch_named(name) if name else None
    return named if named is not None else arch_for_pointer_size(pointer_size)


def decode_context(data: bytes, arch_name: str) -> Optional[Dict[str, int]]:
    """Integer registers of a CONTEXT record of this architecture (None: too short/unknown)."""
    arch = arch_named(arch_name)
    if arch is None or arch.context is None:
        return None
    return arch.context.decode(data)


def context_arch(size: int, default: str) -> str:
    """Which architecture's CONTEXT a record of this size is (else `default`)."""
    arch = arch_for_context_size(size)
    return arch.name if arch is not None else default
