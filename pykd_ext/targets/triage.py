"""Kernel triage minidumps (`PAGEDU64` / `PAGEDUMP`, DumpType 4): virtual-only memory from a small crash dump.

Why: a triage ("small memory") dump is what most crashed Windows machines leave behind.  It holds
no physical memory and no page tables, only the crashing processor's PRCB, the crashing thread
and its process, its kernel stack, the KDBG block, the loaded-driver list and up to a few
thousand small virtual-address-tagged data blocks.  This module serves all of them as one sparse
kernel address space (`SparseAddressSpace`) and reports what the dump itself states.

Format facts (Microsoft `ntiodump.h`, as published with the Debugging Tools SDK and in Microsoft
Research's Singularity `Dump.h`; cross-checked against rizin `librz/bin/format/dmp/dmp_specs.h`):
- `TRIAGE_DUMP64` follows the 0x2000-byte DUMP_HEADER64; every `*Offset` is a file offset.
- 32-bit dumps (x86, ARM): `TRIAGE_DUMP32` (0x68 bytes, Singularity `Dump.h` and the WDK 10
  `_TRIAGE_DUMP32` type as published by can1357's sdkgen headers) follows the 0x1000-byte
  DUMP_HEADER32; the same fields with ULONG TopOfStack/DataPageAddress and no
  ArchitectureSpecific union.  `DUMP_DRIVER_ENTRY32` = {ULONG DriverNameOffset;
  KLDR_DATA_TABLE_ENTRY32} (0x4c bytes: DllBase +0x18, SizeOfImage +0x20, CheckSum +0x40,
  TimeDateStamp +0x44 of the 0x48-byte entry, the 32-bit `_KLDR_DATA_TABLE_ENTRY` of the ISF);
  unloaded drivers: a ULONG count then `DUMP_UNLOADED_DRIVERS32` {UNICODE_STRING32 Name;
  WCHAR DriverName[12]; ULONG StartAddress, EndAddress} (0x28 bytes).  The real ARM32 dump
  confirms each: its MmOffset is ALIGN_8(0x1000 + 0x68), its 136 driver entries fill the bytes
  up to the string pool at 0x4c each, its three unloaded entries end at the PRCB block, the
  first driver's DllBase equals the KDBG's KernBase and the context's Sp equals TopOfStack.
- `TRIAGE_DATA_BLOCK` = {ULONG64 Address; ULONG Offset; ULONG Size}.
- `DUMP_DRIVER_ENTRY64` = {ULONG DriverNameOffset; ULONG __alignment; KLDR_DATA_TABLE_ENTRY64}
  (0x90 bytes; the KLDR_DATA_TABLE_ENTRY64 of the dump format, 0x88 bytes, as in Microsoft's
  UEFI crash-dump code "must match ntldr exactly": DllBase +0x30, SizeOfImage +0x40, CheckSum
  +0x78, TimeDateStamp +0x80).
- `DUMP_STRING` = {ULONG Length; WCHAR Buffer[]}, NUL-terminated.  The header comment says
  "Length IN BYTES" but Windows writes the count of UTF-16 units (both real dumps: the NUL
  follows at 4 + 2*Length); we read units and stop at a NUL, bounded by the string pool.
- Unloaded drivers: a ULONG count (padded to 8 bytes) followed by `DUMP_UNLOADED_DRIVERS64`
  {UNICODE_STRING64 Name; WCHAR DriverName[12]; ULONG64 StartAddress, EndAddress} (0x38 bytes);
  in both real dumps the array ends exactly where the next block begins.
- `TRIAGE_DUMP_*` bits of the header's MiniDumpFields say which parts are valid;
  `TRIAGE_DUMP_VALID` ('TRGD') is stored at ValidOffset.

Where things are in *virtual* memory (the format stores no VA for the PRCB/process/thread):
- the KDBG block at the header's KdDebuggerDataBlock;
- the call stack at TopOfStack (the stack pointer end; the saved range ends at the stack base);
- the thread at PRCB.CurrentThread, the process at the thread's ApcState.Process (offsets from
  the KDBG: OffsetPrcbCurrentThread, OffsetKThreadApcProcess);
- the PRCB at KiProcessorBlock[PRCB.Number] when that array is among the data blocks, otherwise
  at the base on which the PRCB's empty LIST_ENTRY heads (Flink == Blink == own address) agree;
  `extra["prcb_source"]` says which proof was used;
- sizes of the PRCB/EPROCESS/ETHREAD blocks from the KDBG (SizePrcb/SizeEProcess/SizeEThread),
  bounded by the next block in the file.
"""
import struct
from array import array
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from construct import Bytes, Int16ul, Int32ul, Int64ul, Struct

from pykd_ext.errors import (DumpFormatError, MemoryReadError, TruncatedDumpError,
                             UnsupportedDumpError)
