"""`u`, the address namer and the faulting instruction on real dumps.

Oracles: the issue's statement of the code at the 17763 fault (`bt dword ptr [rax], edx; setb
al; ret`, which objdump confirms in test_objdump_agreement), the dump's own driver list (module
bases, independent of the disassembler), call targets recomputed here from the raw rel32 bytes,
and pefile's parse of the real 32-bit ntdll.dll image kept in the WoW64 minidump (export names).
"""
import os
import struct
import subprocess
import sys

import pefile
import pytest

from pykd_ext.commands.u import parse_count
from pykd_ext.disasm import AddressNamer, faulting_instruction, modules_of_target, unassemble
from pykd_ext.disasm.listing import format_line, namer_for
from pykd_ext.errors import PykdExtError
from pykd_ext.targets.opener import open_target

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real")
DUMP_17763 = os.path.join(SHARED, "kernel-triage", "win10-17763-x64-triage.dmp")
DUMP_19041 = os.path.join(SHARED, "kernel-triage", "win10-19041-x64-triage.dmp")
DUMP_ARM64 = os.path.join(SHARED, "kernel-triage", "win11-22000-arm64-triage.dmp")
WOW64 = os.path.join(SHARED, "user-dumps", "win10-17134-wow64-fullmem.dmp")
FAULT_17763 = 0xFFFFF8044A24D2D4


def _driver(target, address):
    for driver in target.info().extra["drivers"]:
        if driver["base"] <= address < driver["base"] + driver["size"]:
            return driver
    raise AssertionError("no driver holds 0x%x" % address)


def test_fault_of_17763_dump():
    with open_target(DUMP_17763) as target:
        lines = list(unassemble(target.kernel, FAULT_17763, 3, "x64", namer_for(target)))
        assert [line.text for line in lines] == ["bt dword ptr [rax], edx", "setb al", "ret"]
        assert [line.address for line in lines] == [FAULT_17763, FAULT_17763 + 3, FAULT_17763 + 6]
        kernel = _driver(target, FAULT_17763)
        assert kernel["name"].lower() == "ntoskrnl.exe"
        assert lines[0].label == "ntoskrnl+0x%x" % (FAULT_17763 - kernel["base"])
        assert lines[1].label is None
        assert faulting_instruction(target, FAULT_17763) == "bt dword ptr [rax], edx"
        text = format_line(lines[0], "x64", 8)
        assert text[0] == "ntoskrnl+0x%x:" % (FAULT_17763 - kernel["base"])
        assert text[1].startswith("fffff804`4a24d2d4 0fa310 ")
        assert text[1].split()[2:] == ["bt", "dword", "ptr", "[rax],", "edx"]


def test_call_target_named_from_rel32():
    at = 0xFFFFF8044A24D014                       # e8 rel32 (objdump: call)
    with open_target(DUMP_17763) as target:
        raw = target.kernel.read(at, 5)
        assert raw[0] == 0xE8
        destination = at + 5 + struct.unpack("<i", raw[1:])[0]
        line = next(unassemble(target.kernel, at, 1, "x64", namer_for(target)))
        kernel = _driver(target, destination)
        assert line.mnemonic == "call"
        assert line.operands == "ntoskrnl+0x%x (%08x`%08x)" % (
            destination - kernel["base"], destination >> 32, destination & 0xFFFFFFFF)


def test_not_in_dump_where_the_code_stops():
    with open_target(DUMP_17763) as target:
        space = target.kernel
        page = FAULT_17763 & ~0xFFF
        # find the end of the mapped run that holds the fault (the dump's own range list)
        end = page
        while True:
            data, fault = space.read_partial(end, 0x1000)
            if fault is not None:
                end += len(data)
                break
            end += 0x1000
        lines = list(unassemble(space, end - 2, 8, "x64", namer_for(target)))
        assert lines[-1].raw is None and lines[-1].fault == "not in dump"
        assert len(lines) < 8
        assert format_line(lines[-1], "x64", 8)[-1].endswith("?? not in dump")
        assert faulting_instruction(target, end + 0x10) is None


