"""Running `scripts/*.py` the way WinDbg's pykd bootstrapper does, against the stand-in pykd.

Bootstrapper facts reproduced (see `/work/shared/reference/pykd.md`): the script runs as
`__main__` (fresh module namespace), `sys.argv = [<full script path>, args...]`, the script's
folder is prepended to `sys.path`, `sys.setrecursionlimit(500)` before the run, and output goes
to a `sys.stdout` that has `writedml` when WinDbg is the host. Everything is restored afterwards.
"""
import io
import runpy
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
STANDIN = REPO / "tests" / "standin"
#: the forge tests' planted machine (invalid PTEs of each kind)
FORGE_TESTS = REPO / "tests" / "forge"


def use_standin() -> object:
    """Import the stand-in as `pykd` (tests/standin on sys.path)."""
    if str(STANDIN) not in sys.path:
        sys.path.insert(0, str(STANDIN))
    import pykd  # the stand-in
    assert "TEST DOUBLE" in (pykd.__doc__ or ""), "a real pykd module shadows the stand-in"
    return pykd


def run_like_bootstrapper(script: Path, args: Sequence[str], windbg: bool = False,
                          recursion_limit: int = 500) -> Tuple[str, str]:
    """(stdout, stderr) of one `!py script args...` run; `windbg`: stdout has `writedml`."""
    saved = (list(sys.argv), list(sys.path), sys.getrecursionlimit(), sys.stdout, sys.stderr)
    out, err = io.StringIO(), io.StringIO()
    pykd = use_standin()
    try:
        sys.argv = [str(script.resolve())] + list(args)
        sys.path.insert(0, str(script.resolve().parent))
        sys.stdout = _with_writedml(out) if windbg else out
        sys.stderr = err
        sys.setrecursionlimit(recursion_limit)
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:], limit, sys.stdout, sys.stderr = saved[0], saved[1], saved[2], saved[3], saved[4]
        sys.setrecursionlimit(limit)
    del pykd
    return out.getvalue(), err.getvalue()


class _with_writedml(io.StringIO):
    """A stdout like WinDbg's under pykd: text plus `writedml`."""

    def __init__(self, sink: io.StringIO) -> None:
        super().__init__()
        self._sink = sink

    def write(self, text: str) -> int:
        return self._sink.write(text)

    def writedml(self, text: str) -> int:
        return self._sink.write(text)


def run_cli(argv: List[str]) -> Tuple[int, str, str]:
    """(exit code, stdout, stderr) of `pykd-ext argv...` in this process."""
    from pykd_ext.cli import run_command
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stderr
    sys.stderr = err
    try:
        code = run_command(argv, out=out)
    finally:
        sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def script_path(command: str) -> Path:
    return SCRIPTS / ("%s.py" % command)


class Scenario:
    """A forged standard-scenario dump and what was planted in it (the tests' truth)."""

    def __init__(self, build: int, path: str, planted: Any) -> None:
        self.build, self.path, self.planted = build, path, planted

    def process(self, name: str) -> Dict[str, Any]:
        return next(p for p in self.planted.processes if p["name"] == name)

    @property
    def current_thread(self) -> Dict[str, Any]:
        address = self.planted.processors[0]["current_thread"]
        return next(t for p in self.planted.processes for t in p["threads"] if t["address"] == address)

    @property
    def current_process(self) -> Dict[str, Any]:
        pid = self.current_thread["pid"]
        return next(p for p in self.planted.processes if p["pid"] == pid)
