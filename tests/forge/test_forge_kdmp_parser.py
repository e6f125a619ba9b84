"""kdmp-parser (an independent C++ reader) agrees with every forged full and bitmap dump."""
import os
from typing import Dict

import kdmp_parser
import pytest

from forge_planted import PAGE, Forged, absent_pfns, pages_in_dump

KINDS = ("full", "fdmp", "sdmp")
Parsers = Dict[str, kdmp_parser.KernelDumpParser]


@pytest.fixture(scope="module")
def parsers(forged: Forged) -> Parsers:
    return {kind: kdmp_parser.KernelDumpParser(forged.paths[kind]) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_every_planted_page_reads_back(forged: Forged, parsers: Parsers, kind: str) -> None:
    dump = parsers[kind]
    phys = forged.machine.phys
    expected = pages_in_dump(forged, kind)
    assert len(dump.pages) == len(expected)
    written = set(phys.present_pfns())
    for pfn in expected:
        page = dump.read_physical_page(pfn * PAGE)
        assert page is not None, "pfn 0x%x missing" % pfn
        if pfn in written:                       # full dumps also hold zero-filled RAM
            assert bytes(page) == phys.page_bytes(pfn), "pfn 0x%x differs" % pfn
        else:
            assert bytes(page) == bytes(PAGE)


@pytest.mark.parametrize("kind", KINDS)
def test_absent_pages_are_absent(forged: Forged, parsers: Parsers, kind: str) -> None:
    for pfn in absent_pfns(forged, kind):
        assert parsers[kind].read_physical_page(pfn * PAGE) is None, "pfn 0x%x present" % pfn


@pytest.mark.parametrize("kind", KINDS)
def test_header_fields(forged: Forged, parsers: Parsers, kind: str) -> None:
    dump = parsers[kind]
    spec = forged.machine.spec
    header = dump.header
    assert dump.directory_table_base == forged.machine.pt.dtb
    assert header.MinorVersion == 19041 and header.MajorVersion == 0xF
    assert header.MachineImageType == 0x8664
    assert header.NumberProcessors == 4
    assert header.BugCheckCode == 0x139
    assert list(header.BugCheckCodeParameter) == [3, 0xFFFF1, 0xFFFF2, 0]
    assert header.KdDebuggerDataBlock == forged.machine.kdbg_address
    assert header.PsActiveProcessHead == forged.machine.symbol("PsActiveProcessHead")
    assert header.PsLoadedModuleList == forged.machine.symbol("PsLoadedModuleList")
    assert header.PfnDatabase == forged.machine.symbol("MmPfnDatabase")
    assert header.RequiredDumpSpace == os.path.getsize(forged.paths[kind])
    assert header.SystemTime == spec.system_time
    assert int(dump.type) == (1 if kind == "full" else 5)
    assert dump.context.Rip == forged.machine.symbol("KeBugCheckEx")
    runs = forged.machine.phys.ram_runs()
    assert header.PhysicalMemoryBlock.NumberOfRuns == len(runs) >= 3
    assert header.PhysicalMemoryBlock.NumberOfPages == sum(n for _, n in runs)
    if kind != "full":
        bmp = header.BmpHeader
        sig = b"SDMP" if kind == "sdmp" else b"FDMP"
        assert bmp.Signature == int.from_bytes(sig, "little")
        assert bmp.TotalPresentPages == len(pages_in_dump(forged, kind))
        assert bmp.FirstPage % PAGE == 0


@pytest.mark.parametrize("kind", KINDS)
def test_virtual_translation_and_reads(forged: Forged, parsers: Parsers, kind: str) -> None:
    """4 KiB, 2 MiB and 1 GiB mappings translate to the planted physical addresses."""
    dump = parsers[kind]
    sizes = set()
    for va, (pa, page_size) in forged.expected_translation.items():
        if kind == "sdmp" and va < 0x800000000000:
            continue        # the user page is not in a kernel dump; tables are, but not data
        assert dump.translate_virtual(va, forged.machine.pt.dtb) == pa, hex(va)
        sizes.add(page_size)
    assert sizes == {0x1000, 0x200000, 0x40000000}
    for va, data in forged.expected_bytes.items():
        if kind == "sdmp" and va < 0x800000000000:
            assert dump.read_virtual_page(va) is None
            continue
        for offset in range(0, len(data), PAGE):
            page_va = (va + offset) & ~0xFFF
            page = dump.read_virtual_page(page_va)
            assert page is not None, hex(page_va)
            start = (va + offset) - page_va
            chunk = data[offset:offset + PAGE - start]
            assert bytes(page[start:start + len(chunk)]) == chunk


@pytest.mark.parametrize("kind", KINDS)
def test_agrees_with_our_reader(forged: Forged, parsers: Parsers, kind: str) -> None:
    """Our reader's translate/read match kdmp-parser's on every sampled address."""
    from pykd_ext.errors import MemoryReadError
    from pykd_ext.targets.opener import open_target

    dump = parsers[kind]
    with open_target(forged.paths[kind]) as target:
        space = target.kernel
        for va in sorted(forged.expected_translation) + sorted(forged.expected_bytes):
            theirs = dump.translate_virtual(va, forged.machine.pt.dtb)
            assert space.translate(va) == theirs, hex(va)
            page = dump.read_virtual_page(va & ~0xFFF)
            if page is None:
                with pytest.raises(MemoryReadError):
                    space.read(va & ~0xFFF, PAGE)
            else:
                assert space.read(va & ~0xFFF, PAGE) == bytes(page), hex(va)
