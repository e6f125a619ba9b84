"""Kernel crash dumps with physical memory (`PAGEDU64` / `PAGEDUMP`): open, validate, index.

Why: a full, bitmap or kernel dump is a header plus physical pages in one of three body formats.
This module checks the file against what its header promises (typed errors naming what is wrong),
builds the O(1) page index once (reading only header and bitmap), and serves the kernel address
space through x64 paging. Triage dumps (DumpType 4) carry no physical memory: they are handed to
`pykd_ext.targets.triage.open_triage64`.

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
from pykd_ext.memory.paging_x64 import X64AddressSpace
from pykd_ext.memory.paging_x86 import X86AddressSpace
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalMemory
from pykd_ext.targets import dumpheader as dh
from pykd_ext.targets.base import Target, TargetInfo
from pykd_ext.targets.paged import PagedTarget
from pykd_ext.targets.pe import read_pe_info


class _Body:
    """What the body parser found: physical memory plus facts and notes for info()."""

    def __init__(self, physical: PhysicalMemory, kind: str) -> None:
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
    max_runs = dh.MAX_RUNS64 if header.width == 64 else dh.MAX_RUNS32
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
    body = _Body(RunPhysicalMemory(fmap.view, triples), dh.BODY_RUNS)
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
                                    summary.pages, summary.first_page)
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
    body = _Body(RunPhysicalMemory(fmap.view, triples), dh.BODY_RDMP)
    body.facts = {"first_page_offset": rdmp.first_page_offset,
                  "metadata_size": rdmp.metadata_size, "ranges": len(triples)}
    body.notes.append("DumpType 0x%x body read as kdmp-parser reads it (RDMP range list); "
                      "not verified against a Windows-written dump" % header.dump_type)
    return body


_BODIES = {dh.BODY_RUNS: _runs_body, dh.BODY_BITMAP: _bitmap_body, dh.BODY_RDMP: _rdmp_body}


class CrashDumpTarget(PagedTarget):
    """A kernel dump with physical memory."""

    def __init__(self, path: str, fmap: FileMap, header: dh.DumpHeader, body: _Body) -> None:
        self._init_paged(path, fmap, body.physical)
        self.header = header
        self._body = body
        if header.width == 64:
            self._kernel = X64AddressSpace(body.physical, header.directory_table_base)
        else:
            # x86, PAE or not as the header's PaeEnabled says (see x86_pae_mode)
            self._kernel = X86AddressSpace(body.physical, header.directory_table_base,
                                           pae=x86_pae_mode(header)[0])

    def _build_info(self) -> TargetInfo:
        h = self.header
        physical = self._physical
        info = TargetInfo(
            path=self.path, container=h.container, dump_type=h.dump_type_name,
            dump_type_code=h.dump_type, arch=h.arch, major_version=h.major_version,
            build=h.build, processors=h.processors, bugcheck_code=h.bugcheck_code,
            bugcheck_parameters=list(h.bugcheck_parameters),
            directory_table_base=h.directory_table_base, pfn_database=h.pfn_database,
            ps_active_process_head=h.ps_active_process_head,
            ps_loaded_module_list=h.ps_loaded_module_list,
            kd_debugger_data_block=h.kd_debugger_data_block,
            physical_runs=physical.runs(), pages_present=physical.page_count(),
            system_time=h.system_time, system_uptime=h.system_uptime, comment=h.comment)
        info.extra.update(self._body.facts)
        info.extra["body"] = self._body.kind
        info.extra["file_size"] = self._fmap.size
        if h.required_dump_space is not None:
            info.extra["required_dump_space"] = h.required_dump_space
        if h.attribute_names:
            info.extra["attributes"] = h.attribute_names
        info.extra["kd_secondary_version"] = h.kd_secondary_version
        info.notes.extend(self._body.notes)
        if h.required_dump_space is not None and h.required_dump_space > self._fmap.size:
            info.notes.append("file is 0x%x bytes, smaller than RequiredDumpSpace 0x%x"
                              % (self._fmap.size, h.required_dump_space))
        if h.width != 64:
            # H10: 32-bit dumps: x86 paging, KDBG pointers, the kernel's PE32 image
            pae, how = x86_pae_mode(h)
            info.extra["paging"] = "x86 PAE" if pae else "x86 non-PAE"
            info.extra["paging_source"] = how
            self._add_kdbg(info)
            if info.kdbg:
                info.kdbg = truncate_kdbg32(info.kdbg)
                base = info.kdbg.get("KernBase")
                info.kernel_base = base if isinstance(base, int) and base else None
            self._add_kernel_image(info)
            return info
        self._add_kdbg(info)
        self._add_kernel_image(info)
        return info

    def _add_kernel_image(self, info: TargetInfo) -> None:
        """Kernel base (when the KDBG did not give it) and the kernel's PE identity."""
        base = info.kernel_base
        if base is None and self.header.ps_loaded_module_list:
            base = kernel_base_from_module_list(self._kernel, self.header.ps_loaded_module_list)
            if base is not None:
                info.kernel_base = base
                info.notes.append("kernel base found through PsLoadedModuleList's first entry")
        if base is None:
            return
        try:
            pe = read_pe_info(self._kernel, base)
        except PykdExtError as err:
            info.notes.append("kernel PE header at 0x%x not readable: %s" % (base, err.one_line()))
            return
        info.extra["kernel_timestamp"] = pe.timestamp
        info.extra["kernel_size_of_image"] = pe.size_of_image
        version = pe.file_version
        if version is not None:
            info.extra["kernel_file_version"] = version
        if pe.debug_codeview is not None:
            info.extra["pdb_name"] = pe.debug_codeview.pdb_name
            info.extra["pdb_guid"] = pe.debug_codeview.guid
            info.extra["pdb_age"] = pe.debug_codeview.age
        info.notes.extend("kernel image: %s" % note for note in pe.notes)

    def _add_kdbg(self, info: TargetInfo) -> None:
        address = self.header.kd_debugger_data_block
        if not address:
            info.notes.append("header names no KdDebuggerDataBlock")
            return
        try:
            from pykd_ext.targets.kdbg import decode_kdbg
        except ImportError:
            info.notes.append("KDBG decoder not available")
            return
        try:
            kdbg = decode_kdbg(self._kernel, address, info)
        except PykdExtError as err:
            info.notes.append("KDBG at 0x%x not decoded: %s" % (address, err.one_line()))
            return
        info.kdbg = dict(kdbg)
        base = kdbg.get("KernBase")
        if isinstance(base, int) and base:
            info.kernel_base = base
        else:
            info.notes.append("KDBG has no KernBase; kernel base unknown")


