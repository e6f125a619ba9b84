"""Legacy full user-mode dumps (`USERDU64`): the older dbgeng user dump format.

Why: `.dump /f` from older debuggers (and some tools still) write this format rather than a
minidump; it holds every committed memory region of a process.  It is served like the other
virtual-only sources: one `SparseAddressSpace` plus the facts the file states.

Format facts: Microsoft `ntiodump.h` (published with the Debugging Tools SDK and in Microsoft
Research's Singularity `Dump.h`): `USERMODE_CRASHDUMP_HEADER64` (Signature 'USER', ValidDump
'DU64', counts and ULONGLONG file offsets), `CRASH_THREAD64` (ThreadId, SuspendCount,
PriorityClass, Priority, ULONGLONG Teb, 7 spares: 0x50 bytes), `CRASH_MODULE64` (ULONGLONG
BaseOfImage, ULONG SizeOfImage, ULONG ImageNameLength, CHAR ImageName[]), and winnt.h
`MEMORY_BASIC_INFORMATION64` (0x30 bytes) for the region table.  Facts checked on the real dump
`shared/real/user-dumps/win10-17134-x64-userdu64.dmp`:
- region data lies back to back from DataOffset, in region-table order (the region sizes add up
  exactly to VersionInfoOffset - DataOffset);
- ThreadOffset holds ThreadCount x64 CONTEXT records (0x4d0 bytes each), ThreadStateOffset the
  CRASH_THREAD64 records: this is where the format records each thread's TEB;
- DebugEventOffset holds a DEBUG_EVENT (code, process id, thread id, then the x64
  EXCEPTION_RECORD64 for exception events);
- VersionInfoOffset holds NUL-separated UTF-16 name/value strings ("CRASH: OS SP", "none", ...),
  ended by an empty string;
- MinorVersion's high word is the OS build number (0x42EE = 17134, equal to the PEB's
  OSBuildNumber); MajorVersion is the OS major version.
"""
from typing import Any, Dict, List, Optional, Tuple

from construct import Bytes, Int32ul, Int64ul, Struct

from pykd_ext.errors import TruncatedDumpError
from pykd_ext.memory.filemap import FileMap
from pykd_ext.memory.sparse import SparseAddressSpace
from pykd_ext.targets.arch import Arch, arch_for_machine
from pykd_ext.targets.base import TargetInfo
from pykd_ext.targets.virtual import FileReader, VirtualTarget

USERMODE_CRASHDUMP_HEADER64 = Struct(
    "Signature" / Bytes(4),              # +0x00 'USER'
    "ValidDump" / Bytes(4),              # +0x04 'DU64'
    "MajorVersion" / Int32ul,            # +0x08
    "MinorVersion" / Int32ul,            # +0x0c
    "MachineImageType" / Int32ul,        # +0x10 IMAGE_FILE_MACHINE_*
    "ThreadCount" / Int32ul,             # +0x14
    "ModuleCount" / Int32ul,             # +0x18
    "MemoryRegionCount" / Int32ul,       # +0x1c
    "ThreadOffset" / Int64ul,            # +0x20 CONTEXT[ThreadCount]
    "ModuleOffset" / Int64ul,            # +0x28 CRASH_MODULE64...
    "DataOffset" / Int64ul,              # +0x30 region data, back to back
    "MemoryRegionOffset" / Int64ul,      # +0x38 MEMORY_BASIC_INFORMATION64[MemoryRegionCount]
    "DebugEventOffset" / Int64ul,        # +0x40 DEBUG_EVENT
    "ThreadStateOffset" / Int64ul,       # +0x48 CRASH_THREAD64[ThreadCount]
    "VersionInfoOffset" / Int64ul,       # +0x50
    "Spare1" / Int64ul,                  # +0x58
)
USERMODE_CRASHDUMP_HEADER64_SIZE = 0x60

MEMORY_BASIC_INFORMATION64 = Struct(
    "BaseAddress" / Int64ul,             # +0x00
    "AllocationBase" / Int64ul,          # +0x08
    "AllocationProtect" / Int32ul,       # +0x10
    "_alignment1" / Int32ul,
    "RegionSize" / Int64ul,              # +0x18
    "State" / Int32ul,                   # +0x20
    "Protect" / Int32ul,                 # +0x24
    "Type" / Int32ul,                    # +0x28
    "_alignment2" / Int32ul,
)
MEMORY_BASIC_INFORMATION64_SIZE = 0x30

CRASH_THREAD64 = Struct(
    "ThreadId" / Int32ul,
    "SuspendCount" / Int32ul,
    "PriorityClass" / Int32ul,
    "Priority" / Int32ul,
    "Teb" / Int64ul,                     # +0x10
    "Spare" / Bytes(7 * 8),
)
CRASH_THREAD64_SIZE = 0x50

CRASH_MODULE64_HEAD = Struct(
    "BaseOfImage" / Int64ul,
    "SizeOfImage" / Int32ul,
    "ImageNameLength" / Int32ul,         # bytes of ImageName that follow (NUL included)
)
CRASH_MODULE64_HEAD_SIZE = 0x10

