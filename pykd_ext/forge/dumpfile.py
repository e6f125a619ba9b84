"""Write forged physical memory as Windows kernel dumps (full, bitmap) and raw images.

Why: every reader test runs on dumps the project writes itself, so the writer must produce what
Windows produces: the dump header of the spec's architecture (`DUMP_HEADER64`, 0x2000 bytes, for
x64; `DUMP_HEADER32`, 0x1000 bytes, for x86; built with the reader's own construct definition,
`pykd_ext.targets.dumpheader.header_struct`, so the format is written down once), pre-filled with
the "PAGE" pattern wherever Windows leaves bytes unset, followed by
- type 1 (full, run-based): every page of every `PhysicalMemoryBlock` run, back to back after the
  header;
- type 5 (bitmap): the `SDMP`/`FDMP` summary header after the dump header, one bit per page frame,
  the present pages in frame order from `FirstPage` (page aligned);
- raw: a flat image where file offset = physical address (sparse on disk: holes are not written).
One writer serves both widths: which header, its pointer width and the "PAGE" fill of unset
pointers follow from `DumpSpec.machine_type` (`targets.arch`); the 32-bit header also states
`PaeEnabled` (`DumpSpec.pae`).

Facts about what Windows writes (checked against `shared/real/kernel-triage/*.dmp`, kdmp-parser's
`HEADER64::LooksGood` and Volatility 3's `crash.py`):
- unset header fields keep the ASCII "PAGE" fill, including the tail of the 700-byte
  PhysicalMemoryBlock buffer after the last run, the CONTEXT buffer is zero after the record;
- `RequiredDumpSpace` is the file size; `ContextRecord.MxCsr` equals `FltSave.MxCsr` (kdmp-parser
  refuses a header where they differ);
- bitmap dumps are written with DumpType 5 for both the complete `FDMP` and the kernel `SDMP`
  variant: Volatility 3 reads bitmap bodies only under DumpType 5, kdmp-parser 0.7.4 under 5
  and 6 (it refuses 2); kdmp-parser reads `Pages / 8` bitmap bytes (it would drop the last
  `Pages % 8` frames), so `Pages` is rounded up to a multiple of 8.

Writers stream pages (chunks of `_CHUNK_PAGES`), never modify their inputs, and refuse to
replace an existing file unless `overwrite=True`.
"""
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, Iterable, List, Optional, Sequence

from pykd_ext.forge.isf import SymbolTable
from pykd_ext.forge.physmem import PhysicalImage, Run
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE
from pykd_ext.targets.arch import X64, arch_for_machine
from pykd_ext.targets.dumpheader import (DMP_CONTEXT_RECORD_SIZE, DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                         DUMP_HEADER, DUMP_TYPE_BITMAP_FULL,
                                         DUMP_TYPE_BITMAP_KERNEL, DUMP_TYPE_FULL,
                                         DUMP_TYPE_SUMMARY, FILL, FILL32, FULL_SIGNATURE,
                                         HEADER_SIZE, MAX_RUNS, POINTER_FILL, SUMMARY_DUMP,
                                         SUMMARY_DUMP_SIZE, SUMMARY_SIGNATURE, header_offsets,
                                         physical_memory_descriptor, physical_memory_run)

_CHUNK_PAGES = 256
_BITMAP_DUMP_TYPES = (DUMP_TYPE_SUMMARY, DUMP_TYPE_BITMAP_FULL, DUMP_TYPE_BITMAP_KERNEL)
_ZERO_PAGE = bytes(PAGE_SIZE)


def _offset_of(struct: object, name: str) -> int:
    """Offset of a fixed-size member in a construct Struct (from the definition, not typed)."""
    at = 0
    for sub in struct.subcons:                    # type: ignore[attr-defined]
        if sub.name == name:
            return at
        at += sub.sizeof()
    raise KeyError(name)


IMAGE_FILE_MACHINE_AMD64 = X64.machine_types[0]     # PE/COFF specification

# winnt.h CONTEXT_* flags and the x64 selectors Windows uses in kernel mode (values seen in the
# CONTEXT of shared/real/kernel-triage/win10-19041-x64-triage.dmp).
CONTEXT_AMD64 = 0x00100000
CONTEXT_FULL_AND_DEBUG = CONTEXT_AMD64 | 0x1F      # CONTROL|INTEGER|SEGMENTS|FLOATING_POINT|DEBUG
MXCSR_DEFAULT = 0x1F80
KERNEL_SELECTORS = {"SegCs": 0x10, "SegDs": 0x2B, "SegEs": 0x2B, "SegFs": 0x53, "SegGs": 0x2B,
                    "SegSs": 0x18}
