"""The real MSVC PDB in ../shared (a 32-bit C++ program, kdlibcpp's targetapp) read by our PDB
reader, checked against what the issue states and against llvm-pdbutil on the same file.

Volatility 3's pdbconv fails on this file ("Unhandled leaf_type: 5636": LF_SUBSTR_LIST in the
IPI stream, which a layout never needs and our reader does not read).
"""
import re
from pathlib import Path

from pykd_ext.layouts.pdb import convert_pdb, read_pdb_identity
from pykd_ext.layouts.pdb.streams import strip_decoration

from tests.pdbfile import agreement, oracle


def test_structtest_is_packed_as_the_issue_states(real_pdb: Path) -> None:
    # issue 16: `structTest` is packed, fields at 0, 4, 0xc, 0xe, 0x10
    conv = convert_pdb(str(real_pdb))
    st = conv.isf["user_types"]["structTest"]
    offsets = {name: f["offset"] for name, f in st["fields"].items()}
    assert offsets == {"m_field0": 0, "m_field1": 4, "m_field2": 0xC, "m_field3": 0xE, "m_field4": 0x10}
    assert st["size"] == 20
    assert st["fields"]["m_field1"]["type"] == {"kind": "base", "name": "unsigned long long"}
    assert st["fields"]["m_field4"]["type"] == {"kind": "pointer",
                                                "subtype": {"kind": "struct", "name": "structTest"}}
    assert conv.isf["base_types"]["pointer"]["size"] == 4          # an x86 program


def test_every_type_agrees_with_llvm_pdbutil(real_pdb: Path) -> None:
    conv = convert_pdb(str(real_pdb))
    counts = agreement.compare(conv, oracle.Types(oracle.run(["dump", "-types"], str(real_pdb))))
    # the file holds hundreds of definitions; all were compared, none skipped silently
    assert counts["types"] > 600 and counts["fields"] > 1500 and counts["enumerators"] > 4000
    assert counts["bitfields"] > 0 and counts["base_classes"] > 0 and counts["arrays"] > 0
    # five members whose types this PDB never defines (llvm-pdbutil: "forward ref (= self)")
    # are left out, and said so
    assert counts["left_out"] == conv.stats["undefined_member_types"] == 5
    assert sum("left out" in note for note in conv.notes) == 5


def test_identity_matches_llvm_pdbutil(real_pdb: Path) -> None:
    info = oracle.summary(str(real_pdb))
    ident = read_pdb_identity(str(real_pdb))
    assert "{%s}" % "-".join((ident.guid[:8], ident.guid[8:12], ident.guid[12:16], ident.guid[16:20],
                               ident.guid[20:])) == info["GUID"]
    assert ident.info_age == int(info["Age"]) and ident.signature == int(info["Signature"])
    assert ident.machine == 0x14C
    conv = convert_pdb(str(real_pdb))
    assert conv.isf["metadata"]["windows"]["pdb"] == {
        "GUID": ident.guid, "age": ident.age, "database": "targetapp-wow64.pdb", "machine_type": 0x14C}


def test_public_symbols_match_llvm_pdbutil(real_pdb: Path) -> None:
    symbols = convert_pdb(str(real_pdb)).isf["symbols"]
    pubs = oracle.publics(str(real_pdb))
    assert len(pubs) > 1000
    shown = {}
    for name, rva in pubs:
        shown.setdefault(strip_decoration(name), []).append((name, rva))
    compared = 0
    for plain, entries in shown.items():
        if len(entries) == 1:                       # names two publics share are ambiguous
            name, rva = entries[0]
            assert symbols[plain]["address"] == rva, (plain, name)
            assert symbols[plain].get("linkage_name", plain) == name
            compared += 1
    assert compared > 1000
    # x86 C names lose their leading underscore, as Volatility's pdbconv spells them
    assert symbols["wmain"]["linkage_name"] == "_wmain"


def test_global_data_symbols_match_llvm_pdbutil(real_pdb: Path) -> None:
    # S_GDATA32 records give C++ globals their plain names (the public is decorated)
    text = oracle.run(["dump", "-globals", "-section-headers"], str(real_pdb))
    vas = [int(v, 16) for v in re.findall(r"^\s+([0-9A-F]+) virtual address$", text, re.M)]
    found = re.findall(r"S_GDATA32 \[size = \d+\] `(\w+)`\n.*addr = (\d+):(\d+)", text)
    symbols = convert_pdb(str(real_pdb)).isf["symbols"]
    publics = {strip_decoration(name) for name, _rva in oracle.publics(str(real_pdb))}
    checked = 0
    plain_names = [strip_decoration(name) for name, _s, _o in found]
    for name, seg, off in found:
        plain = strip_decoration(name)
        if plain in publics or plain_names.count(plain) != 1:
            continue                      # a public of the same name takes precedence
        if not 0 < int(seg) <= len(vas):
            assert plain not in symbols   # linker-made absolute symbols have no RVA
            continue
        assert symbols[plain]["address"] == vas[int(seg) - 1] + int(off), name
        checked += 1
    assert checked > 20
    assert "g_structTest" in {n for n, _s, _o in found}
    assert symbols["g_structTest"]["address"] == symbols["?g_structTest@@3UstructTest@@A"]["address"]
