"""Terminal injection (issue 10, defect 5): strings from the dump never drive the user's terminal.

The forge plants the hostile strings (`pykd_ext.forge`, standard scenario): winlogon's
`EPROCESS.ImageFileName` holds ESC[2J, BEL, CR and LF (its 15 bytes end at a NUL, as the kernel's
do), the DKOM-hidden process's name holds the C1 byte 0x9b too (psxview names it in a note on
stderr), and winlogon's audit image path, PEB `ImagePathName`, `CommandLine` and loader entry (all
UTF-16) hold ESC[2J, an OSC window-title sequence, BEL, CR, LF, NUL, U+009B (C1 CSI) and U+202E
(right-to-left override). The CLI runs in a subprocess: stdout and stderr are checked as the
bytes a terminal would receive. Text, table and CSV must carry none of the raw characters, only
their visible escapes; JSON must decode back to exactly the planted strings.
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

REPO = Path(__file__).resolve().parents[2]

HOSTILE_NAME = "\x1b[2J\x07\r\nwl.exe"                          # 13 bytes: fits ImageFileName
HIDDEN_NAME = "rk\x1b[2J\x9b\x07.exe"                           # 0x9b: the C1 CSI byte
HOSTILE_PATH = ("\\Device\\HarddiskVolume3\\evil\x1b[2J\x1b]0;pwned\x07\r\nnote: forged line"
                "\x00\x9b\u202eexe.txt")
#: what must never reach a terminal (LF is checked separately: it may end a line, never split one)
RAW = ("\x1b", "\x07", "\r", "\x00", "\x9b", "\u202e")
#: how each shows instead
ESCAPED = ("\\x1b[2J", "\\x1b]0;pwned\\x07", "\\x0d\\x0anote: forged line\\x00\\x9b\\u202eexe.txt")


class Hostile:
    def __init__(self, path: str, planted: Any) -> None:
        self.path = path
        by_pid = {p["pid"]: p for p in planted.processes}
        self.winlogon = by_pid[2208]
        self.hidden = by_pid[6660]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> Hostile:
    del isf_dir
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import standard_scenario
    spec = standard_scenario()
    for proc in spec.processes:
        if proc.pid == 2208:
            proc.name, proc.image_path, proc.command_line = HOSTILE_NAME, HOSTILE_PATH, HOSTILE_PATH
        elif proc.pid == 6660:
            proc.name = HIDDEN_NAME
    path = str(tmp_path_factory.mktemp("hostile") / "hostile-strings.dmp")
    planted = write_scenario_dump(path, spec, "win10")
    assert planted.processes[[p["pid"] for p in planted.processes].index(2208)]["name"] == HOSTILE_NAME
    return Hostile(path, planted)


def _cli(argv: List[str]) -> Tuple[int, bytes, bytes]:
    proc = subprocess.run([sys.executable, "-m", "pykd_ext"] + argv, capture_output=True, cwd=str(REPO),
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def _assert_safe(data: bytes, where: str) -> str:
    text = data.decode("utf-8")
    for char in RAW:
        assert char not in text, "%r reached %s" % (char, where)
    assert b"\x9b" not in data and b"\x1b" not in data
    for line in text.splitlines():
        assert not line.startswith("note: forged"), "a forged line on %s" % where
    return text


def _cases(h: Hostile) -> List[List[str]]:
    winlogon = "0x%x" % h.winlogon["address"]
    return [["ps"], ["pstree"], ["psxview"], ["eproc", winlogon, "-v"], ["threads", winlogon],
            ["peb", winlogon], ["modules", winlogon], ["handles", "csrss.exe"]]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["text", "table", "csv"])
def test_human_formats_escape_every_dump_string(hostile: Hostile, fmt: str) -> None:
    outputs = {}
    for argv in _cases(hostile):
        code, out, err = _cli(argv + ["--target", hostile.path, "--format", fmt])
        assert code == 0, err
        outputs[argv[0]] = _assert_safe(out, "stdout of %s" % argv)
        _assert_safe(err, "stderr of %s" % argv)
        if argv[0] == "psxview" and fmt != "csv":
            assert "rk\\x1b[2J\\x9b\\x07.exe" in err.decode()   # the hidden process's note
    assert "\\x1b[2J\\x07\\x0d\\x0awl.exe" in outputs["ps"]
    # the paths are columns of peb (CommandLine) and modules (Path); eproc's text shows ImagePath
    for command in ("eproc", "peb", "modules") if fmt == "text" else ("peb", "modules"):
        for escaped in ESCAPED:
            assert escaped in outputs[command], (command, escaped)
    if fmt == "text":
        assert "Image: \\x1b[2J\\x07\\x0d\\x0awl.exe" in outputs["eproc"].splitlines()[3]


def test_error_lines_are_escaped(hostile: Hostile) -> None:
    """A one-line error quoting what the user typed (here pasted from a hostile listing) stays one line."""
    code, out, err = _cli(["eproc", "no\x1b[2Jsuch\r\nnote: x", "--target", hostile.path])
    assert code == 1 and out == b""         # nothing matched (README "Exit codes")
    text = _assert_safe(err, "stderr")
    assert len(text.splitlines()) == 1 and text.startswith("pykd-ext: ")


def _json(argv: List[str]) -> Dict[str, Any]:
    import io
    out = io.StringIO()
    assert run_command(argv + ["--format", "json"], out=out) == 0
    assert out.getvalue().isascii()
    return addresses_as_ints(json.loads(out.getvalue()))


def test_json_keeps_the_exact_planted_strings(hostile: Hostile) -> None:
    from pykd_ext.forge.kernel_objects import dos_path
    winlogon = "0x%x" % hostile.winlogon["address"]
    (proc,) = [r for r in _json(["ps", "--target", hostile.path])["records"] if r["pid"] == 2208]
    assert proc["name"] == HOSTILE_NAME and proc["image_path"] == HOSTILE_PATH
    (peb,) = _json(["peb", winlogon, "--target", hostile.path])["records"]
    assert peb["image_path"] == dos_path(HOSTILE_PATH) and peb["command_line"] == HOSTILE_PATH
    hidden = [r for r in _json(["psxview", "--target", hostile.path])["records"] if r["pid"] == 6660]
    # ImageFileName is ANSI: bytes above 0x7f are shown as \xNN by the decoder (kernel.process)
    assert hidden[0]["name"] == "rk\x1b[2J\\x9b\x07.exe"


def test_windbg_output_is_escaped_inside_dml(hostile: Hostile, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """`!py eproc` over the stand-in pykd with DML on: escapes first, then DML's own `&lt;`."""
    sys.path.insert(0, str(REPO / "tests" / "pykd"))
    try:
        from pykd_harness import run_like_bootstrapper, script_path, use_standin
    finally:
        sys.path.remove(str(REPO / "tests" / "pykd"))
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    pykd = use_standin()
    pykd._standin_configure(dump=hostile.path, windbg=True)
    try:
        out, err = run_like_bootstrapper(script_path("eproc"), ["0x%x" % hostile.winlogon["address"], "-v"],
                                         windbg=True)
        plain, _ = run_like_bootstrapper(script_path("peb"), ["0x%x" % hostile.winlogon["address"]])
    finally:
        pykd._standin_reset()
    for text in (out, err, plain):
        for char in RAW:
            assert char not in text
    assert '<link cmd="!py eproc 0x%x">' % hostile.winlogon["address"] in out
    assert "Image: \\x1b[2J\\x07\\x0d\\x0awl.exe" in out
    assert "\\x0d\\x0anote: forged line\\x00\\x9b\\u202eexe.txt" in plain