from pykd_ext.memory.sparse import SparseAddressSpace
from pykd_ext.targets.arch import X64, Arch
from pykd_ext.targets.base import TargetInfo
from pykd_ext.targets.kdbg import decode_kdbg_bytes
from pykd_ext.targets.virtual import VirtualTarget

TRIAGE_OFFSET = 0x2000              # right after DUMP_HEADER64

# ntiodump.h TRIAGE_DUMP64 (0x80 bytes).
TRIAGE_DUMP64 = Struct(
    "ServicePackBuild" / Int32ul,       # +0x00
    "SizeOfDump" / Int32ul,             # +0x04
    "ValidOffset" / Int32ul,            # +0x08 'TRGD' stored there
    "ContextOffset" / Int32ul,          # +0x0c CONTEXT
    "ExceptionOffset" / Int32ul,        # +0x10 EXCEPTION_RECORD64
    "MmOffset" / Int32ul,               # +0x14 DUMP_MM_STORAGE64
    "UnloadedDriversOffset" / Int32ul,  # +0x18
    "PrcbOffset" / Int32ul,             # +0x1c KPRCB
    "ProcessOffset" / Int32ul,          # +0x20 EPROCESS
    "ThreadOffset" / Int32ul,           # +0x24 ETHREAD
    "CallStackOffset" / Int32ul,        # +0x28
    "SizeOfCallStack" / Int32ul,        # +0x2c
    "DriverListOffset" / Int32ul,       # +0x30 DUMP_DRIVER_ENTRY64[DriverCount]
    "DriverCount" / Int32ul,            # +0x34
    "StringPoolOffset" / Int32ul,       # +0x38 DUMP_STRINGs
    "StringPoolSize" / Int32ul,         # +0x3c
    "BrokenDriverOffset" / Int32ul,     # +0x40
    "TriageOptions" / Int32ul,          # +0x44
    "TopOfStack" / Int64ul,             # +0x48
    "ArchitectureSpecific" / Bytes(16),  # +0x50 IA64 BStore fields (unused on x64)
    "DataPageAddress" / Int64ul,        # +0x60
    "DataPageOffset" / Int32ul,         # +0x68
    "DataPageSize" / Int32ul,           # +0x6c
    "DebuggerDataOffset" / Int32ul,     # +0x70 KDDEBUGGER_DATA64 copy
    "DebuggerDataSize" / Int32ul,       # +0x74
    "DataBlocksOffset" / Int32ul,       # +0x78 TRIAGE_DATA_BLOCK[DataBlocksCount]
    "DataBlocksCount" / Int32ul,        # +0x7c
)
TRIAGE_DUMP64_SIZE = 0x80

# ntiodump.h TRIAGE_DUMP32 (0x68 bytes), after the 0x1000-byte DUMP_HEADER32.
TRIAGE_DUMP32 = Struct(
    "ServicePackBuild" / Int32ul,       # +0x00
    "SizeOfDump" / Int32ul,             # +0x04
    "ValidOffset" / Int32ul,            # +0x08
    "ContextOffset" / Int32ul,          # +0x0c
    "ExceptionOffset" / Int32ul,        # +0x10
    "MmOffset" / Int32ul,               # +0x14
    "UnloadedDriversOffset" / Int32ul,  # +0x18
    "PrcbOffset" / Int32ul,             # +0x1c
    "ProcessOffset" / Int32ul,          # +0x20
    "ThreadOffset" / Int32ul,           # +0x24
    "CallStackOffset" / Int32ul,        # +0x28
    "SizeOfCallStack" / Int32ul,        # +0x2c
    "DriverListOffset" / Int32ul,       # +0x30
    "DriverCount" / Int32ul,            # +0x34
    "StringPoolOffset" / Int32ul,       # +0x38
    "StringPoolSize" / Int32ul,         # +0x3c
    "BrokenDriverOffset" / Int32ul,     # +0x40
    "TriageOptions" / Int32ul,          # +0x44
    "TopOfStack" / Int32ul,             # +0x48
    "DataPageAddress" / Int32ul,        # +0x4c
    "DataPageOffset" / Int32ul,         # +0x50
    "DataPageSize" / Int32ul,           # +0x54
    "DebuggerDataOffset" / Int32ul,     # +0x58
    "DebuggerDataSize" / Int32ul,       # +0x5c
    "DataBlocksOffset" / Int32ul,       # +0x60
    "DataBlocksCount" / Int32ul,        # +0x64
)
TRIAGE_DUMP32_SIZE = 0x68

#: By header width: (where the triage header starts, its definition, its size).
TRIAGE_HEADERS = {64: (TRIAGE_OFFSET, TRIAGE_DUMP64, TRIAGE_DUMP64_SIZE),
                  32: (0x1000, TRIAGE_DUMP32, TRIAGE_DUMP32_SIZE)}

