"""Raw physical memory images (`.raw`, `.mem`, `.vmem`, ...) and LiME files: a `PagedTarget` whose
kernel DTB, architecture and kernel image are found by scanning.

Why: a raw image is physical memory and nothing else. To reach kernel memory we must find what a
dump header would have told us, for whichever architecture the image holds:
- the kernel DTB and paging mode: each architecture's finder (`arch.Arch.find_dtbs`, see
  `dtbscan.py`: the x64 processor start block, the x86 self-mapping page directory), tried in
  `arch.ARCHES` order; the first that finds one names the architecture;
- the kernel image, its PDB identity, version and KDBG block (`kernelscan.locate_kernel`).
Nothing here depends on the memory being a file beyond opening it: `RawImageTarget(source,
description)` does the same for any `PhysicalSource` (a VM's shared RAM, a debugger's pages).

LiME ("Linux Memory Extractor") container: the `.lime` extension is a raw image with headers.
Format (LiME documentation, "lime" format; Volatility 3 layers/lime.py): a sequence of 32-byte
headers, each followed by its range's bytes: magic 0x4C694D45 ("EMiL" on disk), version 1,
start and inclusive end physical address, 8 reserved bytes.
"""
from typing import Dict, List, Optional, Tuple

from construct import Bytes, Const, Int32ul, Int64ul, Struct

from pykd_ext.errors import (DumpFormatError, PykdExtError, TargetError, TruncatedDumpError,
                             UnsupportedDumpError)
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import MAX_PFN, FlatPhysicalMemory, RunPhysicalMemory
from pykd_ext.memory.space import PAGE_SIZE, PhysicalSource
from pykd_ext.targets.arch import ARCHES, X64, Arch
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo
from pykd_ext.targets.dtbscan import DtbCandidate
# The start block's definition lives with its finder; `forge.lowstub` imports it from here.
from pykd_ext.targets.dtbscan import PROCESSOR_START_BLOCK, START_BLOCK_JMP  # noqa: F401
from pykd_ext.targets.kdbg import decode_kdbg
from pykd_ext.targets.kernelscan import build_lab, find_kdbg_in_image, locate_kernel
from pykd_ext.targets.paged import PagedTarget

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


def find_kernel_tables(physical: PhysicalSource) -> Tuple[Arch, Optional[DtbCandidate], List[str]]:
    """(architecture, best DTB candidate or None, notes): each architecture's finder in turn."""
    tried = []
    for arch in ARCHES:
        if arch.find_dtbs is None:
            continue
        found = arch.find_dtbs.find(physical, arch)
        if found:
            return arch, found[0], []
        tried.append(arch.find_dtbs.looks_for)
    return ARCHES[0], None, ["no %s: kernel DTB unknown" % " nor ".join(tried)]


