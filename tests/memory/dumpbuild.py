"""Test-only builders: small physical memories, x64 page tables and dump files with planted bytes.

The expected values of the tests are what these builders planted (addresses, page contents), and
the files they write are checked by an independent reader (kdmp-parser) in the tests. The
project's own forge is another helper's; these stay tiny and local to the reader's tests.
"""
import struct
from typing import Dict, Iterable, List, Optional, Tuple

from pykd_ext.memory.space import PAGE_SIZE, PhysicalMemory
from pykd_ext.targets import dumpheader as dh

PRESENT_RW = 0x3          # Present | Write (Intel SDM 4.5)
PS = 0x80                 # page size bit in PDPTE/PDE


class DictPhysical(PhysicalMemory):
    """pfn -> 4 KiB bytearray, for paging unit tests."""

    def __init__(self) -> None:
        self.pages: Dict[int, bytearray] = {}

    def page(self, pfn: int) -> Optional[memoryview]:
        data = self.pages.get(pfn)
        return memoryview(data) if data is not None else None

    def runs(self) -> List[Tuple[int, int]]:
        out: List[Tuple[int, int]] = []
        for pfn in sorted(self.pages):
            if out and out[-1][0] + out[-1][1] == pfn:
                out[-1] = (out[-1][0], out[-1][1] + 1)
            else:
                out.append((pfn, 1))
        return out

    def add(self, pfn: int, data: bytes = b"") -> bytearray:
        page = bytearray(PAGE_SIZE)
        page[:len(data)] = data
        self.pages[pfn] = page
        return page

    def write(self, address: int, data: bytes) -> None:
        while data:
            pfn, off = address >> 12, address & 0xFFF
            chunk = data[:PAGE_SIZE - off]
            page = self.pages.get(pfn)
            if page is None:
                page = self.add(pfn)
            page[off:off + len(chunk)] = chunk
            address += len(chunk)
            data = data[len(chunk):]


class PageTables:
    """Builds 4-level tables in a DictPhysical; frames for tables come from `next_table_pfn`."""

    def __init__(self, phys: DictPhysical, pml4_pfn: int = 0x100, next_table_pfn: int = 0x101):
        self.phys = phys
        self.pml4_pfn = pml4_pfn
        self.next = next_table_pfn
        phys.add(pml4_pfn)

    @property
    def dtb(self) -> int:
        return self.pml4_pfn << 12

    def _table(self, table_pfn: int, index: int) -> int:
        page = self.phys.pages[table_pfn]
        entry = struct.unpack_from("<Q", page, index * 8)[0]
        if entry & 1:
            return (entry & 0x000FFFFFFFFFF000) >> 12
        pfn = self.next
        self.next += 1
        self.phys.add(pfn)
        struct.pack_into("<Q", page, index * 8, (pfn << 12) | PRESENT_RW)
        return pfn

    def entry_location(self, va: int, level: int) -> Tuple[int, int]:
        """(table pfn, index) of the entry at `level` (0=PML4 .. 3=PT), creating upper tables."""
        shifts = (39, 30, 21, 12)
        table = self.pml4_pfn
        for depth in range(level):
            table = self._table(table, (va >> shifts[depth]) & 0x1FF)
        return table, (va >> shifts[level]) & 0x1FF

    def set_entry(self, va: int, level: int, value: int) -> None:
        table, index = self.entry_location(va, level)
        struct.pack_into("<Q", self.phys.pages[table], index * 8, value)

    def map_4k(self, va: int, pa: int, extra: int = 0) -> None:
        self.set_entry(va, 3, (pa & ~0xFFF) | PRESENT_RW | extra)

    def map_2m(self, va: int, pa: int) -> None:
        self.set_entry(va, 2, (pa & ~0x1FFFFF) | PRESENT_RW | PS)

    def map_1g(self, va: int, pa: int) -> None:
        self.set_entry(va, 1, (pa & ~0x3FFFFFFF) | PRESENT_RW | PS)


