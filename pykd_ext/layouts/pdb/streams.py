"""The PDB's identity and its global symbols: PDB info stream, DBI stream, section headers,
OMAP and the symbol-record stream.

Why here and not in the converter: `symbols fetch` needs only the identity (GUID, age, machine)
of a downloaded file to check it is the one asked for; the converter needs the symbols too.

Format facts: LLVM `llvm/DebugInfo/PDB/Native/RawTypes.h` (InfoStreamHeader, DbiStreamHeader),
https://llvm.org/docs/PDB/PdbStream.html, DbiStream.html (substream order, optional debug header
stream indices), PublicStream.html / GlobalStream.html; symbol records from LLVM
`CodeViewSymbols.def` and `SymbolRecordMapping.cpp` (S_PUB32: u32 flags, u32 offset, u16 segment,
name; S_GDATA32/S_LDATA32: u32 type, u32 offset, u16 segment, name); IMAGE_SECTION_HEADER from
the PE/COFF specification (40 bytes). The RVA of `segment:offset` is the section's VirtualAddress
plus the offset; with OMAP (reordered images) it is mapped through OmapFromSrc, as DIA does.
"""
import bisect
import struct
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from construct import Bytes, Int16ul, Int32sl, Int32ul, Struct

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.pdb import cvconst as cv
from pykd_ext.layouts.pdb.msf import MsfFile

PDB_INFO_STREAM = 1
TPI_STREAM = 2
DBI_STREAM = 3

INFO_STREAM_HEADER = Struct(          # RawTypes.h: InfoStreamHeader
    "Version" / Int32ul,              # +0x00 20000404 (VC70) in current PDBs
    "Signature" / Int32ul,            # +0x04 time stamp
    "Age" / Int32ul,                  # +0x08
    "Guid" / Bytes(16),               # +0x0c GUID as stored (Data1..3 little-endian)
)
INFO_STREAM_HEADER_SIZE = 28

DBI_STREAM_HEADER = Struct(           # RawTypes.h: DbiStreamHeader (64 bytes)
    "VersionSignature" / Int32sl,     # +0x00 -1
    "VersionHeader" / Int32ul,        # +0x04 19990903 (V70)
    "Age" / Int32ul,                  # +0x08 the age the executable's RSDS record carries
    "GlobalSymbolStreamIndex" / Int16ul,
    "BuildNumber" / Int16ul,
    "PublicSymbolStreamIndex" / Int16ul,
    "PdbDllVersion" / Int16ul,
    "SymRecordStreamIndex" / Int16ul,  # +0x14
    "PdbDllRbld" / Int16ul,
    "ModiSubstreamSize" / Int32sl,     # +0x18 substreams follow the header in this order
    "SecContrSubstreamSize" / Int32sl,
    "SectionMapSize" / Int32sl,
    "FileInfoSize" / Int32sl,
    "TypeServerSize" / Int32sl,
    "MFCTypeServerIndex" / Int32ul,
    "OptionalDbgHeaderSize" / Int32sl,  # +0x30
    "ECSubstreamSize" / Int32sl,        # +0x34
    "Flags" / Int16ul,
    "MachineType" / Int16ul,            # +0x3a IMAGE_FILE_MACHINE_*
    "Padding" / Int32ul,
)
DBI_STREAM_HEADER_SIZE = 64
#: OptionalDbgHeader: u16 stream numbers, in this order (0xFFFF = absent)
DBG_HEADER_STREAMS = ("FPO", "Exception", "Fixup", "OmapToSrc", "OmapFromSrc", "SectionHdr",
                      "TokenRidMap", "Xdata", "Pdata", "NewFPO", "SectionHdrOrig")
NO_STREAM = 0xFFFF

IMAGE_SECTION_HEADER = struct.Struct("<8sIIIIIIHHI")   # Name, VirtualSize, VirtualAddress, ...
_RECORD_HEAD = struct.Struct("<HH")                    # symbol record: u16 length, u16 kind
_DATA_SYMBOL = struct.Struct("<IIH")                   # flags|type, offset, segment

#: bounds: symbol names are at most a record long; sections are few
MAX_SECTIONS = 1 << 16
MAX_SYMBOL_RECORDS = 1 << 24


