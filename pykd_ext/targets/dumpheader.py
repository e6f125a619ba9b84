"""Kernel crash-dump headers (`PAGEDU64` / `PAGEDUMP`), defined once, declaratively, with construct.

Why this module exists: every reader of a Windows kernel dump (full, bitmap, triage) starts with the
same 0x2000-byte (64-bit) or 0x1000-byte (32-bit) header, and the project's dump writer (the forge)
builds headers with the *same* definitions, so the format is written down exactly once.

Sources of the format facts (public):
- Windows SDK `mindumpdef.h` (`DUMP_HEADER32`, `DUMP_HEADER64`, `PHYSICAL_MEMORY_DESCRIPTOR32/64`,
  `DUMP_FILE_ATTRIBUTES`, `DMP_*_SIZE_*` constants, `DUMP_TYPE` values 1-7, the `PAGE`/`DU64`,
  `SDMP`/`FDMP`/`DUMP` signatures).
- kdmp-parser `src/lib/kdmp-parser-structs.h` (0vercl0k/kdmp-parser): `HEADER64` with its
  static_asserts (BugCheckCodeParameter at 0x40, KdDebuggerDataBlock 0x80, ContextRecord 0x348,
  Exception 0xf00, Comment 0xfb0, body header at 0x2000), `BMP_HEADER64` (FirstPage at 0x20,
  TotalPresentPages 0x28, Pages 0x30, bitmap at 0x38), `RDMP_HEADER64` / `KERNEL_RDMP_HEADER64` /
  `FULL_RDMP_HEADER64` of the newer dump types 8, 9 and 0xA, and `DumpType_t` values 6, 8, 9, 0xA.
- Volatility 3 `symbols/windows/crash64.json`, `crash.json`, `crash_common.json` (`_SUMMARY_DUMP`:
  HeaderSize (= first page offset) at 0x20, Pages (= present pages) at 0x28, BitmapSize at 0x30).
- The real dumps in `shared/real/kernel-triage/`: Windows pre-fills every header byte it does not
  set with the ASCII pattern "PAGE" (so an unset ULONG reads 0x45474150).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from construct import (Array, Bytes, Const, Default, FixedSized, Int8ul, Int16ul, Int32ul,
                       Int64ul, Struct)

from pykd_ext.errors import DumpFormatError, TruncatedDumpError

# --- sizes and signatures (mindumpdef.h) -----------------------------------------------------

HEADER64_SIZE = 0x2000
HEADER32_SIZE = 0x1000
DMP_PHYSICAL_MEMORY_BLOCK_SIZE = 700       # both widths
DMP_CONTEXT_RECORD_SIZE_64 = 3000
DMP_CONTEXT_RECORD_SIZE_32 = 1200
DMP_RESERVED_0_SIZE_64 = 4008
DMP_RESERVED_0_SIZE_32 = 1760
DMP_RESERVED_2_SIZE_32 = 16
DMP_RESERVED_3_SIZE_32 = 56
DMP_HEADER_COMMENT_SIZE = 128

SIGNATURE = b"PAGE"
VALID_DUMP64 = b"DU64"
VALID_DUMP32 = b"DUMP"
CONTAINER64 = b"PAGEDU64"
CONTAINER32 = b"PAGEDUMP"

#: Windows fills header bytes it does not set with this pattern (visible in every real dump).
FILL = b"PAGE"
FILL32 = 0x45474150
FILL64 = 0x4547415045474150

#: Runs that fit in the 700-byte PhysicalMemoryBlockBuffer (16-byte descriptor head, 16-byte runs).
MAX_RUNS64 = (DMP_PHYSICAL_MEMORY_BLOCK_SIZE - 16) // 16
#: 32-bit: 8-byte descriptor head, 8-byte runs.
MAX_RUNS32 = (DMP_PHYSICAL_MEMORY_BLOCK_SIZE - 8) // 8

# --- dump types (mindumpdef.h DUMP_TYPE 1-7; kdmp-parser DumpType_t for 8, 9, 0xA) --------------

DUMP_TYPE_FULL = 1                 # complete dump: PhysicalMemoryBlock runs, pages at 0x2000
DUMP_TYPE_SUMMARY = 2              # kernel summary dump (SDMP bitmap at 0x2000)
DUMP_TYPE_HEADER = 3               # header only
DUMP_TYPE_TRIAGE = 4               # kernel triage / mini dump (TRIAGE_DUMP64 at 0x2000)
DUMP_TYPE_BITMAP_FULL = 5          # bitmap dump (SDMP = kernel, FDMP = complete) at 0x2000
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

#: IMAGE_FILE_MACHINE_* (PE/COFF specification) as stored in MachineImageType.
MACHINE_NAMES: Dict[int, str] = {0x8664: "x64", 0x14C: "x86", 0xAA64: "arm64", 0x1C4: "arm"}

#: DUMP_FILE_ATTRIBUTES bits (mindumpdef.h), bit position -> name.
ATTRIBUTE_BITS: Tuple[str, ...] = (
    "HiberCrash", "DumpDevicePowerOff", "InsufficientDumpfileSize", "KernelGeneratedTriageDump",
    "LiveDumpGeneratedDump", "DumpIsGeneratedOffline", "FilterDumpFile", "EarlyBootCrash",
    "EncryptedDumpData", "DecryptedDump")


def _fill(size: int) -> Any:
    """A gap or reserved area; parses as bytes, builds as Windows does (the "PAGE" pattern)."""
    return Default(Bytes(size), (FILL * (size // 4 + 1))[:size])


# --- 64-bit header (mindumpdef.h DUMP_HEADER64, 0x2000 bytes) --------------------------------

PHYSICAL_MEMORY_RUN64 = Struct(
    "BasePage" / Int64ul,
    "PageCount" / Int64ul,
)

PHYSICAL_MEMORY_DESCRIPTOR64 = Struct(
    "NumberOfRuns" / Int32ul,
    "_pad0" / _fill(4),                 # ULONG64 NumberOfPages is 8-aligned
    "NumberOfPages" / Int64ul,
    # The count is file-controlled (and is the "PAGE" fill in triage dumps): only runs that fit
    # the 700-byte buffer are parsed; validation of the count happens in the reader.
    "Run" / Array(lambda ctx: ctx.NumberOfRuns if ctx.NumberOfRuns <= MAX_RUNS64 else 0,
                  PHYSICAL_MEMORY_RUN64),
)

EXCEPTION_RECORD64 = Struct(
    "ExceptionCode" / Int32ul,
    "ExceptionFlags" / Int32ul,
    "ExceptionRecord" / Int64ul,
    "ExceptionAddress" / Int64ul,
    "NumberParameters" / Int32ul,
    "_unused_alignment" / _fill(4),
    "ExceptionInformation" / Array(15, Int64ul),
)                                                   # 0x98 bytes

DUMP_HEADER64 = Struct(
    "Signature" / Const(SIGNATURE),                 # 0x000
    "ValidDump" / Const(VALID_DUMP64),              # 0x004
    "MajorVersion" / Int32ul,                       # 0x008  0xF free, 0xC checked
    "MinorVersion" / Int32ul,                       # 0x00C  NT build number
    "DirectoryTableBase" / Int64ul,                 # 0x010
    "PfnDataBase" / Int64ul,                        # 0x018
    "PsLoadedModuleList" / Int64ul,                 # 0x020
    "PsActiveProcessHead" / Int64ul,                # 0x028
    "MachineImageType" / Int32ul,                   # 0x030
    "NumberProcessors" / Int32ul,                   # 0x034
    "BugCheckCode" / Int32ul,                       # 0x038
    "_pad1" / _fill(4),                             # 0x03C
    "BugCheckParameter" / Array(4, Int64ul),        # 0x040
    "VersionUser" / _fill(32),                      # 0x060
    "KdDebuggerDataBlock" / Int64ul,                # 0x080
    "PhysicalMemoryBlock" / FixedSized(DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                       PHYSICAL_MEMORY_DESCRIPTOR64),   # 0x088
    "_pad_pmb" / _fill(4),                          # 0x344 700-byte union padded to 8-alignment
    "ContextRecord" / Bytes(DMP_CONTEXT_RECORD_SIZE_64),                # 0x348
    "Exception" / EXCEPTION_RECORD64,               # 0xF00
    "DumpType" / Int32ul,                           # 0xF98
    "_pad2" / _fill(4),                             # 0xF9C
    "RequiredDumpSpace" / Int64ul,                  # 0xFA0
    "SystemTime" / Int64ul,                         # 0xFA8  FILETIME
    "Comment" / _fill(DMP_HEADER_COMMENT_SIZE),     # 0xFB0
    "SystemUpTime" / Int64ul,                       # 0x1030 100 ns units
    "MiniDumpFields" / Int32ul,                     # 0x1038
    "SecondaryDataState" / Int32ul,                 # 0x103C
    "ProductType" / Int32ul,                        # 0x1040
    "SuiteMask" / Int32ul,                          # 0x1044
    "WriterStatus" / Int32ul,                       # 0x1048
    "Unused1" / Int8ul,                             # 0x104C
    "KdSecondaryVersion" / Int8ul,                  # 0x104D
    "Unused" / _fill(2),                            # 0x104E
    "Attributes" / Int32ul,                         # 0x1050 DUMP_FILE_ATTRIBUTES
    "BootId" / Int32ul,                             # 0x1054
    "_reserved0" / _fill(DMP_RESERVED_0_SIZE_64),   # 0x1058 .. 0x2000
)

#: Offsets a reader needs without parsing (kdmp-parser static_asserts, mindumpdef.h).
CONTEXT_OFFSET64 = 0x348
DUMP_TYPE_OFFSET64 = 0xF98
DUMP_TYPE_OFFSET32 = 0xF88

# --- 32-bit header (mindumpdef.h DUMP_HEADER32, 0x1000 bytes, 4-byte packing) -------------------

PHYSICAL_MEMORY_RUN32 = Struct(
    "BasePage" / Int32ul,
    "PageCount" / Int32ul,
)

PHYSICAL_MEMORY_DESCRIPTOR32 = Struct(
    "NumberOfRuns" / Int32ul,
    "NumberOfPages" / Int32ul,
    "Run" / Array(lambda ctx: ctx.NumberOfRuns if ctx.NumberOfRuns <= MAX_RUNS32 else 0,
                  PHYSICAL_MEMORY_RUN32),
)

EXCEPTION_RECORD32 = Struct(
    "ExceptionCode" / Int32ul,
    "ExceptionFlags" / Int32ul,
    "ExceptionRecord" / Int32ul,
    "ExceptionAddress" / Int32ul,
    "NumberParameters" / Int32ul,
    "ExceptionInformation" / Array(15, Int32ul),
)                                                   # 0x50 bytes

DUMP_HEADER32 = Struct(
    "Signature" / Const(SIGNATURE),                 # 0x000
    "ValidDump" / Const(VALID_DUMP32),              # 0x004
    "MajorVersion" / Int32ul,                       # 0x008
    "MinorVersion" / Int32ul,                       # 0x00C
    "DirectoryTableBase" / Int32ul,                 # 0x010
    "PfnDataBase" / Int32ul,                        # 0x014
    "PsLoadedModuleList" / Int32ul,                 # 0x018
    "PsActiveProcessHead" / Int32ul,                # 0x01C
    "MachineImageType" / Int32ul,                   # 0x020
    "NumberProcessors" / Int32ul,                   # 0x024
    "BugCheckCode" / Int32ul,                       # 0x028
    "BugCheckParameter" / Array(4, Int32ul),        # 0x02C
    "VersionUser" / _fill(32),                      # 0x03C
    "PaeEnabled" / Int8ul,                          # 0x05C
    "KdSecondaryVersion" / Int8ul,                  # 0x05D
    "Spare3" / _fill(2),                            # 0x05E
    "KdDebuggerDataBlock" / Int32ul,                # 0x060
    "PhysicalMemoryBlock" / FixedSized(DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                       PHYSICAL_MEMORY_DESCRIPTOR32),   # 0x064
    "ContextRecord" / Bytes(DMP_CONTEXT_RECORD_SIZE_32),                # 0x320
    "Exception" / EXCEPTION_RECORD32,               # 0x7D0
    "Comment" / _fill(DMP_HEADER_COMMENT_SIZE),     # 0x820
    "Attributes" / Int32ul,                         # 0x8A0
    "BootId" / Int32ul,                             # 0x8A4
    "_reserved0" / _fill(DMP_RESERVED_0_SIZE_32),   # 0x8A8
    "DumpType" / Int32ul,                           # 0xF88
    "MiniDumpFields" / Int32ul,                     # 0xF8C
    "SecondaryDataState" / Int32ul,                 # 0xF90
    "ProductType" / Int32ul,                        # 0xF94
    "SuiteMask" / Int32ul,                          # 0xF98
    "WriterStatus" / Int32ul,                       # 0xF9C
    "RequiredDumpSpace" / Int64ul,                  # 0xFA0
    "_reserved2" / _fill(DMP_RESERVED_2_SIZE_32),   # 0xFA8
    "SystemUpTime" / Int64ul,                       # 0xFB8
    "SystemTime" / Int64ul,                         # 0xFC0
    "_reserved3" / _fill(DMP_RESERVED_3_SIZE_32),   # 0xFC8 .. 0x1000
)

CONTEXT_OFFSET32 = 0x320

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

def _unfill(value: int, width: int) -> Optional[int]:
    """None when a field still holds the "PAGE" fill (Windows never set it)."""
    if (width == 4 and value == FILL32) or (width == 8 and value == FILL64):
        return None
    return value


def _comment(raw: bytes) -> Optional[str]:
    if raw.startswith(FILL):
        return None
    text = raw.split(b"\0", 1)[0].decode("latin-1").strip()
    return text or None


@dataclass
class DumpHeader:
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
    exception: Dict[str, Any] = field(default_factory=dict)
    pae_enabled: Optional[bool] = None      # 32-bit only

    @property
    def header_size(self) -> int:
        return HEADER64_SIZE if self.width == 64 else HEADER32_SIZE

    @property
    def physical_pages(self) -> int:
        """Pages described by the stored runs (what a run-based body holds)."""
        return sum(count for _, count in self.physical_runs)

    @property
    def dump_type_name(self) -> str:
        return DUMP_TYPE_NAMES.get(self.dump_type, "unknown (0x%x)" % self.dump_type)

    @property
    def arch(self) -> str:
        return MACHINE_NAMES.get(self.machine_type, "machine 0x%x" % self.machine_type)

    @property
    def attribute_names(self) -> List[str]:
        if not self.attributes:
            return []
        return [name for bit, name in enumerate(ATTRIBUTE_BITS) if self.attributes >> bit & 1]


# Kept for the names the brief and other helpers use.
DumpHeader64 = DumpHeader
DumpHeader32 = DumpHeader


def _check_prefix(buf: Any, path: Optional[str], container: bytes, size: int, what: str) -> bytes:
    if len(buf) < 8 or bytes(buf[:8]) != container:
        raise DumpFormatError("not a %s dump: signature %r, expected %r"
                              % (what, bytes(buf[:8]), container), path)
    if len(buf) < size:
        raise TruncatedDumpError("file holds %d bytes but the %s dump header is 0x%x bytes"
                                 % (len(buf), what, size), path)
    return bytes(buf[:size])


def parse_header64(buf: Any, path: Optional[str] = None) -> DumpHeader:
    """Parse a `DUMP_HEADER64` from the start of `buf` (bytes, memoryview or mmap)."""
    raw = _check_prefix(buf, path, CONTAINER64, HEADER64_SIZE, "64-bit kernel")
    h = DUMP_HEADER64.parse(raw)
    pmb = h.PhysicalMemoryBlock
    exc = h.Exception
    return DumpHeader(
        width=64, container="PAGEDU64",
        major_version=h.MajorVersion, build=h.MinorVersion,
        directory_table_base=h.DirectoryTableBase,
        pfn_database=_unfill(h.PfnDataBase, 8),
        ps_loaded_module_list=_unfill(h.PsLoadedModuleList, 8),
        ps_active_process_head=_unfill(h.PsActiveProcessHead, 8),
        machine_type=h.MachineImageType, processors=h.NumberProcessors,
        bugcheck_code=h.BugCheckCode, bugcheck_parameters=list(h.BugCheckParameter),
        kd_debugger_data_block=_unfill(h.KdDebuggerDataBlock, 8),
        dump_type=h.DumpType,
        physical_runs_declared=_unfill(pmb.NumberOfRuns, 4),
        physical_pages_declared=_unfill(pmb.NumberOfPages, 8),
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
        context_offset=CONTEXT_OFFSET64, context_bytes=h.ContextRecord,
        exception={"code": exc.ExceptionCode, "flags": exc.ExceptionFlags,
                   "record": exc.ExceptionRecord, "address": exc.ExceptionAddress,
                   "parameters": list(exc.ExceptionInformation[:min(exc.NumberParameters, 15)])},
    )


def parse_header32(buf: Any, path: Optional[str] = None) -> DumpHeader:
    """Parse a `DUMP_HEADER32` from the start of `buf` (bytes, memoryview or mmap)."""
    raw = _check_prefix(buf, path, CONTAINER32, HEADER32_SIZE, "32-bit kernel")
    h = DUMP_HEADER32.parse(raw)
    pmb = h.PhysicalMemoryBlock
    exc = h.Exception
    return DumpHeader(
        width=32, container="PAGEDUMP",
        major_version=h.MajorVersion, build=h.MinorVersion,
        directory_table_base=h.DirectoryTableBase,
        pfn_database=_unfill(h.PfnDataBase, 4),
        ps_loaded_module_list=_unfill(h.PsLoadedModuleList, 4),
        ps_active_process_head=_unfill(h.PsActiveProcessHead, 4),
        machine_type=h.MachineImageType, processors=h.NumberProcessors,
        bugcheck_code=h.BugCheckCode, bugcheck_parameters=list(h.BugCheckParameter),
        kd_debugger_data_block=_unfill(h.KdDebuggerDataBlock, 4),
        dump_type=h.DumpType,
        physical_runs_declared=_unfill(pmb.NumberOfRuns, 4),
        physical_pages_declared=_unfill(pmb.NumberOfPages, 4),
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
        context_offset=CONTEXT_OFFSET32, context_bytes=h.ContextRecord,
        exception={"code": exc.ExceptionCode, "flags": exc.ExceptionFlags,
                   "record": exc.ExceptionRecord, "address": exc.ExceptionAddress,
                   "parameters": list(exc.ExceptionInformation[:min(exc.NumberParameters, 15)])},
        pae_enabled=bool(h.PaeEnabled) if h.PaeEnabled in (0, 1) else None,
    )


@dataclass
class SummaryHeader:
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


@dataclass
class RdmpHeader:
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
    out = RdmpHeader(offset=offset, metadata_size=r.MetadataSize,
                     first_page_offset=r.FirstPageOffset,
                     metadata_offset=offset + RDMP_HEADER64_SIZE + 0x10, full=full)
    if full:
        tail = RDMP_FULL_TAIL.parse(raw[RDMP_HEADER64_SIZE:])
        out.number_of_ranges = tail.NumberOfRanges
        out.total_pages = tail.TotalNumberOfPages
    return out


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