# ntiodump.h TRIAGE_DATA_BLOCK {ULONG64 Address; ULONG Offset; ULONG Size;} as a struct format
# (thousands of entries: struct.iter_unpack, not a per-entry construct parse).
TRIAGE_DATA_BLOCK_FORMAT = "<QII"
TRIAGE_DATA_BLOCK_SIZE = struct.calcsize(TRIAGE_DATA_BLOCK_FORMAT)

TRIAGE_DUMP_VALID = b"TRGD"          # ntiodump.h TRIAGE_DUMP_VALID ('DGRT' as a ULONG)

# ntiodump.h TRIAGE_DUMP_* bits (in DUMP_HEADER64.MiniDumpFields).
TRIAGE_FIELD_BITS: Tuple[Tuple[int, str], ...] = (
    (0x0001, "context"), (0x0002, "exception"), (0x0004, "prcb"), (0x0008, "process"),
    (0x0010, "thread"), (0x0020, "stack"), (0x0040, "driver list"), (0x0080, "broken driver"),
    (0x0100, "mm info"), (0x0200, "data page"), (0x0400, "debugger data"),
    (0x0800, "data blocks"))

UNICODE_STRING64 = Struct(
    "Length" / Int16ul,
    "MaximumLength" / Int16ul,
    "_pad" / Bytes(4),
    "Buffer" / Int64ul,
)

class FormatTable:
    """A record layout as (name, struct code) rows: one declarative definition, unpacked with
    `struct` (thousands of records: a construct parse per record would dominate open time).
    Rows whose name starts with "_" must use pad codes ("4x") and produce no value."""

    def __init__(self, rows: Tuple[Tuple[str, str], ...]) -> None:
        self.names = tuple(name for name, _ in rows if not name.startswith("_"))
        self.struct = struct.Struct("<" + "".join(code for _, code in rows))
        self.size = self.struct.size

    def unpack_all(self, data: bytes) -> List[Dict[str, int]]:
        return [dict(zip(self.names, values)) for values in self.struct.iter_unpack(data)]


# DUMP_DRIVER_ENTRY64 = DriverNameOffset, __alignment, then the dump format's
# KLDR_DATA_TABLE_ENTRY64 (0x88 bytes); offsets below are within the 0x90-byte entry.
DUMP_DRIVER_ENTRY64 = FormatTable((
    ("DriverNameOffset", "I"),               # +0x00 file offset of a DUMP_STRING
    ("_alignment", "4x"),                    # +0x04
    ("_InLoadOrderLinks", "16x"),            # +0x08 LdrEntry.InLoadOrderLinks
    ("_Undefined1_3", "24x"),                # +0x18 ExceptionTable, ExceptionTableSize, GpValue
    ("NonPagedDebugInfo", "Q"),              # +0x30
    ("DllBase", "Q"),                        # +0x38 LdrEntry+0x30
    ("EntryPoint", "Q"),                     # +0x40
    ("SizeOfImage", "I"),                    # +0x48 LdrEntry+0x40
    ("_pad0", "4x"),                         # +0x4c
    ("_FullDllName", "16x"),                 # +0x50 UNICODE_STRING64 (Buffer is a target VA)
    ("_BaseDllName", "16x"),                 # +0x60
    ("Flags", "I"),                          # +0x70 LdrEntry+0x68
    ("LoadCount", "H"),                      # +0x74
    ("_Undefined5", "2x"),                   # +0x76
    ("_Undefined6", "8x"),                   # +0x78
    ("CheckSum", "I"),                       # +0x80 LdrEntry+0x78
    ("_pad1", "4x"),                         # +0x84
    ("TimeDateStamp", "I"),                  # +0x88 LdrEntry+0x80
    ("_pad2", "4x"),                         # +0x8c
))
DUMP_DRIVER_ENTRY64_SIZE = 0x90
if DUMP_DRIVER_ENTRY64.size != DUMP_DRIVER_ENTRY64_SIZE:   # the table must add up to ntiodump.h
    raise RuntimeError("DUMP_DRIVER_ENTRY64 table is 0x%x bytes" % DUMP_DRIVER_ENTRY64.size)

