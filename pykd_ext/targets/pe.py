"""PE image headers, the CodeView (RSDS) record and exports, from memory or from bytes.

Why: the kernel's exact version is named by its PDB GUID and age, which live in the CodeView
record of ntoskrnl's debug directory; layout selection, raw-image kernel discovery and module
listings all start from a PE header at a base address. Reads are bounded (section count, debug
entries, export names) so a corrupt or hostile image cannot make us loop.

Format facts: Microsoft "PE Format" specification
(learn.microsoft.com/windows/win32/debug/pe-format): IMAGE_DOS_HEADER.e_lfanew at 0x3C,
"PE\\0\\0", IMAGE_FILE_HEADER (20 bytes), optional header magic 0x10B (PE32) / 0x20B (PE32+),
data directories (export = 0, resource = 2, debug = 6), section headers (40 bytes), resource
directories (16-byte headers, 8-byte entries, RT_VERSION = 16), IMAGE_DEBUG_DIRECTORY (28 bytes,
type 2 = CODEVIEW), export directory (40 bytes); VS_FIXEDFILEINFO (signature 0xFEEF04BD) from the
Win32 "VS_FIXEDFILEINFO structure" documentation. The RSDS record ("RSDS", GUID, Age, PDB path)
is the CodeView 7.0 format, as read by Volatility 3's `pdbutil.PdbSignatureScanner` and symbol
servers (GUID fields 1-3 little-endian).
"""
from dataclasses import dataclass, field
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct, Switch, this

from pykd_ext.errors import DumpFormatError, MemoryReadError
from pykd_ext.memory.space import AddressSpace

IMAGE_DOS_SIGNATURE = b"MZ"
IMAGE_NT_SIGNATURE = b"PE\0\0"
PE32_MAGIC = 0x10B
PE32PLUS_MAGIC = 0x20B
IMAGE_DIRECTORY_ENTRY_EXPORT = 0
IMAGE_DIRECTORY_ENTRY_RESOURCE = 2
IMAGE_DIRECTORY_ENTRY_DEBUG = 6
RT_VERSION = 16
VS_FFI_SIGNATURE = 0xFEEF04BD
MAX_RESOURCE_ENTRIES = 256
IMAGE_DEBUG_TYPE_CODEVIEW = 2
CODEVIEW_RSDS = b"RSDS"

#: PDB names of the kernel: x64 (multiprocessor, uniprocessor, 5-level paging builds), x86 PAE.
KERNEL_PDB_NAMES = ("ntkrnlmp.pdb", "ntoskrnl.pdb", "ntkrla57.pdb",
                    # H10: 32-bit PAE kernels (ntkrnlpa.exe / ntkrpamp.exe)
                    "ntkrnlpa.pdb", "ntkrpamp.pdb")

MAX_SECTIONS = 96                 # PE spec: the loader limits NumberOfSections to 96
MAX_DATA_DIRECTORIES = 16
MAX_DEBUG_ENTRIES = 32
MAX_EXPORT_NAMES = 1 << 16
MAX_HEADER_READ = 0x1000
MAX_PDB_NAME = 260

IMAGE_DOS_HEADER = Struct(
    "e_magic" / Const(IMAGE_DOS_SIGNATURE),
    "_dos" / Bytes(0x3A),
    "e_lfanew" / Int32ul,                     # 0x3C
)

IMAGE_FILE_HEADER = Struct(
    "Machine" / Int16ul,
    "NumberOfSections" / Int16ul,
    "TimeDateStamp" / Int32ul,
    "PointerToSymbolTable" / Int32ul,
    "NumberOfSymbols" / Int32ul,
    "SizeOfOptionalHeader" / Int16ul,
    "Characteristics" / Int16ul,
)                                             # 20 bytes

IMAGE_DATA_DIRECTORY = Struct("VirtualAddress" / Int32ul, "Size" / Int32ul)

