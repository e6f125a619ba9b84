"""Issue 12, defects 2, 6, 7 and the help examples: WinDbg's radix, one exit-code rule, JSON
addresses as hex strings, `--help` ending with examples.

Independent sides: the sample's README (lsass.exe is PID 636; the forge planted it), the planted
world's own facts (`process_va`, `token_va`: addresses the forge wrote), and the real 19041 triage
dump's published ground truth (its bugcheck exception address is amdppm.sys+0x334c,
../shared/real/README.md). On today's main `ethread 60` is TID 60 (0x3c), `ps nosuch.exe` exits
0, `threads nosuch.exe` 2, and JSON addresses are bare integers.
"""
import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from planted import BUILDS, standard_world
from pykd_ext.cli import run_command
from pykd_ext.commands import COMMANDS
from pykd_ext.kernel.lookup import parse_spec
from pykd_ext.kernel.numbers import parse_number, using_radix

REPO = Path(__file__).resolve().parents[2]
SAMPLE = str(REPO / "samples" / "win10-19041-standard.dmp")
TRIAGE = str(REPO.parent / "shared" / "real" / "kernel-triage" / "win10-19041-x64-triage.dmp")
LSASS_PID = 636            # samples/README.md
HEX = "0123456789abcdef"


def run(argv: List[str]) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_command(argv + ["-q"], out=out)
    return code, out.getvalue(), err.getvalue()


def records(argv: List[str]) -> List[Dict[str, Any]]:
    code, out, err = run(argv + ["-f", "json"])
    assert code == 0, err
    return json.loads(out)["records"]


