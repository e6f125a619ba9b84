"""Issue 12, defect 1: `--build` takes builds as people name them, and says which layout it chose.

Independent sides: the reference ISF JSON and INDEX.tsv (`../shared/isf`, offsets and which
revisions exist), the derived 26100 ISF (`../shared/isf-derived`), the ISF README's product line
("10.0.19041 (2004-22H2)", "10.0.17763 (1809 / Server 2019)", "10.0.14393 (1607 ...)", "10.0.22000
(Windows 11 21H2)") and kphdyn.xml (the 26100 revisions that exist). On today's main every
`--build` below except the exact build id failed with "no kernel layouts".
"""
import io
import json
import lzma
import re
from typing import Any, Dict, List, Tuple

import pytest

from isfdata import SHARED, index_rows, isf_for
from pykd_ext.cli import run_command

DERIVED_26100 = SHARED / "isf-derived" / "10.0.26100-x64.json.xz"


def run(argv: List[str]) -> Tuple[int, str, str]:
    import contextlib
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_command(argv, out=out)
    return code, out.getvalue(), err.getvalue()


def dt_offset(build: str, member: str = "UniqueProcessId", type_name: str = "_EPROCESS") -> Tuple[int, str]:
    """(offset dt shows for the member, the stderr notes) for `dt TYPE --build B MEMBER`."""
    code, out, err = run(["dt", type_name, "--build", build, member])
    assert code == 0, err
    m = re.search(r"\+0x([0-9a-f]+) %s\s" % member, out)
    assert m, out
    return int(m.group(1), 16), err


def isf_offset(version: str, member: str = "UniqueProcessId") -> int:
    return isf_for(version)["user_types"]["_EPROCESS"]["fields"][member]["offset"]


def latest(build: int) -> str:
    """The highest revision INDEX.tsv lists for a build (the one a bare build number means)."""
    versions = [r["ntoskrnl_version"] for r in index_rows() if r["ntoskrnl_version"].split(".")[2] == str(build)]
    return max(versions, key=lambda v: int(v.split(".")[3]))


@pytest.mark.parametrize("build,version_of", [
    ("19041", lambda: latest(19041)), ("10.0.19041", lambda: latest(19041)),
    ("2004", lambda: latest(19041)), ("20H2", lambda: latest(19041)), ("win10-22H2", lambda: latest(19041)),
    ("19045", lambda: latest(19041)),                      # Windows 10 22H2 runs the 19041 kernel file
    ("1809", lambda: latest(17763)), ("1607", lambda: latest(14393)), ("Windows 11 21H2", lambda: latest(22000)),
    ("server 2022", lambda: latest(20348)),
])
def test_names_and_bare_builds_pick_the_latest_revision(build: str, version_of: Any) -> None:
    version = version_of()
    offset, notes = dt_offset(build)
    assert offset == isf_offset(version)
    assert "-> layout %s (the latest of" % version in notes       # the choice is said


