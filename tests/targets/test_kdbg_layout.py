"""KDDEBUGGER_DATA64: generator output, offsets against an independent source, build/decode."""
from pathlib import Path

import pytest

from pykd_ext.errors import DumpFormatError, MemoryReadError
from pykd_ext.layouts import gen_kdbg
from pykd_ext.memory.sparse import SparseAddressSpace
from pykd_ext.structs.kddebugger_data64 import KDDEBUGGER_DATA64, KDDEBUGGER_DATA64_SIZE
from pykd_ext.targets.kdbg import (KDBG_FIELDS, build_kdbg, decode_kdbg, decode_kdbg_bytes,
                                   kdbg_field_offset)

REPO = Path(__file__).resolve().parents[2]

# Independent source: dbgeng.h DEBUG_DATA_* indexes for IDebugDataSpaces::ReadDebuggerData,
# which are the byte offsets of the KDDEBUGGER_DATA64 fields (values as published in the
# Debugging Tools' dbgeng.h, e.g. mingw-w64's copy). Names differ slightly ("...Addr").
DBGENG_DEBUG_DATA = {
    "ExpPagedPoolDescriptor": 104, "ExpNumberOfPagedPools": 112, "KeTimeIncrement": 120,
    "KeBugCheckCallbackListHead": 128, "KiBugcheckData": 136, "IopErrorLogListHead": 144,
    "ObpRootDirectoryObject": 152, "ObpTypeObjectType": 160, "MmSystemCacheStart": 168,
    "MmPfnDatabase": 192, "MmNumberOfPhysicalPages": 248, "MmPageSize": 312,
    "MmLoadedUserImageList": 512, "NtBuildLab": 520, "KiNormalSystemCall": 528,
    "KiProcessorBlock": 536, "MmUnloadedDrivers": 544, "CmNtCSDVersion": 616,
    "MmPhysicalMemoryBlock": 624, "MmSessionBase": 632, "MmSessionSize": 640,
    "MmSystemParentTablePage": 648, "MmVirtualTranslationBase": 656,
    "OffsetKThreadNextProcessor": 664, "OffsetKThreadTeb": 666, "OffsetKThreadKernelStack": 668,
    "OffsetKThreadInitialStack": 670, "OffsetKThreadApcProcess": 672, "OffsetKThreadState": 674,
    "OffsetKThreadBStore": 676, "OffsetKThreadBStoreLimit": 678, "SizeEProcess": 680,
    "OffsetEprocessPeb": 682, "OffsetEprocessParentCID": 684,
    "OffsetEprocessDirectoryTableBase": 686, "SizePrcb": 688, "OffsetPrcbDpcRoutine": 690,
    "OffsetPrcbCurrentThread": 692, "OffsetPrcbMhz": 694, "OffsetPrcbCpuType": 696,
    "OffsetPrcbVendorString": 698, "OffsetPrcbProcStateContext": 700, "OffsetPrcbNumber": 702,
    "SizeEThread": 704, "KdPrintCircularBufferPtr": 712, "KdPrintBufferSize": 720,
}


def test_generated_module_is_up_to_date() -> None:
    source = REPO / "structs" / "sources" / "wdbgexts_KDDEBUGGER_DATA64.h"
    expected = gen_kdbg.render(source.read_text(encoding="utf-8"),
                               "structs/sources/" + source.name)
    committed = (REPO / "structs" / "kddebugger_data64.py").read_text(encoding="utf-8")
    assert committed == expected
    assert gen_kdbg.main(["--check"]) == 0


def test_offsets_match_dbgeng_debug_data_indexes() -> None:
    for name, offset in DBGENG_DEBUG_DATA.items():
        assert kdbg_field_offset(name) == offset, name


def test_header_and_first_fields() -> None:
    # wdbgexts.h: the 0x18-byte DBGKD_DEBUG_DATA_HEADER64 (LIST_ENTRY64, OwnerTag, Size), then
    # KernBase. The full Windows 10 RS5+ block is 0x380 bytes (the real triage dumps' copies).
    assert kdbg_field_offset("KernBase") == 0x18
    assert KDDEBUGGER_DATA64.sizeof() == KDDEBUGGER_DATA64_SIZE == 0x380
    assert list(KDBG_FIELDS)[-1] == "RetpolineStubSize"


def test_generator_rejects_unknown_grammar() -> None:
    with pytest.raises(gen_kdbg.GenError):
        gen_kdbg.render("typedef struct _X { FLOAT f; } X;", "x")
    with pytest.raises(gen_kdbg.GenError):
        gen_kdbg.render("nothing here", "x")