@dataclass
class PdbIdentity:
    """What identifies a PDB on a symbol server and in the executable's RSDS record."""

    guid: str                          # 32 upper-case hex digits, symbol-server form
    age: int                           # DBI age (matches the RSDS record), else the info age
    info_age: int                      # the PDB info stream's own age
    signature: int
    machine: Optional[int] = None      # IMAGE_FILE_MACHINE_* from the DBI header

    @property
    def symbol_id(self) -> str:
        """`<GUID><AGE>`: the folder name in a symbol store (age in hex, no leading zeros)."""
        return "%s%X" % (self.guid, self.age)


@dataclass
class DbiInfo:
    """What the PDB's DBI stream header says that the converter uses: age, machine, symbol and debug
    streams."""

    age: int
    machine: int
    sym_record_stream: int
    dbg_streams: Dict[str, int] = field(default_factory=dict)


def _bad(path: str, what: str) -> LayoutError:
    return LayoutError("malformed PDB: %s" % what, path=path)


def guid_text(raw: bytes) -> str:
    """A stored GUID as symbol servers and ISF files spell it: 32 upper-case hex digits."""
    return uuid.UUID(bytes_le=bytes(raw)).hex.upper()


def read_dbi(msf: MsfFile) -> Optional[DbiInfo]:
    """The DBI header and its optional debug-header stream numbers (None: no DBI stream)."""
    if not msf.has_stream(DBI_STREAM):
        return None
    data = msf.stream(DBI_STREAM, "DBI stream")
    if len(data) < DBI_STREAM_HEADER_SIZE:
        raise _bad(msf.path, "DBI stream of %d bytes has no header" % len(data))
    head = DBI_STREAM_HEADER.parse(data[:DBI_STREAM_HEADER_SIZE])
    sizes = (head.ModiSubstreamSize, head.SecContrSubstreamSize, head.SectionMapSize,
             head.FileInfoSize, head.TypeServerSize, head.ECSubstreamSize,
             head.OptionalDbgHeaderSize)
    if any(s < 0 for s in sizes) or DBI_STREAM_HEADER_SIZE + sum(sizes) > len(data):
        raise _bad(msf.path, "DBI substream sizes %s exceed the stream's %d bytes"
                   % (list(sizes), len(data)))
    dbg_at = DBI_STREAM_HEADER_SIZE + sum(sizes[:-1])
    dbg_raw = data[dbg_at:dbg_at + head.OptionalDbgHeaderSize]
    streams: Dict[str, int] = {}
    for i, name in enumerate(DBG_HEADER_STREAMS):
        if 2 * i + 2 <= len(dbg_raw):
            number = int.from_bytes(dbg_raw[2 * i:2 * i + 2], "little")
            if number != NO_STREAM:
                streams[name] = number
    return DbiInfo(age=head.Age, machine=head.MachineType,
                   sym_record_stream=head.SymRecordStreamIndex, dbg_streams=streams)


def read_identity(msf: MsfFile, dbi: Optional[DbiInfo] = None) -> PdbIdentity:
    """GUID, ages and machine of a PDB."""
    data = msf.stream(PDB_INFO_STREAM, "PDB info stream", limit=1 << 20)
    if len(data) < INFO_STREAM_HEADER_SIZE:
        raise _bad(msf.path, "PDB info stream of %d bytes (needs %d)" % (len(data), INFO_STREAM_HEADER_SIZE))
    head = INFO_STREAM_HEADER.parse(data[:INFO_STREAM_HEADER_SIZE])
    if dbi is None:
        dbi = read_dbi(msf)
    # the DBI age is the one the executable's RSDS record names (the info stream's may be
    # bumped by later incremental links); without a DBI stream the info age is all there is
    age = dbi.age if dbi is not None and dbi.age else head.Age
    return PdbIdentity(guid=guid_text(head.Guid), age=age, info_age=head.Age,
                       signature=head.Signature, machine=dbi.machine if dbi is not None else None)


