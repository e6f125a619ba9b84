"""Globals recovered from kernel code (`disasm:ObGetObjectType`, `disasm:PsLookupProcessByProcessId`).

Oracles: GNU objdump on the same bytes (the address each RIP-relative operand names, which it
prints as `# 0x...`), the ISF JSON's symbol RVAs (read straight from the file), and the addresses
the types-only forge chose for its globals (planted). ARM64 bytes are encoded here from the Arm
ARM's formats (ADRP, LDRB/LDR unsigned offset, ADD immediate, LDR register) and checked with
aarch64 objdump too.
"""
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from isf_offsets import isf_json
from pykd_ext.forge.isf import table_for_build
from pykd_ext.forge.kernel_image import global_code_exports
from pykd_ext.layouts.inferred.code_globals import references

#: the shapes the code uses each global with
SHAPES = {"ObHeaderCookie": "byte", "ObTypeIndexTable": "table", "PspCidTable": "pointer"}


def _objdump_targets(tool: str, machine: str, code: bytes, vma: int, tmp_path: Path) -> List[int]:
    """The absolute addresses objdump computes for PC-relative operands (its `# 0x...` / `<...>`)."""
    blob = tmp_path / "code.bin"
    blob.write_bytes(code)
    args = [tool, "-D", "-b", "binary", "-m", machine, "--adjust-vma=%#x" % vma]
    if machine.startswith("i386"):
        args += ["-M", "intel"]
    text = subprocess.run(args + [str(blob)], check=True, capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        if not re.match(r"^\s+[0-9a-f]+:\t", line):
            continue
        found = re.search(r"#\s*0x([0-9a-f]+)", line) or re.search(r"\b(?:call|bl|adrp)\s+(?:0x)?([0-9a-f]+)", line)
        if found:
            out.append(int(found.group(1), 16))
    return out


@pytest.mark.parametrize("version", ["6.1.7601.24540", "10.0.19041.1288"], ids=["win7", "win10"])
def test_forged_code_names_the_isf_globals_as_objdump_reads_it(tmp_path: Path, version: str) -> None:
    build, revision = int(version.split(".")[2]), int(version.split(".")[3])
    table = table_for_build(build, revision=revision)
    isf = isf_json(version)
    rva_of = {name: isf["symbols"][name]["address"] for name in isf["symbols"]}
    exports = {e.name: e for e in global_code_exports(table.rva, table.offset)}
    assert {"ObGetObjectType", "PsLookupProcessByProcessId", "PsLookupThreadByThreadId"} <= set(exports)
    seen: Dict[str, int] = {}
    for export in exports.values():
        objdump = _objdump_targets("objdump", "i386:x86-64", export.code, export.rva, tmp_path)
        ours = references(export.code, export.rva, "x64")
        assert [r.address for r in ours] == objdump, (export.name, ours, objdump)
        for ref in ours:
            for name, shape in SHAPES.items():
                if ref.shape == shape and ref.address == rva_of.get(name):
                    seen[name] = ref.address
            if ref.shape == "call":                       # Windows 8.1+: the helper loads it
                assert ref.address == rva_of["PspReferenceCidTableEntry"]
    expected = {n for n in SHAPES if n in rva_of}
    assert set(seen) == expected, (version, seen)
    assert ("ObHeaderCookie" in seen) == (build >= 10240)


def test_forged_dump_inferred_layout_uses_globals_from_code(tmp_path: Path) -> None:
    """A forged 19041 dump decoded with --layout inferred: the three globals come from code, at
    kernel base + the ISF's RVA, and the layout's provenance lists them."""
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    from pykd_ext.kernel.context import context_for
    from pykd_ext.session import Session
    version = "10.0.19041.1288"
    path = str(tmp_path / "f.dmp")
    write_scenario_dump(path, bulk_scenario(2, 1, handles_per_process=1), version, overwrite=True)
    symbols = isf_json(version)["symbols"]
    session = Session(target_path=path)
    session.layout_mode = "inferred"
    try:
        ctx = context_for(session)
        base = ctx.kernel_base
        for name in ("ObHeaderCookie", "ObTypeIndexTable"):
            address, how = ctx.resolve_global(name)
            assert how == "disasm:ObGetObjectType" and address == base + symbols[name]["address"]
        found = {g["name"]: g for g in session.layouts.choice["globals"]}
        assert found["PspCidTable"]["address"] == base + symbols["PspCidTable"]["address"]
        assert found["PspCidTable"]["sources"] == ["disasm:PsLookupProcessByProcessId",
                                                   "disasm:PsLookupThreadByThreadId"]
        # the byte at the recovered address is the cookie the forge planted
        from pykd_ext.forge.kernel_objects import HEADER_COOKIE
        assert ctx.space.read(ctx.global_address("ObHeaderCookie"), 1)[0] == HEADER_COOKIE & 0xFF
    finally:
        session.close()


@pytest.mark.parametrize("build_id", ["10.0.22621.382", "10.0.19041.1288-x86", "6.1.7601.17514-x86"],
                         ids=["x64-22621", "x86-19041", "x86-win7"])
def test_types_only_forged_kernel_globals_from_code(tmp_path: Path, build_id: str) -> None:
    """A types-only (derived) build, x64 or x86: no RVAs at all; the code names the forge's
    globals (Windows 7 has no header cookie: none is claimed, and none is used)."""
    from pykd_ext.forge.typesonly_kernel import (HEADER_COOKIE, ProcessSpec, ThreadSpec, TypesOnlyScenario,
                                                 build_types_only)
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.objects import reader_for
    from pykd_ext.layouts.inferred.code_globals import code_global
    from pykd_ext.session import Session
    scenario = TypesOnlyScenario(build_id, [ProcessSpec(4, 0, "System", [ThreadSpec(8)]),
                                            ProcessSpec(400, 4, "smss.exe", [ThreadSpec(404)])],
                                 running_tid=8)
    cookie = not build_id.startswith("6.1")
    forged = build_types_only(scenario)
    path = forged.write(str(tmp_path / "t.dmp"), overwrite=True)
    session = Session(target_path=path)
    try:
        ctx = context_for(session)
        assert ctx.layouts.types_only
        assert ctx.resolve_global("ObTypeIndexTable") == (forged.globals["ObTypeIndexTable"],
                                                          "disasm:ObGetObjectType")
        assert code_global(session.target, "PspCidTable") == (
            forged.globals["PspCidTable"], "disasm:PsLookupProcessByProcessId+disasm:PsLookupThreadByThreadId")
        if not cookie:
            assert code_global(session.target, "ObHeaderCookie") is None and reader_for(ctx).cookie is None
            return
        assert ctx.resolve_global("ObHeaderCookie") == (forged.globals["ObHeaderCookie"], "disasm:ObGetObjectType")
        assert reader_for(ctx).cookie == HEADER_COOKIE
        # the types-only warning no longer names the globals the code gave
        gaps = " ".join(w for w in ctx.layouts.choice["warnings"] if "types-only layout" in w)
        assert "ObTypeIndexTable" not in gaps and "ObHeaderCookie" not in gaps
    finally:
        session.close()


def _words(*words: int) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


def _adrp(rd: int, pc: int, target: int) -> int:
    """ADRP Xd, label (Arm ARM C6.2.11): immlo = bits 29-30, immhi = bits 5-23, of the page delta."""
    delta = ((target & ~0xFFF) - (pc & ~0xFFF)) >> 12
    return 0x90000000 | ((delta & 3) << 29) | (((delta >> 2) & 0x7FFFF) << 5) | rd


def test_arm64_object_type_and_cid_shapes_agree_with_objdump(tmp_path: Path) -> None:
    pc = 0xFFFFF80010001000
    cookie, table, cid = 0xFFFFF80010C06C0C, 0xFFFFF80010C07490, 0xFFFFF80010C06A60
    code = _words(
        _adrp(8, pc, cookie),                                 # adrp x8, cookie page
        0x39400000 | ((cookie & 0xFFF) << 10) | (8 << 5) | 9,  # ldrb w9, [x8, #off]
        _adrp(10, pc + 8, table),                             # adrp x10, table page
        0x91000000 | ((table & 0xFFF) << 10) | (10 << 5) | 10,  # add x10, x10, #off
        0xF8697940,                                           # ldr x0, [x10, x9, lsl #3]
        _adrp(11, pc + 20, cid),                              # adrp x11, cid page
        0xF9400000 | (((cid & 0xFFF) // 8) << 10) | (11 << 5) | 1,  # ldr x1, [x11, #off]
        0xD65F03C0)                                           # ret
    refs = references(code, pc, "arm64")
    assert [(r.shape, r.address) for r in refs] == [("byte", cookie), ("table", table), ("pointer", cid)]
    # objdump: each adrp's page, plus the immediate of the instruction that uses its register
    blob = tmp_path / "a64.bin"
    blob.write_bytes(code)
    text = subprocess.run(["aarch64-linux-gnu-objdump", "-D", "-b", "binary", "-m", "aarch64",
                           "--adjust-vma=%#x" % pc, str(blob)], check=True, capture_output=True, text=True).stdout
    lines = [(line.split("\t") + [""])[2:4] for line in text.splitlines() if re.match(r"^[0-9a-f]+:\t", line)]
    pages = {ops.split(",")[0]: int(ops.split(",")[1], 16) for mn, ops in lines if mn.strip() == "adrp"}
    theirs = []
    for mn, ops in lines:
        found = re.search(r"\[?(x\d+), #(0x[0-9a-f]+|\d+)\]?", ops)
        if mn.strip() in ("ldrb", "add", "ldr") and found and found.group(1) in pages:
            theirs.append(pages[found.group(1)] + int(found.group(2), 0))
    assert theirs == [cookie, table, cid]


def test_x86_absolute_shapes_agree_with_objdump(tmp_path: Path) -> None:
    """32-bit ObGetObjectType and CID lookups (IA-32 encodings, Intel SDM vol. 2: movzx r32,
    byte ptr [disp32] = 0f b6 /r mod=00 rm=101; mov eax,[ecx*4+disp32] = 8b 04 8d disp32;
    mov eax,[disp32] = a1; push dword ptr [disp32] = ff 35); objdump prints the addresses."""
    cookie, table, cid = 0x82B6E0A4, 0x82B6E200, 0x82B5F0C0
    le = lambda v: v.to_bytes(4, "little").hex()                       # noqa: E731
    object_type = bytes.fromhex(
        "8bff" "55" "8bec" "8b4d08" "8d41e8" "0fb649f4" "c1e808" "0fb6c0" "33c8"
        "0fb605" + le(cookie) + "33c8" "8b048d" + le(table) + "5d" "c20400")
    win7_lookup = bytes.fromhex("8bff" "55" "8bec" "ff7508" "ff35" + le(cid) + "5d" "c20800")
    helper = bytes.fromhex("a1" + le(cid) + "c3")
    for code, expected in ((object_type, [("byte", cookie), ("table", table)]),
                           (win7_lookup, [("pointer", cid)]), (helper, [("pointer", cid)])):
        ours = [(r.shape, r.address) for r in references(code, 0x80401000, "x86")]
        assert ours == expected
        blob = tmp_path / "x86.bin"
        blob.write_bytes(code)
        text = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386", "-M", "intel", str(blob)],
                              check=True, capture_output=True, text=True).stdout
        # `ds:0x...` for a plain absolute operand; `[ecx*4-0x...]` (signed) with an index
        theirs = [int(plain, 16) if plain else int(indexed, 16) & 0xFFFFFFFF
                  for plain, indexed in re.findall(r"ds:0x([0-9a-f]+)|\*4([+-]0x[0-9a-f]+)\]", text)]
        assert theirs == [address for _shape, address in expected]


class _FlatSpace:
    """A kernel image mapped at `base`, nothing else (what `find_code_globals` reads)."""

    def __init__(self, base: int, image: bytes) -> None:
        self.base, self.image, self._memo = base, image, {}

    def memo(self) -> dict:
        return self._memo

    def read_partial(self, address: int, size: int):
        at = address - self.base
        if not 0 <= at < len(self.image):
            return b"", None
        return self.image[at:at + size], None

    def read(self, address: int, size: int) -> bytes:
        return self.read_partial(address, size)[0]


def test_disagreeing_or_outside_the_image_globals_are_not_claimed() -> None:
    from pykd_ext.forge.kernel_image import Export, KernelImage, cid_lookup_code, object_type_code
    from pykd_ext.layouts.inferred.code_globals import find_code_globals
    base, size = 0xFFFFF80000000000, 0x40000
    exports = [
        # the table outside the image (a hostile export): not claimed; the cookie inside is
        Export("ObGetObjectType", 0x1100, object_type_code(0x1100, 0x30, 0x18, size + 0x1000, 0x30000)),
        # the two CID lookups name different tables: neither is claimed
        Export("PsLookupProcessByProcessId", 0x1200, cid_lookup_code(0x1200, 0x30100)),
        Export("PsLookupThreadByThreadId", 0x1300, cid_lookup_code(0x1300, 0x30200)),
    ]
    image = KernelImage(guid="CA8E2F01B822EDE6357898BFBF862997", size_of_image=size, exports=exports)
    found = find_code_globals(_FlatSpace(base, image.flat_image(base)), base, "x64")
    assert found == {"ObHeaderCookie": {"address": base + 0x30000, "sources": ["disasm:ObGetObjectType"],
                                        "code": [found["ObHeaderCookie"]["code"][0]]}}


def test_forged_x86_code_names_the_globals_as_objdump_reads_it(tmp_path: Path) -> None:
    from pykd_ext.forge.kernel_image import global_code_exports
    base = 0x82800000
    rvas = {"ObGetObjectType": 0x1100, "PsLookupProcessByProcessId": 0x1200, "PsLookupThreadByThreadId": 0x1300,
            "PspReferenceCidTableEntry": 0x1400, "ObHeaderCookie": 0x30030, "ObTypeIndexTable": 0x30600,
            "PspCidTable": 0x30020}
    offsets = {("_OBJECT_HEADER", "Body"): 0x18, ("_OBJECT_HEADER", "TypeIndex"): 0xC}
    exports = global_code_exports(rvas.__getitem__, lambda t, p: offsets[(t, p)], base)
    assert {e.name for e in exports} == {"ObGetObjectType", "PsLookupProcessByProcessId",
                                          "PsLookupThreadByThreadId", "PspReferenceCidTableEntry"}
    for export in exports:
        blob = tmp_path / "f.bin"
        blob.write_bytes(export.code)
        text = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386", "-M", "intel",
                               "--adjust-vma=%#x" % (base + export.rva), str(blob)],
                              check=True, capture_output=True, text=True).stdout
        theirs = [int(plain, 16) if plain else int(indexed, 16) & 0xFFFFFFFF if indexed else int(call, 16)
                  for plain, indexed, call in
                  re.findall(r"ds:0x([0-9a-f]+)|\*4([+-]0x[0-9a-f]+)\]|call\s+0x([0-9a-f]+)", text)]
        ours = [r.address for r in references(export.code, base + export.rva, "x86")]
        assert ours == theirs, (export.name, text)
        expected = {"ObGetObjectType": [base + rvas["ObHeaderCookie"], base + rvas["ObTypeIndexTable"]],
                    "PspReferenceCidTableEntry": [base + rvas["PspCidTable"]]}.get(
                        export.name, [base + rvas["PspReferenceCidTableEntry"]])
        assert ours == expected, export.name


