"""Raw physical memory images (`.raw`, `.mem`, `.vmem`, ...): find the kernel DTB and image.

Why: a raw image is physical memory and nothing else. To reach kernel memory we must find what a
dump header would have told us:
- the kernel DTB, from the x64 processor start block that Windows leaves in low physical memory
  (the "low stub", used by MemProcFS `vmm/vmmwininit.c` and PCILeech);
- the kernel image and its PDB identity, from the CodeView (RSDS) record naming `ntkrnlmp.pdb`
  found by a C-speed `mmap.find` over the image, and its virtual base through the DTB (down from
  the start block's LmTarget, else by mapping the record's physical page back to a kernel VA);
- the KDBG block, when the kernel image holds a decoded one (Windows 7; Windows 8+ encodes it in
  live memory), by its 'KDBG' tag and a KernBase equal to the image base.
Everything is bounded: the low-stub scan looks at 255 pages, the RSDS scan at a capped number of
hits, the virtual searches at a capped number of pages and page tables.
"""
import struct
from typing import Dict, Iterator, List, Optional, Set, Tuple

from construct import Bytes, Const, Int32ul, Int64ul, Struct

from pykd_ext.errors import (DumpFormatError, MemoryReadError, PykdExtError, TargetError,
                             TruncatedDumpError, UnsupportedDumpError)
from pykd_ext.memory.faults import UNAVAILABLE, Fault
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import MAX_PFN, FlatPhysicalMemory, RunPhysicalMemory
from pykd_ext.memory.paging_x64 import X64AddressSpace
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalMemory
from pykd_ext.targets.base import Target, TargetInfo
from pykd_ext.targets.paged import PagedTarget
from pykd_ext.targets.pe import (CV_INFO_PDB70_SIZE, KERNEL_PDB_NAMES, CodeViewInfo,
                                 parse_codeview, read_pe_info)

# --- the x64 processor start block (HAL PROCESSOR_START_BLOCK, not in the kernel's PDB) ---------
# Facts as published by MemProcFS (vmm/vmmwininit.c, VmmWinInit_DTB_FindValidate_X64_LowStub) and
# PCILeech: a page below 1 MiB whose first qword, masked with 0xFFFFFFFFFFFF00FF, is
# 0x00000001000600E9 (the start block's Jmp), whose LmTarget at +0x70 is a kernel address
# (mask 0xFFFFF80000000003 gives 0xFFFFF80000000000), and whose ProcessorState.SpecialRegisters.Cr3
# at +0xA0 (ProcessorState at +0x90, `_KSPECIAL_REGISTERS.Cr3` at +0x10 as the ISF also states) is a
# page-aligned physical address below 2**40 (mask 0xFFFFFF0000000FFF gives 0).
PROCESSOR_START_BLOCK = Struct(
    "Jmp" / Int64ul,              # +0x00
    "_rest0" / Bytes(0x68),
    "LmTarget" / Int64ul,         # +0x70
    "_rest1" / Bytes(0x28),
    "Cr3" / Int64ul,              # +0xA0
)
START_BLOCK_JMP_MASK = 0xFFFFFFFFFFFF00FF
START_BLOCK_JMP = 0x00000001000600E9
LM_TARGET_MASK = 0xFFFFF80000000003
LM_TARGET_VALUE = 0xFFFFF80000000000
CR3_INVALID_BITS = 0xFFFFFF0000000FFF
LOW_STUB_LIMIT = 0x100000

#: The same names as byte strings, for the C-speed scan.
KERNEL_PDB_NEEDLES = tuple(name.encode("ascii") for name in KERNEL_PDB_NAMES)
MAX_RSDS_HITS = 4096
#: How far below the low stub's LmTarget the kernel image header may lie.
KERNEL_SEARCH_BELOW_ENTRY = 64 << 20
#: Upper bound of page tables visited when mapping a physical page back to a kernel VA.
MAX_TABLES_VISITED = 200000
#: Largest kernel image scanned for its KDBG block (ntoskrnl is ~10-20 MiB).
MAX_KDBG_SCAN = 64 << 20
#: The KDBG owner tag (wdbgexts.h KDBG_TAG), searched for in the kernel image.
KDBG_TAG = b"KDBG"

