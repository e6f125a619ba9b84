"""PDBs built by clang-cl + lld-link (x64 and x86) from `src/layouts.c` and `src/classes.cpp`:
every layout our reader produces equals llvm-pdbutil's reading of the same file, and the layout
facts the sources plant (packing, alignment, bit positions, enum values, pointer sizes) hold.
"""
from pathlib import Path
from typing import Dict, Tuple

import pytest

from pykd_ext.layouts.pdb import convert_pdb, read_pdb_identity

from tests.pdbfile import agreement, oracle

Built = Dict[Tuple[str, str], Path]


@pytest.mark.parametrize("arch", ["x64", "x86"])
@pytest.mark.parametrize("source", ["layouts.c", "classes.cpp"])
def test_layouts_equal_llvm_pdbutil(clang_pdbs: Built, source: str, arch: str) -> None:
    pdb = str(clang_pdbs[(source, arch)])
    conv = convert_pdb(pdb)
    counts = agreement.compare(conv, oracle.Types(oracle.run(["dump", "-types"], pdb)))
    assert counts["types"] >= 10 and counts["enums"] == 2
    if source == "layouts.c":
        assert counts["bitfields"] == 8 and counts["arrays"] >= 5
    else:
        assert counts["base_classes"] == 4


@pytest.mark.parametrize("arch,pointer", [("x64", 8), ("x86", 4)])
def test_planted_c_layouts(clang_pdbs: Built, arch: str, pointer: int) -> None:
    isf = convert_pdb(str(clang_pdbs[("layouts.c", arch)])).isf
    types = isf["user_types"]
    assert isf["base_types"]["pointer"]["size"] == pointer
    assert isf["metadata"]["windows"]["pdb"]["machine_type"] == (0x8664 if arch == "x64" else 0x14C)

    def offsets(name: str) -> Dict[str, int]:
        return {k: v["offset"] for k, v in types[name]["fields"].items()}

    # #pragma pack(1): no padding at all
    assert offsets("packed") == {"c": 0, "i": 1, "s": 5, "q": 7} and types["packed"]["size"] == 15
    # __declspec(align(16)) on a member
    assert offsets("aligned_member") == {"c": 0, "a": 16} and types["aligned_member"]["size"] == 32
    bits = types["bits"]["fields"]
    got = {k: (v["offset"], v["type"]["bit_position"], v["type"]["bit_length"]) for k, v in bits.items()}
    assert got == {"a": (0, 0, 1), "b": (0, 1, 3), "c": (0, 4, 28), "d": (4, 0, 2), "e": (4, 2, 6),
                   "wide": (8, 0, 40), "rest": (8, 40, 24), "signed_bits": (16, 0, 5)}
    assert bits["signed_bits"]["type"]["type"] == {"kind": "base", "name": "int"}
    outer = types["outer"]["fields"]
    # anonymous union/struct members land in the outer struct, at one offset each
    # (8 on x86 too: the MSVC ABI aligns long long to 8 inside structs)
    assert outer["ptr"]["offset"] == outer["number"]["offset"] == 8
    assert outer["x"]["offset"] + 2 == outer["y"]["offset"]
    assert outer["matrix"]["type"] == {"kind": "array", "count": 2, "subtype": {
        "kind": "array", "count": 3, "subtype": {"kind": "base", "name": "int"}}}
    assert outer["on_event"]["type"] == {"kind": "pointer", "subtype": {"kind": "function"}}
    assert outer["table"]["type"]["count"] == 2
    assert outer["handle"]["type"] == {"kind": "pointer", "subtype": {"kind": "struct", "name": "opaque"}}
    assert "opaque" not in types                     # never defined, only pointed to
    assert outer["trailing"]["type"]["count"] == 0   # flexible array member
    assert outer["trailing"]["offset"] == types["outer"]["size"]
    assert outer["color"]["type"] == {"kind": "enum", "name": "color"}
    assert isf["enums"]["color"] == {"base": "int", "size": 4, "constants": {
        "RED": 0, "GREEN": 5, "BLUE": 6, "NEGATIVE": -3, "BIG": 0x7FFFFFFF}}
    assert outer["inners"]["type"] == {"kind": "array", "count": 4,
                                       "subtype": {"kind": "struct", "name": "inner"}}
    value = types["value"]
    assert value["kind"] == "union" and value["size"] == 8
    assert value["fields"]["parts"]["type"]["name"].startswith("__unnamed_")
    # globals: RVAs inside the image, the static one too (S_LDATA32), C names without "_"
    symbols = isf["symbols"]
    for name in ("g_outer", "g_packed", "g_counter", "helper", "main"):
        assert 0x1000 <= symbols[name]["address"] < 0x10000, name


def test_planted_cpp_layouts(clang_pdbs: Built) -> None:
    for arch, pointer in (("x64", 8), ("x86", 4)):
        isf = convert_pdb(str(clang_pdbs[("classes.cpp", arch)])).isf
        types, enums = isf["user_types"], isf["enums"]
        derived = types["Derived"]["fields"]
        assert derived["Base1"] == {"offset": 0, "type": {"kind": "struct", "name": "Base1"}}
        assert types["Base1"]["fields"]["__VFN_table"]["offset"] == 0
        assert types["Base1"]["fields"]["b1"]["offset"] == pointer
        assert "s_count" not in derived and "get" not in derived     # static member, method
        assert derived["nested"]["type"] == {"kind": "struct", "name": "Derived::Nested"}
        assert enums["Small"] == {"base": "unsigned char", "size": 1,
                                  "constants": {"Zero": 0, "One": 1, "Max": 255}}
        assert enums["Wide"]["constants"] == {"Low": -5, "High": 0x100000000}
        assert set(types["Diamond"]["fields"]) == {"Left", "Right", "dd"}   # virtual base left out
        holder = types["Holder"]["fields"]
        assert holder["chars"]["type"] == {"kind": "struct", "name": "Array<char,7>"}
        assert types["Array<char,7>"]["fields"]["items"]["type"]["count"] == 7


def test_identity_of_built_pdbs(clang_pdbs: Built) -> None:
    for path in clang_pdbs.values():
        info = oracle.summary(str(path))
        ident = read_pdb_identity(str(path))
        assert info["GUID"].strip("{}").replace("-", "") == ident.guid
        assert ident.info_age == int(info["Age"])
        assert ident.symbol_id == "%s%X" % (ident.guid, ident.age)
