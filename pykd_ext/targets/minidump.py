"""User-mode minidumps (`MDMP`): a process's memory by virtual address, threads and modules.

Why: `.dump /m`, Task Manager, WER and procdump all write this format; it is the usual way a
user-mode process reaches an analyst.  Memory comes from MemoryListStream (ranges with their own
RVA) and Memory64ListStream (full-memory dumps: ranges stored back to back from BaseRva), served
as one `SparseAddressSpace`.

Format facts: Windows SDK `minidumpapiset.h` (MINIDUMP_HEADER, MINIDUMP_DIRECTORY,
MINIDUMP_STREAM_TYPE, MINIDUMP_THREAD, MINIDUMP_MODULE, MINIDUMP_MEMORY_LIST/64,
MINIDUMP_SYSTEM_INFO, MINIDUMP_MISC_INFO_N, MINIDUMP_THREAD_INFO, MINIDUMP_HANDLE_DATA_STREAM,
MINIDUMP_UNLOADED_MODULE, MINIDUMP_EXCEPTION_STREAM, MINIDUMP_TYPE flags) and `verrsrc.h`
(VS_FIXEDFILEINFO, 52 bytes).  The whole header is under `#pragma pack(4)`: no padding is
inserted before 8-byte members, which is why these construct definitions have none.

Every RVA and size is checked against the file, every count against its stream's size and a
hard bound; a file whose directory cannot be right is refused with one clear `DumpFormatError`.
"""
from typing import Any, Dict, List, Optional, Tuple

from construct import Array, Bytes, Int16ul, Int32ul, Int64ul, Int8ul, Struct

from pykd_ext.errors import DumpFormatError, TruncatedDumpError
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.sparse import SparseAddressSpace
from pykd_ext.targets.arch import arch_for_processor, context_arch, decode_context
from pykd_ext.targets.base import TargetInfo
from pykd_ext.targets.virtual import FileReader, VirtualTarget

MINIDUMP_SIGNATURE = b"MDMP"
MINIDUMP_VERSION = 0xA793            # low word of Version (MINIDUMP_VERSION = 42899)

MINIDUMP_HEADER = Struct(
    "Signature" / Bytes(4),          # +0x00 'MDMP'
    "Version" / Int32ul,             # +0x04 low word 0xA793, high word implementation-specific
    "NumberOfStreams" / Int32ul,     # +0x08
    "StreamDirectoryRva" / Int32ul,  # +0x0c
    "CheckSum" / Int32ul,            # +0x10
    "TimeDateStamp" / Int32ul,       # +0x14
    "Flags" / Int64ul,               # +0x18 MINIDUMP_TYPE
)
MINIDUMP_HEADER_SIZE = 0x20

MINIDUMP_LOCATION_DESCRIPTOR = Struct("DataSize" / Int32ul, "Rva" / Int32ul)
MINIDUMP_DIRECTORY = Struct("StreamType" / Int32ul, "Location" / MINIDUMP_LOCATION_DESCRIPTOR)
MINIDUMP_DIRECTORY_SIZE = 12

MINIDUMP_MEMORY_DESCRIPTOR = Struct(
    "StartOfMemoryRange" / Int64ul,
    "Memory" / MINIDUMP_LOCATION_DESCRIPTOR,
)                                    # 16 bytes
MINIDUMP_MEMORY_DESCRIPTOR64 = Struct("StartOfMemoryRange" / Int64ul, "DataSize" / Int64ul)

MINIDUMP_THREAD = Struct(
    "ThreadId" / Int32ul,            # +0x00
    "SuspendCount" / Int32ul,        # +0x04
    "PriorityClass" / Int32ul,       # +0x08
    "Priority" / Int32ul,            # +0x0c
    "Teb" / Int64ul,                 # +0x10
    "Stack" / MINIDUMP_MEMORY_DESCRIPTOR,            # +0x18
    "ThreadContext" / MINIDUMP_LOCATION_DESCRIPTOR,  # +0x28
)                                    # 0x30 bytes
MINIDUMP_THREAD_SIZE = 0x30

