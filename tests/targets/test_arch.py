"""Architecture descriptions and the one dump-header definition, against independent sources.

- the kernels' own `_CONTEXT` layouts (generated from the ISF symbol tables of a 19041 x64 and a
  19041 x86 kernel) for the CONTEXT records of `Arch.context`;
- Volatility 3's `crash64.json` / `crash.json` (its own description of DUMP_HEADER64 and the
  32-bit DUMP_HEADER) for every offset of `dumpheader.HEADER_FIELDS`;
- the PE/COFF specification's and winnt.h's published numbers for the lookups.
"""
import json
from pathlib import Path

import pytest

from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.paging_modes import AARCH64_4K, X64_4LEVEL, X86_NONPAE, X86_PAE
from pykd_ext.targets import dumpheader as dh
from pykd_ext.targets.arch import (ARCHES, ARM64, X64, X86, arch_for_context_size,
                                   arch_for_machine, arch_for_pointer_size, arch_for_processor,
                                   arch_named, context_arch, decode_context, machine_name)


def test_lookups_from_what_files_state() -> None:
    # IMAGE_FILE_MACHINE_AMD64 / I386 / ARM64 (PE/COFF specification)
    assert (arch_for_machine(0x8664), arch_for_machine(0x14C), arch_for_machine(0xAA64)) == \
        (X64, X86, ARM64)
    assert arch_for_machine(0x1234) is None and machine_name(0x1234) == "machine 0x1234"
    # PROCESSOR_ARCHITECTURE_AMD64 = 9, _INTEL = 0, _ARM64 = 12 (winnt.h)
    assert (arch_for_processor(9), arch_for_processor(0), arch_for_processor(12)) == (X64, X86, ARM64)
    assert arch_for_pointer_size(8) is X64 and arch_for_pointer_size(4) is X86
    assert arch_named("x86") is X86 and arch_named("sparc") is None
    assert len({arch.name for arch in ARCHES}) == len(ARCHES)


def test_readable_architectures_are_complete() -> None:
    """Every architecture whose kernel dumps are read states everything a reader asks for."""
    readable = [arch for arch in ARCHES if arch.kernel_dump_width]
    assert {arch.name for arch in readable} == {"x64", "x86", "arm64", "arm"}
    for arch in readable:
        assert arch.context is not None and arch.kernel_start is not None
        assert all(mode.pointer_size == arch.pointer_size for mode in arch.paging_modes)
        assert arch.kernel_dump_width == 8 * arch.pointer_size
        assert not arch.is_kernel_address(arch.kernel_start - 1)
        assert arch.instruction_pointer and arch.stack_pointer
        if arch.kuser_shared_data is not None:
            assert arch.is_kernel_address(arch.kuser_shared_data)
    # raw images are read for the architectures with a DTB finder (x64, x86)
    for arch in (X64, X86):
        assert arch.paging_modes and arch.find_dtbs is not None
    assert X64.paging_modes == (X64_4LEVEL,) and X86.paging_modes == (X86_PAE, X86_NONPAE)
    assert ARM64.paging_modes == (AARCH64_4K,)
    assert arch_named("arm").paging_modes == ()          # 32-bit ARM: triage dumps only


def test_arm_context_layouts_are_winnt_sizes() -> None:
    """winnt.h: ARM64_NT_CONTEXT is 0x390 bytes (Pc at 0x108, Sp at 0x100), the ARM CONTEXT
    0x1a0 bytes (Sp at 0x38, Pc at 0x40); the sizes name the architecture of a bare record."""
    assert ARM64.context.size == 0x390 and arch_for_context_size(0x390) is ARM64
    assert arch_named("arm").context.size == 0x1A0
    raw = bytes(range(256)) * 4
    regs = decode_context(raw[:0x390], "arm64")
    assert regs["pc"] == int.from_bytes(raw[0x108:0x110], "little")
    assert regs["sp"] == int.from_bytes(raw[0x100:0x108], "little")
    assert regs["x0"] == int.from_bytes(raw[8:16], "little")
    regs = decode_context(raw[:0x1A0], "arm")
    assert regs["sp"] == int.from_bytes(raw[0x38:0x3C], "little")
    assert regs["pc"] == int.from_bytes(raw[0x40:0x44], "little")


@pytest.mark.parametrize("arch,build_id", [(X64, "10.0.19041.1288"), (X86, "10.0.19041.1288-x86")],
                         ids=["x64", "x86"])
def test_context_records_match_the_kernels_context(arch, build_id: str) -> None:
    context = load_layouts(build_id).type("_CONTEXT")
    assert arch.context is not None and arch.context.size == context.size
    assert arch_for_context_size(context.size) is arch
    assert context_arch(context.size, "?") == arch.name and context_arch(12, "?") == "?"
    at = 0
    for sub in arch.context.integer.subcons:
        if not sub.name.startswith("_") and context.has_field(sub.name):
            assert context.offset(sub.name) == at, sub.name
        at += sub.sizeof()
    # a record of increasing bytes decodes each register from its ISF offset
    raw = bytes(range(256)) * (context.size // 256 + 1)
    regs = decode_context(raw[:context.size], arch.name)
    assert regs is not None
    for name in arch.context.registers:
        offset, size = context.offset(name), context.field(name).size
        assert regs[name.lower()] == int.from_bytes(raw[offset:offset + size], "little"), name
    assert decode_context(raw[:16], arch.name) is None
    assert decode_context(raw, "ia64") is None           # named, but no CONTEXT layout


def _volatility_header(name: str, type_name: str) -> dict:
    import volatility3.framework.symbols.windows as win
    with open(Path(win.__file__).parent / name) as handle:
        return json.load(handle)["user_types"][type_name]


#: Volatility's names for the fields it names differently.
VOLATILITY_NAMES = {"BugCheckParameter": "BugCheckCodeParameter",
                    "PhysicalMemoryBlock": "PhysicalMemoryBlockBuffer",
                    "Unused": "Unused2", "Spare3": "VersionUser2"}


@pytest.mark.parametrize("width,file_name,type_name", [(64, "crash64.json", "_DUMP_HEADER64"),
                                                       (32, "crash.json", "_DUMP_HEADER")])
def test_header_fields_sit_where_volatility_says(width: int, file_name: str, type_name: str) -> None:
    theirs = _volatility_header(file_name, type_name)
    assert theirs["size"] == dh.HEADER_SIZE[width] == dh.DUMP_HEADER[width].sizeof()
    ours = dh.header_offsets(width)
    compared = 0
    for name, offset in ours.items():
        field = theirs["fields"].get(VOLATILITY_NAMES.get(name, name))
        if field is not None:
            assert field["offset"] == offset, name
            compared += 1
    assert compared >= len(ours) - 2        # Attributes, BootId: newer than Volatility's files
    # and the construct definition places each field at its table offset
    at = 0
    for sub in dh.DUMP_HEADER[width].subcons:
        if sub.name in ours:
            assert ours[sub.name] == at, sub.name
        at += sub.sizeof()
    assert at == dh.HEADER_SIZE[width]