def test_a_full_version_takes_the_nearest_shipped_revision() -> None:
    shipped = sorted(int(r["ntoskrnl_version"].split(".")[3]) for r in index_rows()
                     if r["ntoskrnl_version"].startswith("10.0.19041."))
    wanted = shipped[len(shipped) // 2] + 1                  # one past a shipped revision
    nearest = min(shipped, key=lambda r: (abs(r - wanted), -r))
    offset, notes = dt_offset("10.0.19041.%d" % wanted)
    assert offset == isf_offset("10.0.19041.%d" % nearest)
    assert "layout 10.0.19041.%d (the nearest shipped revision" % nearest in notes
    # an exact revision: that layout, no note about a choice
    exact = "10.0.19041.%d" % shipped[0]
    offset, notes = dt_offset(exact)
    assert offset == isf_offset(exact) and "->" not in notes


def _derived_offset(member: str = "UniqueProcessId") -> int:
    with lzma.open(DERIVED_26100) as fh:
        return json.load(fh)["user_types"]["_EPROCESS"]["fields"][member]["offset"]


@pytest.mark.parametrize("build", ["26100", "24H2", "25H2", "10.0.26100.2000"])
def test_the_26100_family(build: str) -> None:
    offset, notes = dt_offset(build)
    assert offset == _derived_offset()
    assert "-> layout 10.0.26100 (" in notes
    if build == "10.0.26100.2000":
        # kphdyn lists 26100 revisions on both sides of .2000: the layout's range covers it
        xml = (SHARED / "kphdyn" / "kphdyn.xml").read_text()
        revs = sorted({int(r) for r in re.findall(r'version="10\.0\.26100\.(\d+)" file="ntoskrnl\.exe"', xml)})
        assert revs[0] < 2000 < revs[-1]
        m = re.search(r"revision range 26100\.(\d+)-(\d+) covers 10\.0\.26100\.2000", notes)
        assert m and revs[0] <= int(m.group(1)) < 2000 < int(m.group(2)) <= revs[-1], notes


def test_ambiguous_release_name_says_which_product() -> None:
    _, notes = dt_offset("22H2")
    assert "Windows 11 22H2, build 22621" in notes and "also Windows 10 22H2 (build 19045)" in notes
    assert "win10-22H2" in notes                              # how to ask for the other one


def test_pdb_guid_with_or_without_age() -> None:
    row = next(r for r in index_rows() if r["ntoskrnl_version"] == "10.0.19041.1288")
    for key in (row["pdb_guid"], "%s-%s" % (row["pdb_guid"], row["pdb_age"]), row["pdb_guid"].lower()):
        offset, _ = dt_offset(key, "Token")
        assert offset == isf_offset("10.0.19041.1288", "Token")


def test_lower_case_type_and_fields_after_options() -> None:
    code, exact, _ = run(["dt", "_EPROCESS", "-b", "10.0.19041.1288", "UniqueProcessId", "ImageFileName"])
    assert code == 0
    code, lower, _ = run(["dt", "_eprocess", "-b", "10.0.19041.1288", "UniqueProcessId", "ImageFileName"])
    assert code == 0 and lower == exact
    shown = {m.group(2): int(m.group(1), 16) for m in re.finditer(r"\+0x([0-9a-f]+) (\w+)", exact)}
    assert shown == {"UniqueProcessId": isf_offset("10.0.19041.1288"),
                     "ImageFileName": isf_offset("10.0.19041.1288", "ImageFileName")}


def test_unknown_build_is_one_line_exit_2() -> None:
    for build in ("10586", "not-a-build"):
        code, out, err = run(["dt", "_EPROCESS", "--build", build])
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err


def test_structs_diff_and_history_take_the_same_names() -> None:
    out = io.StringIO()
    assert run_command(["structs", "diff", "1809", "22H2", "_EPROCESS", "-f", "json", "-q"], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc["meta"]["a"]["build_id"] == latest(17763) and doc["meta"]["b"]["build_id"] == "10.0.22621.382"
    moved = {r["member"]: r for r in doc["records"]}["UniqueProcessId"]
    assert moved["a_offset"] == isf_offset(latest(17763))
    out = io.StringIO()
    assert run_command(["structs", "history", "_EPROCESS.UniqueProcessId", "1607", "19041", "-f", "json"],
                       out=out) == 0
    rows: Dict[str, Any] = {r["build_id"]: r for r in json.loads(out.getvalue())["records"]}
    assert set(rows) == {latest(14393), latest(19041)}
    assert all(r["offset"] == isf_offset(b) for b, r in rows.items())


def test_structs_subcommands_have_descriptions_and_examples() -> None:
    import contextlib
    for action in ("list", "diff", "history", "import"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            run_command(["structs", action, "--help"])
        text = out.getvalue()
        assert "examples:\n  pykd-ext structs %s" % action in text, action
        body = text.split("\n\n")[1]                          # the description paragraph
        assert len(body.split()) > 8 and not body.lstrip().startswith(("positional", "options")), action
