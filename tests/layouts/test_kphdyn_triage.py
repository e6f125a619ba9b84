"""Exact kernel version of the two real kernel triage dumps, from their driver lists.

The dump is read here by a minimal, independent parse (no project reader): the kernel's driver
entry gives TimeDateStamp and SizeOfImage, the dump's own redundancy (KDBG KernBase, header
build number) proves the entry is the kernel, and kphdyn names the exact file version.

Format facts (64-bit kernel dump, DumpType 4), as declared in rizin
`librz/bin/format/dmp/dmp_specs.h` (`dmp64_header`, `dmp64_triage`, `dmp_driver_entry64`,
`dmp_kldr_data_table_entry64`, `dmp_string`) and read by `dmp64.c`:
- DUMP_HEADER64: "PAGEDU64" at 0, MinorVersion (the build number) at 0x0c, KdDebuggerDataBlock
  (VA) at 0x80, DumpType at 0xf98; the header is 0x2000 bytes.
- TRIAGE_DUMP64 at 0x2000: DriverListOffset 0x30, DriverCount 0x34, DebuggerDataOffset 0x70,
  DebuggerDataSize 0x74 (ULONG fields after 18 ULONGs, TopOfStack, ArchitectureSpecific,
  DataPageAddress, DataPageOffset, DataPageSize).
- DUMP_DRIVER_ENTRY64 (0x90 bytes): DriverNameOffset ULONG, 4 bytes alignment, then the
  KLDR_DATA_TABLE_ENTRY64-like LdrEntry: DllBase at +0x30, SizeOfImage (ULONG) at +0x40,
  TimeDateStamp (ULONG) at +0x80.
- The name is a counted string in the string pool: ULONG count of UTF-16 units, then the units.
- KDDEBUGGER_DATA64 starts with DBGKD_DEBUG_DATA_HEADER64 {LIST_ENTRY64 List; ULONG OwnerTag
  ("KDBG"); ULONG Size} and KernBase (ULONG64) at 0x18 (wdbgexts.h).
"""
import struct
from pathlib import Path
from typing import Dict, List, Tuple
import xml.etree.ElementTree as ElementTree

import pytest

from pykd_ext.layouts.kernel_versions import (
    find_kernel_entry,
    lookup_kernel,
    lookup_kernel_candidates,
    lookup_kernel_from_drivers,
)

# (field name, struct format, offset) tables of the facts above.
HEADER64 = {"Signature": ("<8s", 0x0), "MinorVersion": ("<I", 0x0c),
            "KdDebuggerDataBlock": ("<Q", 0x80), "DumpType": ("<I", 0xf98)}
HEADER64_SIZE = 0x2000
TRIAGE64 = {"DriverListOffset": ("<I", 0x30), "DriverCount": ("<I", 0x34),
            "DebuggerDataOffset": ("<I", 0x70), "DebuggerDataSize": ("<I", 0x74)}
DRIVER_ENTRY64_SIZE = 0x90
DRIVER_ENTRY64 = {"DriverNameOffset": ("<I", 0x0), "DllBase": ("<Q", 0x8 + 0x30),
                  "SizeOfImage": ("<I", 0x8 + 0x40), "TimeDateStamp": ("<I", 0x8 + 0x80)}
KDBG = {"OwnerTag": ("<4s", 0x10), "KernBase": ("<Q", 0x18)}
DUMP_TYPE_TRIAGE = 4
MAX_NAME_UNITS = 1024

# What the issue expects: the exact version of each real triage dump's kernel.
EXPECTED = {
    "win10-19041-x64-triage.dmp": "10.0.19041.804",
    "win10-17763-x64-triage.dmp": "10.0.17763.973",
}


def _unpack(table: Dict[str, Tuple[str, int]], data: bytes, base: int) -> Dict[str, object]:
    values = {}
    for name, (fmt, offset) in table.items():
        assert base + offset + struct.calcsize(fmt) <= len(data), "truncated at %s" % name
        values[name] = struct.unpack_from(fmt, data, base + offset)[0]
    return values