#: Pointers of the first loaded-module entry examined for the image base (KLDR_DATA_TABLE_ENTRY
#: is not decoded here: no structure offset is assumed, each pointer is tried as a PE base).
MODULE_ENTRY_POINTERS = 32


def kernel_base_from_module_list(space: AddressSpace, list_head: int) -> Optional[int]:
    """Base of the kernel image from PsLoadedModuleList without structure offsets.

    The first entry of the list is the kernel's; of the pointers in that entry, the image base
    is the page-aligned one at which a PE image naming a kernel PDB starts. Bounded.
    """
    width = space.pointer_size
    try:
        entry = space.read_pointer(list_head)
        raw = space.read(entry, width * MODULE_ENTRY_POINTERS)
    except PykdExtError:
        return None
    for (candidate,) in struct.iter_unpack("<Q" if width == 8 else "<I", raw):
        # kernel images live in the kernel half: canonical-high on x64, >= 2 GiB on x86
        in_kernel_half = (candidate >> 47 == 0x1FFFF) if width == 8 else candidate >= 0x80000000
        if candidate & 0xFFF or not in_kernel_half:
            continue
        try:
            if space.read(candidate, 2) != b"MZ":
                continue
            if read_pe_info(space, candidate).is_kernel:
                return candidate
        except PykdExtError:
            continue
    return None


# ---------------------------------------------------------------- H10: 32-bit (x86) dumps

def x86_pae_mode(header: dh.DumpHeader) -> Tuple[bool, str]:
    """(PAE?, why) for a 32-bit dump. DUMP_HEADER32.PaeEnabled states it; when it holds the
    "PAGE" fill (not 0/1), a DTB that is not page aligned can only be a PAE PDPT, and PAE is
    otherwise assumed (every Windows 8+ x86 kernel and most Windows 7 ones run PAE)."""
    if header.pae_enabled is not None:
        return header.pae_enabled, "header PaeEnabled"
    if header.directory_table_base & 0xFFF:
        return True, "DTB not page aligned (a PAE PDPT)"
    return True, "assumed (header PaeEnabled unset)"


def truncate_kdbg32(kdbg: Dict[str, Any]) -> Dict[str, Any]:
    """A 32-bit kernel stores KDDEBUGGER_DATA64 pointers sign-extended to 64 bits: 0x8xxxxxxx
    reads as 0xFFFFFFFF8xxxxxxx. Such values become the 32-bit addresses they stand for."""
    out: Dict[str, Any] = {}
    for key, value in kdbg.items():
        if isinstance(value, int) and not isinstance(value, bool) and value >> 32 == 0xFFFFFFFF:
            value &= 0xFFFFFFFF
        out[key] = value
    return out


def _open(path: str, width: int) -> Target:
    fmap = FileMap(path)
    try:
        if width == 64:
            header = dh.parse_header64(fmap.view, path)
        else:
            header = dh.parse_header32(fmap.view, path)
        kind = dh.BODY_KINDS.get(header.dump_type)
        if kind == dh.BODY_TRIAGE:
            if width != 64:
                raise UnsupportedDumpError("32-bit triage dumps are not supported", path)
            try:
                from pykd_ext.targets.triage import open_triage64
            except ImportError:
                raise UnsupportedDumpError("triage dump reader is not available", path) from None
            mm = fmap.detach()
            try:
                return open_triage64(path, mm, header)
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
        if width == 64 and header.machine_type != 0x8664:
            raise UnsupportedDumpError("machine type %s: only x64 kernel dumps are read"
                                       % header.arch, path)
        if width == 32 and kind == dh.BODY_RDMP:
            raise UnsupportedDumpError("RDMP body in a 32-bit dump is not supported", path)
        body = _BODIES[kind](fmap, header, path)
        return CrashDumpTarget(path, fmap, header, body)
    except BaseException:
        fmap.close()
        raise


def open_crashdump64(path: str) -> Target:
    """Open a 64-bit kernel dump (`PAGEDU64`): full, bitmap, kernel; triage is delegated."""
    return _open(path, 64)


def open_crashdump32(path: str) -> Target:
    """Open a 32-bit kernel dump (`PAGEDUMP`): full or bitmap body, x86 PAE/non-PAE paging."""
    return _open(path, 32)
