"""The batch crash record carries the faulting instruction (`fault_instruction`).

Oracles: the 17763 dump's bugcheck parameter 2 (the exception address, stated by the header) and
the issue's reading of the code there; the 19041 dump's fault in amdppm.sys (README ground
truth), decoded independently by objdump from the record's own `fault_bytes`.
"""
import os
import re
import subprocess
import tempfile

from pykd_ext.batch.analyze import analyze_dump

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "real", "kernel-triage")


def test_fault_instruction_17763():
    row = analyze_dump(os.path.join(REAL, "win10-17763-x64-triage.dmp"))["dump"]
    assert row["param2"] == 0xFFFFF8044A24D2D4 == row["fault_address"]
    assert row["fault_instruction"] == "bt dword ptr [rax], edx"


def test_fault_instruction_19041_matches_objdump():
    row = analyze_dump(os.path.join(REAL, "win10-19041-x64-triage.dmp"))["dump"]
    assert row["fault_instruction"]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fault.bin")
        with open(path, "wb") as handle:
            handle.write(bytes.fromhex(row["fault_bytes"]))
        out = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel",
                              path], capture_output=True, text=True, check=True).stdout
    first = re.search(r"^\s+0:\t[0-9a-f ]+\t(.*)$", out, re.M).group(1)
    squash = lambda text: re.sub(r"\s+|ptr", "", text.lower()).replace("*1", "")  # noqa: E731
    assert squash(first) == squash(row["fault_instruction"])