# DUMP_DRIVER_ENTRY32 = DriverNameOffset, then the 32-bit KLDR_DATA_TABLE_ENTRY (0x48 bytes);
# offsets below are within the 0x4c-byte entry.
DUMP_DRIVER_ENTRY32 = FormatTable((
    ("DriverNameOffset", "I"),               # +0x00 file offset of a DUMP_STRING
    ("_InLoadOrderLinks", "8x"),             # +0x04 LdrEntry.InLoadOrderLinks
    ("_Undefined1_3", "12x"),                # +0x0c ExceptionTable, ExceptionTableSize, GpValue
    ("NonPagedDebugInfo", "I"),              # +0x18 LdrEntry+0x14
    ("DllBase", "I"),                        # +0x1c LdrEntry+0x18
    ("EntryPoint", "I"),                     # +0x20 LdrEntry+0x1c
    ("SizeOfImage", "I"),                    # +0x24 LdrEntry+0x20
    ("_FullDllName", "8x"),                  # +0x28 UNICODE_STRING32
    ("_BaseDllName", "8x"),                  # +0x30
    ("Flags", "I"),                          # +0x38 LdrEntry+0x34
    ("LoadCount", "H"),                      # +0x3c
    ("_Undefined5", "2x"),                   # +0x3e
    ("_SectionPointer", "4x"),               # +0x40
    ("CheckSum", "I"),                       # +0x44 LdrEntry+0x40
    ("TimeDateStamp", "I"),                  # +0x48 LdrEntry+0x44
))
DUMP_DRIVER_ENTRY32_SIZE = 0x4C
if DUMP_DRIVER_ENTRY32.size != DUMP_DRIVER_ENTRY32_SIZE:   # the table must add up to ntiodump.h
    raise RuntimeError("DUMP_DRIVER_ENTRY32 table is 0x%x bytes" % DUMP_DRIVER_ENTRY32.size)
DRIVER_ENTRIES = {64: DUMP_DRIVER_ENTRY64, 32: DUMP_DRIVER_ENTRY32}

MAX_UNLOADED_NAME_LENGTH = 24                # ntiodump.h, bytes
DUMP_UNLOADED_DRIVERS64 = Struct(
    "Name" / UNICODE_STRING64,               # +0x00 (Buffer is a target VA)
    "DriverName" / Bytes(MAX_UNLOADED_NAME_LENGTH),  # +0x10 first 12 UTF-16 units, NUL-padded
    "StartAddress" / Int64ul,                # +0x28
    "EndAddress" / Int64ul,                  # +0x30
)
DUMP_UNLOADED_DRIVERS64_SIZE = 0x38
UNLOADED_HEADER_SIZE = 8                     # ULONG count, padded to the array's 8-alignment

DUMP_UNLOADED_DRIVERS32 = Struct(
    "Name" / Struct("Length" / Int16ul, "MaximumLength" / Int16ul, "Buffer" / Int32ul),
    "DriverName" / Bytes(MAX_UNLOADED_NAME_LENGTH),  # +0x08
    "StartAddress" / Int32ul,                # +0x20
    "EndAddress" / Int32ul,                  # +0x24
)
#: By header width: (entry definition, entry size, bytes of the count before the array).
UNLOADED_TABLES = {64: (DUMP_UNLOADED_DRIVERS64, DUMP_UNLOADED_DRIVERS64_SIZE, UNLOADED_HEADER_SIZE),
                   32: (DUMP_UNLOADED_DRIVERS32, 0x28, 4)}

# ntiodump.h DUMP_MM_STORAGE64.
DUMP_MM_STORAGE64 = Struct(
    "Version" / Int32ul,
    "Size" / Int32ul,
    "MmSpecialPoolTag" / Int32ul,
    "MiTriageActionTaken" / Int32ul,
    "MmVerifyDriverLevel" / Int32ul,
    "KernelVerifier" / Int32ul,
    "MmMaximumNonPagedPool" / Int64ul,
    "MmAllocatedNonPagedPool" / Int64ul,
    "PagedPoolMaximum" / Int64ul,
    "PagedPoolAllocated" / Int64ul,
    "CommittedPages" / Int64ul,
    "CommittedPagesPeak" / Int64ul,
    "CommitLimitMaximum" / Int64ul,
)

#: Bounds on file-controlled counts (far above anything Windows writes; triage dumps are
#: limited to a few MiB and MmUnloadedDrivers keeps 50 entries).
MAX_DATA_BLOCKS = 1 << 20
MAX_DRIVERS = 1 << 16
MAX_UNLOADED = 1024
MAX_NAME_UNITS = 1024

#: At least this many empty list heads must agree on one base to prove the PRCB's address.
MIN_PRCB_SELF_LINKS = 4


class TriageTarget(VirtualTarget):
    """A triage minidump: one sparse kernel address space, no physical memory."""


