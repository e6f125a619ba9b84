"""capstone (through pykd_ext.disasm) against GNU objdump on the same bytes.

Independent oracle: GNU binutils' objdump (x64/x86: `objdump -D -b binary -m i386:x86-64|i386
-M intel`; ARM64: `aarch64-linux-gnu-objdump -m aarch64`), a disassembler written without
capstone. The bytes are real Windows kernel code kept by the real triage dumps (17763 x64: the
page of ntoskrnl holding the fault at fffff8044a24d2d4; 22000 ARM64: the page around the
context's Pc). Both texts are normalised only in spelling (case, `ptr`, spaces, number radix,
objdump's `<symbol>` and `//`/`#` comments); mnemonic and every operand must agree.
"""
import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, List, Tuple

import pytest

from pykd_ext.disasm.engine import MAX_INSTRUCTION, SKIP_UNDECODABLE, decode, decode_one
from pykd_ext.targets.opener import open_target

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real", "kernel-triage")
X64_DUMP = os.path.join(REAL, "win10-17763-x64-triage.dmp")
#: 32-bit x86 code: the WoW64 process's own 32-bit ntdll.dll (at 0x77cf0000) in a real MDMP
WOW64_DUMP = os.path.join(REAL, "..", "user-dumps", "win10-17134-wow64-fullmem.dmp")
X86_CODE = 0x77D5A000              # the .text page holding ntdll!NtClose
ARM64_DUMP = os.path.join(REAL, "win11-22000-arm64-triage.dmp")

_NUMBER = re.compile(r"(?<![a-z0-9_.])(-?)(0x[0-9a-f]+|[0-9]+)(?![0-9a-z_])")
#: Spellings that differ between the tools but name the same thing (each rule is a spelling
#: convention, not a meaning):
#: - objdump names a prefix that changes nothing ("rex push rbx", "gs dec eax");
#: - an absolute (moffs) operand is "ds:0x10" / "fs:0x18" without a size in objdump,
#:   "dword ptr [0x10]" / "dword ptr fs:[0x18]" in capstone;
#: - objdump spells out a scale of 1, a zero displacement and a SIB byte without base or index
#:   ("[eax+eax*1+0x0]", "[eiz*1+0x20]", "[esp+eiz*2]"), and the implicit DS: of string sources;
#: - Intel SDM aliases: SAL = SHL, PUSHAD = PUSHA, POPAD = POPA, IRETD = IRET (32-bit code),
#:   XLATB = XLAT BYTE PTR [EBX], MOVSD/STOSB/... with explicit operands = MOVS/STOS/...;
#: - Arm's condition codes CS/HS and CC/LO are one code each (Arm ARM C1.2.4): objdump prints
#:   CS/CC, capstone HS/LO;
#: - negative immediates: capstone prints them signed ("-1", "-0x47b8"), objdump as the two's
#:   complement of the operand's width ("0xffffffff", "0xb848"): compared modulo 2^width.
_PREFIX = re.compile(r"^((rex(\.[wrxb]+)?|[cdefgs]s)\s+)+(?=[a-z])")
_CONDITION = {"cs": "hs", "cc": "lo"}
_ALIASES = {"sal": "shl", "pushal": "pusha", "popal": "popa", "iretd": "iret", "xlatb": "xlat"}
_STRING = re.compile(r"^(stos|lods|movs|scas|cmps|ins|outs)[bwdq]$")
_SIZE = {"byte": 8, "word": 16, "dword": 32, "qword": 64}


def _numbers(operands: str, bits: int) -> str:
    def one(match: "re.Match") -> str:
        sign, digits = match.group(1), match.group(2)
        value = int(digits, 16) if digits.startswith("0x") else int(digits)
        if sign:
            value = -value
        return hex(value % (1 << bits)) if value < 0 else hex(value)
    return _NUMBER.sub(one, operands)


def normalise(text: str, bits: int = 64) -> str:
    t = text.lower().strip()
    t = re.sub(r"\s*<[^>]*>", "", t)            # objdump's <symbol+off> after a target
    t = re.sub(r"\s*(//|#\s).*$", "", t)        # objdump comments (ARM64 //, x86 "# 0x...")
    t = _PREFIX.sub("", t)
    mnemonic, _, operands = re.sub(r"\s+", " ", t).partition(" ")
    mnemonic = _ALIASES.get(mnemonic, mnemonic)
    if _STRING.match(mnemonic) and operands:
        mnemonic = mnemonic[:-1]
    if mnemonic == "xlat":
        operands = ""
    mnemonic = re.sub(r"^b\.(cs|cc)$", lambda m: "b." + _CONDITION[m.group(1)], mnemonic)
    operands = re.sub(r",\s*(cs|cc)$", lambda m: "," + _CONDITION[m.group(1)], operands)
    operands = re.sub(r"\s+", "", operands.replace(" ptr", "").replace("#", ""))
    operands = re.sub(r"([cdefgs]s):\[(0x[0-9a-f]+|[0-9]+)\]", r"\1:\2", operands)
    operands = re.sub(r"(byte|word|dword|qword)(\[(0x[0-9a-f]+)\])", r"ds:\3", operands)
    operands = re.sub(r"(byte|word|dword|qword)([cdefgs]s:0x)", r"\2", operands)
    operands = re.sub(r"\[(0x[0-9a-f]+|[0-9]+)\]", r"ds:\1", operands)
    operands = operands.replace("ds:[", "[").replace("[eiz*1+", "[")
    operands = re.sub(r"\+eiz\*[1248]|\*1(?=[\]+-])|\+0x0\]", lambda m: "]" if m.group(0) == "+0x0]" else "",
                      operands)
    # an immediate is as wide as the operation: a byte/word/... memory operand, else `bits`
    sized = re.match(r"(byte|word|dword|qword)", operands)
    width = _SIZE[sized.group(1)] if sized else (16 if mnemonic in ("enter", "ret") else bits)
    return mnemonic + " " + _numbers(operands, width)


