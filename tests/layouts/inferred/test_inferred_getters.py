"""Getter disassembly (capstone) checked against GNU objdump on the same bytes, and the forge's
export directory checked with pefile.

x64 bytes are the forge's own accessors (`forge.kernel_image.getter_code`); ARM64 bytes are
encoded here from the Arm Architecture Reference Manual's formats (LDR/LDRB/ADD immediate, RET),
so both decoders see instructions neither of them produced.
"""
import re
import subprocess
from pathlib import Path
from typing import List, Tuple

import pefile
import pytest

from pykd_ext.forge.kernel_image import (X64_ADDRESS, X64_LOAD_BYTE, X64_LOAD_DWORD, X64_LOAD_QWORD,
                                         Export, KernelImage, getter_code)
from pykd_ext.layouts.inferred.getters import decode_getter
from pykd_ext.targets.pe import parse_pe_headers

OFFSETS = (0x8, 0x2e0, 0x440, 0x5a8, 0x87a, 0xb70)
GUID = "CA8E2F01B822EDE6357898BFBF862997"


def _objdump(tool: str, machine: str, code: bytes, tmp_path: Path) -> List[str]:
    blob = tmp_path / "code.bin"
    blob.write_bytes(code)
    args = [tool, "-D", "-b", "binary", "-m", machine]
    if machine.startswith("i386"):
        args += ["-M", "intel"]
    text = subprocess.run(args + [str(blob)], check=True, capture_output=True, text=True).stdout
    return [" ".join(p.strip() for p in line.split("\t")[2:]) for line in text.splitlines()
            if re.match(r"^\s+[0-9a-f]+:\t", line)]


@pytest.mark.parametrize("shape,kind", [(X64_LOAD_QWORD, "load"), (X64_LOAD_DWORD, "load"),
                                        (X64_LOAD_BYTE, "load"), (X64_ADDRESS, "address")],
                         ids=["mov-qword", "mov-dword", "movzx-byte", "lea"])
def test_x64_getters_agree_with_objdump(tmp_path: Path, shape: bytes, kind: str) -> None:
    codes = [getter_code(shape, offset) for offset in OFFSETS]
    lines = _objdump("objdump", "i386:x86-64", b"".join(codes), tmp_path)   # one run, two lines each
    assert len(lines) == 2 * len(OFFSETS)
    for n, (offset, code) in enumerate(zip(OFFSETS, codes)):
        first, last = lines[2 * n], lines[2 * n + 1]
        assert last == "ret"
        found = re.search(r"\[rcx\+0x([0-9a-f]+)\]", first)
        assert found is not None, first
        access = decode_getter(code, 0xfffff80000001000, "x64")
        assert access is not None and access.kind == kind
        assert access.displacement == int(found.group(1), 16) == offset
        assert (first.split()[0] == "lea") == (kind == "address")


def test_x64_session_getter_gives_both_members(tmp_path: Path) -> None:
    code = getter_code(X64_LOAD_QWORD, 0x558, 0x8)
    lines = _objdump("objdump", "i386:x86-64", code, tmp_path)
    disps = [int(m, 16) for m in re.findall(r"\[r[ac]x\+0x([0-9a-f]+)\]", " ".join(lines))]
    access = decode_getter(code, 0, "x64")
    assert access is not None and [access.displacement, access.second] == disps == [0x558, 0x8]


def _arm64(words: List[int]) -> bytes:
    return b"".join(w.to_bytes(4, "little") for w in words)


