"""The MSF 7.0 container of a PDB: a file of fixed-size blocks holding numbered streams.

Why a reader of our own (not a library): the maintained Python PDB libraries either pin an old
`construct` (pdbparse 1.5, 2020, and it fails on the real MSVC PDB in ../shared with a KeyError
on LF_STMEMBER) or need Python 3.12 (pdbpy); pykd-ext must run on 3.9 inside WinDbg.

Format facts: LLVM `llvm/DebugInfo/MSF/MSFCommon.h` (struct SuperBlock) and
https://llvm.org/docs/PDB/MsfFile.html: a 32-byte magic, the block size (512..4096), the block
count, the stream directory's size and the block holding the list of the directory's blocks.
The directory is `NumStreams`, `StreamSizes[NumStreams]` (0xFFFFFFFF = nil stream), then each
stream's block numbers, in stream order.

A PDB is hostile input like a dump (issue 10): every block number is checked against the file,
every stream size against the blocks that exist, the directory against its own size; a bad file
raises LayoutError with one line, never an IndexError, a MemoryError or a hang. Only regular files
are opened (a FIFO would block forever, /dev/zero has no end).
"""
import os
import stat
from typing import BinaryIO, List, Optional

from construct import Bytes, ConstructError, Int32ul, Struct

from pykd_ext.errors import LayoutError

#: the first 32 bytes of an MSF 7.0 file ("big MSF"; every PDB written since VC++ 7.0)
MSF7_MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\x00\x00\x00"
#: the first bytes of the older "small MSF" (VC++ 6 and earlier, 16-bit block numbers): refused
MSF2_MAGIC_PREFIX = b"Microsoft C/C++ program database 2.00\r\n"

SUPERBLOCK = Struct(                  # llvm/DebugInfo/MSF/MSFCommon.h: struct SuperBlock
    "MagicBytes" / Bytes(32),         # +0x00 MSF7_MAGIC
    "BlockSize" / Int32ul,            # +0x20 512, 1024, 2048 or 4096
    "FreeBlockMapBlock" / Int32ul,    # +0x24 1 or 2
    "NumBlocks" / Int32ul,            # +0x28 file size / BlockSize
    "NumDirectoryBytes" / Int32ul,    # +0x2c size of the stream directory
    "Unknown1" / Int32ul,             # +0x30
    "BlockMapAddr" / Int32ul,         # +0x34 block holding the directory's block numbers
)
SUPERBLOCK_SIZE = 0x38
BLOCK_SIZES = (512, 1024, 2048, 4096)
NIL_STREAM = 0xFFFFFFFF

#: bounds for file-controlled values. 4 GiB is the MSF 7.0 limit at 4 KiB blocks (32-bit block
#: numbers); a kernel PDB is ~10 MiB and the biggest application PDBs a few hundred MiB.
MAX_FILE_SIZE = 1 << 32
MAX_STREAMS = 1 << 16                 # stream numbers are 16-bit everywhere they are referenced
MAX_STREAM_SIZE = 1 << 30             # what one stream may hold before we refuse to read it


def is_msf(head: bytes) -> bool:
    """Whether bytes are the start of an MSF 7.0 (PDB) file."""
    return head[:len(MSF7_MAGIC)] == MSF7_MAGIC


