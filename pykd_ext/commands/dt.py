"""`dt TYPE [ADDRESS] [FIELD ...] [-r[N]]`: a structure's layout, WinDbg `dt` style, with values.

Why: the teaching/research view of the layouts. Without an address it shows each member's
offset and WinDbg type spelling for the chosen build (`--build`, `--symbols` or the target's own
layout); with an address it reads the structure from the target's kernel space once and shows the
values the way WinDbg does (`0x1c0`, `(null)`, `0xffffcf05`14782198`, `0y1`, `[15]  "System"`,
`_LIST_ENTRY [ 0x... - 0x... ]`). Unreadable members show the fault marker. `--format json` gives
the same lines as records (offset, path, type, value).
"""
import argparse
import fnmatch
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Union

from pykd_ext.errors import LayoutError, MemoryReadError, MissingLayoutError
from pykd_ext.layouts.model import FieldLayout, KernelLayouts, TypeLayout, compile_record, field_reader
from pykd_ext.memory.faults import INVALID, Fault
from pykd_ext.render.grid import Column, Result

HELP = "show a kernel structure's layout (and values at an address), WinDbg dt style"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'dt _EPROCESS --build 24H2',
    'dt _eprocess -b 10.0.19041.1288 UniqueProcessId ImageFileName',
    'dt nt!_EPROCESS ffffb30c`8a00d050 ImageFileName Token -t crash.dmp',
]

MAX_DEPTH = 9            # WinDbg's -r accepts 1..9
NAME_WIDTH = 16          # WinDbg's name column
MAX_READ = 1 << 20       # bytes dt reads for one structure/member (a corrupt layout cannot ask for GBs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type", metavar="TYPE", help="structure name, e.g. _EPROCESS or nt!_EPROCESS")
    parser.add_argument("rest", nargs="*", metavar="ADDRESS|FIELD",
                        help="an address (hex) then member names; `Field.` expands one level, "
                             "`A.B` shows B inside A, `Image*` matches names")
    parser.add_argument("-r", dest="recurse", nargs="?", const=MAX_DEPTH, type=int, default=0,
                        metavar="N", help="recurse into embedded structures (N levels, default 9)")
    parser.add_argument("--build", "-b", metavar="B",
                        help="layouts of this build instead of the target's: 19041, 10.0.19041.1288, "
                             "a release name (22H2, 24H2, win10-22H2) or a PDB GUID; the nearest "
                             "shipped revision is used and named in a note")
    # TYPE -b B FIELD...: member names may follow the options (argparse's intermixed parse)
    parser.set_defaults(_intermixed=True)


# ------------------------------------------------------------------ value formatting

def _hex64(value: int) -> str:
    return "0x%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)


def _pointer_text(value: int, size: int) -> str:
    if value == 0:
        return "(null)"
    return _hex64(value) if size == 8 else "0x%08x" % value


def _scalar_text(fl: FieldLayout, value: Any, layouts: KernelLayouts) -> str:
    if fl.kind == "pointer":
        return _pointer_text(value, fl.size)
    if fl.kind == "bitfield":
        assert fl.bit_length is not None       # set for every bitfield member
        return "0y" + format(value, "0%db" % fl.bit_length)
    if fl.kind == "enum":
        name = layouts.enum(fl.type_name).name_of(value) if layouts.has_enum(fl.type_name) else None
        return "%s (0n%d)" % (name, value) if name else "0n%d" % value
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return ""
    if fl.signed:
        return "0n%d" % value
    if fl.size == 8:
        return _hex64(value)
    return "0x%x" % value


class _Bytes:
    """The structure's bytes, read once; members outside the readable part are read one by one."""

    def __init__(self, space: Any, address: int, size: int) -> None:
        self.space = space
        self.address = address
        self.data, self.fault = space.read_partial(address, min(size, MAX_READ))

    def get(self, offset: int, size: int) -> Any:
        if offset + size <= len(self.data):
            return self.data[offset:offset + size]
        if size > MAX_READ:
            return Fault(INVALID, self.address + offset)
        try:
            return self.space.read(self.address + offset, size)
        except MemoryReadError as err:
            return err.fault


def _char_array_text(raw: bytes, count: int, wide: bool) -> str:
    if wide:
        text = raw.decode("utf-16-le", "replace").split("\0", 1)[0]
    else:
        text = raw.split(b"\0", 1)[0].decode("latin-1")
    return '[%d]  "%s"' % (count, text)