DEBUG_EVENT_HEAD = Struct(
    "DebugEventCode" / Int32ul,          # EXCEPTION_DEBUG_EVENT = 1, ...
    "ProcessId" / Int32ul,
    "ThreadId" / Int32ul,
    "_alignment" / Int32ul,
    "ExceptionCode" / Int32ul,           # +0x10 EXCEPTION_RECORD64 (exception events)
    "ExceptionFlags" / Int32ul,
    "ExceptionRecord" / Int64ul,
    "ExceptionAddress" / Int64ul,
)
EXCEPTION_DEBUG_EVENT = 1

MAX_THREADS = 1 << 16
MAX_MODULES = 1 << 16
MAX_REGIONS = 1 << 20
MAX_NAME_BYTES = 0x1000
MAX_VERSION_STRINGS = 64


def _arch(head: Any) -> Optional[Arch]:
    """The dump's architecture, when it is one whose CONTEXT records we decode."""
    arch = arch_for_machine(head.MachineImageType)
    return arch if arch is not None and arch.context is not None else None


class UserDumpTarget(VirtualTarget):
    """A legacy full user dump: every dumped region of the process as one sparse space."""


class _UserDumpReader(FileReader):
    format_name = "USERDU64 dump"

    def table(self, offset: int, count: int, entry: int, limit: int, what: str) -> bytes:
        if count > limit:
            raise self.fail("%s count %d is implausible (limit %d)" % (what, count, limit))
        end = offset + count * entry
        if count and (offset < USERMODE_CRASHDUMP_HEADER64_SIZE or end > self.size):
            raise TruncatedDumpError("USERDU64 dump: %d %s at 0x%x need the file up to 0x%x, it "
                                     "ends at 0x%x" % (count, what, offset, end, self.size),
                                     self.path)
        return self.fmap.bytes_at(offset, count * entry)

    def header(self) -> Any:
        if self.size < USERMODE_CRASHDUMP_HEADER64_SIZE:
            raise TruncatedDumpError("USERDU64 dump: file holds %d bytes, the header needs %d"
                                     % (self.size, USERMODE_CRASHDUMP_HEADER64_SIZE), self.path)
        head = USERMODE_CRASHDUMP_HEADER64.parse(self.fmap.bytes_at(0, USERMODE_CRASHDUMP_HEADER64_SIZE))
        if head.Signature != b"USER" or head.ValidDump != b"DU64":
            raise self.fail("signature %r, expected 'USERDU64'" % (head.Signature + head.ValidDump))
        if _arch(head) is None:
            raise self.fail("MachineImageType 0x%x is not x64 (0x8664) or x86 (0x14c)"
                            % head.MachineImageType)
        return head

    def regions(self, head: Any, space: SparseAddressSpace) -> None:
        raw = self.table(head.MemoryRegionOffset, head.MemoryRegionCount,
                         MEMORY_BASIC_INFORMATION64_SIZE, MAX_REGIONS, "memory regions")
        cursor = head.DataOffset
        out = []
        missing = 0
        for index in range(head.MemoryRegionCount):
            at = index * MEMORY_BASIC_INFORMATION64_SIZE
            mbi = MEMORY_BASIC_INFORMATION64.parse(raw[at:at + MEMORY_BASIC_INFORMATION64_SIZE])
            size = mbi.RegionSize
            if mbi.BaseAddress + size > 1 << 64:
                raise self.fail("region %d at 0x%x (+0x%x) wraps the address space"
                                % (index, mbi.BaseAddress, size))
            available = max(0, min(size, self.size - cursor))
            if available < size:
                missing += size - available
            if available:
                space.add(mbi.BaseAddress, self.fmap.slice(cursor, available), "region")
            out.append({"base": mbi.BaseAddress, "size": size,
                        "allocation_base": mbi.AllocationBase, "state": mbi.State,
                        "protect": mbi.Protect, "type": mbi.Type, "file_offset": cursor})
            cursor += size
        if missing:
            self.notes.append("the file ends before the region data: 0x%x bytes of memory are "
                              "missing (truncated dump)" % missing)
        if head.VersionInfoOffset and cursor != head.VersionInfoOffset:
            self.notes.append("region data ends at 0x%x, not at VersionInfoOffset 0x%x"
                              % (cursor, head.VersionInfoOffset))
        self.extra["regions"] = out

    def threads(self, head: Any, arch: Arch) -> None:
        context = arch.context
        assert context is not None          # _arch() admits only architectures with one
        context_size = context.size
        states = self.table(head.ThreadStateOffset, head.ThreadCount, CRASH_THREAD64_SIZE,
                            MAX_THREADS, "thread records") if head.ThreadStateOffset else b""
        contexts = self.table(head.ThreadOffset, head.ThreadCount, context_size, MAX_THREADS,
                              "thread contexts") if head.ThreadOffset else b""
        out = []
        for index in range(head.ThreadCount):
            item: Dict[str, Any] = {"index": index}
            if states:
                at = index * CRASH_THREAD64_SIZE
                record = CRASH_THREAD64.parse(states[at:at + CRASH_THREAD64_SIZE])
                item.update(id=record.ThreadId, teb=record.Teb, suspend_count=record.SuspendCount,
                            priority_class=record.PriorityClass, priority=record.Priority)
            if contexts:
                item["context_offset"] = head.ThreadOffset + index * context_size
                item["context"] = context.decode(
                    contexts[index * context_size:(index + 1) * context_size])
            out.append(item)
        if not states:
            self.notes.append("no CRASH_THREAD64 records (ThreadStateOffset 0): TEB addresses "
                              "unknown")
        self.extra["threads"] = out

    def modules(self, head: Any) -> None:
        if head.ModuleCount > MAX_MODULES:
            raise self.fail("ModuleCount %d is implausible (limit %d)"
                            % (head.ModuleCount, MAX_MODULES))
        cursor = head.ModuleOffset
        out = []
        for index in range(head.ModuleCount if cursor else 0):
            if cursor + CRASH_MODULE64_HEAD_SIZE > self.size:
                raise TruncatedDumpError("USERDU64 dump: module %d at 0x%x lies past the end of "
                                         "the file" % (index, cursor), self.path)
            module = CRASH_MODULE64_HEAD.parse(self.fmap.bytes_at(cursor, CRASH_MODULE64_HEAD_SIZE))
            length = module.ImageNameLength
            if length > MAX_NAME_BYTES or cursor + CRASH_MODULE64_HEAD_SIZE + length > self.size:
                raise self.fail("module %d at 0x%x has an implausible name length %d"
                                % (index, cursor, length))
            raw = self.fmap.bytes_at(cursor + CRASH_MODULE64_HEAD_SIZE, length)
            path = raw.split(b"\0", 1)[0].decode("latin-1")
            out.append({"name": path.replace("/", "\\").rsplit("\\", 1)[-1], "path": path,
                        "base": module.BaseOfImage, "size": module.SizeOfImage})
            cursor += CRASH_MODULE64_HEAD_SIZE + length
        self.extra["modules"] = out

    def debug_event(self, head: Any) -> None:
        offset = head.DebugEventOffset
        if not offset or offset + DEBUG_EVENT_HEAD.sizeof() > self.size:
            return
        event = DEBUG_EVENT_HEAD.parse(self.fmap.bytes_at(offset, DEBUG_EVENT_HEAD.sizeof()))
        out: Dict[str, Any] = {"code": event.DebugEventCode, "process_id": event.ProcessId,
                               "thread_id": event.ThreadId}
        if event.DebugEventCode == EXCEPTION_DEBUG_EVENT:
            out.update(exception_code=event.ExceptionCode, exception_flags=event.ExceptionFlags,
                       exception_address=event.ExceptionAddress)
        self.extra["debug_event"] = out
        self.extra["process_id"] = event.ProcessId

    def version_strings(self, head: Any) -> None:
        offset = head.VersionInfoOffset
        if not offset or offset >= self.size:
            return
        raw = self.fmap.bytes_at(offset, min(self.size - offset, 0x2000))
        text = raw[:len(raw) - len(raw) % 2].decode("utf-16-le", "replace")
        strings = text.split("\0")
        pairs: List[Tuple[str, str]] = []
        for index in range(0, min(len(strings) - 1, 2 * MAX_VERSION_STRINGS), 2):
            if not strings[index]:
                break
            pairs.append((strings[index], strings[index + 1]))
        self.extra["version_info"] = pairs