VS_FIXEDFILEINFO = Struct(
    "dwSignature" / Int32ul, "dwStrucVersion" / Int32ul,
    "dwFileVersionMS" / Int32ul, "dwFileVersionLS" / Int32ul,
    "dwProductVersionMS" / Int32ul, "dwProductVersionLS" / Int32ul,
    "dwFileFlagsMask" / Int32ul, "dwFileFlags" / Int32ul, "dwFileOS" / Int32ul,
    "dwFileType" / Int32ul, "dwFileSubtype" / Int32ul,
    "dwFileDateMS" / Int32ul, "dwFileDateLS" / Int32ul,
)                                    # 52 bytes

MINIDUMP_MODULE = Struct(
    "BaseOfImage" / Int64ul,         # +0x00
    "SizeOfImage" / Int32ul,         # +0x08
    "CheckSum" / Int32ul,            # +0x0c
    "TimeDateStamp" / Int32ul,       # +0x10
    "ModuleNameRva" / Int32ul,       # +0x14 MINIDUMP_STRING
    "VersionInfo" / VS_FIXEDFILEINFO,                # +0x18
    "CvRecord" / MINIDUMP_LOCATION_DESCRIPTOR,       # +0x4c
    "MiscRecord" / MINIDUMP_LOCATION_DESCRIPTOR,     # +0x54
    "Reserved0" / Int64ul,           # +0x5c
    "Reserved1" / Int64ul,           # +0x64
)                                    # 0x6c bytes
MINIDUMP_MODULE_SIZE = 0x6C

MINIDUMP_SYSTEM_INFO = Struct(
    "ProcessorArchitecture" / Int16ul,  # +0x00 PROCESSOR_ARCHITECTURE_*
    "ProcessorLevel" / Int16ul,
    "ProcessorRevision" / Int16ul,
    "NumberOfProcessors" / Int8ul,      # +0x06
    "ProductType" / Int8ul,
    "MajorVersion" / Int32ul,           # +0x08
    "MinorVersion" / Int32ul,
    "BuildNumber" / Int32ul,            # +0x10
    "PlatformId" / Int32ul,
    "CSDVersionRva" / Int32ul,          # +0x18
    "SuiteMask" / Int16ul,
    "Reserved2" / Int16ul,
    "Cpu" / Bytes(24),                  # +0x20 CPU_INFORMATION
)                                       # 0x38 bytes

MINIDUMP_MISC_INFO = Struct(
    "SizeOfInfo" / Int32ul,
    "Flags1" / Int32ul,
    "ProcessId" / Int32ul,
    "ProcessCreateTime" / Int32ul,      # time_t seconds
    "ProcessUserTime" / Int32ul,        # seconds
    "ProcessKernelTime" / Int32ul,
)                                       # 24 bytes; later versions append fields
MISC_INFO_BUILDSTRING_OFFSET = 0xE8     # MINIDUMP_MISC_INFO_4.BuildString (WCHAR[260])
MISC_INFO_BUILDSTRING_UNITS = 260
MINIDUMP_MISC1_PROCESS_ID = 0x1
MINIDUMP_MISC1_PROCESS_TIMES = 0x2
MINIDUMP_MISC4_BUILDSTRING = 0x100

MINIDUMP_LIST3_HEADER = Struct(         # ThreadInfoList / UnloadedModuleList headers
    "SizeOfHeader" / Int32ul, "SizeOfEntry" / Int32ul, "NumberOfEntries" / Int32ul)
MINIDUMP_THREAD_INFO = Struct(
    "ThreadId" / Int32ul, "DumpFlags" / Int32ul, "DumpError" / Int32ul, "ExitStatus" / Int32ul,
    "CreateTime" / Int64ul, "ExitTime" / Int64ul, "KernelTime" / Int64ul, "UserTime" / Int64ul,
    "StartAddress" / Int64ul, "Affinity" / Int64ul,
)                                       # 64 bytes
MINIDUMP_UNLOADED_MODULE = Struct(
    "BaseOfImage" / Int64ul, "SizeOfImage" / Int32ul, "CheckSum" / Int32ul,
    "TimeDateStamp" / Int32ul, "ModuleNameRva" / Int32ul,
)                                       # 24 bytes
MINIDUMP_HANDLE_DATA_STREAM = Struct(
    "SizeOfHeader" / Int32ul, "SizeOfDescriptor" / Int32ul, "NumberOfDescriptors" / Int32ul,
    "Reserved" / Int32ul)
