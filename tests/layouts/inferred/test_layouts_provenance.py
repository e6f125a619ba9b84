"""`pykd-ext layouts` lists an inferred layout's fields with their sources (issue 15).

Oracles: the dump's own KDBG block (every `kdbg:<field>` row must show that field's value), the
issue's facts about the ARM32 dump (its process's name is at the offset listed), and the text
and JSON forms agreeing row by row.
"""
import io
import json
import re
from pathlib import Path

from pykd_ext.cli import run_command
from pykd_ext.targets.opener import open_target


def _layouts(path: str, fmt: str) -> str:
    out = io.StringIO()
    assert run_command(["layouts", "--target", path, "--format", fmt], out) == 0
    return out.getvalue()


def test_layouts_lists_inferred_fields_and_sources(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-17134-arm32-triage.dmp")
    record = json.loads(_layouts(path, "json"))["records"][0]
    assert record["method"] == "inferred"
    fields = {f["field"]: f for f in record["fields"]}
    target = open_target(path)
    try:
        kdbg = target.info().kdbg
        process = target.info().extra["process"]
        name = bytes(target.kernel.read(process + fields["_EPROCESS.ImageFileName"]["offset"], 12))
    finally:
        target.close()
    assert name == b"svchost.exe\0"
    kdbg_rows = 0
    for f in record["fields"]:
        assert f["sources"], f
        for source in f["sources"]:
            if source.startswith("kdbg:"):
                assert kdbg[source[5:]] == f["offset"], f
                kdbg_rows += 1
    assert kdbg_rows >= 25
    assert fields["_EPROCESS.UniqueProcessId"]["sources"] == ["self-consistency:triage-process"]
    assert "_EPROCESS.ObjectTable" in record["unknown"]
    text = _layouts(path, "text")
    for f in record["fields"]:
        line = re.search(r"^  %s +(\S+)  (.*)$" % re.escape(f["field"]), text, re.M)
        assert line is not None, f["field"]
        assert int(line.group(1), 16) == f["offset"]
        assert line.group(2).startswith(" + ".join(f["sources"]))
