"""Kernel crash-dump headers (`PAGEDU64` / `PAGEDUMP`), defined once, declaratively, with construct.

Why this module exists: every reader of a Windows kernel dump (full, bitmap, triage) starts with the
same 0x2000-byte (64-bit) or 0x1000-byte (32-bit) header, and the project's dump writer (the forge)
builds headers with the *same* definitions, so the format is written down exactly once. The two
widths are one definition: `HEADER_FIELDS` lists every field once, with its type as a function of
the pointer width and its offset in each header (the 32-bit header orders its tail differently);
`header_struct(width)` builds the construct definition, the "PAGE"-filled gaps in between included.

Sources of the format facts (public):
- Windows SDK `mindumpdef.h` (`DUMP_HEADER32`, `DUMP_HEADER64`, `PHYSICAL_MEMORY_DESCRIPTOR32/64`,
  `DUMP_FILE_ATTRIBUTES`, `DMP_*_SIZE_*` constants, `DUMP_TYPE` values 1-7, the `PAGE`/`DU64`,
  `SDMP`/`FDMP`/`DUMP` signatures); winnt.h `EXCEPTION_RECORD32/64`.
- kdmp-parser `src/lib/kdmp-parser-structs.h` (0vercl0k/kdmp-parser): `HEADER64` with its
  static_asserts (BugCheckCodeParameter at 0x40, KdDebuggerDataBlock 0x80, ContextRecord 0x348,
  Exception 0xf00, Comment 0xfb0, body header at 0x2000), `BMP_HEADER64` (FirstPage at 0x20,
  TotalPresentPages 0x28, Pages 0x30, bitmap at 0x38), `RDMP_HEADER64` / `KERNEL_RDMP_HEADER64` /
  `FULL_RDMP_HEADER64` of the newer dump types 8, 9 and 0xA, and `DumpType_t` values 6, 8, 9, 0xA.
- Volatility 3 `symbols/windows/crash64.json`, `crash.json`, `crash_common.json` (`_SUMMARY_DUMP`:
  HeaderSize (= first page offset) at 0x20, Pages (= present pages) at 0x28, BitmapSize at 0x30;
  the 32-bit header's field offsets).
- The real dumps in `shared/real/kernel-triage/`: Windows pre-fills every header byte it does not
  set with the ASCII pattern "PAGE" (so an unset ULONG reads 0x45474150).
"""
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from construct import (Array, Bytes, Const, Default, FixedSized, Int8ul, Int16ul, Int32ul,
                       Int64ul, Struct)

from pykd_ext.errors import DumpFormatError, TruncatedDumpError
from pykd_ext.targets.arch import Arch, arch_for_machine, machine_name

# --- sizes and signatures (mindumpdef.h) -----------------------------------------------------

WIDTHS = (64, 32)                          # pointer bits of the two header flavours
HEADER_SIZE = {64: 0x2000, 32: 0x1000}
HEADER64_SIZE = HEADER_SIZE[64]
HEADER32_SIZE = HEADER_SIZE[32]
DMP_PHYSICAL_MEMORY_BLOCK_SIZE = 700       # both widths
DMP_CONTEXT_RECORD_SIZE = {64: 3000, 32: 1200}
DMP_CONTEXT_RECORD_SIZE_64 = DMP_CONTEXT_RECORD_SIZE[64]
DMP_CONTEXT_RECORD_SIZE_32 = DMP_CONTEXT_RECORD_SIZE[32]
DMP_HEADER_COMMENT_SIZE = 128

SIGNATURE = b"PAGE"
VALID_DUMP = {64: b"DU64", 32: b"DUMP"}
VALID_DUMP64 = VALID_DUMP[64]
VALID_DUMP32 = VALID_DUMP[32]
CONTAINER = {width: SIGNATURE + VALID_DUMP[width] for width in WIDTHS}
CONTAINER64 = CONTAINER[64]
CONTAINER32 = CONTAINER[32]