MINIDUMP_EXCEPTION_STREAM = Struct(
    "ThreadId" / Int32ul,
    "_alignment" / Int32ul,
    "ExceptionCode" / Int32ul,
    "ExceptionFlags" / Int32ul,
    "ExceptionRecord" / Int64ul,
    "ExceptionAddress" / Int64ul,
    "NumberParameters" / Int32ul,
    "_unusedAlignment" / Int32ul,
    "ExceptionInformation" / Array(15, Int64ul),
    "ThreadContext" / MINIDUMP_LOCATION_DESCRIPTOR,
)                                       # 0xa8 bytes

# MINIDUMP_STREAM_TYPE (minidumpapiset.h).
STREAM_NAMES: Dict[int, str] = {
    0: "Unused", 1: "Reserved0", 2: "Reserved1", 3: "ThreadList", 4: "ModuleList",
    5: "MemoryList", 6: "Exception", 7: "SystemInfo", 8: "ThreadExList", 9: "Memory64List",
    10: "CommentA", 11: "CommentW", 12: "HandleData", 13: "FunctionTable",
    14: "UnloadedModuleList", 15: "MiscInfo", 16: "MemoryInfoList", 17: "ThreadInfoList",
    18: "HandleOperationList", 19: "Token", 20: "JavaScriptData", 21: "SystemMemoryInfo",
    22: "ProcessVmCounters", 23: "IptTrace", 24: "ThreadNames",
}
THREAD_LIST, MODULE_LIST, MEMORY_LIST, EXCEPTION, SYSTEM_INFO = 3, 4, 5, 6, 7
MEMORY64_LIST, HANDLE_DATA, UNLOADED_MODULE_LIST, MISC_INFO, THREAD_INFO_LIST = 9, 12, 14, 15, 17

# MINIDUMP_TYPE bits (minidumpapiset.h), bit -> name.
MINIDUMP_TYPE_BITS: Tuple[Tuple[int, str], ...] = (
    (0x1, "WithDataSegs"), (0x2, "WithFullMemory"), (0x4, "WithHandleData"),
    (0x8, "FilterMemory"), (0x10, "ScanMemory"), (0x20, "WithUnloadedModules"),
    (0x40, "WithIndirectlyReferencedMemory"), (0x80, "FilterModulePaths"),
    (0x100, "WithProcessThreadData"), (0x200, "WithPrivateReadWriteMemory"),
    (0x400, "WithoutOptionalData"), (0x800, "WithFullMemoryInfo"), (0x1000, "WithThreadInfo"),
    (0x2000, "WithCodeSegs"), (0x4000, "WithoutAuxiliaryState"),
    (0x8000, "WithFullAuxiliaryState"), (0x10000, "WithPrivateWriteCopyMemory"),
    (0x20000, "IgnoreInaccessibleMemory"), (0x40000, "WithTokenInformation"),
    (0x80000, "WithModuleHeaders"), (0x100000, "FilterTriage"),
    (0x200000, "WithAvxXStateContext"), (0x400000, "WithIptTrace"),
    (0x800000, "ScanInaccessiblePartialPages"), (0x1000000, "FilterWriteCombinedMemory"),
)

#: Bounds on file-controlled counts.
MAX_STREAMS = 4096
MAX_ENTRIES = 1 << 20
MAX_STRING_BYTES = 0x10000


class MinidumpTarget(VirtualTarget):
    """A user-mode minidump: the process's memory as one sparse address space."""