def test_without_the_code_types_only_layouts_fall_back_to_the_scans(tmp_path: Path, monkeypatch) -> None:
    """The same types-only kernel without those functions' code: the table is found by its shape
    and the cookie derived from known objects, as before (typeindex_scan)."""
    import pykd_ext.forge.typesonly_kernel as forge
    from pykd_ext.kernel.context import context_for
    from pykd_ext.kernel.objects import reader_for
    from pykd_ext.session import Session
    monkeypatch.setattr(forge, "code_exports", lambda *args: [])
    scenario = forge.TypesOnlyScenario("10.0.22621.382", [
        forge.ProcessSpec(4, 0, "System", [forge.ThreadSpec(8), forge.ThreadSpec(12)]),
        forge.ProcessSpec(400, 4, "smss.exe", [forge.ThreadSpec(404)])], running_tid=8)
    forged = forge.build_types_only(scenario)
    path = forged.write(str(tmp_path / "t.dmp"), overwrite=True)
    session = Session(target_path=path)
    try:
        ctx = context_for(session)
        assert ctx.resolve_global("ObTypeIndexTable") == (forged.globals["ObTypeIndexTable"], "scan")
        assert ctx.resolve_global("ObHeaderCookie") == (None, "unknown")
        assert reader_for(ctx).cookie == forge.HEADER_COOKIE
    finally:
        session.close()