def header64(dump_type: int, dtb: int, runs: Optional[List[Tuple[int, int]]] = None,
             **overrides: object) -> bytes:
    """A DUMP_HEADER64 built with the reader's own construct definition.

    Its correctness is checked independently: kdmp-parser must accept the files built from it
    and report the same header fields (see tests/targets/test_crashdump.py).
    """
    values = dict(
        MajorVersion=0xF, MinorVersion=19041, DirectoryTableBase=dtb,
        PfnDataBase=0xFFFFFA8000000000, PsLoadedModuleList=0xFFFFF80000123450,
        PsActiveProcessHead=0xFFFFF80000123460, MachineImageType=0x8664, NumberProcessors=2,
        BugCheckCode=0x1000007E, BugCheckParameter=[0xC0000005, 0xFFFFF80000001000, 3, 4],
        KdDebuggerDataBlock=0xFFFFF80000200000,
        PhysicalMemoryBlock=dict(
            NumberOfRuns=len(runs) if runs is not None else dh.FILL32,
            NumberOfPages=sum(c for _, c in runs) if runs is not None else dh.FILL64,
            Run=[dict(BasePage=b, PageCount=c) for b, c in (runs or [])]),
        ContextRecord=bytes(dh.DMP_CONTEXT_RECORD_SIZE_64),
        Exception=dict(ExceptionCode=0, ExceptionFlags=0, ExceptionRecord=0, ExceptionAddress=0,
                       NumberParameters=0, ExceptionInformation=[0] * 15),
        DumpType=dump_type, RequiredDumpSpace=0, SystemTime=0x01D707F23DBB3399,
        SystemUpTime=0x23BC1E9, MiniDumpFields=0, SecondaryDataState=0, ProductType=1,
        SuiteMask=0x110, WriterStatus=0, Unused1=0, KdSecondaryVersion=0, Attributes=0, BootId=0)
    values.update(overrides)
    return dh.DUMP_HEADER64.build(values)


