"""Compare our PDB -> ISF conversion with llvm-pdbutil's reading of the same file, type by type.

Every struct/class/union definition llvm-pdbutil lists must be in our ISF with its size; every
data member with its offset, bitfield position and width, array byte size, pointer-ness, and the
definition a by-value struct/enum member resolves to; every base class and vtable pointer; every
enum with its constants (compared at the underlying type's width: clang writes -1 as 0xFFFFFFFF).
Returns counts so the tests can say how much was compared.
"""
import re
from typing import Any, Dict, List

from pykd_ext.layouts.pdb import PdbConversion

from tests.pdbfile import oracle

_PLACEHOLDER = re.compile(r"^__(unnamed|anonymous)_[0-9a-f]+$")


def _our_size(isf: Dict[str, Any], t: Dict[str, Any]) -> int:
    kind = t["kind"]
    if kind == "base":
        return int(isf["base_types"][t["name"]]["size"])
    if kind == "pointer":
        return int(isf["base_types"][t.get("base", "pointer")]["size"])
    if kind in ("struct", "union"):
        return int(isf["user_types"][t["name"]]["size"])
    if kind == "enum":
        return int(isf["enums"][t["name"]]["size"])
    if kind == "array":
        return int(t["count"]) * _our_size(isf, t["subtype"])
    raise AssertionError("no size for %r" % t)


def compare(conv: PdbConversion, types: oracle.Types) -> Dict[str, int]:
    isf = conv.isf
    counts = {"types": 0, "fields": 0, "bitfields": 0, "arrays": 0, "pointers": 0,
              "base_classes": 0, "enums": 0, "enumerators": 0, "left_out": 0}
    problems: List[str] = []

    def expect(cond: bool, what: str) -> None:
        if not cond:
            problems.append(what)

    for rec in types.udts():
        name = conv.names[rec.index]
        ours = isf["user_types"].get(name)
        if ours is None:
            problems.append("0x%x %s: missing as %s" % (rec.index, rec.name, name))
            continue
        counts["types"] += 1
        where = "0x%x %s" % (rec.index, rec.name)
        expect(ours["size"] == types.sizeof(rec), "%s: size %s != %s" % (where, ours["size"], types.sizeof(rec)))
        expect(ours["kind"] == ("union" if "UNION" in rec.kind else "struct"), "%s: kind" % where)
        present = 0
        for m in types.members(rec):
            if m.kind == "LF_VFUNCTAB":
                f = ours["fields"].get("__VFN_table")
                expect(f is not None and f["offset"] == 0 and f["type"]["kind"] == "pointer",
                       "%s: vtable pointer %r" % (where, f))
                present += 1
                continue
            target = types.strip_modifiers(m.type)
            shape = types.shape(target)
            if shape == "udt" and types.resolve(target) is None:
                expect(m.name not in ours["fields"], "%s.%s: undefined type kept" % (where, m.name))
                counts["left_out"] += 1
                continue
            if m.kind == "LF_BCLASS":
                base_name = conv.names[types.resolve(target)]
                f = ours["fields"].get(base_name)
                expect(f is not None and f["offset"] == m.offset and f["type"]["kind"] == "struct",
                       "%s: base class %s: %r" % (where, base_name, f))
                counts["base_classes"] += 1
                present += 1
                continue
            f = ours["fields"].get(m.name)
            present += 1
            if f is None:
                problems.append("%s.%s: missing" % (where, m.name))
                continue
            counts["fields"] += 1
            expect(f["offset"] == m.offset, "%s.%s: offset %s != %s" % (where, m.name, f["offset"], m.offset))
            t = f["type"]
            if shape == "bitfield":
                bf = types.bitfield(target)
                assert bf is not None
                expect(t["kind"] == "bitfield" and (t["bit_position"], t["bit_length"]) == bf[1:],
                       "%s.%s: bitfield %r != %r" % (where, m.name, t, bf))
                counts["bitfields"] += 1
            elif shape == "pointer":
                rec_p = types.recs.get(target)
                member_ptr = rec_p is not None and "member" in rec_p.text.split("mode = ")[-1][:30]
                expect(t["kind"] == "pointer" or (member_ptr and t["kind"] == "array"),
                       "%s.%s: pointer %r" % (where, m.name, t))
                counts["pointers"] += 1
            elif shape == "array":
                expect(t["kind"] == "array" and _our_size(isf, t) == types.array_bytes(target),
                       "%s.%s: array %r (%d bytes)" % (where, m.name, t, types.array_bytes(target)))
                counts["arrays"] += 1
            elif shape == "udt":
                resolved = types.resolve(target)
                assert resolved is not None
                want = conv.names[resolved]
                same = t.get("name") == want or (bool(_PLACEHOLDER.match(want))
                                                 and bool(_PLACEHOLDER.match(str(t.get("name")))))
                expect(t["kind"] in ("struct", "union") and same,
                       "%s.%s: %r, llvm-pdbutil resolves to %s" % (where, m.name, t, want))
            elif shape == "enum":
                resolved = types.resolve(target)
                if resolved is not None:
                    expect(t == {"kind": "enum", "name": conv.names[resolved]},
                           "%s.%s: enum %r" % (where, m.name, t))
                else:
                    expect(t["kind"] == "base", "%s.%s: opaque enum %r" % (where, m.name, t))
            elif shape == "function":
                expect(t["kind"] == "function", "%s.%s: %r" % (where, m.name, t))
            else:
                expect(t["kind"] == "base", "%s.%s: %r for %s" % (where, m.name, t, shape))
        expect(len(ours["fields"]) == present,
               "%s: %d fields, llvm-pdbutil lists %d" % (where, len(ours["fields"]), present))
    for rec in types.enums():
        name = conv.names[rec.index]
        ours = isf["enums"].get(name)
        if ours is None:
            problems.append("enum 0x%x %s: missing as %s" % (rec.index, rec.name, name))
            continue
        counts["enums"] += 1
        want = types.enumerators(rec)
        mask = (1 << (8 * ours["size"])) - 1
        expect(isf["base_types"][ours["base"]]["size"] == ours["size"], "enum %s: base size" % name)
        expect(set(ours["constants"]) == set(want), "enum %s: names %s != %s"
               % (name, sorted(ours["constants"]), sorted(want)))
        for key, value in want.items():
            counts["enumerators"] += 1
            got = ours["constants"].get(key)
            expect(got is not None and got & mask == value & mask,
                   "enum %s.%s: %r != %r" % (name, key, got, value))
    assert not problems, "%d disagreements with llvm-pdbutil, first: %s" % (len(problems), problems[:10])
    return counts
