"""`dt TYPE --symbols FILE.pdb` (issue 16 "Done when"): a PDB is read like an ISF, through the
same validated reduction, and a non-kernel PDB gives all its types to `dt`.

Ground truth: shared/real/README.md and the issue state that `structTest` in the real MSVC PDB
is packed with members at 0, 4, 0xc, 0xe and 0x10.
"""
import io
import json
from pathlib import Path

from pykd_ext.cli import run_command


def test_dt_struct_from_real_pdb(real_dir: Path) -> None:
    pdb = real_dir / "user-dumps" / "targetapp-wow64.pdb"
    out = io.StringIO()
    assert run_command(["dt", "structTest", "--symbols", str(pdb), "-f", "json", "-q"], out=out) == 0
    records = json.loads(out.getvalue())["records"]
    offsets = [r["offset"] for r in records]
    offsets = [int(o, 0) if isinstance(o, str) else o for o in offsets]
    assert offsets == [0, 4, 0xC, 0xE, 0x10]
    text = io.StringIO()
    assert run_command(["dt", "structTest", "--symbols", str(pdb), "-q"], out=text) == 0
    assert text.getvalue().splitlines()[0].endswith("!structTest")
    assert "Ptr32" in text.getvalue()          # a 32-bit program's pointers are 4 bytes
