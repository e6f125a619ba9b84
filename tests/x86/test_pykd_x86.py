"""The pykd target on a 32-bit kernel (`is64bitSystem()` false): WinDbg's `!py` scripts over the
stand-in pykd (which serves a forged x86 dump and the matching symbols) print what the CLI prints
from the same dump with the derived layout (apart from the line naming the layout used).

The stand-in answers pykd calls from our file reader and from an ISF with symbols: here the
Volatility-ready copy of the derived ISF that `volatility_isf` writes (the forged kernel's GUID
and the forge's symbol RVAs), as WinDbg would load the kernel PDB.
"""
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pykd"))

from pykd_harness import run_cli, run_like_bootstrapper, script_path, use_standin  # noqa: E402

from pykd_ext.forge.x86_kernel import (ProcessSpec32, ThreadSpec32, TokenSpec32,  # noqa: E402
                                       X86Scenario, build_x86, volatility_isf)


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "home"))
    for name in ("PYKD_STANDIN_DUMP", "PYKD_STANDIN_ISF", "PYKD_STANDIN_WINDBG", "PYKD_STANDIN_VERSION"):
        monkeypatch.delenv(name, raising=False)
    pykd = use_standin()
    pykd._standin_reset()
    yield pykd
    pykd._standin_reset()


@pytest.mark.parametrize("build_id", ["6.1.7601.17514-x86", "10.0.19041.1288-x86"])
def test_scripts_on_a_32bit_kernel_print_what_the_cli_prints(standin: Any, tmp_path: Path,
                                                             shared_dir: Path, build_id: str) -> None:
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8), ThreadSpec32(12)], token=TokenSpec32()),
             ProcessSpec32(640, 4, "lsass.exe", [ThreadSpec32(644), ThreadSpec32(648)],
                           token=TokenSpec32(user=(5, (21, 7, 8, 9, 1001)), session_id=1))]
    forged = build_x86(X86Scenario(build_id, procs, running_tid=8))
    dump = forged.write(str(tmp_path / "x86.dmp"))
    isf_dir = volatility_isf(forged, str(shared_dir / "isf-derived" / ("%s.json.xz" % build_id)),
                             str(tmp_path / "isf"))
    isf = str(Path(isf_dir) / "windows" / forged.pdb_name /
              ("%s-%d.json.xz" % (forged.image.guid.upper(), forged.image.age)))
    standin._standin_configure(dump=dump, isf=isf)
    assert standin.is64bitSystem() is False
    lsass = "0x%x" % forged.processes[640]
    for command, args in (("ps", []), ("pstree", []), ("threads", [lsass]),
                          ("ethread", ["0x%x" % forged.threads[644]]), ("token", [lsass])):
        out, err = run_like_bootstrapper(script_path(command), args)
        code, cli_out, cli_err = run_cli([command, "--target", dump] + args)
        assert code == 0, cli_err
        assert "Traceback" not in err, err
        # the only difference allowed: which layout decoded it (WinDbg's symbols vs the
        # shipped derived layout) on the `Layout` line
        assert out.strip() and _without_layout(out) == _without_layout(cli_out), (command, err)


def _without_layout(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("Layout"))



def test_handles_on_a_32bit_kernel_name_types_both_ways(standin: Any, tmp_path: Path,
                                                        shared_dir: Path) -> None:
    """With WinDbg's symbols (ObTypeIndexTable, ObHeaderCookie) the script names every handle's
    type, undoing the Windows 10 header-cookie encoding; the CLI's types-only layout has neither
    address and gets the same names by finding the table by its shape and deriving the cookie."""
    build_id = "10.0.19041.1288-x86"
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8)], token=TokenSpec32()),
             ProcessSpec32(640, 4, "lsass.exe", [ThreadSpec32(644)], token=TokenSpec32())]
    forged = build_x86(X86Scenario(build_id, procs))
    dump = forged.write(str(tmp_path / "x86.dmp"))
    isf_dir = volatility_isf(forged, str(shared_dir / "isf-derived" / ("%s.json.xz" % build_id)),
                             str(tmp_path / "isf"))
    isf = str(Path(isf_dir) / "windows" / forged.pdb_name /
              ("%s-%d.json.xz" % (forged.image.guid.upper(), forged.image.age)))
    standin._standin_configure(dump=dump, isf=isf)
    lsass = "0x%x" % forged.processes[640]
    out, err = run_like_bootstrapper(script_path("handles"), [lsass])
    code, cli_out, _ = run_cli(["handles", "--target", dump, lsass])
    assert code == 0 and "Traceback" not in err
    assert forged.cookie is not None
    for handle, body, type_name, access in forged.handles[640]:
        head = "%04x: Object: %016x  GrantedAccess: %08x" % (handle, body, access)
        assert head in out and head in cli_out
        assert "Object: %016x  Type: (%016x) %s" % (body, forged.object_types[type_name], type_name) in out
        assert "Object: %016x  Type: (%016x) %s" % (body, forged.object_types[type_name], type_name) in cli_out
    assert _without_layout(out) == _without_layout(cli_out)
