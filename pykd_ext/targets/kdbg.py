"""Decode and build the kernel debugger data block (KDDEBUGGER_DATA64, "KDBG").

Why: the KDBG block is how a dump states the kernel's base, its list heads and a handful of
structure offsets/sizes (SizeEProcess, OffsetKThreadState, ...) without symbols.  Triage
minidumps carry no PDB GUID, so it is the first independent fact a reader gets about a kernel.

The layout is `pykd_ext.structs.kddebugger_data64` (generated from the committed wdbgexts.h
declaration by `pykd_ext.layouts.gen_kdbg`); field offsets here are computed from that construct
definition, never typed by hand.  The block grew over Windows releases and `Header.Size` says how
much of it a kernel filled: only fields that lie entirely within Size are decoded.

Windows 8+ *live* kernels keep the block encoded (XOR/rotate with KiWaitNever/KiWaitAlways);
crash dumps normally hold a decoded copy.  A block without the 'KDBG' owner tag is reported as
"encoded or not a KDBG block" with a typed `DumpFormatError`.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

from construct import Container, ConstructError

from pykd_ext.errors import DumpFormatError
from pykd_ext.memory.space import AddressSpace
from pykd_ext.structs.kddebugger_data64 import (DBGKD_DEBUG_DATA_HEADER64,
                                                DBGKD_DEBUG_DATA_HEADER64_SIZE,
                                                KDDEBUGGER_DATA64, KDDEBUGGER_DATA64_SIZE)

#: The owner tag of the debugger data block: the ASCII bytes 'KDBG' (wdbgexts.h KDBG_TAG).
KDBG_OWNER_TAG = b"KDBG"
KDBG_TAG_VALUE = int.from_bytes(KDBG_OWNER_TAG, "little")

#: A Size beyond this is not a KDBG block of any known Windows (the 64-bit block is 0x380 bytes
#: in Windows 10 1809+; later releases may append a little).
MAX_SANE_SIZE = 0x10000


def _field_table() -> "OrderedDict[str, Tuple[int, int, Optional[Tuple[str, int, int]]]]":
    """name -> (offset, size, bit info) computed from the construct definition.

    Bitfield groups (`_bits_0x...`) are flattened: each member maps to its storage unit's offset
    and size, with (group name, bit position, bit length).
    """
    from construct import Renamed
    table: "OrderedDict[str, Tuple[int, int, Optional[Tuple[str, int, int]]]]" = OrderedDict()
    offset = 0
    for sub in KDDEBUGGER_DATA64.subcons:
        size = sub.sizeof()
        name = getattr(sub, "name", None)
        if name and name.startswith("_bits_"):
            inner = sub.subcon.subcon.subcon  # Renamed -> ByteSwapped -> Bitwise -> Struct
            bits = size * 8
            position = bits
            for member in inner.subcons:
                width = member.sizeof()  # in bits inside a BitStruct
                position -= width
                if isinstance(member, Renamed) and member.name:
                    table[member.name] = (offset, size, (name, position, width))
        elif name:
            table[name] = (offset, size, None)
        offset += size
    if offset != KDDEBUGGER_DATA64_SIZE:
        raise AssertionError("KDDEBUGGER_DATA64 construct size 0x%x != generated 0x%x"
                             % (offset, KDDEBUGGER_DATA64_SIZE))
    return table


#: name -> (offset, size, bit info or None) for every KDDEBUGGER_DATA64 field (Header included).
KDBG_FIELDS = _field_table()


def kdbg_field_offset(name: str) -> int:
    """Byte offset of a KDDEBUGGER_DATA64 field (KeyError for unknown names)."""
    return KDBG_FIELDS[name][0]


def _header_offset(name: str) -> int:
    offset = 0
    for sub in DBGKD_DEBUG_DATA_HEADER64.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


#: Offset of Header.OwnerTag (the 'KDBG' bytes scans look for) and of KernBase in the block: how
#: a scan turns a tag it found into the block's start and checks the block names a kernel.
KDBG_TAG_OFFSET = _header_offset("OwnerTag")
KDBG_KERNBASE_OFFSET = kdbg_field_offset("KernBase")


def _flatten(parsed: Container, limit: int) -> "OrderedDict[str, int]":
    out: "OrderedDict[str, int]" = OrderedDict()
    for name, (offset, size, bits) in KDBG_FIELDS.items():
        if name == "Header" or offset + size > limit:
            continue
        if bits is not None:
            out[name] = int(parsed[bits[0]][name])
        else:
            out[name] = int(parsed[name])
    return out


def _checked_header(data: bytes, where: str) -> Tuple[Container, bytes, int]:
    """The block's header, owner tag and Size, or DumpFormatError when they are not a KDBG's."""
    if len(data) < DBGKD_DEBUG_DATA_HEADER64_SIZE:
        raise DumpFormatError("KDBG block%s: only %d bytes, its header needs %d"
                              % (where, len(data), DBGKD_DEBUG_DATA_HEADER64_SIZE))
    header = DBGKD_DEBUG_DATA_HEADER64.parse(data[:DBGKD_DEBUG_DATA_HEADER64_SIZE])
    tag = int(header.OwnerTag).to_bytes(4, "little")
    if tag != KDBG_OWNER_TAG:
        raise DumpFormatError(
            "KDBG block%s has owner tag %r instead of 'KDBG': the KDBG block is encoded (Windows 8+ "
            "live kernels encode it with KiWaitNever/KiWaitAlways) or the address is not a KDBG "
            "block" % (where, tag))
    size = int(header.Size)
    if size < kdbg_field_offset("KernBase") + 8 or size > MAX_SANE_SIZE:
        raise DumpFormatError("KDBG block%s: Header.Size 0x%x is not a plausible size "
                              "(0x%x..0x%x)" % (where, size, kdbg_field_offset("KernBase") + 8,
                                                MAX_SANE_SIZE))
    return header, tag, size


def decode_kdbg_bytes(data: bytes, address: Optional[int] = None) -> "OrderedDict[str, Any]":
    """Decode a KDBG block already in memory (see `decode_kdbg`)."""
    where = " at 0x%x" % address if address is not None else ""
    header, tag, size = _checked_header(data, where)
    limit = min(size, len(data), KDDEBUGGER_DATA64_SIZE)
    padded = bytes(data[:limit]) + bytes(KDDEBUGGER_DATA64_SIZE - limit)
    try:
        parsed = KDDEBUGGER_DATA64.parse(padded)
    except ConstructError as err:  # cannot happen on a full-size buffer; keep it typed anyway
        raise DumpFormatError("KDBG block%s: %s" % (where, err)) from None
    out: "OrderedDict[str, Any]" = OrderedDict()
    out["_owner_tag"] = tag.decode("ascii")
    out["_size"] = size
    out["_list_flink"] = int(header.List.Flink)
    out["_list_blink"] = int(header.List.Blink)
    if address is not None:
        out["_address"] = address
    if limit < min(size, KDDEBUGGER_DATA64_SIZE):
        out["_readable"] = limit
    out.update(_flatten(parsed, limit))
    return out


def decode_kdbg(space: AddressSpace, address: int, info: Any = None) -> "OrderedDict[str, Any]":
    """Read and decode the KDBG block at a virtual address.

    Returns an ordered dict: `_owner_tag` ('KDBG'), `_size` (Header.Size), `_list_flink`,
    `_list_blink`, `_address`, then every field that lies within Size, in layout order, as ints
    (e.g. `KernBase`, `PsActiveProcessHead`, `SizeEProcess`, `OffsetKThreadState`).  When the
    block is only partly readable, `_readable` says how many bytes were decoded.

    Raises `DumpFormatError` when the owner tag is not 'KDBG' (encoded block or wrong address)
    or Size is absurd; `MemoryReadError` when even the header cannot be read.  `info` (a
    TargetInfo, optional) is accepted for symmetry with other decoders; the 64-bit block layout
    is the same on x86 kernels (they store sign-extended pointers in KDDEBUGGER_DATA64).
    """
    head = space.read(address, DBGKD_DEBUG_DATA_HEADER64_SIZE)
    _header, _tag, size = _checked_header(head, " at 0x%x" % address)   # before reading more
    want = min(size, KDDEBUGGER_DATA64_SIZE)
    data, _fault = space.read_partial(address, want)
    return decode_kdbg_bytes(data, address)


def build_kdbg(values: Mapping[str, int], size: Optional[int] = None) -> bytes:
    """Bytes of a KDBG block (the forge's writer): construct `build` of the same definition.

    `values` maps field names (as returned by `decode_kdbg`, e.g. 'KernBase', 'PsActiveProcessHead',
    'SizeEProcess', 'PaeEnabled') to ints; missing fields are 0.  `_list_flink`/`_list_blink` set
    Header.List.  Header.OwnerTag is 'KDBG' and Header.Size is `size` (default: the full
    0x%x-byte block); the result is `size` bytes long (fields beyond it must be absent or 0).
    Unknown names raise ValueError (a typo would otherwise silently write 0).
    """
    size = KDDEBUGGER_DATA64_SIZE if size is None else int(size)
    if size < DBGKD_DEBUG_DATA_HEADER64_SIZE or size > MAX_SANE_SIZE:
        raise ValueError("KDBG size 0x%x out of range" % size)
    known = set(KDBG_FIELDS) - {"Header"}
    extras = {"_list_flink", "_list_blink", "_owner_tag", "_size", "_address", "_readable"}
    unknown = [name for name in values if name not in known and name not in extras]
    if unknown:
        raise ValueError("unknown KDDEBUGGER_DATA64 field(s): %s" % ", ".join(sorted(unknown)))
    beyond = [name for name in values if name in known and values[name]
              and KDBG_FIELDS[name][0] + KDBG_FIELDS[name][1] > size]
    if beyond:
        raise ValueError("field(s) beyond Size 0x%x: %s" % (size, ", ".join(beyond)))
    record: Dict[str, Any] = {}
    groups: Dict[str, Dict[str, int]] = {}
    for name, (_offset, _fsize, bits) in KDBG_FIELDS.items():
        if name == "Header":
            continue
        value = int(values.get(name, 0))
        if bits is not None:
            groups.setdefault(bits[0], {})[name] = value
        else:
            record[name] = value
    record.update(groups)
    record["Header"] = {
        "List": {"Flink": int(values.get("_list_flink", 0)),
                 "Blink": int(values.get("_list_blink", 0))},
        "OwnerTag": KDBG_TAG_VALUE,
        "Size": size,
    }
    data = KDDEBUGGER_DATA64.build(record)
    if size <= len(data):
        return data[:size]
    return data + bytes(size - len(data))


build_kdbg.__doc__ = (build_kdbg.__doc__ or "") % KDDEBUGGER_DATA64_SIZE

__all__: List[str] = ["KDBG_FIELDS", "KDBG_KERNBASE_OFFSET", "KDBG_OWNER_TAG", "KDBG_TAG_OFFSET",
                      "build_kdbg", "decode_kdbg", "decode_kdbg_bytes", "kdbg_field_offset"]