EFLAGS_DEFAULT = 0x00050246
STATUS_BREAKPOINT = 0x80000003          # the exception record of a bugcheck dump (real dumps)
STATUS_ACCESS_VIOLATION = 0xC0000005
EXCEPTION_NONCONTINUABLE = 1


@dataclass
class DumpSpec:
    """The facts a dump header states; values are written as given (the forge does not guess).

    Pointer-sized fields left None keep the "PAGE" fill of the header's width; the bugcheck
    parameters default to an access violation, sign-extended to the pointer width as a kernel
    passes it.
    """

    build: int
    dtb: int
    processors: int = 1
    bugcheck_code: int = 0x1000007E
    bugcheck_parameters: Optional[Sequence[int]] = None
    kd_debugger_data_block: Optional[int] = None
    ps_active_process_head: Optional[int] = None
    ps_loaded_module_list: Optional[int] = None
    pfn_database: Optional[int] = None
    major_version: int = 0xF                    # free build
    machine_type: int = IMAGE_FILE_MACHINE_AMD64
    system_time: int = 0x01D707F23DBB3399       # FILETIME (values of the real 19041 dump)
    system_uptime: int = 0x023BC1E9
    product_type: int = 1                       # VER_NT_WORKSTATION
    suite_mask: int = 0x110
    context: Optional[bytes] = None             # a CONTEXT record (see build_context)
    exception_address: int = 0
    comment: Optional[str] = None               # None keeps the "PAGE" fill, as Windows does
    pae: bool = False                           # DUMP_HEADER32.PaeEnabled (32-bit headers only)
    extra_fields: Dict[str, int] = field(default_factory=dict)   # any other header field

    @property
    def width(self) -> int:
        """Pointer bits of the header this spec is written as (its architecture's flavour)."""
        arch = arch_for_machine(self.machine_type)
        if arch is None or arch.kernel_dump_width is None:
            raise ValueError("no kernel dump header for machine type 0x%x" % self.machine_type)
        return arch.kernel_dump_width


def build_context(table: SymbolTable, rip: int, rsp: int,
                  registers: Optional[Dict[str, int]] = None) -> bytes:
    """A `_CONTEXT` record (offsets and size from the ISF) for the dump header."""
    out = bytearray(table.size("_CONTEXT"))

    def put(path: str, value: int, size: int) -> None:
        at = table.offset("_CONTEXT", path)
        out[at:at + size] = value.to_bytes(size, "little")

    put("ContextFlags", CONTEXT_FULL_AND_DEBUG, 4)
    put("MxCsr", MXCSR_DEFAULT, 4)
    put("FltSave.MxCsr", MXCSR_DEFAULT, 4)
    for name, value in KERNEL_SELECTORS.items():
        put(name, value, 2)
    put("EFlags", EFLAGS_DEFAULT, 4)
    put("Rip", rip, 8)
    put("Rsp", rsp, 8)
    for name, value in (registers or {}).items():
        put(name, value, 8)
    return bytes(out)


# --- header ------------------------------------------------------------------------------------