def open_userdump64(path: str) -> UserDumpTarget:
    """Open a legacy full user-mode dump (`USERDU64`)."""
    fmap = FileMap(path)
    try:
        reader = _UserDumpReader(path, fmap)
        head = reader.header()
        arch = _arch(head)
        assert arch is not None             # header() refused the others
        space = SparseAddressSpace(pointer_size=arch.pointer_size)
        reader.regions(head, space)
        reader.threads(head, arch)
        reader.modules(head)
        reader.debug_event(head)
        reader.version_strings(head)
    except BaseException:
        fmap.close()
        raise
    build: Optional[int] = head.MinorVersion >> 16 or None
    if space.overlaps:
        reader.notes.append("%d memory region(s) overlap earlier ones; the first was kept"
                            % len(space.overlaps))
    extra = reader.extra
    extra.update(major_version=head.MajorVersion, minor_version=head.MinorVersion,
                 machine=head.MachineImageType, bytes_mapped=space.total_bytes,
                 header={key: int(value) for key, value in head.items()
                         if not key.startswith("_") and isinstance(value, int)})
    info = TargetInfo(path=path, container="USERDU64", dump_type="user (full)", arch=arch.name,
                      build=build, extra=extra, notes=reader.notes)
    return UserDumpTarget(path, fmap, space, info)