def is_hex_address(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("0x") and len(value) > 2 and all(c in HEX for c in value[2:])


# ---------------------------------------------------------------------------------------- radix

def test_number_parser_follows_windbg() -> None:
    assert parse_number("60") == 0x60 and parse_number("0x60") == 0x60 and parse_number("0n96") == 96
    assert parse_number("ffffb30c`8a00d050") == 0xFFFFB30C8A00D050
    assert parse_number("0y1010") == 10 and parse_number("0t17") == 15
    assert parse_number("lsass.exe") is None and parse_number("0nff") is None and parse_number("") is None
    with using_radix(10):
        assert parse_number("60") == 60 and parse_number("0x60") == 0x60 and parse_number("ff") is None
    assert parse_spec("add") == ("id", 0xADD)                  # WinDbg reads it as a number first
    assert parse_spec("svchost.exe") == ("name", "svchost.exe")


def test_bare_thread_id_is_hex_like_windbg() -> None:
    hexed = records(["ethread", "60", "-t", SAMPLE])
    assert [(r["tid"], r["pid"]) for r in hexed] == [(0x60, LSASS_PID)]
    for same in ("0x60", "0n96", "0y1100000"):
        assert records(["ethread", same, "-t", SAMPLE]) == hexed, same
    # --radix 10 (before or after the command) restores decimal
    assert records(["--radix", "10", "ethread", "96", "-t", SAMPLE]) == hexed
    assert records(["ethread", "96", "--radix", "10", "-t", SAMPLE]) == hexed


def test_process_by_decimal_hex_and_backticked_address() -> None:
    (lsass,) = records(["eproc", "0n%d" % LSASS_PID, "-t", SAMPLE])
    assert lsass["pid"] == LSASS_PID and lsass["name"] == "lsass.exe"
    assert records(["eproc", "%x" % LSASS_PID, "-t", SAMPLE]) == [lsass]
    address = int(lsass["address"], 16)
    backticked = "%08x`%08x" % (address >> 32, address & 0xFFFFFFFF)
    assert records(["eproc", backticked, "-t", SAMPLE]) == [lsass]
    assert [r["pid"] for r in records(["ps", "0n%d" % LSASS_PID, "lsass.exe", "-t", SAMPLE])] == [LSASS_PID]


# ---------------------------------------------------------------------------------- exit codes

@pytest.mark.parametrize("argv,status", [
    (["ps", "lsass.exe"], 0),
    (["ps", "nosuch.exe"], 1),
    (["threads", "nosuch.exe"], 1),
    (["eproc", "nosuch.exe"], 1),
    (["ethread", "0n99999"], 1),
    (["handles", "0n%d" % LSASS_PID, "--type", "Bogus"], 1),
    (["handles", "0n%d" % LSASS_PID], 0),
])
def test_one_exit_code_rule(argv: List[str], status: int) -> None:
    code, out, err = run(argv + ["-t", SAMPLE])
    assert code == status, err
    if status == 1 and not out:
        assert len(err.strip().splitlines()) == 1          # what was not found, on one line


def test_bad_input_stays_exit_2_with_one_line(tmp_path: Path) -> None:
    code, out, err = run(["ps", "-t", str(tmp_path / "missing.dmp")])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(io.StringIO()):
        run_command(["ps", "--radix", "7", "-t", SAMPLE])
    assert info.value.code == 2


# ------------------------------------------------------------------------------ JSON addresses

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> Any:
    del isf_dir
    return standard_world(BUILDS[2], str(tmp_path_factory.mktemp("habits")))


def test_json_jsonl_csv_write_addresses_as_hex_strings(world: Any) -> None:
    pid = 700
    (rec,) = records(["eproc", "0n%d" % pid, "-t", world.path])
    assert rec["pid"] == pid and isinstance(rec["threads_active"], int)        # counts, IDs: numbers
    assert is_hex_address(rec["address"]) and int(rec["address"], 16) == world.process_va[pid]
    assert is_hex_address(rec["token"]) and int(rec["token"], 16) == world.token_va[pid]
    code, out, _ = run(["ps", "-f", "jsonl", "-t", world.path])
    lines = [json.loads(line) for line in out.splitlines()]
    listed = {int(r["address"], 16) for r in lines}          # the active list (hidden ones are not on it)
    assert code == 0 and world.process_va[pid] in listed and listed <= set(world.process_va.values())
    assert all(isinstance(r["pid"], int) for r in lines)
    code, out, _ = run(["ps", "-f", "csv", "-t", world.path])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {int(r["address"], 16) for r in rows} == {int(r["address"], 16) for r in lines}
    assert all(r["address"].startswith("0x") and r["pid"].isdigit() for r in rows)


def test_teb_and_peb_pointers_are_hex_strings_too() -> None:
    """A TEB's and a PEB's pointers (user addresses above 2^32 in the sample) are addresses:
    JSON writes them as "0x..." like every other address (jq and JavaScript keep them exact)."""
    (teb,) = records(["teb", "0n172", "-t", SAMPLE])        # explorer.exe's fiber thread
    assert teb["self"] == teb["address"] and is_hex_address(teb["self"])
    assert is_hex_address(teb["fiber_data"]) and teb["fiber_data"] == teb["fiber"]["current_fiber"]
    assert is_hex_address(teb["deallocation_stack"]) and isinstance(teb["client_id_tid"], int)
    (peb,) = records(["peb", "explorer.exe", "-t", SAMPLE])
    for key in ("ldr", "process_parameters", "process_heap", "environment_address"):
        assert is_hex_address(peb[key]), (key, peb[key])
    assert isinstance(peb["number_of_heaps"], int)


def test_real_triage_json_addresses_round_trip() -> None:
    (info,) = records(["info", "-t", TRIAGE])
    exception = info["bugcheck_parameters"][1]
    assert is_hex_address(exception) and is_hex_address(info["kernel_base"])
    (amdppm,) = [d for d in info["extra"]["drivers"] if d["name"].lower() == "amdppm.sys"]
    assert int(exception, 16) - int(amdppm["base"], 16) == 0x334C          # the README's ground truth
    assert isinstance(amdppm["size"], int)


# ------------------------------------------------------------------------------------- --help

@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_ends_with_examples(name: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        run_command([name, "--help"])
    assert info.value.code == 0
    tail = out.getvalue().rstrip().split("examples:\n")
    assert len(tail) == 2, name
    lines = [line.strip() for line in tail[1].splitlines() if line.strip()]
    assert 2 <= len(lines) <= 4 and all("pykd-ext" in line for line in lines), lines


class _FakeProcess:
    def __init__(self, address: int, pid: int, name: str) -> None:
        self.address, self.pid, self.name, self.image_path = address, pid, name, None


class _FakeCensus:
    def __init__(self, processes: List[_FakeProcess]) -> None:
        self._processes = processes

    def ordered(self) -> List[_FakeProcess]:
        return list(self._processes)


def test_a_word_that_is_also_a_number_is_a_number_with_a_note() -> None:
    """WinDbg reads `add` as 0xadd; a process named "add" is found only when no PID 0xadd exists,
    and a note says when both exist."""
    from pykd_ext.kernel.lookup import Finder

    class Ctx:
        notes: List[str] = []
        pointer_size = 8

    census = _FakeCensus([_FakeProcess(0xFFFF800000001000, 0xADD, "x.exe"),
                          _FakeProcess(0xFFFF800000002000, 0x10, "add")])
    finder = Finder(Ctx())
    finder._active = finder._cross = census                     # noqa: SLF001 - no dump needed
    assert [p.pid for p in finder.processes("add")] == [0xADD]
    assert any("'add' was read as the number 0xadd" in n for n in Ctx.notes)
    only_name = Finder(Ctx())
    only_name._active = only_name._cross = _FakeCensus([_FakeProcess(0xFFFF800000002000, 0x10, "add")])
    assert [p.pid for p in only_name.processes("add")] == [0x10]