class _MinidumpReader(FileReader):
    format_name = "minidump"

    def __init__(self, path: str, fmap: FileMap) -> None:
        super().__init__(path, fmap)
        self.streams: Dict[int, List[Tuple[int, int]]] = {}   # type -> [(rva, size)]

    def read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise TruncatedDumpError("minidump: %s at 0x%x (+0x%x) lies past the end of the file "
                                     "(0x%x bytes)" % (what, offset, size, self.size), self.path)
        return self.fmap.bytes_at(offset, size)

    # --- header and directory ----------------------------------------------------------------

    def parse_header(self) -> Any:
        raw = self.read(0, MINIDUMP_HEADER_SIZE, "MINIDUMP_HEADER")
        header = MINIDUMP_HEADER.parse(raw)
        if header.Signature != MINIDUMP_SIGNATURE:
            raise self.fail("signature %r is not 'MDMP'" % header.Signature)
        if header.Version & 0xFFFF != MINIDUMP_VERSION:
            raise self.fail("version 0x%x: low word is not MINIDUMP_VERSION 0x%x"
                            % (header.Version, MINIDUMP_VERSION))
        count, rva = header.NumberOfStreams, header.StreamDirectoryRva
        if rva < MINIDUMP_HEADER_SIZE:
            raise self.fail(
                "stream directory RVA 0x%x lies inside the 32-byte MINIDUMP_HEADER (NumberOfStreams "
                "%d): the header's fields are shifted or corrupt" % (rva, count))
        if count > MAX_STREAMS:
            raise self.fail("NumberOfStreams %d is implausible (limit %d)" % (count, MAX_STREAMS))
        end = rva + count * MINIDUMP_DIRECTORY_SIZE
        if end > self.size:
            raise self.fail("stream directory at 0x%x (%d entries) points past the end of the file "
                            "(0x%x bytes)" % (rva, count, self.size))
        return header

    def parse_directory(self, header: Any) -> None:
        listing = []
        raw = self.read(header.StreamDirectoryRva,
                        header.NumberOfStreams * MINIDUMP_DIRECTORY_SIZE, "stream directory")
        for index in range(header.NumberOfStreams):
            entry = MINIDUMP_DIRECTORY.parse(raw[index * MINIDUMP_DIRECTORY_SIZE:
                                                 (index + 1) * MINIDUMP_DIRECTORY_SIZE])
            kind, size, rva = entry.StreamType, entry.Location.DataSize, entry.Location.Rva
            if kind == 0:
                continue                                  # UnusedStream: padding entries
            if size and (rva < MINIDUMP_HEADER_SIZE or rva + size > self.size):
                raise self.fail("stream %d (%s) at RVA 0x%x size 0x%x points %s"
                                % (index, STREAM_NAMES.get(kind, "type %d" % kind), rva, size,
                                   "into the header" if rva < MINIDUMP_HEADER_SIZE
                                   else "past the end of the file (0x%x bytes)" % self.size))
            self.streams.setdefault(kind, []).append((rva, size))
            listing.append({"index": index, "type": kind,
                            "name": STREAM_NAMES.get(kind, "user/unknown"), "rva": rva,
                            "size": size})
        self.extra["streams"] = listing

    def stream(self, kind: int) -> Optional[bytes]:
        """The first stream of this type (bytes), or None."""
        found = self.streams.get(kind)
        if not found:
            return None
        if len(found) > 1:
            self.notes.append("%d %s streams; the first is used"
                              % (len(found), STREAM_NAMES.get(kind, str(kind))))
        rva, size = found[0]
        return self.read(rva, size, STREAM_NAMES.get(kind, str(kind)))

    def counted(self, data: bytes, count: int, header_size: int, entry_size: int,
                what: str) -> int:
        if count > MAX_ENTRIES or header_size + count * entry_size > len(data):
            raise self.fail("%s claims %d entries of %d bytes but its stream holds %d bytes"
                            % (what, count, entry_size, len(data)))
        return count

    def string(self, rva: int) -> Optional[str]:
        """A MINIDUMP_STRING (ULONG32 Length in bytes, then UTF-16LE), None when invalid."""
        if rva == 0 or rva + 4 > self.size:
            return None
        length = int.from_bytes(self.fmap.bytes_at(rva, 4), "little")
        if length > MAX_STRING_BYTES or rva + 4 + length > self.size:
            self.notes.append("MINIDUMP_STRING at 0x%x has an implausible length %d" % (rva, length))
            return None
        return self.fmap.bytes_at(rva + 4, length).decode("utf-16-le", "replace")

    # --- streams ---------------------------------------------------------------------------------

    def system_info(self) -> Tuple[str, int, Optional[int], Optional[int]]:
        data = self.stream(SYSTEM_INFO)
        if data is None or len(data) < MINIDUMP_SYSTEM_INFO.sizeof():
            self.notes.append("no SystemInfo stream: assuming x64")
            return "x64", 8, None, None
        info = MINIDUMP_SYSTEM_INFO.parse(data[:MINIDUMP_SYSTEM_INFO.sizeof()])
        # SYSTEM_INFO.wProcessorArchitecture (winnt.h PROCESSOR_ARCHITECTURE_*)
        known = arch_for_processor(info.ProcessorArchitecture)
        arch, pointer = ((known.name, known.pointer_size) if known is not None
                         else ("arch %d" % info.ProcessorArchitecture, 8))
        self.extra["system"] = {
            "processor_architecture": info.ProcessorArchitecture,
            "processor_level": info.ProcessorLevel, "processor_revision": info.ProcessorRevision,
            "major_version": info.MajorVersion, "minor_version": info.MinorVersion,
            "build": info.BuildNumber, "platform_id": info.PlatformId,
            "product_type": info.ProductType, "suite_mask": info.SuiteMask,
            "csd_version": self.string(info.CSDVersionRva),
        }
        return arch, pointer, info.BuildNumber, info.NumberOfProcessors

    def memory(self, space: SparseAddressSpace) -> None:
        ranges = 0
        data = self.stream(MEMORY_LIST)
        if data is not None and len(data) >= 4:
            count = self.counted(data, int.from_bytes(data[:4], "little"), 4, 16, "MemoryList")
            for index in range(count):
                desc = MINIDUMP_MEMORY_DESCRIPTOR.parse(data[4 + 16 * index:20 + 16 * index])
                self._add(space, desc.StartOfMemoryRange, desc.Memory.Rva, desc.Memory.DataSize,
                          "memory list")
                ranges += 1
        data = self.stream(MEMORY64_LIST)
        if data is not None and len(data) >= 16:
            count = int.from_bytes(data[:8], "little")
            rva = int.from_bytes(data[8:16], "little")
            count = self.counted(data, count, 16, 16, "Memory64List")
            for index in range(count):
                desc = MINIDUMP_MEMORY_DESCRIPTOR64.parse(data[16 + 16 * index:32 + 16 * index])
                self._add(space, desc.StartOfMemoryRange, rva, desc.DataSize, "memory64 list")
                rva += desc.DataSize
                ranges += 1
        self.extra["memory_ranges"] = ranges

    def _add(self, space: SparseAddressSpace, address: int, rva: int, size: int, label: str) -> None:
        if size == 0:
            return
        if rva >= self.size:
            self.notes.append("%s range 0x%x (+0x%x) lies past the end of the file"
                              % (label, address, size))
            return
        if rva + size > self.size:
            self.notes.append("%s range 0x%x: only 0x%x of 0x%x bytes are in the file (truncated)"
                              % (label, address, self.size - rva, size))
            size = self.size - rva
        if address + size > 1 << 64:
            self.notes.append("%s range 0x%x (+0x%x) wraps the address space: skipped"
                              % (label, address, size))
            return
        space.add(address, self.fmap.slice(rva, size), label)

    def threads(self, space: SparseAddressSpace, arch: str) -> None:
        data = self.stream(THREAD_LIST)
        out: List[Dict[str, Any]] = []
        if data is not None and len(data) >= 4:
            count = self.counted(data, int.from_bytes(data[:4], "little"), 4, MINIDUMP_THREAD_SIZE,
                                 "ThreadList")
            for index in range(count):
                at = 4 + index * MINIDUMP_THREAD_SIZE
                thread = MINIDUMP_THREAD.parse(data[at:at + MINIDUMP_THREAD_SIZE])
                stack = thread.Stack
                self._add(space, stack.StartOfMemoryRange, stack.Memory.Rva, stack.Memory.DataSize,
                          "stack")
                ctx = thread.ThreadContext
                registers = None
                if ctx.DataSize and ctx.Rva + ctx.DataSize <= self.size:
                    # A WoW64 process dumped through the 32-bit view stores x86 CONTEXTs in a
                    # 64-bit dump: the record's size says which it is.
                    registers = decode_context(self.fmap.bytes_at(ctx.Rva, ctx.DataSize),
                                               context_arch(ctx.DataSize, arch))
                out.append({"id": thread.ThreadId, "teb": thread.Teb,
                            "suspend_count": thread.SuspendCount,
                            "priority_class": thread.PriorityClass, "priority": thread.Priority,
                            "stack": (stack.StartOfMemoryRange, stack.Memory.DataSize),
                            "context_rva": ctx.Rva, "context_size": ctx.DataSize,
                            "context_arch": context_arch(ctx.DataSize, arch),
                            "context": registers})
        self.extra["threads"] = out

    def modules(self) -> None:
        data = self.stream(MODULE_LIST)
        out: List[Dict[str, Any]] = []
        if data is not None and len(data) >= 4:
            count = self.counted(data, int.from_bytes(data[:4], "little"), 4, MINIDUMP_MODULE_SIZE,
                                 "ModuleList")
            for index in range(count):
                at = 4 + index * MINIDUMP_MODULE_SIZE
                module = MINIDUMP_MODULE.parse(data[at:at + MINIDUMP_MODULE_SIZE])
                path = self.string(module.ModuleNameRva)
                out.append({"name": path.replace("/", "\\").rsplit("\\", 1)[-1] if path else None,
                            "path": path, "base": module.BaseOfImage, "size": module.SizeOfImage,
                            "timestamp": module.TimeDateStamp, "checksum": module.CheckSum})
        self.extra["modules"] = out
        self.extra["wow64"] = any((m["name"] or "").lower() == "wow64.dll" for m in out)

    def unloaded_modules(self) -> None:
        data = self.stream(UNLOADED_MODULE_LIST)
        out: List[Dict[str, Any]] = []
        if data is not None and len(data) >= MINIDUMP_LIST3_HEADER.sizeof():
            head = MINIDUMP_LIST3_HEADER.parse(data[:12])
            entry = max(head.SizeOfEntry, MINIDUMP_UNLOADED_MODULE.sizeof())
            count = self.counted(data, head.NumberOfEntries, head.SizeOfHeader, entry,
                                 "UnloadedModuleList")
            for index in range(count):
                at = head.SizeOfHeader + index * entry
                module = MINIDUMP_UNLOADED_MODULE.parse(data[at:at + 24])
                out.append({"name": self.string(module.ModuleNameRva), "base": module.BaseOfImage,
                            "size": module.SizeOfImage, "timestamp": module.TimeDateStamp,
                            "checksum": module.CheckSum})
        self.extra["unloaded_modules"] = out

    def misc_info(self) -> None:
        data = self.stream(MISC_INFO)
        if data is None or len(data) < MINIDUMP_MISC_INFO.sizeof():
            return
        misc = MINIDUMP_MISC_INFO.parse(data[:MINIDUMP_MISC_INFO.sizeof()])
        out: Dict[str, Any] = {"size": misc.SizeOfInfo, "flags": misc.Flags1}
        if misc.Flags1 & MINIDUMP_MISC1_PROCESS_ID:
            self.extra["process_id"] = misc.ProcessId
            out["process_id"] = misc.ProcessId
        if misc.Flags1 & MINIDUMP_MISC1_PROCESS_TIMES:
            out.update(create_time=misc.ProcessCreateTime, user_time=misc.ProcessUserTime,
                       kernel_time=misc.ProcessKernelTime)
            self.extra["process_create_time"] = misc.ProcessCreateTime
        end = MISC_INFO_BUILDSTRING_OFFSET + 2 * MISC_INFO_BUILDSTRING_UNITS
        if misc.Flags1 & MINIDUMP_MISC4_BUILDSTRING and len(data) >= end:
            text = data[MISC_INFO_BUILDSTRING_OFFSET:end].decode("utf-16-le", "replace")
            out["build_string"] = text.split("\0", 1)[0]
        self.extra["misc"] = out

    def thread_info(self) -> None:
        data = self.stream(THREAD_INFO_LIST)
        if data is None or len(data) < 12:
            return
        head = MINIDUMP_LIST3_HEADER.parse(data[:12])
        entry = max(head.SizeOfEntry, MINIDUMP_THREAD_INFO.sizeof())
        count = self.counted(data, head.NumberOfEntries, head.SizeOfHeader, entry,
                             "ThreadInfoList")
        out = []
        for index in range(count):
            at = head.SizeOfHeader + index * entry
            item = MINIDUMP_THREAD_INFO.parse(data[at:at + 64])
            out.append({key: int(value) for key, value in item.items() if not key.startswith("_")})
        self.extra["thread_info"] = out

    def handles(self) -> None:
        data = self.stream(HANDLE_DATA)
        if data is None or len(data) < 16:
            return
        head = MINIDUMP_HANDLE_DATA_STREAM.parse(data[:16])
        self.counted(data, head.NumberOfDescriptors, head.SizeOfHeader,
                     max(head.SizeOfDescriptor, 1), "HandleData")
        self.extra["handle_count"] = head.NumberOfDescriptors

    def exception(self, arch: str) -> None:
        data = self.stream(EXCEPTION)
        if data is None or len(data) < MINIDUMP_EXCEPTION_STREAM.sizeof():
            return
        exc = MINIDUMP_EXCEPTION_STREAM.parse(data[:MINIDUMP_EXCEPTION_STREAM.sizeof()])
        self.extra["exception"] = {
            "thread_id": exc.ThreadId, "code": exc.ExceptionCode, "flags": exc.ExceptionFlags,
            "address": exc.ExceptionAddress,
            "parameters": list(exc.ExceptionInformation[:min(exc.NumberParameters, 15)]),
            "context_rva": exc.ThreadContext.Rva,
        }