def _value(fl: FieldLayout, mem: Union[_Bytes, "_Slice"], base: int, layouts: KernelLayouts) -> Tuple[Any, str]:
    """(plain value for JSON, WinDbg text) of one member at mem offset base + fl.offset."""
    off = base + fl.offset
    if fl.kind == "array":
        elem = fl.element
        assert elem is not None and fl.count is not None     # both set for every array member
        raw = mem.get(off, fl.size)
        if isinstance(raw, Fault):
            return raw, "[%d] %s" % (fl.count, raw.marker)
        if elem.kind == "base" and elem.type_name in ("unsigned char", "char", "wchar"):
            wide = elem.size == 2
            text = _char_array_text(raw, fl.count, wide)
            return text.split("  ", 1)[1].strip('"'), text
        if elem.kind in ("struct", "union"):
            return raw.hex(), "[%d] %s" % (fl.count, elem.type_name)
        if elem.kind == "array":
            return raw.hex(), "[%d] %s" % (fl.count, elem.windbg_type())
        first, text = _value(elem.moved(0), _Slice(raw), 0, layouts)
        values = [_value(elem.moved(i * elem.size), _Slice(raw), 0, layouts)[0] for i in range(fl.count)]
        return values, "[%d] %s" % (fl.count, text)
    if fl.kind in ("struct", "union"):
        raw = mem.get(off, fl.size)
        if isinstance(raw, Fault):
            return raw, "%s %s" % (fl.type_name, raw.marker)
        if fl.type_name == "_LIST_ENTRY" and fl.record is not None:
            t = compile_record(fl.record)
            flink, blink = t.reader("Flink")(raw), t.reader("Blink")(raw)
            return {"Flink": flink, "Blink": blink}, "_LIST_ENTRY [ %s - %s ]" % (
                _hex64(flink), _hex64(blink)) if t.field("Flink").size == 8 else \
                "_LIST_ENTRY [ 0x%x - 0x%x ]" % (flink, blink)
        if fl.type_name == "_UNICODE_STRING" and fl.record is not None:
            return _unicode_string(compile_record(fl.record), raw, mem.space)
        return None, fl.type_name
    if fl.kind == "function":
        return None, fl.windbg_type()
    raw = mem.get(off, fl.size)
    if isinstance(raw, Fault):
        return raw, raw.marker
    t_value = _read_scalar(fl, raw)
    return t_value, _scalar_text(fl, t_value, layouts)


class _Slice:
    """_Bytes over a buffer already read (array elements)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.space = None

    def get(self, offset: int, size: int) -> Any:
        return self.data[offset:offset + size]


def _read_scalar(fl: FieldLayout, raw: bytes) -> Any:
    return field_reader(fl.moved(0))(raw)


def _unicode_string(t: TypeLayout, raw: bytes, space: Any) -> Tuple[Any, str]:
    length, buffer = t.reader("Length")(raw), t.reader("Buffer")(raw)
    if not buffer or not length or space is None:
        return "", '_UNICODE_STRING ""'
    try:
        data = space.read(buffer, min(length, 0x1000))
    except MemoryReadError as err:
        return err.fault, "_UNICODE_STRING %s" % err.fault.marker
    text = data.decode("utf-16-le", "replace")
    return text, '_UNICODE_STRING "%s"' % text


# ------------------------------------------------------------------ line selection

def _parse_rest(t: TypeLayout, rest: List[str]) -> Tuple[Optional[int], List[str]]:
    """(address, member names): the first token is an address when it is a number (WinDbg's
    radix, `lookup.parse_number`) and not a member's name."""
    from pykd_ext.kernel.numbers import parse_number
    address = None
    fields = list(rest)
    if fields and not t.has_field(fields[0]):
        value = parse_number(fields[0])
        if value is not None and value >= 0:
            fields.pop(0)
            address = value
    return address, fields


def _resolve_type(layouts: KernelLayouts, name: str) -> TypeLayout:
    """`_EPROCESS`, `nt!_EPROCESS`, `EPROCESS`; any case (`_eprocess`), the exact case first."""
    bare = name.split("!", 1)[1] if "!" in name else name
    for candidate in (bare, "_" + bare):
        if layouts.has_type(candidate):
            return layouts.type(candidate)
    folded: Dict[str, str] = {}
    for known in layouts.type_names():
        folded.setdefault(known.lower(), known)
    for candidate in (bare, "_" + bare):
        match = folded.get(candidate.lower())
        if match is not None:
            return layouts.type(match)
    raise MissingLayoutError("layout %s has no type %s (types: %s)"
                             % (layouts.label, bare, " ".join(layouts.type_names())))


def _select(t: TypeLayout, spec: str) -> List[Tuple[FieldLayout, str]]:
    """Top-level members a filter names, with the rest of the path ("" none, "." all, "B" one)."""
    head, dot, tail = spec.partition(".")
    names = [n for n in t.fields if fnmatch.fnmatchcase(n, head)] if any(c in head for c in "*?[") else \
        ([head] if head in t.fields else [])
    if not names:
        raise MissingLayoutError("%s has no member %s" % (t.name, head))
    return [(t.fields[n], ("." + tail if tail else ".") if dot else "") for n in names]


