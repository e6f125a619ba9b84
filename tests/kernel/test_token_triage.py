"""On the real triage dumps (only the crashing thread's process block is captured), `token`,
`handles` and `eproc -v` decode what is there and say plainly what is not, instead of failing."""
import io
import json
from pathlib import Path
from typing import Any, List

import pytest

from pykd_ext.cli import run_command
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

DUMPS = ["win10-17763-x64-triage.dmp", "win10-19041-x64-triage.dmp"]


def _run(argv: List[str], path: Path, capsys: Any, fmt: str = "json") -> Any:
    out = io.StringIO()
    code = run_command(argv + ["--target", str(path), "--format", fmt], out=out)
    err = capsys.readouterr().err
    return code, out.getvalue(), err


@pytest.mark.parametrize("name", DUMPS)
def test_token_and_handles_of_system_on_triage_dumps(real_dir: Path, name: str, capsys: Any) -> None:
    path = real_dir / "kernel-triage" / name
    code, out, _ = _run(["eproc", "4"], path, capsys)
    assert code == 0
    process = addresses_as_ints(json.loads(out))["records"][0]
    assert process["pid"] == 4 and process["name"] == "System"
    code, out, _ = _run(["token", "4"], path, capsys)
    assert code == 0
    doc = addresses_as_ints(json.loads(out))
    token = doc["records"][0]
    assert token["address"] == process["token"]            # EPROCESS.Token with RefCnt masked
    assert token["address"] & 0xF == 0
    assert isinstance(token["user"], dict) and "unreadable" in token["user"]
    assert any("not in this dump" in n for n in doc["notes"])
    code, out, err = _run(["handles", "4"], path, capsys, fmt="text")
    assert code == 1 and "Handle table at" in out       # no handle readable: exit 1 (README "Exit codes")
    assert "not in the dump" in err or "not readable" in err
    code, out, _ = _run(["eproc", "4", "-v"], path, capsys, fmt="text")
    assert code == 0
    assert "Token summary:" in out and "not in dump" in out.split("Token summary:")[1].splitlines()[0]