_OPTIONAL_COMMON = Struct(
    "MajorLinkerVersion" / Int8ul,
    "MinorLinkerVersion" / Int8ul,
    "SizeOfCode" / Int32ul,
    "SizeOfInitializedData" / Int32ul,
    "SizeOfUninitializedData" / Int32ul,
    "AddressOfEntryPoint" / Int32ul,
    "BaseOfCode" / Int32ul,
)


def _windows_fields(word: Any) -> Struct:
    """Optional-header Windows-specific fields; `word` is Int32ul (PE32) or Int64ul (PE32+)."""
    return Struct(
        "ImageBase" / word,
        "SectionAlignment" / Int32ul,
        "FileAlignment" / Int32ul,
        "MajorOperatingSystemVersion" / Int16ul,
        "MinorOperatingSystemVersion" / Int16ul,
        "MajorImageVersion" / Int16ul,
        "MinorImageVersion" / Int16ul,
        "MajorSubsystemVersion" / Int16ul,
        "MinorSubsystemVersion" / Int16ul,
        "Win32VersionValue" / Int32ul,
        "SizeOfImage" / Int32ul,
        "SizeOfHeaders" / Int32ul,
        "CheckSum" / Int32ul,
        "Subsystem" / Int16ul,
        "DllCharacteristics" / Int16ul,
        "SizeOfStackReserve" / word,
        "SizeOfStackCommit" / word,
        "SizeOfHeapReserve" / word,
        "SizeOfHeapCommit" / word,
        "LoaderFlags" / Int32ul,
        "NumberOfRvaAndSizes" / Int32ul,
    )


IMAGE_OPTIONAL_HEADER = Struct(
    "Magic" / Int16ul,
    "common" / _OPTIONAL_COMMON,
    "BaseOfData" / Switch(this.Magic, {PE32_MAGIC: Int32ul}, default=Struct()),
    "windows" / Switch(this.Magic, {PE32_MAGIC: _windows_fields(Int32ul),
                                    PE32PLUS_MAGIC: _windows_fields(Int64ul)}),
)

IMAGE_SECTION_HEADER = Struct(
    "Name" / Bytes(8),
    "VirtualSize" / Int32ul,
    "VirtualAddress" / Int32ul,
    "SizeOfRawData" / Int32ul,
    "PointerToRawData" / Int32ul,
    "PointerToRelocations" / Int32ul,
    "PointerToLinenumbers" / Int32ul,
    "NumberOfRelocations" / Int16ul,
    "NumberOfLinenumbers" / Int16ul,
    "Characteristics" / Int32ul,
)                                             # 40 bytes

IMAGE_DEBUG_DIRECTORY = Struct(
    "Characteristics" / Int32ul,
    "TimeDateStamp" / Int32ul,
    "MajorVersion" / Int16ul,
    "MinorVersion" / Int16ul,
    "Type" / Int32ul,
    "SizeOfData" / Int32ul,
    "AddressOfRawData" / Int32ul,
    "PointerToRawData" / Int32ul,
)                                             # 28 bytes

CV_INFO_PDB70 = Struct(
    "CvSignature" / Const(CODEVIEW_RSDS),
    "Data1" / Int32ul,
    "Data2" / Int16ul,
    "Data3" / Int16ul,
    "Data4" / Bytes(8),
    "Age" / Int32ul,
)                                             # followed by the zero-terminated PDB path
CV_INFO_PDB70_SIZE = 24

IMAGE_EXPORT_DIRECTORY = Struct(
    "Characteristics" / Int32ul,
    "TimeDateStamp" / Int32ul,
    "MajorVersion" / Int16ul,
    "MinorVersion" / Int16ul,
    "Name" / Int32ul,
    "Base" / Int32ul,
    "NumberOfFunctions" / Int32ul,
    "NumberOfNames" / Int32ul,
    "AddressOfFunctions" / Int32ul,
    "AddressOfNames" / Int32ul,
    "AddressOfNameOrdinals" / Int32ul,
)                                             # 40 bytes

