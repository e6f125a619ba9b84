"""Cabinet (.cab) files as symbol servers send them (`ntkrnlmp.pd_`): one file, stored or MSZIP.

Why our own: Python's standard library reads no CAB (msilib only writes them, on Windows, and
is gone in 3.13); the maintained pure-Python `cabarchive` would be a dependency for ~150 lines.
SymStore compresses with MSZIP (makecab's default); LZX and Quantum folders are refused with a
clear error rather than guessed at.

Format facts: Microsoft "Cabinet File Format" ([MS-CAB]): CFHEADER ('MSCF', sizes, folder and
file counts, flags 0x1 previous cabinet / 0x2 next cabinet / 0x4 reserve fields present),
CFFOLDER (offset of its first CFDATA, block count, compression type), CFFILE (size, offset in
the uncompressed folder, folder index, name), CFDATA (checksum, compressed and uncompressed
size, data). MSZIP ([MS-MCI]): each block is 'CK' followed by a raw deflate stream of at most
32 KiB of output, whose history window is the previous block's output.

Bounded: every offset and count is checked against the file, the total output against a
caller's limit (a 10 KiB cabinet cannot become 10 GiB), each block against 32 KiB.
"""
import struct
import zlib
from typing import BinaryIO, Callable, List, Optional, Tuple

from construct import Bytes, Int8ul, Int16ul, Int32ul, Struct

from pykd_ext.errors import PykdExtError

CAB_SIGNATURE = b"MSCF"
CFHEADER = Struct(                   # [MS-CAB] 2.1 CFHEADER (fixed part, 36 bytes)
    "signature" / Bytes(4),
    "reserved1" / Int32ul,
    "cbCabinet" / Int32ul,           # size of the whole cabinet
    "reserved2" / Int32ul,
    "coffFiles" / Int32ul,           # offset of the first CFFILE
    "reserved3" / Int32ul,
    "versionMinor" / Int8ul,
    "versionMajor" / Int8ul,         # 1
    "cFolders" / Int16ul,
    "cFiles" / Int16ul,
    "flags" / Int16ul,
    "setID" / Int16ul,
    "iCabinet" / Int16ul,
)
CFHEADER_SIZE = 36
FLAG_PREV_CABINET, FLAG_NEXT_CABINET, FLAG_RESERVE_PRESENT = 0x1, 0x2, 0x4
CFFOLDER = struct.Struct("<IHH")     # coffCabStart, cCFData, typeCompress
CFFILE = struct.Struct("<IIHHHH")    # cbFile, uoffFolderStart, iFolder, date, time, attribs
CFDATA = struct.Struct("<IHH")       # csum, cbData, cbUncomp
COMPRESS_NONE, COMPRESS_MSZIP = 0, 1
COMPRESS_NAMES = {0: "none", 1: "MSZIP", 2: "Quantum", 3: "LZX"}
MSZIP_SIGNATURE = b"CK"
MSZIP_BLOCK = 32768
MAX_MEMBERS = 1024


class CabError(PykdExtError):
    """A cabinet we cannot (or will not) unpack."""


def is_cab(head: bytes) -> bool:
    return head[:4] == CAB_SIGNATURE


class _Reader:
    def __init__(self, fh: BinaryIO, size: int, path: str) -> None:
        self.fh = fh
        self.size = size
        self.path = path

    def bad(self, what: str) -> CabError:
        return CabError("malformed cabinet: %s" % what, path=self.path or None)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.bad("%d bytes at %d lie beyond its %d bytes" % (length, offset, self.size))
        self.fh.seek(offset)
        data = self.fh.read(length)
        if len(data) != length:
            raise self.bad("ends at %d, inside data at %d" % (offset + len(data), offset))
        return data

    def c_string(self, offset: int, limit: int = 256) -> Tuple[str, int]:
        raw = self.read(offset, min(limit, self.size - offset))
        end = raw.find(b"\x00")
        if end < 0:
            raise self.bad("a name at %d has no end" % offset)
        return raw[:end].decode("latin-1"), offset + end + 1


def list_members(fh: BinaryIO, size: int, path: str = "") -> List[Tuple[str, int]]:
    """(name, size) of every file in a cabinet."""
    reader = _Reader(fh, size, path)
    _folders, files, _reserve = _directory(reader)
    return [(name, length) for name, length, _off, _folder in files]


