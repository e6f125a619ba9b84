"""Start-up (issue 10, Scale): the parser imports only the module of the command being run.

Each check runs in a fresh interpreter (the imports of this test process do not count) and reads
`sys.modules` after parsing: which modules Python actually loaded is the independent witness.
"""
import json
import subprocess
import sys
from typing import List

import pytest

from pykd_ext.commands import COMMANDS

PROBE = r'''
import json, sys
from pykd_ext.cli import parse_args
try:
    parse_args(json.loads(sys.argv[1]))
except SystemExit:
    pass
sys.stdout = sys.__stdout__
print(json.dumps(sorted(m for m in sys.modules if m.startswith("pykd_ext.commands."))))
'''


def command_modules_after_parsing(argv: List[str]) -> List[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    return sorted(m for m in modules if m in COMMANDS.values())


@pytest.mark.parametrize("argv,expected", [
    (["eproc", "lsass.exe", "--target", "x.dmp"], ["pykd_ext.commands.eproc"]),
    (["--target", "x.dmp", "ps"], ["pykd_ext.commands.ps"]),
    (["windbg-setup"], ["pykd_ext.commands.windbg_setup"]),
    (["--help"], []),
    (["--version"], []),
    (["bogus"], []),
])
def test_only_the_named_command_is_imported(argv: List[str], expected: List[str]) -> None:
    assert command_modules_after_parsing(argv) == expected


def test_importing_the_cli_imports_no_command_and_no_layouts() -> None:
    probe = ("import sys, pykd_ext.cli; print(sorted(m for m in sys.modules if m.startswith("
             "('pykd_ext.commands.', 'pykd_ext.layouts', 'pykd_ext.kernel', 'pykd_ext.structs', 'construct'))))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