def _driver_list(data: bytes) -> Tuple[Dict[str, object], List[Dict[str, object]], int]:
    header = _unpack(HEADER64, data, 0)
    assert header["Signature"] == b"PAGEDU64" and header["DumpType"] == DUMP_TYPE_TRIAGE
    triage = _unpack(TRIAGE64, data, HEADER64_SIZE)
    count = triage["DriverCount"]
    assert 0 < count < 4096
    drivers = []
    for index in range(count):
        base = triage["DriverListOffset"] + index * DRIVER_ENTRY64_SIZE
        entry = _unpack(DRIVER_ENTRY64, data, base)
        (units,) = struct.unpack_from("<I", data, entry["DriverNameOffset"])
        assert units < MAX_NAME_UNITS
        start = entry["DriverNameOffset"] + 4
        entry["name"] = data[start:start + 2 * units].decode("utf-16-le")
        drivers.append(entry)
    kdbg = _unpack(KDBG, data, triage["DebuggerDataOffset"])
    assert kdbg["OwnerTag"] == b"KDBG"
    return header, drivers, kdbg["KernBase"]


@pytest.fixture(scope="module")
def xml_rows(shared_dir: Path) -> List[Dict[str, str]]:
    root = ElementTree.parse(str(shared_dir / "kphdyn" / "kphdyn.xml")).getroot()
    return [dict(element.attrib) for element in root.iter("data")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_triage_dump_kernel_version(real_dir: Path, xml_rows, name: str) -> None:
    data = (real_dir / "kernel-triage" / name).read_bytes()
    header, drivers, kern_base = _driver_list(data)
    kernels = [d for d in drivers if d["DllBase"] == kern_base]
    assert len(kernels) == 1, "exactly one driver entry is loaded at KDBG KernBase"
    kernel_entry = kernels[0]
    assert kernel_entry["name"].lower().endswith("ntoskrnl.exe")
    timestamp, size = kernel_entry["TimeDateStamp"], kernel_entry["SizeOfImage"]

    found = lookup_kernel(timestamp, size, "x64")
    print("%s: ntoskrnl TimeDateStamp 0x%08x SizeOfImage 0x%x -> %s"
          % (name, timestamp, size, found.describe() if found else None))
    assert found is not None
    assert not found.ambiguous and len(lookup_kernel_candidates(timestamp, size)) == 1
    # Independent: the XML row with this TimeDateStamp/SizeOfImage, and the header's build.
    rows = [r for r in xml_rows if r["arch"] == "amd64" and r["file"] == "ntoskrnl.exe"
            and int(r["timestamp"], 16) == timestamp and int(r["size"], 16) == size]
    assert [r["version"] for r in rows] == [found.version]
    assert found.sha256 == rows[0]["hash"].lower()
    assert found.build == header["MinorVersion"]
    assert found.version == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_project_triage_reader_agrees_and_names_the_version(real_dir: Path, name: str) -> None:
    """The project's triage reader reports the same kernel entry as the independent parse."""
    from pykd_ext.targets.opener import open_target

    path = real_dir / "kernel-triage" / name
    _, drivers, kern_base = _driver_list(path.read_bytes())
    independent = next(d for d in drivers if d["DllBase"] == kern_base)
    target = open_target(str(path))
    try:
        reported = target.info().extra["drivers"]
        entry = find_kernel_entry(reported, kern_base)
        assert entry is not None
        assert (entry["base"], entry["size"], entry["timestamp"]) == (
            independent["DllBase"], independent["SizeOfImage"], independent["TimeDateStamp"])
        found = lookup_kernel_from_drivers(reported, kern_base)
        assert found is not None and found.version == EXPECTED[name]
        # Without the base, the kernel is found by its image name.
        assert lookup_kernel_from_drivers(reported) == found
    finally:
        target.close()


def test_driver_list_helpers_on_planted_lists() -> None:
    kernel = {"name": "\\SystemRoot\\system32\\ntoskrnl.exe", "base": 0xFFFFF80000000000,
              "size": 0x01046000, "timestamp": 0x0D8333E6}
    other = {"name": "hal.dll", "base": 0xFFFFF80000100000, "size": 0x6000, "timestamp": 1}
    assert find_kernel_entry([other, kernel]) is kernel
    assert find_kernel_entry([other, kernel], 0xFFFFF80000100000) is other
    assert find_kernel_entry([other], None) is None
    assert find_kernel_entry([kernel], 0x1234) is None
    assert lookup_kernel_from_drivers([other, kernel]).version == "10.0.19041.804"
    assert lookup_kernel_from_drivers([dict(kernel, timestamp=None)]) is None
    assert lookup_kernel_from_drivers([dict(kernel, size=0x1000)]) is None
    assert lookup_kernel_from_drivers([]) is None
