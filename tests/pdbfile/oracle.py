"""llvm-pdbutil as the independent oracle of PDB tests: runs it and parses its text output.

Why text: llvm-pdbutil (Debian's `llvm`) is LLVM's own PDB reader, written without reference to
ours; `dump -types`, `-publics`, `-section-headers` and `-summary` print every record with its
index, offsets, sizes, bit positions and forward-reference resolution (`forward ref (-> 0x100E)`,
`(= 0x2CD2)` when the PDB holds no definition). `pretty` needs DIA (Windows only), so the dump
text is what we compare with.
"""
import re
import subprocess
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

PDBUTIL = "llvm-pdbutil"
_HEADER = re.compile(r"^\s+0x([0-9A-F]+) \| (LF_\w+) \[size = \d+\](?: `(.*)`)?$")
_MEMBER = re.compile(r"^\s+- (LF_MEMBER) \[name = `(.*)`, Type = 0x([0-9A-F]+)[^,]*, offset = (\d+),")
_ENUMERATE = re.compile(r"^\s+- LF_ENUMERATE \[(.*) = (-?\d+)\]$")
_BCLASS_BODY = re.compile(r"^\s+type = 0x([0-9A-F]+), offset = (\d+),")
_VFUNCTAB = re.compile(r"^\s+- LF_VFUNCTAB type = 0x([0-9A-F]+)")
_INDEX = re.compile(r"^\s+- LF_INDEX continuation = 0x([0-9A-F]+)")
_FIELD_LIST = re.compile(r"field list: (?:0x([0-9A-F]+)|<no type>)")
_SIZEOF = re.compile(r"sizeof (\d+)")
_FORWARD = re.compile(r"forward ref \((->|=|<-) 0x([0-9A-F]+)\)")
_UNDERLYING = re.compile(r"underlying type: 0x([0-9A-F]+)")
_BITFIELD = re.compile(r"type = 0x([0-9A-F]+) \(.*\), bit offset = (\d+), # bits = (\d+)")
_ARRAY = re.compile(r"size: (\d+), index type: 0x[0-9A-F]+ \(.*\), element type: 0x([0-9A-F]+)")
_POINTER = re.compile(r"referent = 0x([0-9A-F]+), mode = (\w+)")

UDT_KINDS = ("LF_STRUCTURE", "LF_CLASS", "LF_UNION", "LF_INTERFACE", "LF_STRUCTURE2", "LF_CLASS2",
             "LF_UNION2", "LF_INTERFACE2")


def run(args: List[str], path: str) -> str:
    # names in real PDBs are not always UTF-8 (MSVC writes the source code page)
    out = subprocess.run([PDBUTIL] + args + [path], check=True, capture_output=True, timeout=120)
    return out.stdout.decode("utf-8", "replace")