def objdump(code: bytes, address: int, arch: str) -> Dict[int, str]:
    """address -> `mnemonic operands` as objdump prints them."""
    if arch == "arm64":
        cmd = ["aarch64-linux-gnu-objdump", "-D", "-b", "binary", "-m", "aarch64"]
    else:
        cmd = ["objdump", "-D", "-b", "binary", "-m",
               "i386:x86-64" if arch == "x64" else "i386", "-M", "intel"]
    assert shutil.which(cmd[0]), "%s is missing (see .ci/run need=)" % cmd[0]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "code.bin")
        with open(path, "wb") as handle:
            handle.write(code)
        out = subprocess.run(cmd + ["--adjust-vma=0x%x" % address, path], check=True,
                             capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        match = re.match(r"\s*([0-9a-f]+):\t[0-9a-f ]+\t(.*)$", line)
        if match:
            found[int(match.group(1), 16)] = match.group(2)
    return found


def compare(code: bytes, address: int, arch: str) -> Tuple[int, List[str]]:
    """(instructions compared, disagreements) of capstone and objdump on `code`."""
    theirs = objdump(code, address, arch)
    ours = []
    wrong = []
    pos = 0
    while pos < len(code):                       # every decodable instruction of the page
        insn = decode_one(code[pos:pos + MAX_INSTRUCTION[arch]], address + pos, arch)
        if insn is None:                         # objdump must not decode it either
            other = theirs.get(address + pos, "(bad)")
            if not re.match(r"\(bad\)|\.inst\b|\.byte\b", other):
                wrong.append("%x: capstone cannot decode, objdump %r" % (address + pos, other))
            pos += SKIP_UNDECODABLE[arch]
            continue
        ours.append(insn)
        pos += insn.size
    assert ours, "capstone decoded nothing"
    for insn in ours:
        other = theirs.get(insn.address)
        bits = 32 if arch == "x86" else 64
        if other is None or normalise(other, bits) != normalise(insn.text, bits):
            wrong.append("%x: %r vs objdump %r" % (insn.address, insn.text, other))
    return len(ours), wrong


def _page(path: str, address: int) -> bytes:
    with open_target(path) as target:
        data, _fault = target.kernel.read_partial(address, 0x1000)
    assert len(data) == 0x1000
    return bytes(data)


@pytest.fixture(scope="module")
def x64_code() -> bytes:
    return _page(X64_DUMP, 0xFFFFF8044A24D000)


@pytest.fixture(scope="module")
def arm64_code() -> bytes:
    return _page(ARM64_DUMP, 0xFFFFF803F32DE000)


def test_x64_agrees_with_objdump(x64_code):
    count, wrong = compare(x64_code, 0xFFFFF8044A24D000, "x64")
    assert count > 1000
    assert wrong == []


def test_x86_agrees_with_objdump():
    count, wrong = compare(_page(WOW64_DUMP, X86_CODE), X86_CODE, "x86")
    assert count > 1000
    assert wrong == []


def test_arm64_agrees_with_objdump(arm64_code):
    count, wrong = compare(arm64_code, 0xFFFFF803F32DE000, "arm64")
    assert count > 1000 // 4
    assert wrong == []


def test_comparison_can_fail(x64_code, arm64_code):
    """The normaliser keeps what matters: a wrong register, immediate or mnemonic is caught."""
    assert normalise("mov    QWORD PTR [rsp+0x8],rbx") == normalise("mov qword ptr [rsp + 8], rbx")
    assert normalise("mov    QWORD PTR [rsp+0x8],rbx") != normalise("mov qword ptr [rsp + 0x10], rbx")
    assert normalise("cmp\tw8, #0x9") != normalise("cmp w9, #9")
    assert normalise("b.hi\t0xfffff803f32de058  // b.pmore") != normalise("b.lo #0xfffff803f32de058")
    assert normalise("b.cs\t0x10  // b.hs, b.nlast") == normalise("b.hs #0x10")
    assert normalise("b.cs\t0x10") != normalise("b.lo #0x10")
    assert normalise("cmp    r11,0xffffffffffffffff") == normalise("cmp r11, -1")
    assert normalise("cmp    r11,0xfffffffffffffffe") != normalise("cmp r11, -1")
    # the same bytes read as 32-bit code by objdump: the x64 stream must disagree often
    theirs = objdump(x64_code, 0x4A24D000, "x86")
    ours = list(decode(x64_code, 0x4A24D000, "x64", 400))
    differing = sum(1 for i in ours
                    if normalise(theirs.get(i.address, "")) != normalise(i.text))
    assert differing > len(ours) // 4