def open_minidump(path: str) -> MinidumpTarget:
    """Open a user-mode minidump (`MDMP`); typed errors for anything that cannot be right."""
    fmap = FileMap(path)
    try:
        reader = _MinidumpReader(path, fmap)
        header = reader.parse_header()
        reader.parse_directory(header)
        arch, pointer_size, build, processors = reader.system_info()
        space = SparseAddressSpace(pointer_size=pointer_size)
        reader.memory(space)
        reader.threads(space, arch)
        reader.modules()
        reader.unloaded_modules()
        reader.misc_info()
        reader.thread_info()
        reader.handles()
        reader.exception(arch)
    except BaseException:
        fmap.close()
        raise
    extra = reader.extra
    extra["flags"] = header.Flags
    extra["flag_names"] = [name for bit, name in MINIDUMP_TYPE_BITS if header.Flags & bit]
    extra["version"] = header.Version
    extra["checksum"] = header.CheckSum
    extra["time_date_stamp"] = header.TimeDateStamp
    extra["bytes_mapped"] = space.total_bytes
    extra["overlaps"] = len(space.overlaps)
    if space.inconsistent_overlaps():
        reader.notes.append("%d overlapping memory range(s) hold different bytes; the first listed "
                            "was kept" % len(space.inconsistent_overlaps()))
    if extra.get("wow64"):
        reader.notes.append("a 32-bit program under WoW64: the dump is a 64-bit dump holding both "
                            "the 64-bit and the 32-bit TEBs/PEB")
    info = TargetInfo(path=path, container="MDMP", dump_type="user", arch=arch, build=build,
                      processors=processors, extra=extra, notes=reader.notes)
    return MinidumpTarget(path, fmap, space, info)