IMAGE_RESOURCE_DIRECTORY = Struct(
    "Characteristics" / Int32ul,
    "TimeDateStamp" / Int32ul,
    "MajorVersion" / Int16ul,
    "MinorVersion" / Int16ul,
    "NumberOfNamedEntries" / Int16ul,
    "NumberOfIdEntries" / Int16ul,
)                                             # 16 bytes, then 8-byte entries
IMAGE_RESOURCE_DIRECTORY_ENTRY = Struct("Name" / Int32ul, "OffsetToData" / Int32ul)
IMAGE_RESOURCE_DATA_ENTRY = Struct("OffsetToData" / Int32ul, "Size" / Int32ul,
                                   "CodePage" / Int32ul, "Reserved" / Int32ul)
#: VS_FIXEDFILEINFO (winver.h / "VS_FIXEDFILEINFO structure" docs), found inside VS_VERSIONINFO.
VS_FIXEDFILEINFO = Struct(
    "dwSignature" / Int32ul,
    "dwStrucVersion" / Int32ul,
    "dwFileVersionMS" / Int32ul,
    "dwFileVersionLS" / Int32ul,
    "dwProductVersionMS" / Int32ul,
    "dwProductVersionLS" / Int32ul,
)

#: Reads `size` bytes at an RVA of the image (raises MemoryReadError / returns short data).
RvaReader = Callable[[int, int], bytes]


class PeSection(NamedTuple):
    """One section header of a PE image (IMAGE_SECTION_HEADER): name, where it lies in memory and in
    the file."""

    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    characteristics: int


class CodeViewInfo(NamedTuple):
    """The RSDS record: PDB file name, GUID (32 upper-case hex, ISF/symbol-server form), age."""

    pdb_name: str
    guid: str
    age: int

    @property
    def symbol_id(self) -> str:
        """`<GUID><AGE>` as symbol servers name the PDB folder (age in hex)."""
        return "%s%X" % (self.guid, self.age)

    @property
    def isf_name(self) -> str:
        """File name of the matching ISF: `<GUID>-<AGE>.json.xz`."""
        return "%s-%d.json.xz" % (self.guid, self.age)


@dataclass
class PeInfo:
    """What the readers need from a PE image's headers: machine, identity (timestamp, size, CodeView),
    sections."""

    machine: int
    timestamp: int
    size_of_image: int
    image_base: int               # ImageBase from the optional header (preferred base)
    entry_point: int
    checksum: int
    is_64: bool
    sections: List[PeSection] = field(default_factory=list)
    data_directories: List[Tuple[int, int]] = field(default_factory=list)
    debug_codeview: Optional[CodeViewInfo] = None
    notes: List[str] = field(default_factory=list)
    _reader: Optional[RvaReader] = field(default=None, repr=False, compare=False)

    def export_rva(self, name: str) -> Optional[int]:
        """RVA of an exported name (binary search of the sorted name table), None if absent."""
        if self._reader is None or len(self.data_directories) <= IMAGE_DIRECTORY_ENTRY_EXPORT:
            return None
        rva, size = self.data_directories[IMAGE_DIRECTORY_ENTRY_EXPORT]
        if not rva or size < IMAGE_EXPORT_DIRECTORY.sizeof():
            return None
        read = self._reader
        raw = read(rva, IMAGE_EXPORT_DIRECTORY.sizeof())
        if len(raw) < IMAGE_EXPORT_DIRECTORY.sizeof():
            return None
        exp = IMAGE_EXPORT_DIRECTORY.parse(raw)
        count = min(exp.NumberOfNames, MAX_EXPORT_NAMES)
        if not count:
            return None
        names = read(exp.AddressOfNames, count * 4)
        target = name.encode("ascii", "replace")
        lo, hi = 0, count - 1
        while lo <= hi:                       # bounded: log2(65536) = 16 steps
            mid = (lo + hi) // 2
            name_rva = int.from_bytes(names[mid * 4:mid * 4 + 4], "little")
            probe = _c_string(read, name_rva, 256)
            if probe == target:
                ordinal = int.from_bytes(read(exp.AddressOfNameOrdinals + mid * 2, 2), "little")
                if ordinal >= exp.NumberOfFunctions:
                    return None
                return int.from_bytes(read(exp.AddressOfFunctions + ordinal * 4, 4), "little")
            if probe < target:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    # Convenience views of the CodeView record (names other layers look up with getattr).
    @property
    def pdb_guid(self) -> Optional[str]:
        return self.debug_codeview.guid if self.debug_codeview else None

    @property
    def pdb_age(self) -> Optional[int]:
        return self.debug_codeview.age if self.debug_codeview else None

    @property
    def pdb_name(self) -> Optional[str]:
        return self.debug_codeview.pdb_name if self.debug_codeview else None

    @property
    def file_version(self) -> Optional[str]:
        """"major.minor.build.revision" from the RT_VERSION resource (None when unreadable)."""
        if self._reader is None or len(self.data_directories) <= IMAGE_DIRECTORY_ENTRY_RESOURCE:
            return None
        try:
            return _file_version(self._reader, *self.data_directories[
                IMAGE_DIRECTORY_ENTRY_RESOURCE])
        except (MemoryReadError, DumpFormatError):
            return None

    @property
    def is_kernel(self) -> bool:
        """True when the CodeView record names a kernel PDB (x64, or x86 PAE/non-PAE)."""
        cv = self.debug_codeview
        return cv is not None and cv.pdb_name.lower() in KERNEL_PDB_NAMES

    def section(self, name: str) -> Optional[PeSection]:
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None