# --- LiME ("Linux Memory Extractor") container: the `.lime` extension is a raw image with headers.
# Format (LiME documentation, "lime" format; Volatility 3 layers/lime.py): a sequence of 32-byte
# headers, each followed by its range's bytes: magic 0x4C694D45 ("EMiL" on disk), version 1,
# start and inclusive end physical address, 8 reserved bytes.
LIME_MAGIC = b"EMiL"
LIME_HEADER = Struct(
    "magic" / Const(LIME_MAGIC),
    "version" / Int32ul,
    "start" / Int64ul,
    "end" / Int64ul,          # inclusive
    "reserved" / Bytes(8),
)
LIME_HEADER_SIZE = 32
MAX_LIME_SEGMENTS = 1 << 16

#: (physical address, file offset, length) of each stored range.
Segment = Tuple[int, int, int]

_QWORDS = struct.Struct("<512Q")
_FRAME = 0x000FFFFFFFFFF000


def find_low_stub(physical: PhysicalMemory) -> Optional[Tuple[int, int, int]]:
    """(start block physical address, CR3, LmTarget) of the first valid start block below 1 MiB."""
    for pfn in range(1, LOW_STUB_LIMIT // PAGE_SIZE):
        page = physical.page(pfn)
        if page is None:
            continue
        block = PROCESSOR_START_BLOCK.parse(bytes(page[:PROCESSOR_START_BLOCK.sizeof()]))
        if (block.Jmp & START_BLOCK_JMP_MASK) != START_BLOCK_JMP:
            continue
        if (block.LmTarget & LM_TARGET_MASK) != LM_TARGET_VALUE:
            continue
        if block.Cr3 & CR3_INVALID_BITS or not block.Cr3:
            continue
        return pfn * PAGE_SIZE, block.Cr3, block.LmTarget
    return None


def parse_lime(fmap: FileMap, path: str) -> List[Segment]:
    """Segments of a LiME file; typed errors for a broken chain of headers (bounded)."""
    segments: List[Segment] = []
    offset = 0
    previous_end = -1
    while offset < fmap.size:
        if len(segments) >= MAX_LIME_SEGMENTS:
            raise DumpFormatError("LiME file has more than %d ranges" % MAX_LIME_SEGMENTS, path)
        raw = fmap.bytes_at(offset, LIME_HEADER_SIZE)
        if len(raw) < LIME_HEADER_SIZE:
            raise TruncatedDumpError("LiME header at 0x%x is cut off by the end of the file"
                                     % offset, path)
        if raw[:4] != LIME_MAGIC:
            raise DumpFormatError("no LiME header at file offset 0x%x (found %r)"
                                  % (offset, raw[:4]), path)
        head = LIME_HEADER.parse(raw)
        if head.version != 1:
            raise UnsupportedDumpError("LiME version %d (only 1 is known)" % head.version, path)
        if head.end < head.start or head.start <= previous_end or \
                head.end >= MAX_PFN << 12:
            raise DumpFormatError("LiME range 0x%x-0x%x at file offset 0x%x is out of order or "
                                  "impossible" % (head.start, head.end, offset), path)
        length = head.end - head.start + 1
        data = offset + LIME_HEADER_SIZE
        if data + length > fmap.size:
            raise TruncatedDumpError("LiME range 0x%x-0x%x needs 0x%x bytes from 0x%x but the "
                                     "file ends at 0x%x" % (head.start, head.end, length, data,
                                                            fmap.size), path)
        if head.start % PAGE_SIZE or length % PAGE_SIZE:
            raise UnsupportedDumpError("LiME range 0x%x-0x%x is not page-aligned"
                                       % (head.start, head.end), path)
        segments.append((head.start, data, length))
        previous_end = head.end
        offset = data + length
    return segments


def find_kernel_codeview(fmap: FileMap, segments: Optional[List[Segment]] = None
                         ) -> List[Tuple[int, CodeViewInfo]]:
    """(physical address, record) of every RSDS record naming a kernel PDB (bounded).

    `segments` maps file offsets to physical addresses (None: the file is flat physical memory).
    """
    hits: List[Tuple[int, CodeViewInfo]] = []
    spans = segments if segments is not None else [(0, 0, fmap.size)]
    for name in KERNEL_PDB_NEEDLES:
        needle = name + b"\0"
        for physical, start_offset, length in spans:
            end = start_offset + length
            pos = fmap.find(needle, start_offset + CV_INFO_PDB70_SIZE, end)
            while pos >= 0 and len(hits) < MAX_RSDS_HITS:
                start = pos - CV_INFO_PDB70_SIZE
                if fmap.bytes_at(start, 4) == b"RSDS":
                    record = fmap.bytes_at(start, CV_INFO_PDB70_SIZE + len(needle))
                    hits.append((physical + start - start_offset, parse_codeview(record)))
                pos = fmap.find(needle, pos + 1, end)
    hits.sort(key=lambda hit: hit[0])
    return hits


def _kernel_half_mappings(space: X64AddressSpace, physical: PhysicalMemory,
                          wanted: Set[int]) -> Iterator[Tuple[int, int]]:
    """(VA of a page, its frame) for kernel-half 4 KiB / 2 MiB mappings of frames in `wanted`.

    Bounded by MAX_TABLES_VISITED; the PML4 self-map entry is skipped.
    """
    dtb = space.dtb
    pml4 = physical.page(dtb >> 12)
    if pml4 is None:
        return
    visited = 0
    for i4, e4 in enumerate(_QWORDS.unpack(bytes(pml4))):
        if i4 < 256 or not e4 & 1 or (e4 & _FRAME) == dtb:
            continue
        va4 = (0xFFFF << 48) | (i4 << 39)
        pdpt = physical.page((e4 & _FRAME) >> 12)
        if pdpt is None:
            continue
        for i3, e3 in enumerate(_QWORDS.unpack(bytes(pdpt))):
            if not e3 & 1 or e3 & 0x80:
                continue
            va3 = va4 | (i3 << 30)
            pd = physical.page((e3 & _FRAME) >> 12)
            if pd is None:
                continue
            for i2, e2 in enumerate(_QWORDS.unpack(bytes(pd))):
                if not e2 & 1:
                    continue
                va2 = va3 | (i2 << 21)
                if e2 & 0x80:
                    base = (e2 & 0x000FFFFFFFE00000) >> 12
                    for frame in wanted:
                        if base <= frame < base + 512:
                            yield va2 | ((frame - base) << 12), frame
                    continue
                visited += 1
                if visited > MAX_TABLES_VISITED:
                    return
                pt = physical.page((e2 & _FRAME) >> 12)
                if pt is None:
                    continue
                for i1, e1 in enumerate(_QWORDS.unpack(bytes(pt))):
                    if e1 & 1 and ((e1 & _FRAME) >> 12) in wanted:
                        yield va2 | (i1 << 12), (e1 & _FRAME) >> 12


def _image_base_below(space: AddressSpace, va: int, limit: int,
                      guid: Optional[str] = None) -> Optional[Tuple[int, CodeViewInfo]]:
    """Scan down from `va` (page by page, at most `limit` bytes) for the kernel's PE header."""
    page = va & ~0xFFF
    lowest = max(page - limit, 0xFFFF800000000000)
    while page >= lowest:
        try:
            head = space.read(page, 2)
        except MemoryReadError:
            head = b""
        if head == b"MZ":
            try:
                pe = read_pe_info(space, page)
            except PykdExtError:
                pe = None
            cv = pe.debug_codeview if pe is not None else None
            if pe is not None and cv is not None and pe.is_kernel and \
                    (guid is None or cv.guid == guid):
                return page, cv
        page -= PAGE_SIZE
    return None


def _kdbg_offsets() -> Optional[Tuple[int, int]]:
    """(offset of Header.OwnerTag, offset of KernBase) from the generated KDBG definition."""
    try:
        from pykd_ext.structs.kddebugger_data64 import DBGKD_DEBUG_DATA_HEADER64
        from pykd_ext.targets.kdbg import kdbg_field_offset
    except ImportError:
        return None
    offset = 0
    for sub in DBGKD_DEBUG_DATA_HEADER64.subcons:
        if sub.name == "OwnerTag":
            return offset, kdbg_field_offset("KernBase")
        offset += sub.sizeof()
    return None


def find_kdbg_in_image(space: AddressSpace, base: int, size: int) -> Optional[int]:
    """VA of a decoded KDBG block inside the kernel image whose KernBase is `base` (bounded).

    Windows 8+ live systems keep the block encoded; then nothing is found.
    """
    offsets = _kdbg_offsets()
    if offsets is None:
        return None
    tag_offset, kernbase_offset = offsets
    for page in range(base, base + min(size, MAX_KDBG_SCAN), PAGE_SIZE):
        data, _fault = space.read_partial(page, PAGE_SIZE)
        pos = data.find(KDBG_TAG)
        while pos >= 0:
            block = page + pos - tag_offset
            if block % 8 == 0:
                try:
                    if space.read_pointer(block + kernbase_offset) == base:
                        return block
                except MemoryReadError:
                    pass
            pos = data.find(KDBG_TAG, pos + 1)
    return None


class _NoDtbSpace(AddressSpace):
    """Kernel space of a raw image whose DTB was not found."""

    def __init__(self, path: str) -> None:
        self._path = path

    def read(self, address: int, size: int) -> bytes:
        raise MemoryReadError(Fault(UNAVAILABLE, address))


class RawImageTarget(PagedTarget):
    """A flat physical memory image, or a LiME file (ranges with headers)."""

    def __init__(self, path: str, fmap: FileMap, dtb: Optional[int] = None,
                 segments: Optional[List[Segment]] = None) -> None:
        self._segments = segments
        physical: PhysicalMemory
        if segments is None:
            physical = FlatPhysicalMemory(fmap.view)
        else:
            physical = RunPhysicalMemory(
                fmap.view, [(pa >> 12, length >> 12, offset) for pa, offset, length in segments])
        self._init_paged(path, fmap, physical)
        self._notes: List[str] = []
        self._facts: Dict[str, object] = {}
        if segments is None and fmap.size % PAGE_SIZE:
            self._notes.append("file size 0x%x is not a whole number of pages; the last 0x%x "
                               "bytes are ignored" % (fmap.size, fmap.size % PAGE_SIZE))
        self.lm_target: Optional[int] = None
        if dtb is None:
            stub = find_low_stub(self._physical)
            if stub is not None:
                address, dtb, self.lm_target = stub
                self._facts["low_stub"] = address
                self._facts["lm_target"] = self.lm_target
            else:
                self._notes.append("no x64 processor start block below 1 MiB: kernel DTB unknown")
        self.dtb = dtb
        self._kernel = (X64AddressSpace(self._physical, dtb) if dtb is not None
                        else _NoDtbSpace(path))

    def _build_info(self) -> TargetInfo:
        lime = self._segments is not None
        info = TargetInfo(path=self.path, container="lime" if lime else "raw",
                          dump_type="LiME ranges" if lime else "raw physical image",
                          directory_table_base=self.dtb,
                          physical_runs=self._physical.runs(),
                          pages_present=self._physical.page_count())
        info.extra.update(self._facts)
        info.extra["file_size"] = self._fmap.size
        info.notes.extend(self._notes)
        found: Optional[Tuple[int, CodeViewInfo]] = None
        space = self._kernel
        if isinstance(space, X64AddressSpace) and self.lm_target is not None:
            # Cheap path: the kernel header lies just below the start block's entry point.
            found = _image_base_below(space, self.lm_target, KERNEL_SEARCH_BELOW_ENTRY)
        if found is None:
            candidates = find_kernel_codeview(self._fmap, self._segments)
            info.extra["kernel_pdb_candidates"] = len(candidates)
            if not candidates:
                info.notes.append("no CodeView record naming a kernel PDB found")
            if isinstance(space, X64AddressSpace):
                found = self._map_back(space, candidates)
            if found is None:
                paged = isinstance(space, X64AddressSpace)
                if paged:
                    info.notes.append("kernel image not found in the kernel address space")
                if candidates:
                    self._set_pdb(info, candidates[0][1])
                    info.notes.append("kernel PDB identity from the first RSDS hit (%s)"
                                      % ("not mapped" if paged else "no DTB to verify"))
                return info
        base, cv = found
        info.kernel_base = base
        self._set_pdb(info, cv)
        self._add_kernel_facts(info, base)
        return info

    def _add_kernel_facts(self, info: TargetInfo, base: int) -> None:
        """Version, build and KDBG from the kernel image (a raw image has no header)."""
        try:
            pe = read_pe_info(self._kernel, base)
        except PykdExtError:
            return
        info.extra["kernel_timestamp"] = pe.timestamp
        info.extra["kernel_size_of_image"] = pe.size_of_image
        version = pe.file_version
        if version is not None:
            info.extra["kernel_file_version"] = version
            info.build = int(version.split(".")[2])
            info.notes.append("NT build from the kernel image's version resource")
        address = find_kdbg_in_image(self._kernel, base, pe.size_of_image)
        if address is None:
            info.notes.append("no decoded KDBG block in the kernel image (Windows 8+ keeps it "
                              "encoded in live memory)")
            return
        from pykd_ext.targets.kdbg import decode_kdbg   # importable: find_kdbg_in_image used it
        try:
            info.kdbg = dict(decode_kdbg(self._kernel, address, info))
        except PykdExtError as err:
            info.notes.append("KDBG at 0x%x not decoded: %s" % (address, err.one_line()))
            return
        info.kd_debugger_data_block = address
        # (KDBG's MmPfnDatabase is the address of the variable, not the database: not copied.)
        for key, attribute in (("PsActiveProcessHead", "ps_active_process_head"),
                               ("PsLoadedModuleList", "ps_loaded_module_list")):
            value = info.kdbg.get(key)
            if isinstance(value, int) and value:
                setattr(info, attribute, value)

    @staticmethod
    def _set_pdb(info: TargetInfo, cv: CodeViewInfo) -> None:
        info.extra["pdb_name"] = cv.pdb_name
        info.extra["pdb_guid"] = cv.guid
        info.extra["pdb_age"] = cv.age

    def _map_back(self, space: X64AddressSpace, candidates: List[Tuple[int, CodeViewInfo]]
                  ) -> Optional[Tuple[int, CodeViewInfo]]:
        """Kernel image from RSDS records found in physical memory, through their VAs."""
        if not candidates:
            return None
        wanted = {address >> 12 for address, _ in candidates}
        by_frame = {address >> 12: cv for address, cv in candidates}
        for va, frame in _kernel_half_mappings(space, self._physical, wanted):
            found = _image_base_below(space, va, KERNEL_SEARCH_BELOW_ENTRY, by_frame[frame].guid)
            if found is not None:
                return found
        return None


def open_raw_image(path: str, dtb: Optional[int] = None) -> Target:
    """Open a raw physical memory image (or a LiME file); `dtb` overrides the low-stub scan."""
    fmap = FileMap(path)
    try:
        if fmap.bytes_at(0, 4) == LIME_MAGIC:
            return RawImageTarget(path, fmap, dtb, parse_lime(fmap, path))
        if fmap.size < PAGE_SIZE:
            raise TargetError("raw image of %d bytes holds no whole page" % fmap.size, path)
        target = RawImageTarget(path, fmap, dtb)
        if dtb is None and target.dtb is None:
            # H10: no x64 start block: look for a 32-bit kernel's page directory
            from pykd_ext.targets.rawimage_x86 import open_x86_raw_image
            x86 = open_x86_raw_image(path, fmap)
            if x86 is not None:
                return x86
        return target
    except BaseException:
        fmap.close()
        raise