def build_lines(layouts: KernelLayouts, t: TypeLayout, fields: List[str], recurse: int,
                mem: Optional[_Bytes]) -> List[Dict[str, Any]]:
    """The records (one per printed line) of a dt invocation."""
    out: List[Dict[str, Any]] = []

    def emit(fl: FieldLayout, depth: int, base: int, path: str, expand: str, levels: int) -> None:
        rec: Dict[str, Any] = {"depth": depth, "offset": fl.offset, "name": fl.name, "path": path,
                               "type": fl.windbg_type(), "kind": fl.kind, "size": fl.size}
        if fl.kind == "bitfield":
            rec["bit_position"], rec["bit_length"] = fl.bit_position, fl.bit_length
        if mem is not None:
            rec["address"] = mem.address + base + fl.offset
            rec["value"], rec["display"] = _value(fl, mem, base, layouts)
        else:
            rec["display"] = fl.windbg_type()
        out.append(rec)
        record = fl.record
        if record is None or depth >= MAX_DEPTH:
            return
        inner = compile_record(record)
        if expand == ".":
            children = [(f, "") for f in inner.fields.values()]
            more = max(levels - 1, 0)
        elif expand.startswith("."):
            children = _select(inner, expand[1:])
            more = levels
        elif levels > 0:
            children = [(f, "") for f in inner.fields.values()]
            more = levels - 1
        else:
            return
        for child, sub in children:
            emit(child, depth + 1, base + fl.offset, path + "." + child.name, sub, more)

    if fields:
        chosen: List[Tuple[FieldLayout, str]] = []
        for spec in fields:
            chosen.extend(_select(t, spec))
    else:
        chosen = [(f, "") for f in t.fields.values()]
    for fl, expand in chosen:
        emit(fl, 0, 0, fl.name, expand, recurse)
    return out


def _text(result: Result) -> List[str]:
    meta = result.meta
    width = meta.get("name_width", NAME_WIDTH)
    lines = [meta["header"]] if meta.get("header") else []
    for rec in result.records:
        indent = "   " * (rec["depth"] + 1)
        lines.append("%s+0x%03x %-*s : %s" % (indent, rec["offset"], width, rec["name"], rec["display"]))
    return lines


def run(session: Any, args: argparse.Namespace) -> Result:
    if not (session.has_target or session.build or session.symbols):
        raise LayoutError("dt needs layouts: --build B (see `pykd-ext structs list`), --symbols FILE "
                          "or --target PATH")
    layouts: KernelLayouts = session.layouts
    t = _resolve_type(layouts, args.type)
    address, fields = _parse_rest(t, args.rest)
    mem = None
    if address is not None:
        mem = _Bytes(session.target.kernel, address, t.size)
    recurse = max(0, min(int(args.recurse or 0), MAX_DEPTH))
    records = build_lines(layouts, t, fields, recurse, mem)
    width = NAME_WIDTH
    if fields:
        width = max(len(s.partition(".")[0]) for s in fields)
    # WinDbg names the type first when it shows a bare layout, not when it shows values
    header = "%s!%s" % (_module_name(layouts), t.name) if address is None else ""
    columns = [Column("offset", "Offset", "hex"), Column("path", "Member"), Column("type", "Type")]
    if mem is not None:
        columns.append(Column("display", "Value"))
    meta = {"type": t.name, "size": t.size, "variant": t.variant, "layout": layouts.ident(),
            "address": address, "header": header, "name_width": width}
    notes = ["layout: %s" % layouts.label] + list(layouts.choice.get("warnings") or [])
    if mem is not None and mem.fault is not None and len(mem.data) < t.size:
        notes.append("only 0x%x of 0x%x bytes of %s are readable: %s"
                     % (len(mem.data), t.size, t.name, mem.fault))
    result = Result(command="dt", columns=columns, records=records, text=_text, meta=meta, notes=notes)
    result.record_address_keys = _pointer_value   # JSON: a pointer member's value is an address
    return result


_VALUE_KEY: FrozenSet[str] = frozenset(("value",))
_NO_KEYS: FrozenSet[str] = frozenset()


def _pointer_value(record: Dict[str, Any]) -> FrozenSet[str]:
    return _VALUE_KEY if record.get("kind") == "pointer" else _NO_KEYS


def _module_name(layouts: Any) -> str:
    """WinDbg's module prefix: `nt` for a kernel PDB, else the PDB's own name (`targetapp`)."""
    pdb = str(getattr(getattr(layouts, "entry", None), "pdb", "") or "ntkrnlmp.pdb")
    stem = pdb.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    return "nt" if stem in ("ntkrnlmp", "ntoskrnl", "ntkrnlpa", "ntkrpamp", "") else stem