def test_generator_bitfields_and_alignment() -> None:
    text = gen_kdbg.render("typedef struct _T { UCHAR a; USHORT b:3; USHORT c:5; ULONG64 d; } T;",
                           "t")
    namespace: dict = {}
    exec(compile(text, "t", "exec"), namespace)
    struct_t = namespace["T"]
    assert struct_t.sizeof() == 16
    raw = bytes([0x11, 0, (0b10110 << 3 | 0b101) & 0xFF, (0b10110 >> 5)]) + bytes(4) \
        + (7).to_bytes(8, "little")
    parsed = struct_t.parse(raw)
    assert parsed.a == 0x11 and parsed.d == 7
    assert parsed["_bits_0x002"].b == 0b101 and parsed["_bits_0x002"].c == 0b10110


def test_build_then_decode_round_trip() -> None:
    values = {"KernBase": 0xFFFFF80412340000, "PsActiveProcessHead": 0xFFFFF80412C1E200,
              "PsLoadedModuleList": 0xFFFFF80412C2A390, "SizeEProcess": 0xA40,
              "OffsetKThreadState": 0x184, "PaeEnabled": 1, "OffsetKThreadStackLimit": 0x30,
              "RetpolineStubSize": 0x1000, "_list_flink": 0x1111, "_list_blink": 0x2222}
    data = build_kdbg(values)
    assert len(data) == 0x380
    assert data[0x10:0x14] == b"KDBG"
    assert int.from_bytes(data[0x14:0x18], "little") == 0x380
    assert int.from_bytes(data[0x18:0x20], "little") == values["KernBase"]
    assert data[0x36] & 1 == 1                       # PaeEnabled: bit 0 of the USHORT at 0x36
    decoded = decode_kdbg_bytes(data)
    for name, value in values.items():
        assert decoded[name] == value, name
    assert decoded["_owner_tag"] == "KDBG" and decoded["_size"] == 0x380
    assert decoded["MmPfnDatabase"] == 0


def test_smaller_size_decodes_only_fields_within_it() -> None:
    size = kdbg_field_offset("PteBase")              # a pre-RS1 block ends before PteBase
    data = build_kdbg({"KernBase": 0xFFFFF80000000000, "SizeEProcess": 0x4D0}, size=size)
    assert len(data) == size
    decoded = decode_kdbg_bytes(data)
    assert decoded["SizeEProcess"] == 0x4D0
    assert "PteBase" not in decoded and "RetpolineStubSize" not in decoded
    assert "OffsetKThreadWaitReason" in decoded
    with pytest.raises(ValueError):
        build_kdbg({"PteBase": 1}, size=size)


def test_build_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="KernBse"):
        build_kdbg({"KernBse": 1})


def test_wrong_tag_is_reported_as_encoded() -> None:
    data = bytearray(build_kdbg({"KernBase": 0xFFFFF80000000000}))
    data[0x10:0x14] = b"\x13\x37\xbe\xef"
    with pytest.raises(DumpFormatError, match="KDBG block is encoded"):
        decode_kdbg_bytes(bytes(data), 0xFFFFF80000001000)


def test_absurd_size_is_refused() -> None:
    data = bytearray(build_kdbg({}))
    data[0x14:0x18] = (0x7FFFFFFF).to_bytes(4, "little")
    with pytest.raises(DumpFormatError, match="Size"):
        decode_kdbg_bytes(bytes(data))
    with pytest.raises(DumpFormatError):
        decode_kdbg_bytes(b"KDBG")


def test_decode_from_address_space_and_partial_block() -> None:
    address = 0xFFFFF8047C600000
    data = build_kdbg({"KernBase": 0xFFFFF8047BA00000, "SizeEThread": 0x898})
    space = SparseAddressSpace()
    space.add(address, data)
    decoded = decode_kdbg(space, address)
    assert decoded["KernBase"] == 0xFFFFF8047BA00000 and decoded["_address"] == address
    partial = SparseAddressSpace()
    partial.add(address, data[:0x100])
    decoded = decode_kdbg(partial, address)
    assert decoded["_readable"] == 0x100
    assert decoded["KernBase"] == 0xFFFFF8047BA00000
    assert "SizeEThread" not in decoded
    with pytest.raises(MemoryReadError):
        decode_kdbg(SparseAddressSpace(), address)