def open_regular_file(path: str) -> BinaryIO:
    """Open a regular file for reading without ever blocking on a FIFO or a device.

    Why O_NONBLOCK: opening a FIFO for reading waits for a writer; a symbol file argument must
    fail at once instead (issue 10, defect 3).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise LayoutError("cannot open PDB: %s" % (err.strerror or err), path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LayoutError("not a regular file (a PDB must be a file)", path=path)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_pdb_file(path: str) -> bool:
    """Whether a path is a regular file starting with the MSF 7.0 signature (False for anything
    else, including unreadable and special files: the caller's own reader reports those)."""
    try:
        fh = open_regular_file(path)
    except LayoutError:
        return False
    with fh:
        return is_msf(fh.read(len(MSF7_MAGIC)))


class MsfFile:
    """The streams of one MSF 7.0 file, read on demand (block by block, bounded).

    Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open_regular_file(path)
        try:
            self.file_size = os.fstat(self._fh.fileno()).st_size
            self._read_directory()
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> "MsfFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def _bad(self, what: str) -> LayoutError:
        return LayoutError("malformed PDB: %s" % what, path=self.path)

    def _read_at(self, offset: int, size: int) -> bytes:
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise self._bad("file ends at %d, inside data expected at %d..%d"
                            % (self.file_size, offset, offset + size))
        return data

    def _read_directory(self) -> None:
        head = self._read_header()
        if head.startswith(MSF2_MAGIC_PREFIX):
            raise LayoutError("PDB 2.0 (Visual C++ 6 or older) is not supported; only MSF 7.0 PDBs",
                              path=self.path)
        if not is_msf(head):
            raise LayoutError("not a PDB file (no MSF 7.0 signature)", path=self.path)
        try:
            sb = SUPERBLOCK.parse(head)
        except ConstructError as err:    # pragma: no cover - length checked above
            raise self._bad("superblock: %s" % err) from None
        if sb.BlockSize not in BLOCK_SIZES:
            raise self._bad("block size %d (expected one of %s)" % (sb.BlockSize, BLOCK_SIZES))
        if self.file_size > MAX_FILE_SIZE:
            raise self._bad("file of %d bytes is beyond the MSF 7.0 limit" % self.file_size)
        self.block_size = bs = sb.BlockSize
        # the last block may be short in files cut at their used size; never beyond the file
        file_blocks = (self.file_size + bs - 1) // bs
        if not 0 < sb.NumBlocks <= file_blocks:
            raise self._bad("%d blocks declared, the file holds %d" % (sb.NumBlocks, file_blocks))
        self.num_blocks = sb.NumBlocks
        dir_bytes = sb.NumDirectoryBytes
        if not 4 <= dir_bytes <= self.num_blocks * bs:
            raise self._bad("stream directory of %d bytes" % dir_bytes)
        dir_blocks = (dir_bytes + bs - 1) // bs
        if dir_blocks * 4 > bs:
            raise self._bad("stream directory of %d blocks does not fit one block map" % dir_blocks)
        self._check_block(sb.BlockMapAddr, "block map")
        map_raw = self._read_at(sb.BlockMapAddr * bs, dir_blocks * 4)
        directory = self._gather([int.from_bytes(map_raw[i:i + 4], "little")
                                  for i in range(0, len(map_raw), 4)], dir_bytes, "directory")
        self._parse_directory(directory)

    def _read_header(self) -> bytes:
        self._fh.seek(0)
        head = self._fh.read(SUPERBLOCK_SIZE)
        if len(head) < SUPERBLOCK_SIZE:
            if head.startswith(MSF7_MAGIC[:len(head)]) and head:
                raise self._bad("file ends inside the superblock (%d bytes)" % len(head))
            raise LayoutError("not a PDB file (no MSF 7.0 signature)", path=self.path)
        return head

    def _check_block(self, block: int, what: str) -> None:
        if not 0 < block < self.num_blocks:
            raise self._bad("%s at block %d, outside the file's %d blocks"
                            % (what, block, self.num_blocks))

    def _parse_directory(self, raw: bytes) -> None:
        count = int.from_bytes(raw[:4], "little")
        if count > MAX_STREAMS or 4 + 4 * count > len(raw):
            raise self._bad("stream directory claims %d streams in %d bytes" % (count, len(raw)))
        sizes: List[int] = []
        for i in range(count):
            size = int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "little")
            sizes.append(0 if size == NIL_STREAM else size)
        pos = 4 + 4 * count
        bs = self.block_size
        blocks: List[List[int]] = []
        for number, size in enumerate(sizes):
            if size > self.num_blocks * bs:
                raise self._bad("stream %d of %d bytes is larger than the file" % (number, size))
            need = (size + bs - 1) // bs
            end = pos + 4 * need
            if end > len(raw):
                raise self._bad("stream directory ends inside stream %d's block list" % number)
            blocks.append([int.from_bytes(raw[j:j + 4], "little") for j in range(pos, end, 4)])
            pos = end
        self.stream_sizes = sizes
        self._stream_blocks = blocks

    def _gather(self, block_list: List[int], size: int, what: str) -> bytes:
        """The bytes of blocks in order, cut at `size`; consecutive blocks are read at once."""
        bs = self.block_size
        parts: List[bytes] = []
        i = 0
        while i < len(block_list):
            first = block_list[i]
            self._check_block(first, what)
            run = 1
            while i + run < len(block_list) and block_list[i + run] == first + run:
                self._check_block(first + run, what)
                run += 1
            want = min(run * bs, size - (i * bs))
            parts.append(self._read_at(first * bs, want))
            i += run
        data = b"".join(parts)
        if len(data) != size:
            raise self._bad("%s: %d bytes read, %d expected" % (what, len(data), size))
        return data

    @property
    def num_streams(self) -> int:
        return len(self.stream_sizes)

    def has_stream(self, number: int) -> bool:
        return 0 <= number < len(self.stream_sizes) and self.stream_sizes[number] > 0

    def stream(self, number: int, what: str = "", limit: Optional[int] = None) -> bytes:
        """The bytes of one stream; LayoutError when it does not exist or exceeds `limit`."""
        label = what or "stream %d" % number
        if not 0 <= number < len(self.stream_sizes):
            raise self._bad("%s is stream %d; the file has %d streams"
                            % (label, number, len(self.stream_sizes)))
        size = self.stream_sizes[number]
        cap = MAX_STREAM_SIZE if limit is None else min(limit, MAX_STREAM_SIZE)
        if size > cap:
            raise self._bad("%s has %d bytes, more than the %d accepted" % (label, size, cap))
        return self._gather(self._stream_blocks[number], size, label)

