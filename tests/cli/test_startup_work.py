"""Start-up (issue 10, Scale): `eproc` on the sample does no whole-table work it does not need.

The command runs in a fresh interpreter (nothing this test process loaded counts); afterwards the
probe reads the interpreter's own state: the kphdyn kernel table (~3,700 rows) was never loaded
whole, yet the kernel's exact-version question was asked (`kernel_version_of` ran on the target).
"""
import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp"

PROBE = r'''
import contextlib, io, json, sys
from pykd_ext import cli
from pykd_ext.layouts import version_choice
asked = []
original = version_choice.kernel_version_of
def kernel_version_of(info):
    asked.append(True)
    return original(info)
version_choice.kernel_version_of = kernel_version_of
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = cli.main(["eproc", "lsass.exe", "--target", sys.argv[1]])
from pykd_ext.layouts import kernel_versions
print(json.dumps({"code": code, "lsass": "lsass.exe" in out.getvalue(), "asked": bool(asked),
                  "table_loaded": kernel_versions._TABLE is not None}))
'''


def test_eproc_does_not_load_the_kphdyn_table() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(SAMPLE)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"code": 0, "lsass": True, "asked": True, "table_loaded": False}