class RawImageTarget(PagedTarget):
    """Physical memory without a header (a flat image, LiME ranges, any `PhysicalSource`)."""

    def __init__(self, physical: PhysicalSource, description: TargetDescription,
                 path: Optional[str] = None, container: str = "raw",
                 dtb: Optional[int] = None, arch: Arch = X64,
                 notes: Optional[List[str]] = None, facts: Optional[Dict[str, object]] = None
                 ) -> None:
        self.container = container
        self._notes: List[str] = list(notes or [])
        self._facts: Dict[str, object] = dict(facts or {})
        self.entry_hint: Optional[int] = None
        paging_source = "given DTB"
        mode = arch.default_mode
        if dtb is None:
            arch, candidate, found_notes = find_kernel_tables(physical)
            self._notes.extend(found_notes)
            if candidate is not None:
                dtb, mode, paging_source = candidate.dtb, candidate.mode, candidate.how
                self._facts.update(candidate.facts)
                self.entry_hint = candidate.entry_hint
        if dtb is not None:
            self._facts["paging_source"] = paging_source
        super().__init__(physical, arch, mode, dtb, description, path)

    def _build_info(self) -> TargetInfo:
        info = super()._build_info()
        lime = self.container == "lime"
        info.container = self.container
        info.dump_type = "LiME ranges" if lime else "raw physical image"
        info.extra.update(self._facts)
        info.notes.extend(self._notes)
        search = locate_kernel(self._physical, self._kernel, self.arch, self.entry_hint)
        if search.candidates is not None:
            info.extra["kernel_pdb_candidates"] = len(search.candidates)
        info.notes.extend(search.notes)
        found = search.found
        if found is None:
            if search.candidates:
                info.add_pdb(search.candidates[0][1])
                info.notes.append("kernel PDB identity from the first RSDS hit (%s)"
                                  % ("not mapped" if self.mode is not None
                                     else "no DTB to verify"))
            return info
        info.kernel_base = found.base
        info.add_pdb(found.codeview)
        self._add_kernel_facts(info, found.base, found.kdbg)
        return info

    def _add_kernel_facts(self, info: TargetInfo, base: int, kdbg: Optional[int]) -> None:
        """Version, build and KDBG from the kernel image (a raw image has no header)."""
        pe = self._kernel_pe(info, base)
        if pe is None:
            return
        info.add_kernel_image(pe)
        version = pe.file_version
        if version is not None:
            info.build = int(version.split(".")[2])
            info.notes.append("NT build from the kernel image's version resource")
        if kdbg is None:
            kdbg = find_kdbg_in_image(self._kernel, base, pe.size_of_image)
        if kdbg is None:
            info.notes.append("no decoded KDBG block in the kernel image (Windows 8+ keeps it "
                              "encoded in live memory)")
            return
        try:
            info.kdbg = self.arch.kdbg_values(decode_kdbg(self._kernel, kdbg, info))
        except PykdExtError as err:
            info.notes.append("KDBG at 0x%x not decoded: %s" % (kdbg, err.one_line()))
            return
        info.kd_debugger_data_block = kdbg
        # (KDBG's MmPfnDatabase is the address of the variable, not the database: not copied.)
        for key, attribute in (("PsActiveProcessHead", "ps_active_process_head"),
                               ("PsLoadedModuleList", "ps_loaded_module_list")):
            value = info.kdbg.get(key)
            if isinstance(value, int) and value:
                setattr(info, attribute, value)
        if info.build is None:
            lab = build_lab(self._kernel, info.kdbg.get("NtBuildLab"))
            if lab is not None:
                info.extra["build_lab"] = lab
                head = lab.split(".", 2)
                if head[0].isdigit():
                    info.build = int(head[0])
                    info.notes.append("NT build from the kernel's NtBuildLab string (KDBG)")
        if info.build is None:
            info.notes.append("NT build unknown (no version resource, no NtBuildLab); use --symbols")


def open_raw_image(path: str, dtb: Optional[int] = None, arch: Arch = X64) -> Target:
    """Open a raw physical memory image (or a LiME file); `dtb` (of `arch`) skips the scans."""
    fmap = FileMap(path)
    try:
        notes: List[str] = []
        physical: PhysicalSource
        if fmap.bytes_at(0, 4) == LIME_MAGIC:
            segments = parse_lime(fmap, path)
            physical = RunPhysicalMemory(fmap.view, [(pa >> 12, length >> 12, offset)
                                                     for pa, offset, length in segments],
                                         store=fmap)
            container = "lime"
        else:
            if fmap.size < PAGE_SIZE:
                raise TargetError("raw image of %d bytes holds no whole page" % fmap.size, path)
            physical = FlatPhysicalMemory(fmap.view, store=fmap)
            container = "raw"
            if fmap.size % PAGE_SIZE:
                notes.append("file size 0x%x is not a whole number of pages; the last 0x%x "
                             "bytes are ignored" % (fmap.size, fmap.size % PAGE_SIZE))
        return RawImageTarget(physical, TargetDescription("file", path), path, container, dtb,
                              arch, notes, {"file_size": fmap.size})
    except BaseException:
        fmap.close()
        raise
