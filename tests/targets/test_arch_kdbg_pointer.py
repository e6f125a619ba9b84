"""`Arch.kdbg_pointer`, the forge's way to write KDDEBUGGER_DATA64 pointers (issue 11: the two
forge copies of a 32-bit sign-extension are one architecture fact).

Independent source: the real 32-bit ARM triage dump (shared/real/kernel-triage) stores its KDBG
`KernBase` (wdbgexts.h: DBGKD_DEBUG_DATA_HEADER64 is a 16-byte LIST_ENTRY64, then OwnerTag
"KDBG" and Size, then ULONG64 KernBase) sign-extended, while its driver list states the kernel
image's base as a plain 32-bit address.
"""
import struct
from pathlib import Path

from pykd_ext.targets.arch import ARCHES, ARM, X64, X86
from pykd_ext.targets.opener import open_target


def test_the_real_arm32_kdbg_stores_kernbase_as_kdbg_pointer_writes_it(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-17134-arm32-triage.dmp")
    with open(path, "rb") as handle:
        raw = handle.read()
    tag = raw.find(b"KDBG")
    stored = struct.unpack_from("<Q", raw, tag + 8)[0]            # KernBase after OwnerTag, Size
    with open_target(path) as target:
        drivers = (target.info().extra or {})["drivers"]
    kernel = next(d["base"] for d in drivers if d["name"].lower() == "ntoskrnl.exe")
    assert kernel < 1 << 32 and stored >> 32 == 0xFFFFFFFF
    assert ARM.kdbg_pointer(kernel) == stored and ARM.narrow_pointer(stored) == kernel


def test_kdbg_pointer_inverts_narrow_pointer_on_every_architecture() -> None:
    for arch in ARCHES:
        for address in (0x1000, 0x7FFE0000, 0x82A00000, 0xFFDF0000, 0xFFFFF80512400000):
            if address >= arch.address_limit:
                continue
            assert arch.narrow_pointer(arch.kdbg_pointer(address)) == address, (arch.name, hex(address))
    assert X86.kdbg_pointer(0x82A00000) == 0xFFFFFFFF82A00000 and X86.kdbg_pointer(0x7FFE0000) == 0x7FFE0000
    assert X64.kdbg_pointer(0xFFFFF80512400000) == 0xFFFFF80512400000
