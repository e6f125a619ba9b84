"""Kernel crash dumps with physical memory (`PAGEDU64` / `PAGEDUMP`): open, validate, index.

Why: a full, bitmap or kernel dump is a header plus physical pages in one of three body formats.
This module checks the file against what its header promises (typed errors naming what is wrong),
builds the O(1) page index once (reading only header and bitmap), and serves the kernel address
space through the paging of the header's architecture (`arch.Arch`, from MachineImageType; for x86
PAE or not as the header says). Both header widths are one path (`dumpheader.parse_header`).
Triage dumps (DumpType 4) carry no physical memory: they are handed to
`pykd_ext.targets.triage.open_triage` (64- and 32-bit).

Body formats (see `dumpheader.py` for the sources):
- type 1 (full): pages of the header's PhysicalMemoryBlock runs, back to back from the end of the
  header (0x2000 / 0x1000);
- types 5, 6 (bitmap, live kernel bitmap; kdmp-parser, Volatility 3, rizin): the `SDMP`/`FDMP`
  header with FirstPage, TotalPresentPages, Pages and the bitmap. Type 2 (kernel summary, older
  writers) is read with the same body, as mindumpdef.h defines one summary header
  (DUMP_SUMMARY_SIGNATURE "SDMP"); none of the public readers checked reads type 2, so this is
  unverified against a Windows-written file (a wrong guess fails the signature check, typed);
- types 8, 9, 0xA (kernel / kernel+user / complete memory, newer dbgeng writers): the `RDMP`
  header and a list of (first frame, count) ranges, pages back to back from FirstPageOffset, as
  kdmp-parser reads them.
"""
import struct
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import (DumpFormatError, PykdExtError, TruncatedDumpError,
                             UnsupportedDumpError)
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.filephysical import MAX_PFN, BitmapPhysicalMemory, RunPhysicalMemory
from pykd_ext.memory.paging_modes import PagingMode
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalSource
from pykd_ext.targets import dumpheader as dh
from pykd_ext.targets.arch import ARCHES, Arch
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo
from pykd_ext.targets.kdbg import decode_kdbg
from pykd_ext.targets.paged import PagedTarget
from pykd_ext.targets.pe import read_pe_info


class _Body:
    """What the body parser found: physical memory plus facts and notes for info()."""

    def __init__(self, physical: PhysicalSource, kind: str) -> None:
        self.physical = physical
        self.kind = kind
        self.facts: Dict[str, Any] = {}
        self.notes: List[str] = []