#: A64 encodings (Arm ARM C6.2): LDR Xt,[Xn,#imm] (unsigned offset, imm12 = offset/8),
#: LDRB Wt,[Xn,#imm] (imm12 = offset), ADD Xd,Xn,#imm (imm12), RET (X30)
def _ldr_x0(offset: int) -> int:
    return 0xF9400000 | ((offset // 8) << 10)


def _ldrb_w0(offset: int) -> int:
    return 0x39400000 | (offset << 10)


def _add_x0(offset: int) -> int:
    return 0x91000000 | (offset << 10)


RET = 0xD65F03C0


@pytest.mark.parametrize("encode,kind,mnemonic", [(_ldr_x0, "load", "ldr"), (_ldrb_w0, "load", "ldrb"),
                                                 (_add_x0, "address", "add")],
                         ids=["ldr", "ldrb", "add"])
def test_arm64_getters_agree_with_objdump(tmp_path: Path, encode, kind: str, mnemonic: str) -> None:
    offsets = [o for o in OFFSETS if encode is not _ldr_x0 or o % 8 == 0]
    codes = [_arm64([encode(offset), RET]) for offset in offsets]
    lines = _objdump("aarch64-linux-gnu-objdump", "aarch64", b"".join(codes), tmp_path)
    assert len(lines) == 2 * len(offsets)
    for n, (offset, code) in enumerate(zip(offsets, codes)):
        first, last = lines[2 * n], lines[2 * n + 1]
        assert first.split()[0] == mnemonic and last == "ret", (first, last)
        shown = int(re.search(r"#(0x[0-9a-f]+|\d+)", first).group(1), 0)
        access = decode_getter(code, 0xfffff80000001000, "arm64")
        assert access is not None and access.kind == kind
        assert access.displacement == shown == offset


def test_a_getter_that_overwrites_its_argument_is_refused() -> None:
    # xor ecx, ecx; mov rax, [rcx+0x440]; ret : the load is not through the argument
    code = bytes.fromhex("31c9") + getter_code(X64_LOAD_QWORD, 0x440)
    assert decode_getter(code, 0, "x64") is None


def test_forged_export_directory_reads_back_with_pefile() -> None:
    exports = [Export("PsGetProcessPeb", 0x3000, getter_code(X64_LOAD_QWORD, 0x550)),
               Export("PsGetProcessId", 0x2000, getter_code(X64_LOAD_QWORD, 0x440)),
               Export("PsGetThreadTeb", 0x2800, getter_code(X64_LOAD_QWORD, 0xf0))]
    image = KernelImage(guid=GUID, size_of_image=0x10000, exports=exports)
    flat = image.flat_image(0xfffff80000000000)
    pe = pefile.PE(data=flat)
    found: List[Tuple[bytes, int]] = [(s.name, s.address) for s in pe.DIRECTORY_ENTRY_EXPORT.symbols]
    assert sorted(found) == sorted((e.name.encode(), e.rva) for e in exports)
    ours = parse_pe_headers(flat)
    for export in exports:
        assert ours.export_rva(export.name) == export.rva
        assert flat[export.rva:export.rva + len(export.code)] == export.code


def test_abi_facts_the_inferred_layouts_rely_on_hold_in_every_shipped_build() -> None:
    """`shapes`: Pcb/Tcb start their containers, and the ABI types' members sit at one offset
    per pointer size, in every shipped build (ISF-generated layouts)."""
    from pykd_ext.layouts.inferred.shapes import ABI_TYPES, EMBEDDED_AT_ZERO
    from pykd_ext.layouts.registry import shipped_builds, usable_layouts
    seen = {}
    for entry in shipped_builds():
        layouts = usable_layouts(entry)
        for (outer, member), inner in EMBEDDED_AT_ZERO.items():
            field = layouts.type(outer).field(member)
            assert field.offset == 0 and field.type_name == inner, entry.build_id
        for name in ABI_TYPES:
            if not layouts.has_type(name):
                continue
            t = layouts.type(name)
            shape = tuple((f.name, f.offset, f.size, f.bit_position) for f in t.walk())
            if name == "_KAPC_STATE":          # only Process is relied on (newer builds add flags)
                shape = (t.offset("Process"),)
            key = (name, entry.pointer_size)
            assert seen.setdefault(key, shape) == shape, (entry.build_id, name)
    assert len(seen) >= 12


#: 32-bit (stdcall) getter shapes, IA-32 encodings (Intel SDM vol. 2): mov eax,[esp+4] (8b 44 24
#: 04), the hot-patch frame mov edi,edi; push ebp; mov ebp,esp; mov eax,[ebp+8] (8b ff 55 8b ec 8b
#: 45 08), mov eax,[eax+disp32] (8b 80), lea eax,[eax+disp32] (8d 80), pop ebp (5d), ret 4 (c2 04 00)
X86_SHAPES = {
    "esp-load": ("8b442404" "8b80{d}" "c20400", "load"),
    "frame-lea": ("8bff" "55" "8bec" "8b4508" "8d80{d}" "5d" "c20400", "address"),
    "pushed-load": ("56" "8b442408" "8b80{d}" "5e" "c20400", "load"),
}


@pytest.mark.parametrize("shape", sorted(X86_SHAPES))
def test_x86_stdcall_getters_agree_with_objdump(tmp_path: Path, shape: str) -> None:
    template, kind = X86_SHAPES[shape]
    codes = [bytes.fromhex(template.format(d=offset.to_bytes(4, "little").hex())) for offset in OFFSETS]
    lines = _objdump("objdump", "i386", b"".join(codes), tmp_path)
    shown = [int(m, 16) for m in re.findall(r"\[eax\+0x([0-9a-f]+)\]", " ".join(lines))]
    assert shown == list(OFFSETS)
    for offset, code in zip(OFFSETS, codes):
        access = decode_getter(code, 0x80401000, "x86")
        assert access is not None and access.kind == kind and access.displacement == offset


def test_an_x86_getter_not_reading_its_stack_argument_is_refused() -> None:
    # mov eax, [esp+8] (the caller's frame, not the argument); mov eax, [eax+0x150]; ret 4
    assert decode_getter(bytes.fromhex("8b442408" "8b8050010000" "c20400"), 0, "x86") is None