def _resource_child(read: RvaReader, root: int, directory: int,
                    wanted_id: Optional[int]) -> Optional[int]:
    """Offset (from the resource root) of the entry with `wanted_id` (or the first entry)."""
    raw = read(root + directory, IMAGE_RESOURCE_DIRECTORY.sizeof())
    if len(raw) < IMAGE_RESOURCE_DIRECTORY.sizeof():
        return None
    head = IMAGE_RESOURCE_DIRECTORY.parse(raw)
    count = min(head.NumberOfNamedEntries + head.NumberOfIdEntries, MAX_RESOURCE_ENTRIES)
    entries = read(root + directory + 16, count * 8)
    for i in range(len(entries) // 8):
        entry = IMAGE_RESOURCE_DIRECTORY_ENTRY.parse(entries[i * 8:i * 8 + 8])
        if wanted_id is None or entry.Name == wanted_id:
            return entry.OffsetToData
    return None


def _file_version(read: RvaReader, root: int, size: int) -> Optional[str]:
    """RT_VERSION -> first name -> first language -> VS_VERSIONINFO -> VS_FIXEDFILEINFO."""
    if not root or not size:
        return None
    offset: Optional[int] = 0
    for level, wanted in enumerate((RT_VERSION, None, None)):
        offset = _resource_child(read, root, offset or 0, wanted)
        if offset is None:
            return None
        is_directory = bool(offset & 0x80000000)
        offset &= 0x7FFFFFFF
        if is_directory != (level < 2):
            return None
    data_entry = IMAGE_RESOURCE_DATA_ENTRY.parse(read(root + (offset or 0), 16))
    blob = read(data_entry.OffsetToData, min(data_entry.Size, 0x200))
    at = blob.find(VS_FFI_SIGNATURE.to_bytes(4, "little"))
    if at < 0 or len(blob) < at + VS_FIXEDFILEINFO.sizeof():
        return None
    ffi = VS_FIXEDFILEINFO.parse(blob[at:])
    return "%d.%d.%d.%d" % (ffi.dwFileVersionMS >> 16, ffi.dwFileVersionMS & 0xFFFF,
                            ffi.dwFileVersionLS >> 16, ffi.dwFileVersionLS & 0xFFFF)


def _c_string(read: RvaReader, rva: int, limit: int) -> bytes:
    data = read(rva, limit)
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def format_guid(data1: int, data2: int, data3: int, data4: bytes) -> str:
    """GUID as 32 upper-case hex digits (Data1-3 as numbers, Data4 as bytes), the ISF form."""
    return "%08X%04X%04X%s" % (data1, data2, data3, data4.hex().upper())


def parse_codeview(record: bytes) -> CodeViewInfo:
    """Decode an RSDS record (bytes starting with "RSDS")."""
    if len(record) < CV_INFO_PDB70_SIZE or record[:4] != CODEVIEW_RSDS:
        raise DumpFormatError("not a CodeView RSDS record")
    cv = CV_INFO_PDB70.parse(record)
    raw_name = record[CV_INFO_PDB70_SIZE:CV_INFO_PDB70_SIZE + MAX_PDB_NAME]
    end = raw_name.find(b"\0")
    name = (raw_name if end < 0 else raw_name[:end]).decode("utf-8", "replace")
    return CodeViewInfo(pdb_name=name, guid=format_guid(cv.Data1, cv.Data2, cv.Data3, cv.Data4),
                        age=cv.Age)


def _parse(header: bytes, read: RvaReader, where: str) -> PeInfo:
    if header[:2] != IMAGE_DOS_SIGNATURE:
        raise DumpFormatError("no PE image at %s: no MZ signature" % where)
    if len(header) < 0x40:
        raise DumpFormatError("no PE image at %s: %d bytes, too short for a DOS header"
                              % (where, len(header)))
    lfanew = IMAGE_DOS_HEADER.parse(header).e_lfanew
    if lfanew < 0x40 or lfanew > MAX_HEADER_READ - 24:
        raise DumpFormatError("no PE image at %s: e_lfanew 0x%x is out of range" % (where, lfanew))
    if len(header) < lfanew + 24:
        raise DumpFormatError("PE image at %s: headers end after %d bytes" % (where, len(header)))
    if header[lfanew:lfanew + 4] != IMAGE_NT_SIGNATURE:
        raise DumpFormatError("no PE image at %s: no PE signature at +0x%x" % (where, lfanew))
    fh_at = lfanew + 4
    fh = IMAGE_FILE_HEADER.parse(header[fh_at:fh_at + 20])
    opt_at = fh_at + 20
    opt_raw = header[opt_at:opt_at + fh.SizeOfOptionalHeader]
    if len(opt_raw) < 2:
        raise DumpFormatError("PE image at %s: optional header is missing" % where)
    magic = int.from_bytes(opt_raw[:2], "little")
    if magic not in (PE32_MAGIC, PE32PLUS_MAGIC):
        raise DumpFormatError("PE image at %s: optional header magic 0x%x is neither PE32 nor "
                              "PE32+" % (where, magic))
    try:
        opt = IMAGE_OPTIONAL_HEADER.parse(opt_raw)
    except Exception:
        raise DumpFormatError("PE image at %s: optional header is truncated (%d bytes)"
                              % (where, len(opt_raw))) from None
    win = opt.windows
    dirs_at = 2 + _OPTIONAL_COMMON.sizeof() + (4 if magic == PE32_MAGIC else 0) + \
        _windows_fields(Int32ul if magic == PE32_MAGIC else Int64ul).sizeof()
    ndirs = min(win.NumberOfRvaAndSizes, MAX_DATA_DIRECTORIES,
                max(0, (len(opt_raw) - dirs_at) // 8))
    dirs = [(d.VirtualAddress, d.Size) for d in
            Array(ndirs, IMAGE_DATA_DIRECTORY).parse(opt_raw[dirs_at:dirs_at + ndirs * 8])]
    info = PeInfo(machine=fh.Machine, timestamp=fh.TimeDateStamp, size_of_image=win.SizeOfImage,
                  image_base=win.ImageBase, entry_point=opt.common.AddressOfEntryPoint,
                  checksum=win.CheckSum, is_64=magic == PE32PLUS_MAGIC, data_directories=dirs,
                  _reader=read)
    if fh.NumberOfSections > MAX_SECTIONS:
        raise DumpFormatError("PE image at %s: %d sections (the limit is %d)"
                              % (where, fh.NumberOfSections, MAX_SECTIONS))
    sec_at = opt_at + fh.SizeOfOptionalHeader
    sec_raw = header[sec_at:sec_at + fh.NumberOfSections * 40]
    if len(sec_raw) < fh.NumberOfSections * 40:
        try:
            sec_raw = read(sec_at, fh.NumberOfSections * 40)
        except MemoryReadError as err:
            info.notes.append("section table unreadable: %s" % err.fault)
            sec_raw = b""
    for i in range(len(sec_raw) // 40):
        s = IMAGE_SECTION_HEADER.parse(sec_raw[i * 40:i * 40 + 40])
        info.sections.append(PeSection(
            name=s.Name.split(b"\0", 1)[0].decode("latin-1"), virtual_address=s.VirtualAddress,
            virtual_size=s.VirtualSize, raw_offset=s.PointerToRawData,
            raw_size=s.SizeOfRawData, characteristics=s.Characteristics))
    _add_codeview(info, read)
    return info


def _add_codeview(info: PeInfo, read: RvaReader) -> None:
    if len(info.data_directories) <= IMAGE_DIRECTORY_ENTRY_DEBUG:
        return
    rva, size = info.data_directories[IMAGE_DIRECTORY_ENTRY_DEBUG]
    if not rva or not size:
        return
    count = min(size // IMAGE_DEBUG_DIRECTORY.sizeof(), MAX_DEBUG_ENTRIES)
    try:
        raw = read(rva, count * IMAGE_DEBUG_DIRECTORY.sizeof())
        for i in range(len(raw) // 28):
            entry = IMAGE_DEBUG_DIRECTORY.parse(raw[i * 28:i * 28 + 28])
            if entry.Type != IMAGE_DEBUG_TYPE_CODEVIEW or entry.SizeOfData < CV_INFO_PDB70_SIZE:
                continue
            record = read(entry.AddressOfRawData,
                          min(entry.SizeOfData, CV_INFO_PDB70_SIZE + MAX_PDB_NAME))
            if record[:4] == CODEVIEW_RSDS:
                info.debug_codeview = parse_codeview(record)
                return
    except MemoryReadError as err:
        info.notes.append("debug directory unreadable: %s" % err.fault)


def parse_pe_headers(data: bytes, mapped: bool = True) -> PeInfo:
    """Parse a PE image held in `data`: a mapped image (RVA = offset) or, with
    `mapped=False`, a PE file (RVAs converted through the section table)."""
    view = bytes(data)

    def read_mapped(rva: int, size: int) -> bytes:
        return view[rva:rva + size]

    info = _parse(view[:MAX_HEADER_READ], read_mapped, "offset 0")
    if not mapped:
        sections = list(info.sections)

        def read_file(rva: int, size: int) -> bytes:
            for sec in sections:
                if sec.virtual_address <= rva < sec.virtual_address + max(sec.virtual_size,
                                                                          sec.raw_size):
                    start = sec.raw_offset + rva - sec.virtual_address
                    return view[start:start + size]
            return view[rva:rva + size]     # headers
        info = _parse(view[:MAX_HEADER_READ], read_file, "offset 0")
    return info


def read_pe_info(space: AddressSpace, base: int) -> PeInfo:
    """Parse the PE image mapped at virtual address `base` in `space`, once per space.

    The result is kept in the space's memo (the target's info, the layout choice and the
    type-table scan all ask for the kernel's headers; they are parsed once per run) until the
    space drops its caches. Raises MemoryReadError when the header page cannot be read,
    DumpFormatError when it is not a PE image (failures are not kept). Unreadable debug data is
    a note, not an error.
    """
    memo = space.memo()
    key = ("pe headers", base)
    found = memo.get(key)
    if found is None:
        found = memo[key] = _read_pe_info(space, base)
    return found


def _read_pe_info(space: AddressSpace, base: int) -> PeInfo:
    header, fault = space.read_partial(base, MAX_HEADER_READ)
    if fault is not None and len(header) < 0x40:
        raise MemoryReadError(fault, len(header))

    def read(rva: int, size: int) -> bytes:
        return space.read(base + rva, size)

    return _parse(header, read, "0x%x" % base)