#: Windows fills header bytes it does not set with this pattern (visible in every real dump).
FILL = b"PAGE"
FILL32 = 0x45474150
FILL64 = 0x4547415045474150
#: The fill as a pointer-sized value, by width.
POINTER_FILL = {64: FILL64, 32: FILL32}

# --- dump types (mindumpdef.h DUMP_TYPE 1-7; kdmp-parser DumpType_t for 8, 9, 0xA) --------------

DUMP_TYPE_FULL = 1                 # complete dump: PhysicalMemoryBlock runs, pages after the header
DUMP_TYPE_SUMMARY = 2              # kernel summary dump (SDMP bitmap after the header)
DUMP_TYPE_HEADER = 3               # header only
DUMP_TYPE_TRIAGE = 4               # kernel triage / mini dump (TRIAGE_DUMP64 at 0x2000)
DUMP_TYPE_BITMAP_FULL = 5          # bitmap dump (SDMP = kernel, FDMP = complete)
DUMP_TYPE_BITMAP_KERNEL = 6        # live kernel bitmap dump
DUMP_TYPE_AUTOMATIC = 7
DUMP_TYPE_KERNEL_MEMORY = 8        # kdmp-parser KernelMemoryDump: RDMP header + PFN ranges
DUMP_TYPE_KERNEL_AND_USER = 9      # kdmp-parser KernelAndUserMemoryDump (same body)
DUMP_TYPE_COMPLETE_MEMORY = 0xA    # kdmp-parser CompleteMemoryDump (RDMP "full" header)

DUMP_TYPE_NAMES: Dict[int, str] = {
    DUMP_TYPE_FULL: "full",
    DUMP_TYPE_SUMMARY: "kernel summary",
    DUMP_TYPE_HEADER: "header only",
    DUMP_TYPE_TRIAGE: "triage",
    DUMP_TYPE_BITMAP_FULL: "bitmap",
    DUMP_TYPE_BITMAP_KERNEL: "live kernel bitmap",
    DUMP_TYPE_AUTOMATIC: "automatic",
    DUMP_TYPE_KERNEL_MEMORY: "kernel memory",
    DUMP_TYPE_KERNEL_AND_USER: "kernel and user memory",
    DUMP_TYPE_COMPLETE_MEMORY: "complete memory",
}

#: Body kinds (what follows the header), by DumpType.
BODY_RUNS = "runs"
BODY_BITMAP = "bitmap"
BODY_RDMP = "rdmp"
BODY_TRIAGE = "triage"
BODY_KINDS: Dict[int, str] = {
    DUMP_TYPE_FULL: BODY_RUNS,
    DUMP_TYPE_SUMMARY: BODY_BITMAP,
    DUMP_TYPE_BITMAP_FULL: BODY_BITMAP,
    DUMP_TYPE_BITMAP_KERNEL: BODY_BITMAP,
    DUMP_TYPE_TRIAGE: BODY_TRIAGE,
    DUMP_TYPE_KERNEL_MEMORY: BODY_RDMP,
    DUMP_TYPE_KERNEL_AND_USER: BODY_RDMP,
    DUMP_TYPE_COMPLETE_MEMORY: BODY_RDMP,
}

#: DUMP_FILE_ATTRIBUTES bits (mindumpdef.h), bit position -> name.
ATTRIBUTE_BITS: Tuple[str, ...] = (
    "HiberCrash", "DumpDevicePowerOff", "InsufficientDumpfileSize", "KernelGeneratedTriageDump",
    "LiveDumpGeneratedDump", "DumpIsGeneratedOffline", "FilterDumpFile", "EarlyBootCrash",
    "EncryptedDumpData", "DecryptedDump")