@dataclass
class Rec:
    index: int
    kind: str
    name: Optional[str]
    lines: List[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def parse_types(text: str) -> Dict[int, Rec]:
    recs: Dict[int, Rec] = {}
    cur: Optional[Rec] = None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            cur = Rec(int(m.group(1), 16), m.group(2), m.group(3))
            recs[cur.index] = cur
        elif cur is not None and line.strip():
            cur.lines.append(line)
    return recs


@dataclass
class OracleMember:
    kind: str                # LF_MEMBER, LF_BCLASS, LF_VFUNCTAB
    name: str
    type: int
    offset: int


class Types:
    """What `llvm-pdbutil dump -types` says, in the terms the tests compare."""

    def __init__(self, text: str) -> None:
        self.recs = parse_types(text)

    def udts(self) -> List[Rec]:
        """Struct/class/union definitions (no forward references)."""
        return [r for r in self.recs.values() if r.kind in UDT_KINDS and "forward ref" not in r.text]

    def enums(self) -> List[Rec]:
        return [r for r in self.recs.values() if r.kind == "LF_ENUM" and "forward ref" not in r.text]

    @staticmethod
    def sizeof(rec: Rec) -> int:
        m = _SIZEOF.search(rec.text)
        assert m, rec.text
        return int(m.group(1))

    def resolve(self, index: int) -> Optional[int]:
        """The definition llvm-pdbutil names for a forward reference (None: it has none)."""
        rec = self.recs.get(index)
        if rec is None:
            return None
        m = _FORWARD.search(rec.text)
        if m is None:
            return index
        return None if m.group(1) == "=" else int(m.group(2), 16)

    def field_list(self, rec: Rec) -> Optional[int]:
        m = _FIELD_LIST.search(rec.text)
        return int(m.group(1), 16) if m and m.group(1) else None

    def members(self, rec: Rec) -> List[OracleMember]:
        out: List[OracleMember] = []
        index = self.field_list(rec)
        seen = set()
        while index is not None and index not in seen:
            seen.add(index)
            lines = self.recs[index].lines
            index = None
            for i, line in enumerate(lines):
                m = _MEMBER.match(line)
                if m:
                    out.append(OracleMember("LF_MEMBER", m.group(2), int(m.group(3), 16),
                                            int(m.group(4))))
                    continue
                if line.strip() == "- LF_BCLASS":
                    b = _BCLASS_BODY.match(lines[i + 1])
                    assert b, lines[i + 1]
                    out.append(OracleMember("LF_BCLASS", "", int(b.group(1), 16), int(b.group(2))))
                    continue
                m = _VFUNCTAB.match(line)
                if m:
                    out.append(OracleMember("LF_VFUNCTAB", "", int(m.group(1), 16), 0))
                    continue
                m = _INDEX.match(line)
                if m:
                    index = int(m.group(1), 16)
        return out

    def enumerators(self, rec: Rec) -> Dict[str, int]:
        out: Dict[str, int] = {}
        index = self.field_list(rec)
        seen = set()
        while index is not None and index not in seen:
            seen.add(index)
            lines = self.recs[index].lines
            index = None
            for line in lines:
                m = _ENUMERATE.match(line)
                if m:
                    out.setdefault(m.group(1), int(m.group(2)))
                m = _INDEX.match(line)
                if m:
                    index = int(m.group(1), 16)
        return out

    def underlying(self, rec: Rec) -> int:
        m = _UNDERLYING.search(rec.text)
        assert m, rec.text
        return int(m.group(1), 16)

    def bitfield(self, index: int) -> Optional[Tuple[int, int, int]]:
        """(underlying type, bit offset, bits) when `index` is an LF_BITFIELD."""
        rec = self.recs.get(index)
        if rec is None or rec.kind != "LF_BITFIELD":
            return None
        m = _BITFIELD.search(rec.text)
        assert m, rec.text
        return int(m.group(1), 16), int(m.group(2)), int(m.group(3))

    def strip_modifiers(self, index: int) -> int:
        for _ in range(16):
            rec = self.recs.get(index)
            if rec is None or rec.kind != "LF_MODIFIER":
                return index
            m = re.search(r"referent = 0x([0-9A-F]+)", rec.text)
            assert m
            index = int(m.group(1), 16)
        return index

    def shape(self, index: int) -> str:
        """'pointer', 'array', 'bitfield', 'udt', 'enum', 'function' or 'base' for a member type."""
        index = self.strip_modifiers(index)
        if index < 0x1000:
            return "pointer" if index & 0x700 else "base"
        kind = self.recs[index].kind
        if kind == "LF_POINTER":
            return "pointer"
        if kind in ("LF_ARRAY", "LF_STRIDED_ARRAY"):
            return "array"
        if kind == "LF_BITFIELD":
            return "bitfield"
        if kind in UDT_KINDS:
            return "udt"
        if kind == "LF_ENUM":
            return "enum"
        if kind in ("LF_PROCEDURE", "LF_MFUNCTION"):
            return "function"
        return kind

    def array_bytes(self, index: int) -> int:
        rec = self.recs[self.strip_modifiers(index)]
        m = _ARRAY.search(rec.text)
        assert m, rec.text
        return int(m.group(1))


def summary(path: str) -> Dict[str, str]:
    """`dump -summary`: GUID ({...} form) and Age (the PDB info stream's)."""
    out: Dict[str, str] = {}
    for line in run(["dump", "-summary"], path).splitlines():
        m = re.match(r"^\s+(GUID|Age|Signature): (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def publics(path: str) -> List[Tuple[str, int]]:
    """(decorated name, RVA) of every S_PUB32, RVAs from llvm-pdbutil's section headers."""
    text = run(["dump", "-publics", "-section-headers"], path)
    vas = [int(v, 16) for v in re.findall(r"^\s+([0-9A-F]+) virtual address$", text, re.M)]
    out: List[Tuple[str, int]] = []
    # llvm-pdbutil prints `addr = SSSS:OOOO` in decimal (segment:offset)
    for name, seg, off in re.findall(r"S_PUB32 \[size = \d+\] `(.*)`\n.*addr = (\d+):(\d+)", text):
        segment = int(seg)
        if 0 < segment <= len(vas):
            out.append((name, vas[segment - 1] + int(off)))
    return out