def _fill_bytes(start: int, end: int) -> bytes:
    """The "PAGE" pattern as it appears at file offsets [start, end) (phase = offset % 4)."""
    pattern = FILL * ((end - start) // 4 + 2)
    phase = start % 4
    return pattern[phase:phase + end - start]


def _physical_runs(runs: List[Run], width: int) -> Dict[str, object]:
    if len(runs) > MAX_RUNS[width]:
        raise ValueError("%d physical memory runs do not fit the header (at most %d)"
                         % (len(runs), MAX_RUNS[width]))
    return {"NumberOfRuns": len(runs), "NumberOfPages": sum(n for _, n in runs),
            "Run": [{"BasePage": a, "PageCount": n} for a, n in runs]}


def _pointer(value: Optional[int], width: int) -> int:
    return POINTER_FILL[width] if value is None else value


def build_header(spec: DumpSpec, dump_type: int, runs: List[Run], file_size: int) -> bytes:
    """The dump header of the spec's width (DUMP_HEADER64: 0x2000 bytes, DUMP_HEADER32: 0x1000),
    built with the reader's construct definition."""
    width = spec.width
    context = spec.context or b""
    context_size = DMP_CONTEXT_RECORD_SIZE[width]
    if len(context) > context_size:
        raise ValueError("CONTEXT record of %d bytes does not fit" % len(context))
    if spec.bugcheck_parameters is None:
        # NTSTATUS sign-extended to a pointer-sized parameter (0xFFFFFFFFC0000005 on x64)
        params = [(STATUS_ACCESS_VIOLATION - (1 << 32)) & ((1 << width) - 1), 0, 0, 0]
    else:
        params = list(spec.bugcheck_parameters) + [0] * 4
    fields: Dict[str, object] = {
        "MajorVersion": spec.major_version, "MinorVersion": spec.build,
        "DirectoryTableBase": spec.dtb, "PfnDataBase": _pointer(spec.pfn_database, width),
        "PsLoadedModuleList": _pointer(spec.ps_loaded_module_list, width),
        "PsActiveProcessHead": _pointer(spec.ps_active_process_head, width),
        "MachineImageType": spec.machine_type, "NumberProcessors": spec.processors,
        "BugCheckCode": spec.bugcheck_code, "BugCheckParameter": params[:4],
        "KdDebuggerDataBlock": _pointer(spec.kd_debugger_data_block, width),
        "PhysicalMemoryBlock": _physical_runs(runs, width),
        "ContextRecord": context + bytes(context_size - len(context)),
        "Exception": {"ExceptionCode": STATUS_BREAKPOINT,
                      "ExceptionFlags": EXCEPTION_NONCONTINUABLE, "ExceptionRecord": 0,
                      "ExceptionAddress": spec.exception_address, "NumberParameters": 0,
                      "ExceptionInformation": [POINTER_FILL[width]] * 15},
        "DumpType": dump_type, "RequiredDumpSpace": file_size,
        "SystemTime": spec.system_time, "SystemUpTime": spec.system_uptime,
        # Fields a kernel dump of this kind leaves unset keep the fill (as in real headers).
        "MiniDumpFields": FILL32, "SecondaryDataState": 0,
        "ProductType": spec.product_type, "SuiteMask": spec.suite_mask,
        "WriterStatus": FILL32, "KdSecondaryVersion": 0,
        "Attributes": FILL32, "BootId": FILL32,
    }
    # Fields only one width's header has (the definition says which).
    offsets = header_offsets(width)
    for name, value in (("Unused1", FILL[0]), ("PaeEnabled", 1 if spec.pae else 0)):
        if name in offsets:
            fields[name] = value
    if spec.comment is not None:
        raw = spec.comment.encode("latin-1")[:127]
        fields["Comment"] = raw + bytes(128 - len(raw))
    unknown = [name for name in spec.extra_fields if name not in fields]
    if unknown:
        raise ValueError("unknown or unsupported header field(s): %s" % ", ".join(unknown))
    fields.update(spec.extra_fields)
    header = bytearray(DUMP_HEADER[width].build(fields))
    if len(header) != HEADER_SIZE[width]:
        raise AssertionError("DUMP_HEADER%d built 0x%x bytes" % (width, len(header)))
    # construct pads the 700-byte run buffer with zeros; Windows leaves the "PAGE" fill there.
    start = offsets["PhysicalMemoryBlock"] + _offset_of(physical_memory_descriptor(width), "Run") \
        + physical_memory_run(width).sizeof() * len(runs)
    end = offsets["PhysicalMemoryBlock"] + DMP_PHYSICAL_MEMORY_BLOCK_SIZE
    header[start:end] = _fill_bytes(start, end)
    return bytes(header)


# --- files -------------------------------------------------------------------------------------

def _open_new(path: str, overwrite: bool) -> BinaryIO:
    """Open for writing; an existing path is an error unless `overwrite` (never a silent loss)."""
    if os.path.isdir(path):
        raise IsADirectoryError(path)
    return open(path, "wb" if overwrite else "xb")


def _write_pages(out: BinaryIO, phys: PhysicalImage, pfns: Iterable[int]) -> int:
    """Stream pages (zeros for RAM never written) in chunks; returns how many were written."""
    chunk: List[bytes] = []
    count = 0
    get = phys.page
    for pfn in pfns:
        page = get(pfn)
        chunk.append(page.tobytes() if page is not None else _ZERO_PAGE)
        count += 1
        if len(chunk) >= _CHUNK_PAGES:
            out.write(b"".join(chunk))
            chunk = []
    if chunk:
        out.write(b"".join(chunk))
    return count


def write_full_dump(path: str, phys: PhysicalImage, spec: DumpSpec,
                    overwrite: bool = False) -> str:
    """A type 1 (full, run-based) dump: the header, then every page of every RAM run."""
    runs = phys.ram_runs()
    if not runs:
        raise ValueError("no physical memory to write")
    pages = sum(n for _, n in runs)
    size = HEADER_SIZE[spec.width] + pages * PAGE_SIZE
    header = build_header(spec, DUMP_TYPE_FULL, runs, size)
    with _open_new(path, overwrite) as out:
        out.write(header)
        for first, count in runs:
            _write_pages(out, phys, range(first, first + count))
    return path


def bitmap_pfns(phys: PhysicalImage, kernel_only: bool) -> List[int]:
    """Frames a bitmap dump stores: every present page, minus user pages for kernel dumps."""
    pfns = phys.present_pfns()
    if kernel_only:
        user = phys.user_pfns()
        pfns = [pfn for pfn in pfns if pfn not in user]
    return pfns


def write_bitmap_dump(path: str, phys: PhysicalImage, spec: DumpSpec, kernel_only: bool = False,
                      overwrite: bool = False, dump_type: int = DUMP_TYPE_BITMAP_FULL) -> str:
    """A bitmap dump: `SDMP` (kernel_only) or `FDMP` (complete) summary header.

    `dump_type` is 5 by default (what kdmp-parser and Volatility 3 read); 6 (live kernel bitmap)
    and 2 (old kernel summary) write the same body under another DumpType, to test readers.
    """
    if dump_type not in _BITMAP_DUMP_TYPES:
        raise ValueError("bitmap bodies go with DumpType 2, 5 or 6, not %r" % dump_type)
    width = spec.width
    # The run list is informative in a bitmap dump: as many runs as the header holds.
    write_bitmap_body(path, phys, kernel_only, overwrite, HEADER_SIZE[width],
                      lambda size: build_header(spec, dump_type, phys.ram_runs()[:MAX_RUNS[width]],
                                                size))
    return path


def write_bitmap_body(path: str, phys: PhysicalImage, kernel_only: bool, overwrite: bool,
                      header_size: int, make_header: Callable[[int], bytes]) -> None:
    """Header, `SDMP`/`FDMP` summary, bitmap and present pages: the bitmap dump of either width.

    `make_header(file_size)` builds the dump header (64- or 32-bit) for the final file size.
    """
    pfns = bitmap_pfns(phys, kernel_only)
    span = max(phys.span_pages(), (pfns[-1] + 1) if pfns else 0)
    bits = -(-span // 8) * 8        # kdmp-parser reads Pages // 8 bytes: keep Pages a multiple of 8
    bitmap = bytearray(bits // 8)
    for pfn in pfns:
        bitmap[pfn >> 3] |= 1 << (pfn & 7)
    body_start = header_size + SUMMARY_DUMP_SIZE + len(bitmap)
    first_page = -(-body_start // PAGE_SIZE) * PAGE_SIZE
    size = first_page + len(pfns) * PAGE_SIZE
    summary = SUMMARY_DUMP.build({
        "Signature": SUMMARY_SIGNATURE if kernel_only else FULL_SIGNATURE,
        "DumpOptions": 0, "FirstPage": first_page, "TotalPresentPages": len(pfns),
        "Pages": bits})
    header = make_header(size)
    with _open_new(path, overwrite) as out:
        out.write(header)
        out.write(summary)
        out.write(bitmap)
        out.write(bytes(first_page - body_start))
        _write_pages(out, phys, pfns)


def write_raw_image(path: str, phys: PhysicalImage, size: Optional[int] = None,
                    overwrite: bool = False) -> str:
    """A raw physical image (file offset = physical address); holes stay sparse on disk."""
    span = phys.span_pages() << PAGE_SHIFT
    size = span if size is None else size
    if size < 0:
        raise ValueError("negative image size")
    with _open_new(path, overwrite) as out:
        for first, count in phys.runs():
            if first << PAGE_SHIFT >= size:
                break
            count = min(count, (size >> PAGE_SHIFT) - first)
            out.seek(first << PAGE_SHIFT)
            _write_pages(out, phys, range(first, first + count))
        out.truncate(size)
    return path
