"""Raw physical memory images (`.raw`, `.mem`, `.vmem`, ...): find the kernel DTB and image.

Why: a raw image is physical memory and nothing else. To reach kernel memory we must find what a
dump header would have told us:
- the kernel DTB, from the x64 processor start block that Windows leaves in low physical memory
  (the "low stub", used by MemProcFS `vmm/vmmwininit.c` and PCILeech);
- the kernel image and its PDB identity, from the CodeView (RSDS) record naming `ntkrnlmp.pdb`
  found by a C-speed `mmap.find` over the image, and its virtual base through the DTB.
Everything is bounded: the low-stub scan looks at 255 pages, the RSDS scan at a capped number of
hits, the virtual search at a capped number of pages and page tables.
"""
import struct
from typing import Dict, Iterator, List, Optional, Set, Tuple

from construct import Bytes, Int64ul, Struct

from pykd_ext.errors import MemoryReadError, PykdExtError, TargetError
from pykd_ext.memory.faults import UNAVAILABLE, Fault
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import FlatPhysicalMemory
from pykd_ext.memory.paging_x64 import X64AddressSpace
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalMemory
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo
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


def find_kernel_codeview(fmap: FileMap, data_offset: int = 0) -> List[Tuple[int, CodeViewInfo]]:
    """(physical address, record) of every RSDS record naming a kernel PDB (bounded)."""
    hits: List[Tuple[int, CodeViewInfo]] = []
    for name in KERNEL_PDB_NEEDLES:
        needle = name + b"\0"
        pos = fmap.find(needle, data_offset)
        while pos >= 0 and len(hits) < MAX_RSDS_HITS:
            start = pos - CV_INFO_PDB70_SIZE
            if start >= data_offset and fmap.bytes_at(start, 4) == b"RSDS":
                record = fmap.bytes_at(start, CV_INFO_PDB70_SIZE + len(needle))
                hits.append((start - data_offset, parse_codeview(record)))
            pos = fmap.find(needle, pos + 1)
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


class _NoDtbSpace(AddressSpace):
    """Kernel space of a raw image whose DTB was not found."""

    def __init__(self, path: str) -> None:
        self._path = path

    def read(self, address: int, size: int) -> bytes:
        raise MemoryReadError(Fault(UNAVAILABLE, address))


class RawImageTarget(Target):
    """A flat physical memory image."""

    def __init__(self, path: str, fmap: FileMap, dtb: Optional[int] = None) -> None:
        self.path = path
        self._fmap = fmap
        self._physical = FlatPhysicalMemory(fmap.view)
        self._notes: List[str] = []
        self._facts: Dict[str, object] = {}
        if fmap.size % PAGE_SIZE:
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
        self._software_pte: Optional[SoftwarePteLayout] = None
        self._kernel: AddressSpace = (X64AddressSpace(self._physical, dtb) if dtb is not None
                                      else _NoDtbSpace(path))
        self._spaces: Dict[int, X64AddressSpace] = {}
        self._info: Optional[TargetInfo] = None

    @property
    def kernel(self) -> AddressSpace:
        return self._kernel

    @property
    def physical(self) -> Optional[PhysicalMemory]:
        return self._physical

    def process_space(self, directory_table_base: int) -> AddressSpace:
        key = directory_table_base & ~0xFFF
        space = self._spaces.get(key)
        if space is None:
            if len(self._spaces) >= 256:
                self._spaces.clear()
            space = X64AddressSpace(self._physical, key, self._software_pte)
            self._spaces[key] = space
        return space

    def set_software_pte(self, software_pte: Optional[SoftwarePteLayout]) -> None:
        self._software_pte = software_pte
        if isinstance(self._kernel, X64AddressSpace):
            self._kernel.set_software_pte(software_pte)
        for space in self._spaces.values():
            space.set_software_pte(software_pte)

    def describe(self) -> TargetDescription:
        return TargetDescription("file", self.path)

    def drop_caches(self) -> None:
        self._kernel.drop_caches()
        for space in self._spaces.values():
            space.drop_caches()

    def close(self) -> None:
        self._spaces.clear()
        self._kernel.drop_caches()
        self._fmap.close()

    def info(self) -> TargetInfo:
        if self._info is None:
            self._info = self._build_info()
        return self._info

    def _build_info(self) -> TargetInfo:
        info = TargetInfo(path=self.path, container="raw", dump_type="raw physical image",
                          directory_table_base=self.dtb,
                          physical_runs=self._physical.runs(),
                          pages_present=self._physical.page_count())
        info.extra.update(self._facts)
        info.extra["file_size"] = self._fmap.size
        info.notes.extend(self._notes)
        candidates = find_kernel_codeview(self._fmap)
        if not candidates:
            info.notes.append("no CodeView record naming a kernel PDB found")
        else:
            info.extra["kernel_pdb_candidates"] = len(candidates)
        if not isinstance(self._kernel, X64AddressSpace):
            if candidates:
                self._set_pdb(info, candidates[0][1])
                info.notes.append("kernel PDB identity from the first RSDS hit (no DTB to verify)")
            return info
        found = self._find_kernel(candidates)
        if found is None:
            info.notes.append("kernel image not found in the kernel address space")
            if candidates:
                self._set_pdb(info, candidates[0][1])
                info.notes.append("kernel PDB identity from the first RSDS hit (not mapped)")
            return info
        base, cv = found
        info.kernel_base = base
        self._set_pdb(info, cv)
        return info

    @staticmethod
    def _set_pdb(info: TargetInfo, cv: CodeViewInfo) -> None:
        info.extra["pdb_name"] = cv.pdb_name
        info.extra["pdb_guid"] = cv.guid
        info.extra["pdb_age"] = cv.age

    def _find_kernel(self, candidates: List[Tuple[int, CodeViewInfo]]
                     ) -> Optional[Tuple[int, CodeViewInfo]]:
        space = self._kernel
        if self.lm_target is not None:
            found = _image_base_below(space, self.lm_target, KERNEL_SEARCH_BELOW_ENTRY)
            if found is not None:
                return found
        if not candidates or not isinstance(space, X64AddressSpace):
            return None
        wanted = {address >> 12 for address, _ in candidates}
        by_frame = {address >> 12: cv for address, cv in candidates}
        for va, frame in _kernel_half_mappings(space, self._physical, wanted):
            cv = by_frame[frame]
            found = _image_base_below(space, va, KERNEL_SEARCH_BELOW_ENTRY, cv.guid)
            if found is not None:
                return found
        return None


def open_raw_image(path: str, dtb: Optional[int] = None) -> Target:
    """Open a raw physical memory image; `dtb` overrides the low-stub scan."""
    fmap = FileMap(path)
    try:
        if fmap.size < PAGE_SIZE:
            raise TargetError("raw image of %d bytes holds no whole page" % fmap.size, path)
        return RawImageTarget(path, fmap, dtb)
    except BaseException:
        fmap.close()
        raise
