"""Generate `structs/kddebugger_data64.py` from the committed wdbgexts.h declaration.

Why: `_KDDEBUGGER_DATA64` (the "KDBG" block) is not in the kernel PDB, so the ISF-driven layout
generator cannot produce it.  The project rule is "no hand-typed layouts", so the source fact is
committed as text (`structs/sources/wdbgexts_KDDEBUGGER_DATA64.h`: field names, C types, order)
and this tiny generator turns it into a readable construct `Struct`, computing every offset with
the natural (MSVC x64) alignment rules and writing it in a comment on each line.

Run: `python -m pykd_ext.layouts.gen_kdbg [--source FILE] [--out FILE] [--check]`.
`--check` compares instead of writing (exit 1 on a difference), for CI.
"""
import argparse
import os
import re
import sys
from typing import Dict, List, Optional, Tuple, cast

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SOURCE = os.path.join(REPO, "structs", "sources", "wdbgexts_KDDEBUGGER_DATA64.h")
DEFAULT_OUT = os.path.join(REPO, "structs", "kddebugger_data64.py")

# C scalar types of the declaration: (size in bytes, construct little-endian name).
SCALARS: Dict[str, Tuple[int, str]] = {
    "ULONG64": (8, "Int64ul"),
    "ULONGLONG": (8, "Int64ul"),
    "ULONG": (4, "Int32ul"),
    "USHORT": (2, "Int16ul"),
    "UCHAR": (1, "Int8ul"),
}

# LIST_ENTRY64 is a wdbgexts/ntdef type, not declared in the source file: two ULONG64 links.
BUILTIN_STRUCTS: Dict[str, List[Tuple[str, str, Optional[int]]]] = {
    "LIST_ENTRY64": [("ULONG64", "Flink", None), ("ULONG64", "Blink", None)],
}

_STRUCT_RE = re.compile(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", re.S)
_FIELD_RE = re.compile(r"^(\w+)\s+(\w+)\s*(?::\s*(\d+))?$")


class GenError(Exception):
    """The declaration does not follow the small grammar the generator accepts."""


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def parse_declarations(text: str) -> Dict[str, List[Tuple[str, str, Optional[int]]]]:
    """typedef name -> [(C type, field name, bit width or None)], in declaration order."""
    structs: Dict[str, List[Tuple[str, str, Optional[int]]]] = {}
    for match in _STRUCT_RE.finditer(_strip_comments(text)):
        name = match.group(3)
        fields = []
        for statement in match.group(2).split(";"):
            statement = " ".join(statement.split())
            if not statement:
                continue
            field = _FIELD_RE.match(statement)
            if field is None:
                raise GenError("cannot parse field %r in %s" % (statement, name))
            ctype, fname, bits = field.group(1), field.group(2), field.group(3)
            fields.append((ctype, fname, int(bits) if bits else None))
        structs[name] = fields
    if not structs:
        raise GenError("no typedef struct found")
    return structs


class Layout:
    """Computed layout of one struct: lines for the generated module, size, alignment."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: List[str] = []
        self.size = 0
        self.align = 1


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def compute_layout(name: str, decls: Dict[str, List[Tuple[str, str, Optional[int]]]],
                   done: Dict[str, Layout]) -> Layout:
    """Lay out `name` (after the structs it embeds) with natural alignment."""
    if name in done:
        return done[name]
    fields = decls.get(name) or BUILTIN_STRUCTS.get(name)
    if fields is None:
        raise GenError("unknown struct type %s" % name)
    layout = Layout(name)
    offset = 0
    index = 0
    while index < len(fields):
        ctype, fname, bits = fields[index]
        if bits is not None:
            # A run of bitfields sharing one storage unit of `ctype` (MSVC: same type, fits).
            if ctype not in SCALARS:
                raise GenError("bitfield %s has non-integer type %s" % (fname, ctype))
            unit, _ = SCALARS[ctype]
            aligned = _align(offset, unit)
            if aligned != offset:
                layout.lines.append("    Padding(%d),  # +0x%03x alignment" % (aligned - offset, offset))
            offset = aligned
            group: List[Tuple[str, int, int]] = []     # (name, bit position, width)
            used = 0
            while (index < len(fields) and fields[index][2] is not None
                   and fields[index][0] == ctype and used + cast(int, fields[index][2]) <= unit * 8):
                group.append((fields[index][1], used, cast(int, fields[index][2])))
                used += cast(int, fields[index][2])
                index += 1
            # construct's BitStruct reads most significant bit first; ByteSwapped turns the
            # little-endian unit into big-endian order, so list fields from the top bit down.
            parts = []
            if unit * 8 - used:
                parts.append("Padding(%d)" % (unit * 8 - used))
            for gname, pos, width in reversed(group):
                parts.append('"%s" / BitsInteger(%d)' % (gname, width))
            comment = ", ".join("%s bit %d len %d" % (g, p, w) for g, p, w in group)
            layout.lines.append('    "_bits_0x%03x" / ByteSwapped(BitStruct(%s)),  # +0x%03x %s'
                                % (offset, ", ".join(parts), offset, comment))
            offset += unit
            layout.align = max(layout.align, unit)
            continue
        if ctype in SCALARS:
            size, cons = SCALARS[ctype]
            alignment = size
        else:
            sub = compute_layout(ctype, decls, done)
            size, cons, alignment = sub.size, sub.name, sub.align
        aligned = _align(offset, alignment)
        if aligned != offset:
            layout.lines.append("    Padding(%d),  # +0x%03x alignment" % (aligned - offset, offset))
        offset = aligned
        layout.lines.append('    "%s" / %s,  # +0x%03x %s' % (fname, cons, offset, ctype))
        offset += size
        layout.align = max(layout.align, alignment)
        index += 1
    end = _align(offset, layout.align)
    if end != offset:
        layout.lines.append("    Padding(%d),  # +0x%03x tail alignment" % (end - offset, offset))
    layout.size = end
    done[name] = layout
    return layout


def render(source_text: str, source_name: str) -> str:
    decls = parse_declarations(source_text)
    done: Dict[str, Layout] = {}
    for name in decls:
        compute_layout(name, decls, done)
    out = [
        '"""KDDEBUGGER_DATA64 (the kernel debugger data block, "KDBG") as a construct Struct.',
        "",
        "GENERATED by `python -m pykd_ext.layouts.gen_kdbg` from %s" % source_name,
        "(Microsoft wdbgexts.h declaration; see that file for sources). Do not edit by hand.",
        "Offsets use natural x64 alignment; each line carries its offset.  A kernel fills the block",
        "only up to Header.Size: readers decode only the fields that lie within it.",
        '"""',
        "from construct import BitsInteger, BitStruct, ByteSwapped, Int8ul, Int16ul, Int32ul, "
        "Int64ul, Padding, Struct",
        "",
    ]
    for name, layout in done.items():
        out.append("# sizeof(%s) == 0x%x" % (name, layout.size))
        out.append("%s = Struct(" % name)
        out.extend(layout.lines)
        out.append(")")
        out.append("%s_SIZE = 0x%x" % (name, layout.size))
        out.append("")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true",
                        help="compare with the existing output instead of writing it")
    args = parser.parse_args(argv)
    with open(args.source, "r", encoding="utf-8") as handle:
        text = render(handle.read(), "structs/sources/" + os.path.basename(args.source))
    if args.check:
        try:
            with open(args.out, "r", encoding="utf-8") as handle:
                current = handle.read()
        except OSError:
            current = None
        if current != text:
            print("%s is out of date; run python -m pykd_ext.layouts.gen_kdbg" % args.out)
            return 1
        return 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