def read_sections(msf: MsfFile, dbi: DbiInfo) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Section virtual addresses (index = segment - 1) and the OMAP-from-source table.

    Original (pre-reordering) section headers and OmapFromSrc go together; without them the
    plain section headers describe the image as it is.
    """
    omap: List[Tuple[int, int]] = []
    number = dbi.dbg_streams.get("SectionHdrOrig")
    if number is None or not msf.has_stream(number):
        number = dbi.dbg_streams.get("SectionHdr")
    else:
        omap_stream = dbi.dbg_streams.get("OmapFromSrc")
        if omap_stream is not None and msf.has_stream(omap_stream):
            raw = msf.stream(omap_stream, "OMAP stream")
            omap = [(a, b) for a, b in struct.iter_unpack("<II", raw[:len(raw) - len(raw) % 8])]
            omap.sort()
    if number is None or not msf.has_stream(number):
        return [], omap
    raw = msf.stream(number, "section header stream")
    count = len(raw) // IMAGE_SECTION_HEADER.size
    if count > MAX_SECTIONS:
        raise _bad(msf.path, "%d section headers" % count)
    addresses = [IMAGE_SECTION_HEADER.unpack_from(raw, i * IMAGE_SECTION_HEADER.size)[2]
                 for i in range(count)]
    return addresses, omap


def _omap_lookup(omap: List[Tuple[int, int]], rva: int) -> int:
    pos = bisect.bisect_right(omap, (rva, 0xFFFFFFFF)) - 1
    if pos < 0 or omap[pos][1] == 0:
        return 0
    return omap[pos][1] + (rva - omap[pos][0])


def read_symbols(msf: MsfFile, dbi: DbiInfo) -> Dict[str, Tuple[int, str]]:
    """Name -> (RVA, linkage name) of every public and global data symbol.

    When two records name the same symbol, a public (S_PUB32) wins over global data, global
    over file-static data (S_LDATA32), and the first of a kind over later ones.
    """
    if not msf.has_stream(dbi.sym_record_stream):
        return {}
    sections, omap = read_sections(msf, dbi)
    data = msf.stream(dbi.sym_record_stream, "symbol record stream")
    found: Dict[str, Tuple[int, int, str]] = {}       # shown name -> (precedence, rva, linkage)
    pos, end, records = 0, len(data), 0
    while pos + 4 <= end:
        records += 1
        if records > MAX_SYMBOL_RECORDS:
            raise _bad(msf.path, "more than %d symbol records" % MAX_SYMBOL_RECORDS)
        length, kind = _RECORD_HEAD.unpack_from(data, pos)
        if length < 2 or pos + 2 + length > end:
            raise _bad(msf.path, "symbol record at %d has length %d" % (pos, length))
        spec = cv.ADDRESS_SYMBOLS.get(kind)
        if spec is not None and length >= 2 + _DATA_SYMBOL.size + 1:
            precedence, pascal = spec
            _flags, offset, segment = _DATA_SYMBOL.unpack_from(data, pos + 4)
            name_at, rec_end = pos + 4 + _DATA_SYMBOL.size, pos + 2 + length
            if pascal:
                n = data[name_at]
                raw = data[name_at + 1:min(name_at + 1 + n, rec_end)]
            else:
                stop = data.find(b"\x00", name_at, rec_end)
                raw = data[name_at:stop if stop >= 0 else rec_end]
            if raw and 0 < segment <= len(sections):
                rva = sections[segment - 1] + offset
                if omap:
                    rva = _omap_lookup(omap, rva)
                linkage = raw.decode("utf-8", "replace")
                shown = strip_decoration(linkage)
                prev = found.get(shown)
                if prev is None or precedence < prev[0]:
                    found[shown] = (precedence, rva, linkage)
        pos += 2 + length
    return {name: (rva, linkage) for name, (_p, rva, linkage) in found.items()}


def strip_decoration(name: str) -> str:
    """A C symbol's plain name, as Volatility's pdbconv spells ISF symbols: one leading `_`,
    `@` or DEL dropped (x86 cdecl/fastcall), a trailing `@<bytes>` (stdcall) dropped; C++
    decorated names (`?...`) are kept whole."""
    plain = name
    if plain[:1] in ("_", "@", "\x7f"):
        plain = plain[1:]
    parts = plain.split("@")
    if len(parts) == 2 and parts[0] and parts[1].isdigit() and parts[0][0] != "?":
        return parts[0]
    if len(parts) == 2:
        return name
    return plain
