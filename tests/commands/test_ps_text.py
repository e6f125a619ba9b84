"""Text shapes of ps/eproc/threads/ethread (windbg-output.md) and the other output formats."""
import csv
import io
import json
import re
from typing import Any

from planted import run_text
from pykd_ext.cli import run_command
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."


def test_ps_text_is_process_0_0_shaped(cworld: Any) -> None:
    code, text = run_text(["ps", "--target", cworld.path])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "**** NT ACTIVE PROCESS DUMP ****"
    lsass = cworld.process_va[700]
    i = lines.index("PROCESS %016x" % lsass)
    assert lines[i + 1] == "    SessionId: 0  Cid: 02bc    Peb: c7661b7000  ParentCid: 0184"
    assert re.fullmatch(r"    DirBase: 00469000  ObjectTable: 0{16}  HandleCount: <Data Not Accessible>",
                        lines[i + 2]), lines[i + 2]
    assert lines[i + 3] == "    Image: lsass.exe"
    assert lines[i + 4] == ""
    system = lines.index("PROCESS %016x" % cworld.process_va[4])
    assert lines[system + 1] == "    SessionId: none  Cid: 0004    Peb: 00000000  ParentCid: 0000"
    assert "hidden.exe" not in text


def test_threads_text_is_process_2_shaped(cworld: Any) -> None:
    code, text = run_text(["threads", "lsass.exe", "--target", cworld.path])
    assert code == 0
    lines = text.splitlines()
    waiting = [l for l in lines if l.startswith("        THREAD %016x" % cworld.thread_va[704])][0]
    assert waiting.startswith("        THREAD %016x  Cid 02bc.02c0  Teb: 0000000000000000 Win32Thread: "
                              "0000000000000000 " % cworld.thread_va[704])
    running = [l for l in lines if "Cid 02bc.02c4" in l][0]
    # Windows 7's symbols do not name thread states: the names come from a neighbouring build's
    # _KTHREAD_STATE (same values), so the text is the same on every build.
    assert waiting.endswith("WAIT: (WrLpcReceive) UserMode Alertable")
    assert running.endswith("RUNNING on processor 1")
    obj = lines[lines.index(waiting) + 1]
    assert obj.startswith("            %016x  " % cworld.event_va[704])


def test_eproc_text_keeps_known_lines_first(cworld: Any) -> None:
    code, text = run_text(["eproc", "lsass.exe", "--target", cworld.path])
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "PROCESS %016x" % cworld.process_va[700]
    assert lines[3] == "    Image: lsass.exe"
    labels = [l[4:38].rstrip() for l in lines[4:] if l.startswith("    ") and len(l) > 38]
    assert "Token" in labels and labels.index("Token") < labels.index("Kind") < labels.index("Layout")
    token = [l for l in lines if l.startswith("    Token ")][0]
    assert token == "    %-34s%016x" % ("Token", cworld.token_va[700])
    if cworld.table.has_member("_EPROCESS", "Protection"):
        assert any(l.startswith("    Protection                        PPL-Lsa") for l in lines)


def test_ethread_text_labels(cworld: Any) -> None:
    code, text = run_text(["ethread", "0n708", "--target", cworld.path])
    assert code == 0
    lines = text.splitlines()
    owner = [l for l in lines if l.startswith("Owning Process")][0]
    assert owner == "Owning Process            %016x       Image:         lsass.exe" % cworld.process_va[700]
    assert "Attached Process          N/A            Image:         N/A" in lines
    assert [l for l in lines if l.startswith("Context Switch Count")][0][41:].startswith("IdealProcessor: ")
    assert "Priority 9  BasePriority 8  IoPriority " in text


def test_other_formats(cworld: Any) -> None:
    code, table = run_text(["ps", "--target", cworld.path], "table")
    assert code == 0 and table.splitlines()[0].split()[:4] == ["Address", "PID", "PPID", "Name"]
    code, out = run_text(["threads", "--target", cworld.path], "jsonl")
    rows = [addresses_as_ints(json.loads(l)) for l in out.splitlines()]
    assert sorted(r["tid"] for r in rows) == sorted(t.tid for p in cworld.specs if not p.unlinked
                                                    for t in p.threads)
    code, out = run_text(["psxview", "--target", cworld.path], "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert {int(r["pid"]) for r in parsed} == {p.pid for p in cworld.specs}


def test_unknown_process_is_a_one_line_error(cworld: Any, capsys: Any) -> None:
    out = io.StringIO()
    assert run_command(["eproc", "nosuch.exe", "--target", cworld.path, "-q"], out=out) == 1      # nothing matched (README "Exit codes")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no process matches 'nosuch.exe'" in err[0]
    assert run_command(["ethread", "0xffffa0800000dead", "--target", cworld.path, "-q"], out=out) == 1
    assert run_command(["ethread", "0n99999", "--target", cworld.path, "-q"], out=out) == 1


def test_user_mode_dumps_are_refused_plainly(real_dir: Any, capsys: Any) -> None:
    path = str(real_dir / "user-dumps" / "win10-17134-x64-userdu64.dmp")
    for argv in (["ps"], ["pstree"], ["psxview"], ["eproc", "4"], ["ethread", "4"]):
        assert run_command(argv + ["--target", path, "-q"], out=io.StringIO()) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "user-mode dump of one process" in err[0], err