def _fill(size: int) -> Any:
    """A gap or reserved area; parses as bytes, builds as Windows does (the "PAGE" pattern)."""
    return Default(Bytes(size), (FILL * (size // 4 + 1))[:size])


_POINTER = {64: Int64ul, 32: Int32ul}


def _c_struct(*members: Tuple[str, Any, int]) -> Any:
    """A C struct: (name, construct, alignment) in order, each member at its natural alignment
    (the padding C inserts is a "PAGE"-filled gap, as Windows leaves it). The last member may
    have a context-dependent size."""
    subcons = []
    at = 0
    for index, (name, con, align) in enumerate(members):
        pad = -at % align
        if pad:
            subcons.append(("_pad_%x" % at) / _fill(pad))
            at += pad
        subcons.append(name / con)
        if index + 1 < len(members):
            at += con.sizeof()
    return Struct(*subcons)


def physical_memory_run(width: int) -> Any:
    """PHYSICAL_MEMORY_RUN32/64: PFN_NUMBER BasePage, PageCount."""
    pfn = _POINTER[width]
    return _c_struct(("BasePage", pfn, pfn.sizeof()), ("PageCount", pfn, pfn.sizeof()))


def max_runs(width: int) -> int:
    """Runs that fit the 700-byte PhysicalMemoryBlockBuffer after the descriptor's head."""
    pfn = _POINTER[width]
    head = _c_struct(("NumberOfRuns", Int32ul, 4), ("NumberOfPages", pfn, pfn.sizeof())).sizeof()
    return (DMP_PHYSICAL_MEMORY_BLOCK_SIZE - head) // physical_memory_run(width).sizeof()


MAX_RUNS = {width: max_runs(width) for width in WIDTHS}
MAX_RUNS64 = MAX_RUNS[64]
MAX_RUNS32 = MAX_RUNS[32]


def physical_memory_descriptor(width: int) -> Any:
    """PHYSICAL_MEMORY_DESCRIPTOR32/64: ULONG NumberOfRuns, PFN_NUMBER NumberOfPages, Run[].

    The count is file-controlled (and is the "PAGE" fill in triage dumps): only runs that fit
    the 700-byte buffer are parsed; validation of the count happens in the reader.
    """
    pfn = _POINTER[width]
    run = physical_memory_run(width)
    limit = MAX_RUNS[width]
    return _c_struct(
        ("NumberOfRuns", Int32ul, 4),
        ("NumberOfPages", pfn, pfn.sizeof()),
        ("Run", Array(lambda ctx: ctx.NumberOfRuns if ctx.NumberOfRuns <= limit else 0, run),
         pfn.sizeof()))


def exception_record(width: int) -> Any:
    """EXCEPTION_RECORD32/64 (winnt.h): 0x50 / 0x98 bytes."""
    ptr = _POINTER[width]
    return _c_struct(
        ("ExceptionCode", Int32ul, 4), ("ExceptionFlags", Int32ul, 4),
        ("ExceptionRecord", ptr, ptr.sizeof()), ("ExceptionAddress", ptr, ptr.sizeof()),
        ("NumberParameters", Int32ul, 4),
        ("ExceptionInformation", Array(15, ptr), ptr.sizeof()))


def _same(con: Any) -> Callable[[int], Any]:
    return lambda width: con


# --- the header: every field once, its type by width, its offset in each header -----------------
# Offsets: kdmp-parser's HEADER64 static_asserts and mindumpdef.h's member order and sizes for the
# 64-bit header, mindumpdef.h and Volatility's crash.json for the 32-bit one. None: not in that
# header. Bytes no field covers are "PAGE"-filled gaps (alignment padding and _reserved areas).

class HeaderField(NamedTuple):
    """One header field: its type (a function of the pointer width) and where each header has it."""

    name: str
    type: Callable[[int], Any]
    offset64: Optional[int]                 # None: not in DUMP_HEADER64
    offset32: Optional[int]                 # None: not in DUMP_HEADER32

    def offset(self, width: int) -> Optional[int]:
        return self.offset64 if width == 64 else self.offset32


HEADER_FIELDS: Tuple[HeaderField, ...] = tuple(HeaderField(*row) for row in (
    # name                   type (by pointer width)                                   64     32
    ("Signature",            _same(Const(SIGNATURE)),                                  0x000, 0x000),
    ("ValidDump",            lambda w: Const(VALID_DUMP[w]),                           0x004, 0x004),
    ("MajorVersion",         _same(Int32ul),                                           0x008, 0x008),  # 0xF free, 0xC checked
    ("MinorVersion",         _same(Int32ul),                                           0x00C, 0x00C),  # NT build number
    ("DirectoryTableBase",   _POINTER.__getitem__,                                     0x010, 0x010),
    ("PfnDataBase",          _POINTER.__getitem__,                                     0x018, 0x014),
    ("PsLoadedModuleList",   _POINTER.__getitem__,                                     0x020, 0x018),
    ("PsActiveProcessHead",  _POINTER.__getitem__,                                     0x028, 0x01C),
    ("MachineImageType",     _same(Int32ul),                                           0x030, 0x020),
    ("NumberProcessors",     _same(Int32ul),                                           0x034, 0x024),
    ("BugCheckCode",         _same(Int32ul),                                           0x038, 0x028),
    ("BugCheckParameter",    lambda w: Array(4, _POINTER[w]),                          0x040, 0x02C),
    ("VersionUser",          _same(_fill(32)),                                         0x060, 0x03C),
    ("PaeEnabled",           _same(Int8ul),                                            None,  0x05C),
    ("KdSecondaryVersion",   _same(Int8ul),                                            0x104D, 0x05D),
    ("Spare3",               _same(_fill(2)),                                          None,  0x05E),
    ("KdDebuggerDataBlock",  _POINTER.__getitem__,                                     0x080, 0x060),
    ("PhysicalMemoryBlock",  lambda w: FixedSized(DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                                  physical_memory_descriptor(w)),      0x088, 0x064),
    ("ContextRecord",        lambda w: Bytes(DMP_CONTEXT_RECORD_SIZE[w]),              0x348, 0x320),
    ("Exception",            exception_record,                                         0xF00, 0x7D0),
    ("Comment",              _same(_fill(DMP_HEADER_COMMENT_SIZE)),                    0xFB0, 0x820),
    ("Attributes",           _same(Int32ul),                                           0x1050, 0x8A0),  # DUMP_FILE_ATTRIBUTES
    ("BootId",               _same(Int32ul),                                           0x1054, 0x8A4),
    ("DumpType",             _same(Int32ul),                                           0xF98, 0xF88),
    ("MiniDumpFields",       _same(Int32ul),                                           0x1038, 0xF8C),
    ("SecondaryDataState",   _same(Int32ul),                                           0x103C, 0xF90),
    ("ProductType",          _same(Int32ul),                                           0x1040, 0xF94),
    ("SuiteMask",            _same(Int32ul),                                           0x1044, 0xF98),
    ("WriterStatus",         _same(Int32ul),                                           0x1048, 0xF9C),
    ("Unused1",              _same(Int8ul),                                            0x104C, None),
    ("Unused",               _same(_fill(2)),                                          0x104E, None),
    ("RequiredDumpSpace",    _same(Int64ul),                                           0xFA0, 0xFA0),
    ("SystemTime",           _same(Int64ul),                                           0xFA8, 0xFC0),  # FILETIME
    ("SystemUpTime",         _same(Int64ul),                                           0x1030, 0xFB8),  # 100 ns units
))


def header_offsets(width: int) -> Dict[str, int]:
    """Field name -> offset in the header of this width."""
    out: Dict[str, int] = {}
    for row in HEADER_FIELDS:
        offset = row.offset(width)
        if offset is not None:
            out[row.name] = offset
    return out


def header_struct(width: int) -> Any:
    """The construct definition of DUMP_HEADER64 (width 64) or DUMP_HEADER32 (width 32)."""
    types = {row.name: row.type for row in HEADER_FIELDS}
    placed = sorted((offset, name, types[name](width))
                    for name, offset in header_offsets(width).items())
    subcons = []
    at = 0
    for offset, name, con in placed:
        if offset < at:
            raise RuntimeError("DUMP_HEADER%d: %s at 0x%x overlaps the field before it"
                               % (width, name, offset))
        if offset > at:
            subcons.append(("_gap_%x" % at) / _fill(offset - at))
        subcons.append(name / con)
        at = offset + con.sizeof()
    size = HEADER_SIZE[width]
    if at > size:
        raise RuntimeError("DUMP_HEADER%d fields end at 0x%x, past 0x%x" % (width, at, size))
    if at < size:
        subcons.append(("_gap_%x" % at) / _fill(size - at))
    return Struct(*subcons)


DUMP_HEADER = {width: header_struct(width) for width in WIDTHS}
DUMP_HEADER64 = DUMP_HEADER[64]
DUMP_HEADER32 = DUMP_HEADER[32]
PHYSICAL_MEMORY_RUN64 = physical_memory_run(64)
PHYSICAL_MEMORY_RUN32 = physical_memory_run(32)
PHYSICAL_MEMORY_DESCRIPTOR64 = physical_memory_descriptor(64)
PHYSICAL_MEMORY_DESCRIPTOR32 = physical_memory_descriptor(32)
EXCEPTION_RECORD64 = exception_record(64)
EXCEPTION_RECORD32 = exception_record(32)

#: Offsets a reader needs without parsing.
CONTEXT_OFFSET = {width: header_offsets(width)["ContextRecord"] for width in WIDTHS}
CONTEXT_OFFSET64 = CONTEXT_OFFSET[64]
CONTEXT_OFFSET32 = CONTEXT_OFFSET[32]
DUMP_TYPE_OFFSET64 = header_offsets(64)["DumpType"]
DUMP_TYPE_OFFSET32 = header_offsets(32)["DumpType"]


def width_of_container(head: bytes) -> Optional[int]:
    """64 for `PAGEDU64`, 32 for `PAGEDUMP`, None for anything else."""
    for width in WIDTHS:
        if bytes(head[:8]) == CONTAINER[width]:
            return width
    return None


# --- body headers ------------------------------------------------------------------------------

SUMMARY_SIGNATURE = b"SDMP"        # kernel (summary) bitmap dump
FULL_SIGNATURE = b"FDMP"           # complete bitmap dump
SUMMARY_VALID = b"DUMP"

#: Bitmap dump body header (mindumpdef.h DUMP_SUMMARY_*; kdmp-parser BMP_HEADER64; Volatility
#: `_SUMMARY_DUMP`), at the end of the dump header (0x2000 in 64-bit dumps, 0x1000 in 32-bit).
#: The bitmap (one bit per page frame, LSB first, `Pages` bits) follows at +0x38.
SUMMARY_DUMP = Struct(
    "Signature" / Bytes(4),                 # +0x00 "SDMP" or "FDMP"
    "ValidDump" / Const(SUMMARY_VALID),     # +0x04
    "DumpOptions" / Int32ul,                # +0x08 (Volatility's name)
    "_reserved" / _fill(0x14),              # +0x0C
    "FirstPage" / Int64ul,                  # +0x20 file offset of the first present page
    "TotalPresentPages" / Int64ul,          # +0x28 bits set in the bitmap
    "Pages" / Int64ul,                      # +0x30 bits in the bitmap (page frames spanned)
)
SUMMARY_DUMP_SIZE = 0x38

#: Body header of dump types 8/9/0xA (kdmp-parser RDMP_HEADER64, 0x20 bytes, at 0x2000).
#: kdmp-parser checks Marker == 0x40 and MetadataSize - 0x20 == FirstPageOffset - 0x2040.
RDMP_SIGNATURE = b"RDMP"
RDMP_MARKER = 0x40
RDMP_HEADER64 = Struct(
    "Marker" / Int32ul,                     # +0x00 0x40
    "Signature" / Const(RDMP_SIGNATURE),    # +0x04
    "ValidDump" / Const(SUMMARY_VALID),     # +0x08 "DUMP"
    "_unused" / Int32ul,                    # +0x0C
    "MetadataSize" / Int64ul,               # +0x10
    "FirstPageOffset" / Int64ul,            # +0x18
)
RDMP_HEADER64_SIZE = 0x20
#: The kernel (8/9) and complete (0xA) variants carry 16 more bytes before their metadata
#: (kdmp-parser KERNEL_RDMP_HEADER64: two unknown ULONG64; FULL_RDMP_HEADER64: NumberOfRanges,
#: two USHORTs, TotalNumberOfPages).
RDMP_KERNEL_TAIL = Struct("Unknown1" / Int64ul, "Unknown2" / Int64ul)
RDMP_FULL_TAIL = Struct("NumberOfRanges" / Int32ul, "Unknown1" / Int16ul, "Unknown2" / Int16ul,
                        "TotalNumberOfPages" / Int64ul)
#: One metadata entry: a run of page frames stored back to back (kdmp-parser `PfnRange`).
PFN_RANGE = Struct("BasePage" / Int64ul, "PageCount" / Int64ul)


# --- parsed, typed views -------------------------------------------------------------------------

def _unfill(value: int, size: int) -> Optional[int]:
    """None when a field of `size` bytes still holds the "PAGE" fill (Windows never set it)."""
    if (size == 4 and value == FILL32) or (size == 8 and value == FILL64):
        return None
    return value


def _comment(raw: bytes) -> Optional[str]:
    if raw.startswith(FILL):
        return None
    text = raw.split(b"\0", 1)[0].decode("latin-1").strip()
    return text or None


class DumpHeader(NamedTuple):
    """A parsed kernel dump header (either width); snake_case, fill values turned into None."""

    width: int                             # 64 or 32
    container: str                         # "PAGEDU64" / "PAGEDUMP"
    major_version: int
    build: int                             # MinorVersion = NT build number
    directory_table_base: int
    pfn_database: Optional[int]
    ps_loaded_module_list: Optional[int]
    ps_active_process_head: Optional[int]
    machine_type: int
    processors: int
    bugcheck_code: int
    bugcheck_parameters: List[int]
    kd_debugger_data_block: Optional[int]
    dump_type: int
    physical_runs_declared: Optional[int]   # NumberOfRuns as stored (None when "PAGE" fill)
    physical_pages_declared: Optional[int]  # NumberOfPages as stored (None when "PAGE" fill)
    physical_runs: List[Tuple[int, int]]    # (base_page, page_count) as stored, in file order
    required_dump_space: Optional[int]
    system_time: Optional[int]
    system_uptime: Optional[int]
    comment: Optional[str]
    mini_dump_fields: Optional[int]
    secondary_data_state: Optional[int]
    product_type: Optional[int]
    suite_mask: Optional[int]
    writer_status: Optional[int]
    kd_secondary_version: int
    attributes: Optional[int]
    boot_id: Optional[int]
    context_offset: int                     # file offset of the CONTEXT record
    context_bytes: bytes                    # the raw CONTEXT record area
    exception: Dict[str, Any]               # ExceptionCode, flags, address, parameters
    pae_enabled: Optional[bool] = None      # only the 32-bit header states it

    @property
    def header_size(self) -> int:
        return HEADER_SIZE[self.width]

    @property
    def physical_pages(self) -> int:
        """Pages described by the stored runs (what a run-based body holds)."""
        return sum(count for _, count in self.physical_runs)

    @property
    def dump_type_name(self) -> str:
        return DUMP_TYPE_NAMES.get(self.dump_type, "unknown (0x%x)" % self.dump_type)

    @property
    def arch(self) -> str:
        return machine_name(self.machine_type)

    @property
    def architecture(self) -> Optional[Arch]:
        """The `Arch` of MachineImageType (None when no architecture has that machine type)."""
        return arch_for_machine(self.machine_type)

    @property
    def attribute_names(self) -> List[str]:
        if not self.attributes:
            return []
        return [name for bit, name in enumerate(ATTRIBUTE_BITS) if self.attributes >> bit & 1]


# Kept for the names other code used when each width had its own parser.
DumpHeader64 = DumpHeader
DumpHeader32 = DumpHeader


def parse_header(buf: Any, path: Optional[str] = None, width: Optional[int] = None) -> DumpHeader:
    """Parse a `DUMP_HEADER64`/`DUMP_HEADER32` from the start of `buf` (bytes, memoryview, mmap).

    `width` (64 or 32) says which header is expected; None takes the one the signature names.
    """
    if width is None:
        width = width_of_container(bytes(buf[:8])) or 64
    container = CONTAINER[width]
    size = HEADER_SIZE[width]
    what = "%d-bit kernel" % width
    if len(buf) < 8 or bytes(buf[:8]) != container:
        raise DumpFormatError("not a %s dump: signature %r, expected %r"
                              % (what, bytes(buf[:8]), container), path)
    if len(buf) < size:
        raise TruncatedDumpError("file holds %d bytes but the %s dump header is 0x%x bytes"
                                 % (len(buf), what, size), path)
    h = DUMP_HEADER[width].parse(bytes(buf[:size]))
    pointer = width // 8
    pmb = h.PhysicalMemoryBlock
    exc = h.Exception
    pae = h.get("PaeEnabled")
    return DumpHeader(
        width=width, container=container.decode("ascii"),
        major_version=h.MajorVersion, build=h.MinorVersion,
        directory_table_base=h.DirectoryTableBase,
        pfn_database=_unfill(h.PfnDataBase, pointer),
        ps_loaded_module_list=_unfill(h.PsLoadedModuleList, pointer),
        ps_active_process_head=_unfill(h.PsActiveProcessHead, pointer),
        machine_type=h.MachineImageType, processors=h.NumberProcessors,
        bugcheck_code=h.BugCheckCode, bugcheck_parameters=list(h.BugCheckParameter),
        kd_debugger_data_block=_unfill(h.KdDebuggerDataBlock, pointer),
        dump_type=h.DumpType,
        physical_runs_declared=_unfill(pmb.NumberOfRuns, 4),
        physical_pages_declared=_unfill(pmb.NumberOfPages, pointer),
        physical_runs=[(r.BasePage, r.PageCount) for r in pmb.Run],
        required_dump_space=_unfill(h.RequiredDumpSpace, 8),
        system_time=_unfill(h.SystemTime, 8), system_uptime=_unfill(h.SystemUpTime, 8),
        comment=_comment(h.Comment),
        mini_dump_fields=_unfill(h.MiniDumpFields, 4),
        secondary_data_state=_unfill(h.SecondaryDataState, 4),
        product_type=_unfill(h.ProductType, 4), suite_mask=_unfill(h.SuiteMask, 4),
        writer_status=_unfill(h.WriterStatus, 4),
        kd_secondary_version=h.KdSecondaryVersion,
        attributes=_unfill(h.Attributes, 4), boot_id=_unfill(h.BootId, 4),
        context_offset=CONTEXT_OFFSET[width], context_bytes=h.ContextRecord,
        exception={"code": exc.ExceptionCode, "flags": exc.ExceptionFlags,
                   "record": exc.ExceptionRecord, "address": exc.ExceptionAddress,
                   "parameters": list(exc.ExceptionInformation[:min(exc.NumberParameters, 15)])},
        pae_enabled=(bool(pae) if pae in (0, 1) else None) if pae is not None else None,
    )


def parse_header64(buf: Any, path: Optional[str] = None) -> DumpHeader:
    """Parse a `DUMP_HEADER64` (`parse_header` with width 64)."""
    return parse_header(buf, path, 64)


def parse_header32(buf: Any, path: Optional[str] = None) -> DumpHeader:
    """Parse a `DUMP_HEADER32` (`parse_header` with width 32)."""
    return parse_header(buf, path, 32)


class SummaryHeader(NamedTuple):
    """The bitmap body header (`SDMP`/`FDMP`) of dump types 2, 5 and 6."""

    offset: int              # file offset of the body header
    signature: str           # "SDMP" (kernel) or "FDMP" (complete)
    first_page: int          # file offset of the first present page
    total_present_pages: int
    pages: int               # bits in the bitmap
    bitmap_offset: int       # file offset of the bitmap

    @property
    def bitmap_bytes(self) -> int:
        return (self.pages + 7) // 8


def parse_summary_header(buf: Any, offset: int, path: Optional[str] = None) -> SummaryHeader:
    """Parse the `SDMP`/`FDMP` bitmap header at `offset` (0x2000 in 64-bit dumps)."""
    end = offset + SUMMARY_DUMP_SIZE
    if len(buf) < end:
        raise TruncatedDumpError("file ends at 0x%x, before the bitmap dump header at 0x%x"
                                 % (len(buf), offset), path)
    raw = bytes(buf[offset:end])
    if raw[:4] not in (SUMMARY_SIGNATURE, FULL_SIGNATURE) or raw[4:8] != SUMMARY_VALID:
        raise DumpFormatError("bitmap dump header at 0x%x has signature %r, expected SDMPDUMP "
                              "or FDMPDUMP" % (offset, raw[:8]), path)
    s = SUMMARY_DUMP.parse(raw)
    return SummaryHeader(offset=offset, signature=s.Signature.decode("ascii"),
                         first_page=s.FirstPage, total_present_pages=s.TotalPresentPages,
                         pages=s.Pages, bitmap_offset=end)


class RdmpHeader(NamedTuple):
    """The body header of dump types 8, 9 and 0xA (kdmp-parser `RDMP_HEADER64` + its tail)."""

    offset: int
    metadata_size: int
    first_page_offset: int
    metadata_offset: int     # file offset of the first PFN_RANGE entry
    full: bool               # True for type 0xA (FULL_RDMP_HEADER64)
    number_of_ranges: Optional[int] = None
    total_pages: Optional[int] = None


def parse_rdmp_header(buf: Any, offset: int, full: bool, path: Optional[str] = None) -> RdmpHeader:
    """Parse the `RDMP` header at `offset` (0x2000)."""
    end = offset + RDMP_HEADER64_SIZE + 0x10
    if len(buf) < end:
        raise TruncatedDumpError("file ends at 0x%x, before the RDMP dump header at 0x%x"
                                 % (len(buf), offset), path)
    raw = bytes(buf[offset:end])
    if raw[4:12] != RDMP_SIGNATURE + SUMMARY_VALID:
        raise DumpFormatError("RDMP dump header at 0x%x has signature %r, expected RDMPDUMP"
                              % (offset, raw[4:12]), path)
    r = RDMP_HEADER64.parse(raw[:RDMP_HEADER64_SIZE])
    if r.Marker != RDMP_MARKER:
        raise DumpFormatError("RDMP dump header marker is 0x%x, expected 0x%x"
                              % (r.Marker, RDMP_MARKER), path)
    number_of_ranges = total_pages = None
    if full:
        tail = RDMP_FULL_TAIL.parse(raw[RDMP_HEADER64_SIZE:])
        number_of_ranges, total_pages = tail.NumberOfRanges, tail.TotalNumberOfPages
    return RdmpHeader(offset=offset, metadata_size=r.MetadataSize, first_page_offset=r.FirstPageOffset,
                      metadata_offset=offset + RDMP_HEADER64_SIZE + 0x10, full=full,
                      number_of_ranges=number_of_ranges, total_pages=total_pages)


def _self_check() -> None:
    """The definitions must add up to the sizes mindumpdef.h states (cheap, at import)."""
    for struct_, size, name in ((DUMP_HEADER64, HEADER64_SIZE, "DUMP_HEADER64"),
                                (DUMP_HEADER32, HEADER32_SIZE, "DUMP_HEADER32"),
                                (SUMMARY_DUMP, SUMMARY_DUMP_SIZE, "SUMMARY_DUMP"),
                                (RDMP_HEADER64, RDMP_HEADER64_SIZE, "RDMP_HEADER64"),
                                (EXCEPTION_RECORD64, 0x98, "EXCEPTION_RECORD64"),
                                (EXCEPTION_RECORD32, 0x50, "EXCEPTION_RECORD32")):
        if struct_.sizeof() != size:
            raise RuntimeError("%s definition is 0x%x bytes, expected 0x%x"
                               % (name, struct_.sizeof(), size))


_self_check()
