"""The Python API (issue 11): the walk-through page runs as a doctest, the reference is current,
and the objects it hands out are the ones the CLI renders.

Expected values come from the sample's planted scenario (`samples/README.md`), and the API's
records are compared with the CLI's JSON for the same target (one model behind both).
"""
import doctest
import io
import json
from pathlib import Path

import pytest

import pykd_ext
from pykd_ext.api import reference
from pykd_ext.cli import run_command
from pykd_ext.errors import DumpFormatError, NotFoundError, TargetError
from pykd_ext.memory.faults import Fault
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "win10-19041-standard.dmp"


def test_walkthrough_page_runs_as_doctest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    failed, attempted = doctest.testfile(str(REPO / "docs" / "api.md"), module_relative=False,
                                         optionflags=doctest.ELLIPSIS, report=True)
    assert attempted > 20
    assert failed == 0


def test_reference_is_current() -> None:
    text = "".join(line + "\n" for line in reference.lines())
    assert (REPO / "docs" / "api-reference.md").read_text(encoding="utf-8") == text, \
        "docs/api-reference.md is stale: python -m pykd_ext.api.reference > docs/api-reference.md"


def test_import_is_cheap_and_lazy() -> None:
    # `import pykd_ext` must not pull the kernel model or construct (WinDbg pays every import)
    import subprocess
    import sys
    code = ("import sys, pykd_ext; assert callable(pykd_ext.open); "
            "print(int('construct' in sys.modules), int('pykd_ext.kernel.context' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import sys, pykd_ext; "
                          "print(int('construct' in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0"]
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["1", "0"]


@pytest.fixture(scope="module")
def dump():
    with pykd_ext.open(str(SAMPLE)) as opened:
        yield opened


def _cli_json(*argv: str) -> dict:
    out = io.StringIO()
    assert run_command(list(argv) + ["--target", str(SAMPLE), "--format", "json", "-q"], out=out) == 0
    return addresses_as_ints(json.loads(out.getvalue()))


def test_processes_equal_ps_records(dump) -> None:
    api = [p.record() for p in dump.processes()]
    cli = _cli_json("ps")["records"]
    assert [r["address"] for r in api] == [int(str(r["address"]), 0) if isinstance(r["address"], str)
                                           else r["address"] for r in cli]
    assert [r["pid"] for r in api] == [r["pid"] for r in cli]
    assert [r["name"] for r in api] == [r["name"] for r in cli]


def test_threads_and_handles_match_cli(dump) -> None:
    lsass = dump.process("lsass.exe")
    cli_threads = _cli_json("threads", "lsass.exe")["records"]
    assert [t.tid for t in lsass.threads()] == [r["tid"] for r in cli_threads]
    cli_handles = _cli_json("handles", "lsass.exe")["records"]
    assert [h["handle"] for h in lsass.handles()] == [r["handle"] for r in cli_handles]


def test_struct_access_matches_layout_and_record(dump) -> None:
    lsass = dump.process("lsass.exe")
    e = dump.struct("_EPROCESS", lsass.address)
    layout = dump.layouts.type("_EPROCESS")
    assert e.offset_of("UniqueProcessId") == layout.offset("UniqueProcessId")
    assert e.UniqueProcessId == 636                      # planted (samples/README.md)
    assert e.Pcb.address == lsass.address + layout.offset("Pcb")
    assert e["Pcb.DirectoryTableBase"] == e.Pcb.DirectoryTableBase == lsass.dtb
    assert bytes(e.ImageFileName).rstrip(b"\0") == b"lsass.exe"
    names = [name for name, _value in e]
    assert names == list(layout.fields)
    with pytest.raises(AttributeError):
        e.NoSuchField


def test_struct_outside_the_dump_is_a_fault(dump) -> None:
    e = dump.struct("_EPROCESS", 0xFFFF800000000000)      # canonical, never mapped in the sample
    assert isinstance(e.UniqueProcessId, Fault)


def test_errors_are_typed(dump, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        dump.process("no-such-process.exe")
    with pytest.raises(NotFoundError):
        dump.thread(0xFFFFF)
    with pytest.raises(TargetError):
        pykd_ext.open(str(tmp_path / "missing.dmp"))
    junk = tmp_path / "junk.dmp"
    junk.write_bytes(b"PAGEDU64" + b"\0" * 64)
    with pytest.raises(DumpFormatError):
        pykd_ext.open(str(junk))
