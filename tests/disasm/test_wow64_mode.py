"""`u` on a WoW64 user dump decodes 32-bit code as x86 and 64-bit code as x64 (issue 15).

Oracles: the dump's own bytes — the module's PE `Machine` read here from the raw header
(e_lfanew at 0x3c, Machine after the "PE\\0\\0" signature: PE/COFF specification), the crashing
thread's saved `SegCs` (0x23, x64 Windows' 32-bit user code selector) — and GNU objdump in i386
mode on the same bytes; objdump in x86-64 mode must disagree, or the test could not fail.
"""
import io
import json
import struct
from pathlib import Path
from typing import Any, Dict, List

from pykd_ext.cli import run_command
from pykd_ext.disasm.mode import WOW64_USER_CS, code_arch
from pykd_ext.targets.opener import open_target
from test_objdump_agreement import normalise, objdump

#: the 32-bit program's own code (targetapp.exe at 0x850000): a function prologue
X86_CODE = 0x875F30
#: the 64-bit ntdll's system call stub where the other threads wait
X64_CODE = 0x7FFC8D79D844


def _u(path: str, address: int, count: str) -> Dict[str, Any]:
    out = io.StringIO()
    assert run_command(["u", "%#x" % address, count, "--target", path, "--format", "json"], out) == 0
    return json.loads(out.getvalue())


def test_wow64_u_decodes_32bit_code_as_x86(real_dir: Path) -> None:
    path = str(real_dir / "user-dumps" / "win10-17134-wow64-fullmem.dmp")
    with open_target(path) as target:
        info = target.info()
        assert info.arch == "x64"
        header = bytes(target.kernel.read(0x850000, 0x400))
        e_lfanew = struct.unpack_from("<I", header, 0x3C)[0]
        assert header[e_lfanew:e_lfanew + 4] == b"PE\0\0"
        assert struct.unpack_from("<H", header, e_lfanew + 4)[0] == 0x14C      # IMAGE_FILE_MACHINE_I386
        assert info.extra["threads"][0]["context"]["segcs"] == WOW64_USER_CS
        code = bytes(target.kernel.read(X86_CODE, 0x40))
    doc = _u(path, X86_CODE, "L0n16")
    assert doc["meta"]["arch"] == "x86" and "32-bit" in doc["notes"][0]
    theirs = objdump(code, X86_CODE, "x86")
    compared = 0
    records: List[Dict[str, Any]] = doc["records"]
    for rec in records:
        address = int(rec["address"], 16)
        assert address in theirs, rec                        # same instruction boundaries
        if "(" in rec["operands"]:
            continue                                         # an address we named (module+off)
        ours = "%s %s" % (rec["mnemonic"], rec["operands"])
        # both tools spell a `rep` prefix the same; `normalise` knows string mnemonics without it
        assert normalise(ours.replace("rep ", ""), 32) == normalise(theirs[address].replace("rep ", ""), 32), \
            (ours, theirs[address])
        compared += 1
    assert compared >= 12
    as_x64 = objdump(code, X86_CODE, "x64")
    assert any(normalise(as_x64.get(int(r["address"], 16), ""), 64) !=
               normalise("%s %s" % (r["mnemonic"], r["operands"]), 64) for r in records)


def test_wow64_u_keeps_64bit_code_x64(real_dir: Path) -> None:
    path = str(real_dir / "user-dumps" / "win10-17134-wow64-fullmem.dmp")
    doc = _u(path, X64_CODE, "L2")
    assert doc["meta"]["arch"] == "x64" and not doc["notes"]
    assert doc["records"][0]["mnemonic"] == "ret"


class _Target:
    """A target whose module list does not hold the address: only the threads can tell."""

    def __init__(self, threads: List[Dict[str, Any]]) -> None:
        self._threads = threads

    def info(self) -> Any:
        class Info:
            arch = "x64"
            extra = {"modules": [], "threads": self._threads}
        return Info()


def test_thread_contexts_say_the_mode_where_no_module_does() -> None:
    at = 0x401000
    x86_record = [{"id": 1, "context_arch": "x86", "context": {"eip": at}}]
    compat_cs = [{"id": 2, "context_arch": "x64", "context": {"rip": at, "segcs": 0x23}}]
    long_cs = [{"id": 3, "context_arch": "x64", "context": {"rip": at, "segcs": 0x33}}]
    assert code_arch(_Target(x86_record), at)[0] == "x86"
    assert code_arch(_Target(compat_cs), at)[0] == "x86"
    assert code_arch(_Target(long_cs), at) == ("x64", None)
    assert code_arch(_Target(compat_cs), at + 1) == ("x64", None)