def _check_pages_fit(data_offset: int, pages: int, file_size: int, what: str,
                     path: str) -> None:
    end = data_offset + pages * PAGE_SIZE
    if end > file_size:
        held = max(0, (file_size - data_offset) // PAGE_SIZE)
        raise TruncatedDumpError("%s claim %d pages (file offsets 0x%x..0x%x) but the file holds "
                                 "%d" % (what, pages, data_offset, end, held), path)


def _runs_body(fmap: FileMap, header: dh.DumpHeader, path: str) -> _Body:
    max_runs = dh.MAX_RUNS[header.width]
    declared = header.physical_runs_declared
    if declared is None or declared > max_runs:
        raise DumpFormatError("full dump's PhysicalMemoryBlock declares %s runs; at most %d fit"
                              % ("no" if declared is None else declared, max_runs), path)
    offset = header.header_size
    triples: List[Tuple[int, int, int]] = []
    for base, count in header.physical_runs:
        if base >= MAX_PFN or count > MAX_PFN or base + count > MAX_PFN:
            raise DumpFormatError("physical run 0x%x+0x%x pages is beyond any physical address"
                                  % (base, count), path)
        triples.append((base, count, offset))
        offset += count * PAGE_SIZE
    total = sum(count for _, count, _ in triples)
    _check_pages_fit(header.header_size, total, fmap.size, "physical memory runs", path)
    ordered = sorted((b, c) for b, c, _ in triples if c)
    for (b1, c1), (b2, _) in zip(ordered, ordered[1:]):
        if b1 + c1 > b2:
            raise DumpFormatError("physical runs overlap at frame 0x%x" % b2, path)
    body = _Body(RunPhysicalMemory(fmap.view, triples, store=fmap), dh.BODY_RUNS)
    body.facts = {"data_offset": header.header_size, "runs_declared": declared}
    if header.physical_pages_declared is not None and header.physical_pages_declared != total:
        body.notes.append("header NumberOfPages is %d but the runs hold %d pages"
                          % (header.physical_pages_declared, total))
    return body


def _bitmap_body(fmap: FileMap, header: dh.DumpHeader, path: str) -> _Body:
    summary = dh.parse_summary_header(fmap.view, header.header_size, path)
    if summary.pages > MAX_PFN:
        raise DumpFormatError("bitmap dump header claims %d page frames, beyond any physical "
                              "address" % summary.pages, path)
    bitmap_end = summary.bitmap_offset + summary.bitmap_bytes
    if bitmap_end > fmap.size:
        raise TruncatedDumpError("bitmap claims %d pages (%d bytes from 0x%x) but the file ends "
                                 "at 0x%x" % (summary.pages, summary.bitmap_bytes,
                                               summary.bitmap_offset, fmap.size), path)
    if summary.first_page < bitmap_end:
        raise DumpFormatError("bitmap dump's FirstPage 0x%x lies inside its own bitmap (which ends "
                              "at 0x%x)" % (summary.first_page, bitmap_end), path)
    physical = BitmapPhysicalMemory(fmap.view, fmap.view[summary.bitmap_offset:bitmap_end],
                                    summary.pages, summary.first_page, store=fmap)
    present = physical.present_pages
    if summary.first_page + present * PAGE_SIZE > fmap.size:
        held = max(0, (fmap.size - summary.first_page) // PAGE_SIZE)
        raise TruncatedDumpError("bitmap marks %d pages present but the file holds %d after "
                                 "FirstPage 0x%x" % (present, held, summary.first_page), path)
    body = _Body(physical, dh.BODY_BITMAP)
    body.facts = {"bitmap_signature": summary.signature, "first_page_offset": summary.first_page,
                  "bitmap_pages": summary.pages, "total_present_pages": summary.total_present_pages}
    if summary.total_present_pages != present:
        body.notes.append("bitmap header says %d pages present, the bitmap marks %d"
                          % (summary.total_present_pages, present))
    return body


def _rdmp_body(fmap: FileMap, header: dh.DumpHeader, path: str) -> _Body:
    full = header.dump_type == dh.DUMP_TYPE_COMPLETE_MEMORY
    rdmp = dh.parse_rdmp_header(fmap.view, header.header_size, full, path)
    # kdmp-parser's consistency rule: metadata from +0x20, first page right after it.
    if rdmp.metadata_size < 0x20 or rdmp.metadata_size % dh.PFN_RANGE.sizeof():
        raise DumpFormatError("RDMP metadata size 0x%x is not a whole number of ranges"
                              % rdmp.metadata_size, path)
    if rdmp.first_page_offset != header.header_size + 0x20 + rdmp.metadata_size:
        raise DumpFormatError("RDMP FirstPageOffset 0x%x does not follow its 0x%x bytes of "
                              "metadata" % (rdmp.first_page_offset, rdmp.metadata_size), path)
    if rdmp.first_page_offset > fmap.size:
        raise TruncatedDumpError("RDMP metadata ends at 0x%x, past the end of the file (0x%x)"
                                 % (rdmp.first_page_offset, fmap.size), path)
    start = rdmp.metadata_offset
    count = (rdmp.first_page_offset - start) // dh.PFN_RANGE.sizeof()
    triples: List[Tuple[int, int, int]] = []
    offset = rdmp.first_page_offset
    for base, pages in struct.iter_unpack("<QQ", fmap.view[start:start + count * 16]):
        if base == 0:
            break                                   # terminator (as kdmp-parser reads it)
        if base >= MAX_PFN or pages > MAX_PFN:
            raise DumpFormatError("RDMP range 0x%x+0x%x pages is beyond any physical address"
                                  % (base, pages), path)
        triples.append((base, pages, offset))
        offset += pages * PAGE_SIZE
        if offset > fmap.size:
            break                                   # reported just below with the total
    total = sum(p for _, p, _ in triples)
    _check_pages_fit(rdmp.first_page_offset, total, fmap.size, "RDMP ranges", path)
    ordered = sorted((b, c) for b, c, _ in triples)
    for (b1, c1), (b2, _) in zip(ordered, ordered[1:]):
        if b1 + c1 > b2:
            raise DumpFormatError("RDMP ranges overlap at frame 0x%x" % b2, path)
    body = _Body(RunPhysicalMemory(fmap.view, triples, store=fmap), dh.BODY_RDMP)
    body.facts = {"first_page_offset": rdmp.first_page_offset,
                  "metadata_size": rdmp.metadata_size, "ranges": len(triples)}
    body.notes.append("DumpType 0x%x body read as kdmp-parser reads it (RDMP range list); "
                      "not verified against a Windows-written dump" % header.dump_type)
    return body


_BODIES = {dh.BODY_RUNS: _runs_body, dh.BODY_BITMAP: _bitmap_body, dh.BODY_RDMP: _rdmp_body}


class CrashDumpTarget(PagedTarget):
    """A kernel dump with physical memory."""

    def __init__(self, path: str, file_size: int, header: dh.DumpHeader, body: _Body,
                 arch: Arch) -> None:
        mode, self.paging_source = dump_paging_mode(arch, header)
        super().__init__(body.physical, arch, mode, header.directory_table_base,
                         TargetDescription("file", path), path)
        self.header = header
        self.file_size = file_size
        self._body = body

    def _build_info(self) -> TargetInfo:
        h = self.header
        info = super()._build_info()
        info.container = h.container
        info.dump_type, info.dump_type_code = h.dump_type_name, h.dump_type
        info.major_version, info.build, info.processors = h.major_version, h.build, h.processors
        info.bugcheck_code, info.bugcheck_parameters = h.bugcheck_code, list(h.bugcheck_parameters)
        info.pfn_database = h.pfn_database
        info.ps_active_process_head = h.ps_active_process_head
        info.ps_loaded_module_list = h.ps_loaded_module_list
        info.kd_debugger_data_block = h.kd_debugger_data_block
        info.system_time, info.system_uptime, info.comment = h.system_time, h.system_uptime, h.comment
        info.extra.update(self._body.facts)
        info.extra["body"] = self._body.kind
        info.extra["file_size"] = self.file_size
        if h.required_dump_space is not None:
            info.extra["required_dump_space"] = h.required_dump_space
        if h.attribute_names:
            info.extra["attributes"] = h.attribute_names
        info.extra["kd_secondary_version"] = h.kd_secondary_version
        info.extra["paging_source"] = self.paging_source
        info.notes.extend(self._body.notes)
        if h.required_dump_space is not None and h.required_dump_space > self.file_size:
            info.notes.append("file is 0x%x bytes, smaller than RequiredDumpSpace 0x%x"
                              % (self.file_size, h.required_dump_space))
        self._add_kdbg(info)
        self._add_kernel_image(info)
        return info

    def _add_kernel_image(self, info: TargetInfo) -> None:
        """Kernel base (when the KDBG did not give it) and the kernel's PE identity."""
        base = info.kernel_base
        if base is None and self.header.ps_loaded_module_list:
            base = kernel_base_from_module_list(self._kernel, self.header.ps_loaded_module_list,
                                                self.arch)
            if base is not None:
                info.kernel_base = base
                info.notes.append("kernel base found through PsLoadedModuleList's first entry")
        if base is None:
            return
        pe = self._kernel_pe(info, base)
        if pe is None:
            return
        info.add_kernel_image(pe)
        info.notes.extend("kernel image: %s" % note for note in pe.notes)

    def _add_kdbg(self, info: TargetInfo) -> None:
        address = self.header.kd_debugger_data_block
        if not address:
            info.notes.append("header names no KdDebuggerDataBlock")
            return
        try:
            kdbg = self.arch.kdbg_values(decode_kdbg(self._kernel, address, info))
        except PykdExtError as err:
            info.notes.append("KDBG at 0x%x not decoded: %s" % (address, err.one_line()))
            return
        info.kdbg = kdbg
        base = kdbg.get("KernBase")
        if isinstance(base, int) and base:
            info.kernel_base = base
        else:
            info.notes.append("KDBG has no KernBase; kernel base unknown")


#: Pointers of the first loaded-module entry examined for the image base (KLDR_DATA_TABLE_ENTRY
#: is not decoded here: no structure offset is assumed, each pointer is tried as a PE base).
MODULE_ENTRY_POINTERS = 32
_POINTER_FORMAT = {8: "<Q", 4: "<I"}


def kernel_base_from_module_list(space: AddressSpace, list_head: int, arch: Arch) -> Optional[int]:
    """Base of the kernel image from PsLoadedModuleList without structure offsets.

    The first entry of the list is the kernel's; of the pointers in that entry, the image base
    is the page-aligned one in the kernel half at which a PE image naming a kernel PDB starts.
    Bounded.
    """
    width = space.pointer_size
    try:
        entry = space.read_pointer(list_head)
        raw = space.read(entry, width * MODULE_ENTRY_POINTERS)
    except PykdExtError:
        return None
    for (candidate,) in struct.iter_unpack(_POINTER_FORMAT[width], raw):
        if candidate & 0xFFF or not arch.is_kernel_address(candidate):
            continue
        try:
            if space.read(candidate, 2) != b"MZ":
                continue
            if read_pe_info(space, candidate).is_kernel:
                return candidate
        except PykdExtError:
            continue
    return None


def dump_paging_mode(arch: Arch, header: dh.DumpHeader) -> Tuple[PagingMode, str]:
    """(paging mode, why) of a dump's kernel, among its architecture's modes.

    One mode: that one. Several (x86: PAE or not): DUMP_HEADER32.PaeEnabled states whether the
    entries are 8 bytes (PAE) or 4; when it holds the "PAGE" fill (not 0/1), a DTB that is not
    page aligned can only be a mode whose root table is sub-page aligned (a PAE PDPT); otherwise
    the architecture's default is assumed (x86: PAE, what every Windows 8+ x86 kernel and most
    Windows 7 ones run).
    """
    modes = arch.paging_modes
    if len(modes) == 1:
        return modes[0], "the architecture's only paging mode"
    if header.pae_enabled is not None:
        size = 8 if header.pae_enabled else 4
        for mode in modes:
            if mode.entry.size == size:
                return mode, "header PaeEnabled"
    if header.directory_table_base & 0xFFF:
        for mode in modes:
            if mode.root_mask is not None and mode.root_mask & 0xFFF:
                return mode, "DTB not page aligned (a PAE PDPT)"
    return modes[0], "assumed (header PaeEnabled unset)"


#: Header widths each body kind exists in (the RDMP body is a 64-bit format; triage dumps exist
#: in both: TRIAGE_DUMP64 and TRIAGE_DUMP32).
_BODY_WIDTHS = {dh.BODY_RUNS: (64, 32), dh.BODY_BITMAP: (64, 32), dh.BODY_RDMP: (64,),
                dh.BODY_TRIAGE: (64, 32)}
_BODY_REFUSED = {dh.BODY_RDMP: "RDMP body in a %d-bit dump is not supported",
                 dh.BODY_TRIAGE: "%d-bit triage dumps are not supported"}


def _supported() -> str:
    return ", ".join("%s in %s" % (arch.name, dh.CONTAINER[arch.kernel_dump_width].decode())
                     for arch in ARCHES if arch.kernel_dump_width and arch.paging_modes)


def open_crashdump(path: str) -> Target:
    """Open a kernel dump (`PAGEDU64` / `PAGEDUMP`): full, bitmap, kernel; triage is delegated."""
    fmap = FileMap(path)
    try:
        width = dh.width_of_container(fmap.bytes_at(0, 8))
        header = dh.parse_header(fmap.view, path, width)
        kind = dh.BODY_KINDS.get(header.dump_type)
        if kind is not None and header.width not in _BODY_WIDTHS[kind]:
            raise UnsupportedDumpError(_BODY_REFUSED[kind] % header.width, path)
        if kind == dh.BODY_TRIAGE:
            try:
                from pykd_ext.targets.triage import open_triage
            except ImportError:
                raise UnsupportedDumpError("triage dump reader is not available", path) from None
            mm = fmap.detach()
            try:
                return open_triage(path, mm, header)
            except BaseException:
                try:
                    mm.close()
                except BufferError:
                    pass
                raise
        if kind is None:
            raise UnsupportedDumpError("dump type %s holds no memory we can read"
                                       % ("0x%x (%s)" % (header.dump_type, header.dump_type_name)
                                          if header.dump_type in dh.DUMP_TYPE_NAMES
                                          else "0x%x (unknown)" % header.dump_type), path)
        arch = header.architecture
        if arch is None or arch.kernel_dump_width != header.width or not arch.paging_modes:
            raise UnsupportedDumpError("machine type %s in a %s dump: kernel dumps are read for %s"
                                       % (header.arch, header.container, _supported()), path)
        body = _BODIES[kind](fmap, header, path)
        return CrashDumpTarget(path, fmap.size, header, body, arch)
    except BaseException:
        fmap.close()
        raise


def header_only_info(path: str, missing: PykdExtError) -> TargetInfo:
    """What a kernel dump's header states when its body is missing or cut short (`info` on a
    truncated or header-only dump): the header's facts and notes naming what is missing.

    Raises `missing` again when the file does not even hold a whole, valid header (nothing to
    describe then). Reads only the header: no page of the body is touched.
    """
    fmap = FileMap(path)
    try:
        width = dh.width_of_container(fmap.bytes_at(0, 8))
        if width is None:
            raise missing
        try:
            h = dh.parse_header(fmap.view, path, width)
        except PykdExtError:
            raise missing from None
        size = fmap.size
    finally:
        fmap.close()
    info = TargetInfo(
        path=path, container=h.container, dump_type=h.dump_type_name, dump_type_code=h.dump_type,
        arch=h.arch, major_version=h.major_version, build=h.build, processors=h.processors,
        bugcheck_code=h.bugcheck_code, bugcheck_parameters=list(h.bugcheck_parameters),
        directory_table_base=h.directory_table_base, pfn_database=h.pfn_database,
        ps_active_process_head=h.ps_active_process_head,
        ps_loaded_module_list=h.ps_loaded_module_list,
        kd_debugger_data_block=h.kd_debugger_data_block, physical_runs=list(h.physical_runs),
        system_time=h.system_time, system_uptime=h.system_uptime, comment=h.comment)
    info.extra["file_size"] = size
    info.extra["memory"] = "missing"
    if h.required_dump_space is not None:
        info.extra["required_dump_space"] = h.required_dump_space
    if h.attribute_names:
        info.extra["attributes"] = h.attribute_names
    if h.physical_pages_declared is not None:
        info.extra["pages_declared"] = h.physical_pages_declared
    held = max(0, size - h.header_size)
    info.notes.append("only the header is described: %s" % missing.message)
    info.notes.append("the file holds 0x%x bytes after the 0x%x-byte header%s; memory (and the "
                      "KDBG, kernel image, processes) cannot be read"
                      % (held, h.header_size,
                         ", RequiredDumpSpace says 0x%x in all" % h.required_dump_space
                         if h.required_dump_space is not None else ""))
    return info