def test_amdppm_fault_19041():
    # the README's ground truth: the bugcheck's exception address is amdppm.sys+0x334c
    with open_target(DUMP_19041) as target:
        address = target.info().bugcheck_parameters[1]
        line = next(unassemble(target.kernel, address, 1, "x64", namer_for(target)))
        assert line.label == "amdppm+0x334c"
        assert line.raw is not None


def test_arm64_branches_named():
    with open_target(DUMP_ARM64) as target:
        pc = target.info().extra["context"]["pc"]
        kernel = _driver(target, pc)
        lines = list(unassemble(target.kernel, pc, 2, "arm64", namer_for(target)))
        assert lines[0].label == "ntoskrnl+0x%x" % (pc - kernel["base"])
        word = int.from_bytes(target.kernel.read(pc + 4, 4), "little")
        assert word >> 26 == 0b100101                       # BL imm26 (Arm ARM C6.2.34)
        imm26 = word & 0x3FFFFFF
        destination = pc + 4 + ((imm26 - (1 << 26) if imm26 >> 25 else imm26) << 2)
        assert lines[1].mnemonic == "bl"
        assert lines[1].operands.startswith("ntoskrnl+0x%x (" % (destination - kernel["base"]))


def test_export_names_from_the_dump_agree_with_pefile():
    with open_target(WOW64) as target:
        modules = modules_of_target(target)
        ntdll = [m for m in modules if m[2].lower() == "ntdll.dll" and m[0] < 1 << 32][0]
        base, size, _name = ntdll
        image = bytes(target.kernel.read_partial(base, size)[0])
        # pefile reads files: lay the mapped image out as its file (sections at PointerToRawData)
        mapped = pefile.PE(data=image, fast_load=True)
        layout = bytearray(max(s.PointerToRawData + s.SizeOfRawData for s in mapped.sections))
        layout[:mapped.OPTIONAL_HEADER.SizeOfHeaders] = image[:mapped.OPTIONAL_HEADER.SizeOfHeaders]
        for section in mapped.sections:
            chunk = image[section.VirtualAddress:section.VirtualAddress + section.SizeOfRawData]
            layout[section.PointerToRawData:section.PointerToRawData + len(chunk)] = chunk
        pe = pefile.PE(data=bytes(layout), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
        exports = {sym.name.decode(): sym.address for sym in pe.DIRECTORY_ENTRY_EXPORT.symbols
                   if sym.name and not sym.forwarder}
        namer = AddressNamer(target.kernel, modules)
        for wanted in ("NtClose", "RtlAllocateHeap", "LdrLoadDll"):
            rva = exports[wanted]
            assert namer.name(base + rva) in ("ntdll!%s" % wanted,) + tuple(
                "ntdll!%s" % other for other, r in exports.items() if r == rva)
            assert namer.name(base + rva + 3).endswith("+0x3")


@pytest.mark.parametrize("words,count", [([], 8), (["L3"], 3), (["L", "3"], 3), (["l10"], 0x10),
                                         (["L0n20"], 20), (["L", "0x20"], 0x20)])
def test_count_syntax(words, count):
    assert parse_count(words) == count


@pytest.mark.parametrize("words", [["3"], ["L0"], ["Lzz"], ["L100000"]])
def test_bad_counts(words):
    with pytest.raises(PykdExtError):
        parse_count(words)


def test_cli_u():
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "u", "fffff804`4a24d2d4", "L", "3",
                          "--target", DUMP_17763], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "ntoskrnl+0x4a2d4:"
    assert [line.split(None, 2)[2] for line in lines[1:]] == [
        "bt      dword ptr [rax], edx", "setb    al", "ret"]
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "u", "ntoskrnl+4a2d4", "L1",
                          "--target", DUMP_17763], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].startswith("fffff804`4a24d2d4 0fa310")
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "u", "nosuchmodule+10",
                          "--target", DUMP_17763], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("pykd-ext: ")   # not there: exit 1
    out = subprocess.run([sys.executable, "-m", "pykd_ext", "u", "fffff8044a24d2d4", "L0",
                          "--target", DUMP_17763], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("pykd-ext: ")   # usage: exit 2