def _directory(reader: _Reader) -> Tuple[List[Tuple[int, int, int]], List[Tuple[str, int, int, int]], int]:
    """(folders, files, per-CFDATA reserve bytes) of a single-file-set cabinet."""
    head = reader.read(0, min(CFHEADER_SIZE, reader.size))
    if not is_cab(head):
        raise CabError("not a cabinet (no MSCF signature)", path=reader.path or None)
    if len(head) < CFHEADER_SIZE:
        raise reader.bad("ends inside its header (%d bytes)" % len(head))
    hdr = CFHEADER.parse(head)
    if hdr.versionMajor != 1:
        raise reader.bad("format version %d.%d" % (hdr.versionMajor, hdr.versionMinor))
    if hdr.flags & (FLAG_PREV_CABINET | FLAG_NEXT_CABINET):
        raise CabError("a cabinet spanning several files is not supported", path=reader.path or None)
    if hdr.cbCabinet > reader.size:
        raise reader.bad("claims %d bytes, the file has %d" % (hdr.cbCabinet, reader.size))
    if not 0 < hdr.cFolders <= MAX_MEMBERS or not 0 < hdr.cFiles <= MAX_MEMBERS:
        raise reader.bad("%d folders, %d files" % (hdr.cFolders, hdr.cFiles))
    pos = CFHEADER_SIZE
    folder_reserve = data_reserve = 0
    if hdr.flags & FLAG_RESERVE_PRESENT:
        cb_header, folder_reserve, data_reserve = struct.unpack("<HBB", reader.read(pos, 4))
        pos += 4 + cb_header
    folders: List[Tuple[int, int, int]] = []
    for _ in range(hdr.cFolders):
        folders.append(CFFOLDER.unpack(reader.read(pos, CFFOLDER.size)))
        pos += CFFOLDER.size + folder_reserve
    files: List[Tuple[str, int, int, int]] = []
    pos = hdr.coffFiles
    for _ in range(hdr.cFiles):
        length, offset, folder, _date, _time, _attrs = CFFILE.unpack(reader.read(pos, CFFILE.size))
        name, pos = reader.c_string(pos + CFFILE.size)
        if folder >= len(folders):
            raise reader.bad("file %r in folder %d of %d" % (name, folder, len(folders)))
        files.append((name, length, offset, folder))
    return folders, files, data_reserve


def extract(fh: BinaryIO, size: int, out: Callable[[bytes], None], max_output: int,
            member: Optional[str] = None, path: str = "") -> Tuple[str, int]:
    """Unpack one file of a cabinet (the only one, or `member`) through `out(chunk)`.

    Returns (name, size). Raises CabError for anything malformed, unsupported or larger than
    `max_output` bytes."""
    reader = _Reader(fh, size, path)
    folders, files, data_reserve = _directory(reader)
    if member is None:
        if len(files) != 1:
            raise CabError("cabinet holds %d files; which one?" % len(files), path=path or None)
        chosen = files[0]
    else:
        matches = [f for f in files if f[0].lower() == member.lower()]
        if not matches:
            raise CabError("cabinet has no %s" % member, path=path or None)
        chosen = matches[0]
    name, length, offset, folder_index = chosen
    if length > max_output:
        raise CabError("%s unpacks to %d bytes, more than the %d accepted" % (name, length, max_output),
                       path=path or None)
    first, count, compress = folders[folder_index]
    kind = compress & 0x000F
    if kind not in (COMPRESS_NONE, COMPRESS_MSZIP):
        raise CabError("%s compression is not supported (only MSZIP and stored)"
                       % COMPRESS_NAMES.get(kind, "type %d" % kind), path=path or None)
    # walk the folder's blocks; keep only the bytes of the chosen file (offset..offset+length)
    produced = written = 0
    window = b""
    pos = first
    for block in range(count):
        csum, cb_data, cb_uncomp = CFDATA.unpack(reader.read(pos, CFDATA.size))
        del csum                           # MSZIP's own CRC-less deflate is checked by zlib
        pos += CFDATA.size + data_reserve
        data = reader.read(pos, cb_data)
        pos += cb_data
        if cb_uncomp > MSZIP_BLOCK:
            raise reader.bad("block %d unpacks to %d bytes (at most %d)" % (block, cb_uncomp, MSZIP_BLOCK))
        if kind == COMPRESS_NONE:
            plain = data
        else:
            if data[:2] != MSZIP_SIGNATURE:
                raise reader.bad("MSZIP block %d has no 'CK' signature" % block)
            try:
                inflater = zlib.decompressobj(-15, zdict=window) if window else zlib.decompressobj(-15)
                plain = inflater.decompress(data[2:], MSZIP_BLOCK + 1)
            except zlib.error as err:
                raise reader.bad("MSZIP block %d: %s" % (block, err)) from None
            window = (window + plain)[-MSZIP_BLOCK:]
        if len(plain) != cb_uncomp:
            raise reader.bad("block %d gave %d bytes, its header says %d" % (block, len(plain), cb_uncomp))
        start = max(offset - produced, 0)
        stop = min(offset + length - produced, len(plain))
        if start < stop:
            out(plain[start:stop])
            written += stop - start
        produced += len(plain)
        if produced >= offset + length:
            break
    if written != length:
        raise reader.bad("%s: %d of its %d bytes are in the cabinet" % (name, written, length))
    return name, written
