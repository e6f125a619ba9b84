"""The x64 processor start block ("low stub") in low physical memory of a forged machine.

Why: a raw physical image has no header stating the DTB. Readers (Volatility 3's
`method_low_stub_offset`, MemProcFS, this project's raw-image reader) find it the usual way:
scan the first 1 MiB for the `PROCESSOR_START_BLOCK` that x64 Windows leaves in low memory to
start application processors, and read the kernel's CR3 and the long-mode entry target from it.

The block is built with the raw-image reader's own construct definition
(`pykd_ext.targets.rawimage.PROCESSOR_START_BLOCK`, facts from MemProcFS/PCILeech and
Volatility 3's `constants/windows`: masked signature 0x00000001000600E9, `LmTarget` at 0x70,
`ProcessorState.SpecialRegisters.Cr3` at 0xA0). The forge checks that CR3 position against the
kernel's ISF (`_KPROCESSOR_STATE.SpecialRegisters.Cr3` plus `ProcessorState` at 0x90, after
WRK v1.2 `base/ntos/inc/amd64.h`) before writing.
"""
from typing import Dict, Tuple

from pykd_ext.forge.isf import SymbolTable
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.targets.rawimage import PROCESSOR_START_BLOCK, START_BLOCK_JMP

#: Where Windows usually leaves the block: the second physical page (scanners start there).
DEFAULT_LOW_STUB_ADDRESS = 0x1000
#: The jump offset's low byte is outside the signature mask (any value passes the scanners).
JMP_OFFSET_LOW = 0x4D
#: Offset of `ProcessorState` in the start block (WRK amd64.h; 0xA0 - Cr3's 0x10 in the ISF).
PROCESSOR_STATE_OFFSET = 0x90


def _layout() -> Tuple[Dict[str, int], Dict[str, int]]:
    """Offsets and sizes of the start block's members, from the construct definition."""
    offsets: Dict[str, int] = {}
    sizes: Dict[str, int] = {}
    at = 0
    for sub in PROCESSOR_START_BLOCK.subcons:
        offsets[sub.name] = at
        sizes[sub.name] = sub.sizeof()
        at += sizes[sub.name]
    return offsets, sizes


def write_low_stub(phys: PhysicalImage, table: SymbolTable, dtb: int, lm_target: int,
                   address: int = DEFAULT_LOW_STUB_ADDRESS) -> int:
    """Write a processor start block at physical `address`; returns the address.

    `dtb`: the kernel's directory table base (stored as `ProcessorState.SpecialRegisters.Cr3`);
    `lm_target`: a kernel virtual address inside ntoskrnl (the long-mode entry, e.g. the image's
    entry point), from which scanners derive the kernel base.
    """
    offsets, sizes = _layout()
    cr3_at = PROCESSOR_STATE_OFFSET + table.offset("_KPROCESSOR_STATE", "SpecialRegisters.Cr3")
    if offsets["Cr3"] != cr3_at:
        raise AssertionError("start block definition puts CR3 at 0x%x, the ISF at 0x%x"
                             % (offsets["Cr3"], cr3_at))
    block = PROCESSOR_START_BLOCK.build({
        "Jmp": START_BLOCK_JMP | JMP_OFFSET_LOW << 8, "_rest0": bytes(sizes["_rest0"]),
        "LmTarget": lm_target, "_rest1": bytes(sizes["_rest1"]), "Cr3": dtb})
    phys.write(address, block)
    return address


__all__ = ["DEFAULT_LOW_STUB_ADDRESS", "write_low_stub"]