def group_runs(pfns: Iterable[int]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for pfn in sorted(pfns):
        if out and out[-1][0] + out[-1][1] == pfn:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((pfn, 1))
    return out


def full_dump_bytes(phys: DictPhysical, dtb: int, **overrides: object) -> bytes:
    runs = group_runs(phys.pages)
    body = b"".join(bytes(phys.pages[b + i]) for b, c in runs for i in range(c))
    return header64(dh.DUMP_TYPE_FULL, dtb, runs, RequiredDumpSpace=0x2000 + len(body),
                    **overrides) + body


def bitmap_dump_bytes(phys: DictPhysical, dtb: int, span_pages: int,
                      signature: bytes = b"FDMP", dump_type: int = dh.DUMP_TYPE_BITMAP_FULL,
                      **overrides: object) -> bytes:
    pfns = sorted(phys.pages)
    assert not pfns or pfns[-1] < span_pages
    bitmap = bytearray((span_pages + 7) // 8)
    for pfn in pfns:
        bitmap[pfn >> 3] |= 1 << (pfn & 7)
    bitmap_end = 0x2000 + dh.SUMMARY_DUMP_SIZE + len(bitmap)
    first_page = (bitmap_end + 0xFFF) & ~0xFFF
    summary = dh.SUMMARY_DUMP.build(dict(Signature=signature, DumpOptions=0, FirstPage=first_page,
                                         TotalPresentPages=len(pfns), Pages=span_pages))
    body = b"".join(bytes(phys.pages[p]) for p in pfns)
    head = header64(dump_type, dtb, None, RequiredDumpSpace=first_page + len(body), **overrides)
    out = bytearray(head + summary + bitmap)
    out += b"\0" * (first_page - len(out))
    return bytes(out + body)


def minimal_pe64(guid_bytes_le: bytes, age: int, pdb_name: bytes = b"ntkrnlmp.pdb",
                 timestamp: int = 0x5F5E1000, size_of_image: int = 0x4000,
                 exports: Tuple[Tuple[bytes, int], ...] = (),
                 file_version: Optional[Tuple[int, int, int, int]] = None) -> bytes:
    """A mapped (RVA = offset) PE32+ image: header page, one .rdata page with the debug
    directory, the RSDS record and an export directory. Laid out by hand from the PE/COFF
    specification so that pefile (an independent parser) can check it."""
    image = bytearray(size_of_image)
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)
    image[0x80:0x84] = b"PE\0\0"
    opt_size = 0xF0                                   # PE32+ optional header with 16 dirs
    struct.pack_into("<HHIIIHH", image, 0x84, 0x8664, 1, timestamp, 0, 0, opt_size, 0x22)
    opt = 0x98
    struct.pack_into("<HBBIIIII", image, opt, 0x20B, 14, 0, 0x1000, 0x1000, 0, 0x1000, 0x1000)
    struct.pack_into("<QIIHHHHHHIIIIHHQQQQII", image, opt + 24, 0xFFFFF80000000000, 0x1000,
                     0x200, 10, 0, 10, 0, 10, 0, 0, size_of_image, 0x1000, 0x1234, 1, 0x8160,
                     0x80000, 0x1000, 0x100000, 0x1000, 0, 16)
    dirs = opt + 112
    rdata = 0x1000
    debug_dir = rdata
    rsds = rdata + 0x40
    export_dir = rdata + 0x200
    record = b"RSDS" + guid_bytes_le + struct.pack("<I", age) + pdb_name + b"\0"
    image[rsds:rsds + len(record)] = record
    struct.pack_into("<IIHHIIII", image, debug_dir, 0, timestamp, 0, 0, 2, len(record), rsds,
                     rsds)   # file offset = RVA in this layout
    struct.pack_into("<II", image, dirs + 6 * 8, debug_dir, 28)
    if exports:
        names = sorted(exports)
        n = len(names)
        funcs, name_ptrs, ords, strings = export_dir + 40, export_dir + 40 + 4 * n, \
            export_dir + 40 + 8 * n, export_dir + 40 + 10 * n
        struct.pack_into("<IIHHIIIIIII", image, export_dir, 0, timestamp, 0, 0, 0, 1, n, n,
                         funcs, name_ptrs, ords)
        for i, (name, rva) in enumerate(names):
            struct.pack_into("<I", image, funcs + 4 * i, rva)
            struct.pack_into("<I", image, name_ptrs + 4 * i, strings)
            struct.pack_into("<H", image, ords + 2 * i, i)
            image[strings:strings + len(name) + 1] = name + b"\0"
            strings += len(name) + 1
        struct.pack_into("<II", image, dirs, export_dir, strings - export_dir)
    if file_version is not None:
        # resource tree: RT_VERSION(16) -> id 1 -> language 0x409 -> data entry -> VS_VERSIONINFO
        res = rdata + 0x600

        def entry(at: int, ident: int, target: int) -> None:
            """A one-entry IMAGE_RESOURCE_DIRECTORY (16 bytes) and its entry (8 bytes)."""
            struct.pack_into("<IIHHHH", image, at, 0, 0, 0, 0, 0, 1)
            struct.pack_into("<II", image, at + 16, ident, target)
        entry(res, 16, 0x80000000 | 0x18)
        entry(res + 0x18, 1, 0x80000000 | 0x30)
        entry(res + 0x30, 0x409, 0x48)
        blob_rva = res + 0x80
        key = "VS_VERSION_INFO\0".encode("utf-16-le")
        ms = (file_version[0] << 16) | file_version[1]
        ls = (file_version[2] << 16) | file_version[3]
        fixed = struct.pack("<13I", 0xFEEF04BD, 0x10000, ms, ls, ms, ls, 0x3F, 0, 0x40004, 1, 0,
                            0, 0)
        blob = struct.pack("<HHH", 6 + len(key) + 2 + len(fixed), len(fixed), 0) + key + \
            b"\0\0" + fixed
        image[blob_rva:blob_rva + len(blob)] = blob
        struct.pack_into("<IIII", image, res + 0x48, blob_rva, len(blob), 0, 0)
        struct.pack_into("<II", image, dirs + 2 * 8, res, 0x80 + len(blob))
    sec = opt + opt_size
    struct.pack_into("<8sIIIIIIHHI", image, sec, b".rdata", size_of_image - 0x1000, 0x1000,
                     size_of_image - 0x1000, 0x1000, 0, 0, 0, 0, 0x40000040)
    return bytes(image)


#: Processor start block facts (MemProcFS vmmwininit.c): Jmp signature at +0, LmTarget at +0x70,
#: CR3 at +0xA0. Planted independently of the reader's construct definition.
def low_stub_page(cr3: int, lm_target: int) -> bytes:
    page = bytearray(PAGE_SIZE)
    struct.pack_into("<Q", page, 0, 0x00000001000600E9)
    struct.pack_into("<Q", page, 0x70, lm_target)
    struct.pack_into("<Q", page, 0xA0, cr3)
    return bytes(page)


def raw_image_bytes(phys: DictPhysical, size_pages: int) -> bytes:
    out = bytearray(size_pages * PAGE_SIZE)
    for pfn, data in phys.pages.items():
        if pfn < size_pages:
            out[pfn * PAGE_SIZE:(pfn + 1) * PAGE_SIZE] = data
    return bytes(out)


def header32(dump_type: int, dtb: int, runs: Optional[List[Tuple[int, int]]] = None,
             **overrides: object) -> bytes:
    """A DUMP_HEADER32 (checked in the tests against Volatility's 32-bit crash layer)."""
    values = dict(
        MajorVersion=0xF, MinorVersion=7601, DirectoryTableBase=dtb, PfnDataBase=0x80000000,
        PsLoadedModuleList=0x82345670, PsActiveProcessHead=0x82345680, MachineImageType=0x14C,
        NumberProcessors=1, BugCheckCode=0xE2, BugCheckParameter=[1, 2, 3, 4], PaeEnabled=1,
        KdSecondaryVersion=0, KdDebuggerDataBlock=0x82300000,
        PhysicalMemoryBlock=dict(
            NumberOfRuns=len(runs) if runs is not None else dh.FILL32,
            NumberOfPages=sum(c for _, c in runs) if runs is not None else dh.FILL32,
            Run=[dict(BasePage=b, PageCount=c) for b, c in (runs or [])]),
        ContextRecord=bytes(dh.DMP_CONTEXT_RECORD_SIZE_32),
        Exception=dict(ExceptionCode=0, ExceptionFlags=0, ExceptionRecord=0, ExceptionAddress=0,
                       NumberParameters=0, ExceptionInformation=[0] * 15),
        Attributes=0, BootId=0, DumpType=dump_type, MiniDumpFields=0, SecondaryDataState=0,
        ProductType=1, SuiteMask=0x110, WriterStatus=0, RequiredDumpSpace=0,
        SystemUpTime=0x1234, SystemTime=0x01D707F23DBB3399)
    values.update(overrides)
    return dh.DUMP_HEADER32.build(values)


def rdmp_dump_bytes(phys: DictPhysical, dtb: int, dump_type: int = dh.DUMP_TYPE_KERNEL_MEMORY,
                    **overrides: object) -> bytes:
    """Types 8/9/0xA as kdmp-parser reads them: RDMP header at 0x2000, 16 bytes of type-specific
    fields, (first frame, count) ranges from 0x2030 ended by a zero frame, pages from
    FirstPageOffset = 0x2020 + MetadataSize. (Frame 0 cannot be stored: it ends the list.)"""
    runs = group_runs(phys.pages)
    assert all(base for base, _ in runs)
    ranges = b"".join(struct.pack("<QQ", b, c) for b, c in runs) + bytes(16)
    metadata_size = 0x10 + len(ranges)
    first = 0x2020 + metadata_size
    if dump_type == dh.DUMP_TYPE_COMPLETE_MEMORY:
        tail = dh.RDMP_FULL_TAIL.build(dict(NumberOfRanges=len(runs), Unknown1=0, Unknown2=0,
                                            TotalNumberOfPages=len(phys.pages)))
    else:
        tail = dh.RDMP_KERNEL_TAIL.build(dict(Unknown1=0, Unknown2=0))
    rdmp = dh.RDMP_HEADER64.build(dict(Marker=dh.RDMP_MARKER, _unused=0,
                                       MetadataSize=metadata_size, FirstPageOffset=first))
    body = b"".join(bytes(phys.pages[b + i]) for b, c in runs for i in range(c))
    head = header64(dump_type, dtb, None, RequiredDumpSpace=first + len(body), **overrides)
    return head + rdmp + tail + ranges + body