class _TriageReader:
    """One pass over a triage dump: validate, collect ranges, decode the lists."""

    def __init__(self, path: str, mm: Any, header: Any, arch: Arch) -> None:
        self.path = path
        self.arch = arch
        self.width = header.width                        # 64 (PAGEDU64) or 32 (PAGEDUMP)
        self.pointer_size = arch.pointer_size
        self.mm = mm
        self.view = memoryview(mm)
        self.size = len(mm)
        self.header = header
        self.notes: List[str] = []
        self.extra: Dict[str, Any] = {}
        self.space = SparseAddressSpace(pointer_size=arch.pointer_size)
        self.kdbg: Optional[Dict[str, Any]] = None
        self.block_offsets: List[int] = []               # file offsets of the fixed blocks
        self._pending_prcb: Optional[memoryview] = None  # mapped once its VA is proven

    # --- helpers -----------------------------------------------------------------------------

    def _fail(self, message: str) -> DumpFormatError:
        return DumpFormatError("triage dump: " + message, self.path)

    def _slice(self, offset: int, size: int, what: str, clip: bool = True) -> Optional[memoryview]:
        """File bytes [offset, offset+size), clipped to the file with a note (or None)."""
        if offset <= 0 or size <= 0:
            return None
        if offset >= self.size:
            self.notes.append("%s at file offset 0x%x lies past the end of the file (0x%x bytes)"
                              % (what, offset, self.size))
            return None
        end = offset + size
        if end > self.size:
            if not clip:
                return None
            self.notes.append("%s at file offset 0x%x is cut short by the end of the file "
                              "(0x%x of 0x%x bytes)" % (what, offset, self.size - offset, size))
            end = self.size
        return self.view[offset:end]

    def _u32(self, offset: int) -> int:
        return struct.unpack_from("<I", self.mm, offset)[0]

    def _kernel_pointer(self, data: memoryview, offset: int) -> Optional[int]:
        """The pointer at `offset` of `data` when it is a kernel address (else None)."""
        size = self.pointer_size
        if offset < 0 or offset + size > len(data):
            return None
        value = int.from_bytes(data[offset:offset + size], "little")
        return value if self.arch.is_kernel_address(value) else None

    # --- steps ---------------------------------------------------------------------------------

    def parse_triage_header(self) -> Any:
        at, definition, size = TRIAGE_HEADERS[self.width]
        if self.size < at + size:
            raise TruncatedDumpError("triage dump: file holds 0x%x bytes, the TRIAGE_DUMP%d block "
                                     "ends at 0x%x" % (self.size, self.width, at + size), self.path)
        triage = definition.parse(bytes(self.view[at:at + size]))
        if triage.SizeOfDump > self.size:
            self.notes.append("SizeOfDump 0x%x is larger than the file (0x%x bytes): the dump is "
                              "truncated" % (triage.SizeOfDump, self.size))
        if triage.ValidOffset and triage.ValidOffset + 4 <= self.size:
            if bytes(self.view[triage.ValidOffset:triage.ValidOffset + 4]) != TRIAGE_DUMP_VALID:
                self.notes.append("no 'TRGD' validity marker at ValidOffset 0x%x: the dump may be "
                                  "incomplete" % triage.ValidOffset)
        # Offsets of the fixed blocks, to bound each block by the next one in the file.
        self.block_offsets = sorted(
            offset for offset in (triage.ContextOffset, triage.ExceptionOffset, triage.MmOffset,
                                  triage.UnloadedDriversOffset, triage.PrcbOffset,
                                  triage.ProcessOffset, triage.ThreadOffset,
                                  triage.CallStackOffset, triage.DriverListOffset,
                                  triage.StringPoolOffset, triage.DebuggerDataOffset,
                                  triage.DataBlocksOffset, triage.DataPageOffset,
                                  triage.ValidOffset)
            if offset)
        return triage

    def _room(self, offset: int) -> int:
        """Bytes from `offset` to the next fixed block (or the end of the file)."""
        following = [o for o in self.block_offsets if o > offset]
        return min(following[0] if following else self.size, self.size) - offset

    def decode_kdbg(self, triage: Any) -> None:
        address = self.header.kd_debugger_data_block
        data = self._slice(triage.DebuggerDataOffset, triage.DebuggerDataSize, "KDBG copy")
        if data is None:
            self.notes.append("the dump holds no copy of the KDBG block")
            return
        try:
            self.kdbg = self.arch.kdbg_values(decode_kdbg_bytes(bytes(data), address))
        except DumpFormatError as err:
            self.notes.append("KDBG copy not decoded: %s" % err.message)
            return
        if address is not None:
            self.space.add(address, data, "kdbg")
        else:
            self.notes.append("header KdDebuggerDataBlock is not set: the KDBG copy is decoded "
                              "but not mapped")

    def _kdbg_value(self, name: str) -> Optional[int]:
        if self.kdbg is None:
            return None
        value = self.kdbg.get(name)
        return int(value) if value else None

    def _block(self, offset: int, kdbg_size_field: str, what: str) -> Optional[memoryview]:
        """A fixed block whose size is the KDBG's size field, bounded by the next block."""
        if not offset:
            return None
        room = self._room(offset)
        size = self._kdbg_value(kdbg_size_field)
        if size is None:
            size = room
            self.notes.append("%s size unknown (no KDBG %s): using the 0x%x bytes up to the next "
                              "block" % (what, kdbg_size_field, room))
        elif size > room:
            self.notes.append("%s: KDBG %s 0x%x exceeds the 0x%x bytes before the next block; "
                              "served 0x%x" % (what, kdbg_size_field, size, room, room))
            size = room
        return self._slice(offset, size, what)

    def locate_fixed_blocks(self, triage: Any) -> None:
        prcb = self._block(triage.PrcbOffset, "SizePrcb", "PRCB")
        process = self._block(triage.ProcessOffset, "SizeEProcess", "EPROCESS")
        thread = self._block(triage.ThreadOffset, "SizeEThread", "ETHREAD")
        self.extra["prcb_size"] = len(prcb) if prcb is not None else None
        self.extra["process_size"] = len(process) if process is not None else None
        self.extra["thread_size"] = len(thread) if thread is not None else None

        thread_va = process_va = None
        if prcb is not None and self.kdbg is not None:
            off = self._kdbg_value("OffsetPrcbCurrentThread")
            if off is not None:
                thread_va = self._kernel_pointer(prcb, off)
        if thread is not None and self.kdbg is not None:
            off = self._kdbg_value("OffsetKThreadApcProcess")
            if off is not None:
                process_va = self._kernel_pointer(thread, off)
        if thread_va is None:
            self.notes.append("thread address not proven (needs the KDBG and PRCB.CurrentThread): "
                              "the ETHREAD block is not mapped")
        if process_va is None:
            self.notes.append("process address not proven (needs the KDBG and the thread's "
                              "ApcState.Process): the EPROCESS block is not mapped")
        self.extra["thread"] = thread_va
        self.extra["process"] = process_va
        if process is not None and process_va is not None:
            self.space.add(process_va, process, "process")
        if thread is not None and thread_va is not None:
            self.space.add(thread_va, thread, "thread")
        self._pending_prcb = prcb

        stack = self._slice(triage.CallStackOffset, triage.SizeOfCallStack, "call stack")
        if stack is not None and triage.TopOfStack:
            self.space.add(triage.TopOfStack, stack, "stack")
            self.extra["stack"] = (triage.TopOfStack, len(stack))
        if triage.DataPageAddress and triage.DataPageSize:
            page = self._slice(triage.DataPageOffset, triage.DataPageSize, "data page")
            if page is not None:
                self.space.add(triage.DataPageAddress, page, "data page")

    def add_data_blocks(self, triage: Any) -> None:
        count = triage.DataBlocksCount
        if not count or not triage.DataBlocksOffset:
            return
        if count > MAX_DATA_BLOCKS:
            raise self._fail("DataBlocksCount %d is absurd (limit %d)" % (count, MAX_DATA_BLOCKS))
        end = triage.DataBlocksOffset + count * TRIAGE_DATA_BLOCK_SIZE
        if end > self.size:
            raise TruncatedDumpError(
                "triage dump: %d data blocks at 0x%x need the file up to 0x%x, it ends at 0x%x"
                % (count, triage.DataBlocksOffset, end, self.size), self.path)
        table = bytes(self.view[triage.DataBlocksOffset:end])
        skipped = 0
        for address, offset, size in struct.iter_unpack(TRIAGE_DATA_BLOCK_FORMAT, table):
            if size == 0:
                continue
            if offset + size > self.size or address + size > 1 << 64:
                skipped += 1
                continue
            self.space.add(address, self.view[offset:offset + size], "data block")
        if skipped:
            self.notes.append("%d data block(s) point past the end of the file or the address "
                              "space and were skipped" % skipped)
        self.extra["data_blocks"] = count

    def locate_prcb(self) -> None:
        """Map the PRCB where the dump proves it is (see the module docstring)."""
        prcb = self._pending_prcb
        self.extra["prcb"] = None
        self.extra["prcb_source"] = None
        if prcb is None:
            return
        from_table = self._prcb_from_processor_block(prcb)
        from_links, agreeing = _prcb_from_self_links(prcb, self.arch)
        if from_table is not None:
            self.extra["prcb"] = from_table
            self.extra["prcb_source"] = "KiProcessorBlock[PRCB.Number]"
            if from_links is not None and from_links != from_table:
                self.notes.append("PRCB list heads point to 0x%x but KiProcessorBlock says 0x%x"
                                  % (from_links, from_table))
        elif from_links is not None:
            self.extra["prcb"] = from_links
            self.extra["prcb_source"] = "%d self-referencing list heads" % agreeing
        else:
            self.notes.append("PRCB address not proven (KiProcessorBlock not in the dump, too few "
                              "self-referencing list heads): the PRCB block is not mapped")
            return
        self.space.add(self.extra["prcb"], prcb, "prcb")

    def _prcb_from_processor_block(self, prcb: memoryview) -> Optional[int]:
        table = self._kdbg_value("KiProcessorBlock")
        number_offset = self._kdbg_value("OffsetPrcbNumber")
        if table is None or number_offset is None or number_offset + 4 > len(prcb):
            return None
        number = int.from_bytes(prcb[number_offset:number_offset + 4], "little")
        processors = self.header.processors or 0
        if processors and number >= processors:
            return None
        try:
            value = self.space.read_pointer(table + self.pointer_size * number)
        except MemoryReadError:
            return None
        self.extra["processor"] = number
        return value if self.arch.is_kernel_address(value) else None

    def decode_drivers(self, triage: Any) -> None:
        drivers: List[Dict[str, Any]] = []
        count = triage.DriverCount
        if count and triage.DriverListOffset:
            if count > MAX_DRIVERS:
                raise self._fail("DriverCount %d is absurd (limit %d)" % (count, MAX_DRIVERS))
            entries = DRIVER_ENTRIES[self.width]
            end = triage.DriverListOffset + count * entries.size
            if end > self.size:
                raise TruncatedDumpError(
                    "triage dump: %d driver entries at 0x%x need the file up to 0x%x, it ends at "
                    "0x%x" % (count, triage.DriverListOffset, end, self.size), self.path)
            pool_start = triage.StringPoolOffset
            pool_end = min(pool_start + triage.StringPoolSize, self.size)
            table = bytes(self.view[triage.DriverListOffset:end])
            for entry in entries.unpack_all(table):
                name = self._dump_string(entry["DriverNameOffset"], pool_start, pool_end)
                drivers.append({
                    "name": name.replace("/", "\\").rsplit("\\", 1)[-1] if name else None,
                    "path": name,
                    "base": entry["DllBase"],
                    "size": entry["SizeOfImage"],
                    "entry_point": entry["EntryPoint"],
                    "timestamp": entry["TimeDateStamp"],
                    "checksum": entry["CheckSum"],
                    "flags": entry["Flags"],
                })
        self.extra["drivers"] = drivers
        self.extra["unloaded_drivers"] = self._unloaded(triage)

    def _dump_string(self, offset: int, pool_start: int, pool_end: int) -> Optional[str]:
        if not (pool_start <= offset and offset + 4 <= pool_end):
            return None
        units = min(self._u32(offset), MAX_NAME_UNITS, (pool_end - offset - 4) // 2)
        raw = bytes(self.view[offset + 4:offset + 4 + 2 * units])
        text = raw.decode("utf-16-le", "replace")
        return text.split("\0", 1)[0]

    def _unloaded(self, triage: Any) -> List[Dict[str, Any]]:
        offset = triage.UnloadedDriversOffset
        if not offset or offset + UNLOADED_TABLES[self.width][2] > self.size:
            return []
        definition, entry_size, header_size = UNLOADED_TABLES[self.width]
        count = self._u32(offset)
        room = (self._room(offset) - header_size) // entry_size
        if count > min(room, MAX_UNLOADED):
            self.notes.append("unloaded-driver count %d does not fit its block (room for %d): "
                              "list ignored" % (count, max(room, 0)))
            return []
        out = []
        for index in range(count):
            at = offset + header_size + index * entry_size
            item = definition.parse(bytes(self.view[at:at + entry_size]))
            units = min(item.Name.Length // 2, MAX_UNLOADED_NAME_LENGTH // 2)
            name = item.DriverName[:2 * units].decode("utf-16-le", "replace").split("\0", 1)[0]
            out.append({"name": name, "start": item.StartAddress, "end": item.EndAddress,
                        "name_length": item.Name.Length})
        return out

    def decode_misc(self, triage: Any) -> None:
        layout = self.arch.context
        context = (self._slice(triage.ContextOffset, layout.size, "CONTEXT")
                   if layout is not None else None)
        if context is not None and layout is not None:
            self.extra["context"] = layout.decode(bytes(context))
            self.extra["context_layout"] = layout.name
        if triage.MmOffset and triage.MmOffset + DUMP_MM_STORAGE64.sizeof() <= self.size:
            mm = DUMP_MM_STORAGE64.parse(bytes(self.view[triage.MmOffset:
                                                         triage.MmOffset + DUMP_MM_STORAGE64.sizeof()]))
            self.extra["mm"] = {key: int(value) for key, value in mm.items()
                                if not key.startswith("_")}
        fields = self.header.mini_dump_fields
        if fields is not None:
            self.extra["mini_dump_fields"] = [name for bit, name in TRIAGE_FIELD_BITS if fields & bit]
        self.extra["triage"] = {key: (bytes(value).hex() if isinstance(value, bytes) else int(value))
                                for key, value in triage.items() if not key.startswith("_")}
        self.extra["exception"] = getattr(self.header, "exception", None)

    def build_info(self) -> TargetInfo:
        h = self.header
        kdbg = dict(self.kdbg) if self.kdbg is not None else None
        kernel_base = kdbg.get("KernBase") if kdbg else None
        if kdbg:
            for name, stated in (("PsActiveProcessHead", h.ps_active_process_head),
                                 ("PsLoadedModuleList", h.ps_loaded_module_list)):
                if name in kdbg and stated is not None and kdbg[name] != stated:
                    self.notes.append("KDBG %s 0x%x differs from the header's 0x%x"
                                      % (name, kdbg[name], stated))
        inconsistent = self.space.inconsistent_overlaps()
        self.extra["overlaps"] = len(self.space.overlaps)
        self.extra["inconsistent_overlaps"] = [(o.address, o.size, o.kept, o.shadowed)
                                               for o in inconsistent[:32]]
        if inconsistent:
            self.notes.append("%d overlapping range(s) hold different bytes; the first source "
                              "was kept" % len(inconsistent))
        self.extra["ranges"] = self.space.range_count
        self.extra["bytes_mapped"] = self.space.total_bytes
        return TargetInfo(
            path=self.path, container=h.container, dump_type="triage", dump_type_code=h.dump_type,
            arch=h.arch, major_version=h.major_version, build=h.build, processors=h.processors,
            bugcheck_code=h.bugcheck_code, bugcheck_parameters=list(h.bugcheck_parameters),
            directory_table_base=h.directory_table_base, pfn_database=h.pfn_database,
            ps_active_process_head=h.ps_active_process_head,
            ps_loaded_module_list=h.ps_loaded_module_list,
            kd_debugger_data_block=h.kd_debugger_data_block, kdbg=kdbg, kernel_base=kernel_base,
            system_time=h.system_time, system_uptime=h.system_uptime, comment=h.comment,
            extra=self.extra, notes=self.notes)


#: Alignment of a PRCB's base by pointer size: a 64-bit KPRCB is cache-line aligned; a 32-bit
#: one only pointer aligned (x86 keeps it at KPCR+0x120).
PRCB_ALIGNMENT = {8: 0x40, 4: 4}


def _prcb_from_self_links(prcb: memoryview, arch: Arch = X64) -> Tuple[Optional[int], int]:
    """The PRCB base on which its empty LIST_ENTRY heads agree: Flink == Blink == own VA.

    An empty list head at PRCB+w*i (w: pointer size) holds its own address twice, so each one
    votes for base `Flink - w*i`.  Needs `MIN_PRCB_SELF_LINKS` votes for one base; returns
    (base, votes).
    """
    width = arch.pointer_size
    usable = len(prcb) - len(prcb) % width
    words = array("Q" if width == 8 else "I")
    words.frombytes(bytes(prcb[:usable]))
    if words.itemsize != width:         # pragma: no cover - every CPython platform has 8-byte Q
        return None, 0
    align = PRCB_ALIGNMENT[width] - 1
    votes: Counter = Counter()
    previous = None
    for index, value in enumerate(words):
        if value == previous and arch.is_kernel_address(value):
            base = value - width * (index - 1)
            if base & align == 0:
                votes[base] += 1
        previous = value
    if not votes:
        return None, 0
    base, count = votes.most_common(1)[0]
    if count < MIN_PRCB_SELF_LINKS:
        return None, count
    return base, count


def open_triage(path: str, mm: Any, header: Any) -> TriageTarget:
    """Open a triage minidump (DumpType 4, 64- or 32-bit) already mapped by the crash-dump reader.

    `mm` is the read-only mmap of the whole file (the target owns it from now on and closes it
    in `close()`); `header` is `pykd_ext.targets.dumpheader.parse_header`'s result.  The
    architecture is the header's MachineImageType (x64, ARM64, x86, ARM); the CONTEXT record is
    decoded with that architecture's layout.
    """
    arch = header.architecture
    if arch is None or arch.kernel_dump_width != header.width or arch.kernel_start is None:
        raise UnsupportedDumpError("triage dump of machine type %s in a %s file is not read"
                                   % (header.arch, header.container), path)
    reader = _TriageReader(path, mm, header, arch)
    triage = reader.parse_triage_header()
    reader.decode_kdbg(triage)
    reader.locate_fixed_blocks(triage)
    reader.add_data_blocks(triage)
    reader.locate_prcb()
    reader.decode_drivers(triage)
    reader.decode_misc(triage)
    info = reader.build_info()
    return TriageTarget(path, mm, reader.space, info)


#: The name the 64-bit reader had before 32-bit triage dumps were read (kept for callers).
open_triage64 = open_triage
