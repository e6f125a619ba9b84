"""Architectures as data: one `Arch` per processor family, looked up from what a file states.

Why: what differs between an x64 and an x86 Windows machine is a handful of facts (pointer size,
paging modes, CONTEXT record, how KDBG pointers are stored, which dump header, where the kernel
half begins, how a raw image hides its DTB). Readers look the description up from the file's own
statement (a dump's MachineImageType, a minidump's ProcessorArchitecture, a CONTEXT's size) and
use its fields, instead of testing `machine_type != 0x8664` in a dozen places.

Sources: PE/COFF specification (IMAGE_FILE_MACHINE_*), winnt.h (PROCESSOR_ARCHITECTURE_*,
CONTEXT), wdm.h (KI_USER_SHARED_DATA; the kernel address space starting at MM_SYSTEM_RANGE_START
0x80000000 on x86 and at the canonical high half on x64), wdbgexts.h (KDDEBUGGER_DATA64: a
32-bit kernel stores its pointers sign-extended to 64 bits), mindumpdef.h (DUMP_HEADER32 /
DUMP_HEADER64).

Adding an architecture touches: its paging mode(s) in `memory/paging_modes.py` (data), its CONTEXT
layout in `targets/cpu_context.py` (data), one `Arch` here, a DTB finder in `targets/dtbscan.py`
when raw images of it are to be read, and the tests of each. ARM64 is described as far as it is
known (machine type, paging mode); with no CONTEXT layout and no dump flavour yet, readers refuse
its dumps with a typed error naming it.
"""
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from pykd_ext.memory.paging_modes import AARCH64_4K, X64_4LEVEL, X86_NONPAE, X86_PAE, PagingMode
from pykd_ext.targets.cpu_context import AMD64_CONTEXT, X86_CONTEXT, ContextLayout
from pykd_ext.targets.dtbscan import LOW_STUB_FINDER, RECURSIVE_MAP_FINDER, DtbFinder


@dataclass(frozen=True)
class Arch:
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
    find_dtbs=LOW_STUB_FINDER)

X86 = Arch(
    name="x86", machine_types=(0x14C,), processor_architecture=0, pointer_size=4,
    # PAE first: every Windows 8+ x86 kernel and most Windows 7 ones run PAE
    paging_modes=(X86_PAE, X86_NONPAE), context=X86_CONTEXT, kernel_dump_width=32,
    kdbg_sign_extended=True, kernel_start=0x80000000, kuser_shared_data=0xFFDF0000,
    find_dtbs=RECURSIVE_MAP_FINDER)

ARM64 = Arch(name="arm64", machine_types=(0xAA64,), processor_architecture=12, pointer_size=8,
             paging_modes=(AARCH64_4K,))

#: Named only (so files stating them are reported by name): no reader decodes them.
ARM = Arch(name="arm", machine_types=(0x1C4,), processor_architecture=5, pointer_size=4)
IA64 = Arch(name="ia64", machine_types=(0x200,), processor_architecture=6, pointer_size=8)

#: Every architecture known, in the order raw-image discovery tries them.
ARCHES: Tuple[Arch, ...] = (X64, X86, ARM64, ARM, IA64)


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
