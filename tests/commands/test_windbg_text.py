"""Issue 12, defect 8 (and 9): text output next to WinDbg's.

Shapes come from `/work/shared/reference/windbg-output.md` (Microsoft's debuggercmds pages):
`!thread` labels padded to column 26, second fields at column 41 (`Wait Start TickCount  N  Ticks:
M (d:hh:mm:ss.mmm)`), `UserTime  00:00:00.000`; `!process <p> 1` labels to column 38 and the
`VadRoot <addr> Vads N` line; `!token` trailer second fields at column 27; `!job` values at column
27, `SecurityLimitFlags` and `Token` among them; `Not impersonating` / `Impersonation token:  <addr>
(Level Impersonation)`.

Values are independent of the decoder: the test plants KTHREAD/KPROCESS times, wait ticks, the
clock increment (`KeMaximumIncrement`, at the ISF's RVA), the dump header's SystemUpTime, VAD
root/count and an impersonation into a forged dump through the ISF JSON (tests/kernel/planted.py),
and computes the expected durations itself: time = ticks x KeMaximumIncrement (100 ns units;
Microsoft Learn "KeQueryTickCount"/"KeQueryTimeIncrement"). The increment planted is 10 ms, not
the common 15.625 ms, so an assumed tick length fails the test. The real triage dumps are read
at the ISF's own offsets for their exact kernel revisions.
"""
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from planted import PSpec, TSpec, World, run_text
from pykd_ext.forge.isf import table_for_build
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.targets.opener import open_target

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")

#: planted clock: 10 ms per tick (100 ns units), 100 s of uptime
INCREMENT = 100000
UPTIME = 1000000000
#: planted per-thread facts: TID -> (UserTime ticks, KernelTime ticks, WaitTime tick)
THREAD_TIMES = {8: (0, 4321, 950), 704: (1234, 5, 400)}
#: planted per-process facts: PID -> (UserTime, KernelTime, VadRoot.Root, VadCount, PageFaultCount)
PROCESS_FACTS = {700: (1234, 6789, 0xFFFFA08000123450, 17, 4242)}
IMPERSONATING_TID = 704


def duration(ticks: int) -> str:
    """`hh:mm:ss.mmm` of `ticks` clock ticks of the planted increment (`!thread` UserTime)."""
    ms = ticks * INCREMENT // 10000
    return "%02d:%02d:%02d.%03d" % (ms // 3600000, ms // 60000 % 60, ms // 1000 % 60, ms % 1000)


def day_duration(ticks: int) -> str:
    """`d:hh:mm:ss.mmm` (`!thread`'s Ticks)."""
    ms = ticks * INCREMENT // 10000
    return "%d:%02d:%02d:%02d.%03d" % (ms // 86400000, ms // 3600000 % 24, ms // 60000 % 60,
                                       ms // 1000 % 60, ms % 1000)


def _world(folder: Path, build: int, with_increment: bool) -> World:
    world = World(build)
    world.specs = [
        PSpec(4, 0, "System", [TSpec(8, "Running", "Executive", 0, running_on=0, system=True)]),
        PSpec(700, 4, "lsass.exe", [TSpec(704, "Waiting", "WrLpcReceive", 1, wait_event=True),
                                    TSpec(708, "Running", "Executive", 1, running_on=1)], session=0),
    ]
    world.plant(world.specs)
    E, T = "_EPROCESS", "_ETHREAD"
    for tid, (user, kernel, wait) in THREAD_TIMES.items():
        et = world.thread_va[tid]
        world.put(T, et, "Tcb.UserTime", user)
        world.put(T, et, "Tcb.KernelTime", kernel)
        world.put(T, et, "Tcb.WaitTime", wait)
    for pid, (user, kernel, vad_root, vads, faults) in PROCESS_FACTS.items():
        ep = world.process_va[pid]
        world.put(E, ep, "Pcb.UserTime", user)
        world.put(E, ep, "Pcb.KernelTime", kernel)
        if world.has(E, "VadRoot.Root"):
            world.put(E, ep, "VadRoot.Root", vad_root)
            world.put(E, ep, "VadCount", vads)
            world.put(E, ep, "Vm.Instance.PageFaultCount", faults)
        else:                                   # Windows 7: _MM_AVL_TABLE, _MMSUPPORT
            world.put(E, ep, "VadRoot.BalancedRoot.RightChild", vad_root)
            world.put(E, ep, "VadRoot.NumberGenericTableElements", vads)
            world.put(E, ep, "Vm.PageFaultCount", faults)
    # an impersonating thread: ETHREAD.ClientSecurity (token pointer | level bits), the flag bit
    token = world.alloc(0x40, 0x10)
    world.impersonation_token = token           # type: ignore[attr-defined]
    et = world.thread_va[IMPERSONATING_TID]
    world.put(T, et, "ClientSecurity.ImpersonationData", token)
    world.put(T, et, "ClientSecurity.ImpersonationLevel",
              world.enum("_SECURITY_IMPERSONATION_LEVEL", "SecurityImpersonation"))
    world.put(T, et, "ActiveImpersonationInfo", 1)
    if with_increment:
        world.pt.write_virtual(world.m.symbol("KeMaximumIncrement"), INCREMENT.to_bytes(4, "little"))
    world.m.spec.system_uptime = UPTIME
    world.path = world.write(str(folder / ("times-%d-%d.dmp" % (build, with_increment))))
    return world


@pytest.fixture(scope="module", params=[7601, 19041], ids=["win7", "win10-19041"])
def timed(request: Any, tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> World:
    del isf_dir
    return _world(tmp_path_factory.mktemp("windbg-text"), request.param, with_increment=True)


@pytest.fixture(scope="module")
def untimed(tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> World:
    del isf_dir
    return _world(tmp_path_factory.mktemp("windbg-text-untimed"), 19041, with_increment=False)


def _lines(argv: List[str]) -> List[str]:
    code, text = run_text(argv)
    assert code == 0, text
    return text.splitlines()


def _line(lines: List[str], label: str) -> str:
    found = [line for line in lines if line.startswith(label)]
    assert found, "no %r line in:\n%s" % (label, "\n".join(lines))
    return found[0]


# ---- !thread: times, Ticks, impersonation ------------------------------------------------------

def test_thread_times_and_ticks_are_windbg_durations(timed: World) -> None:
    for tid, (user, kernel, wait) in THREAD_TIMES.items():
        lines = _lines(["ethread", "0x%x" % timed.thread_va[tid], "--no-stack", "--target", timed.path])
        assert _line(lines, "UserTime") == "%-26s%s" % ("UserTime", duration(user))
        assert _line(lines, "KernelTime") == "%-26s%s" % ("KernelTime", duration(kernel))
        tick = _line(lines, "Wait Start TickCount")
        # the current tick is SystemUpTime / KeMaximumIncrement (the tick count advances once per
        # increment of interrupt time); Ticks counts from the wait start to it
        ticks = UPTIME // INCREMENT - wait
        assert tick[26:].split()[0] == str(wait)
        assert tick.index("Ticks:") == 41, tick
        assert tick[41:] == "Ticks: %d (%s)" % (ticks, day_duration(ticks))


def test_process_times_and_vad_lines(timed: World) -> None:
    user, kernel, vad_root, vads, faults = PROCESS_FACTS[700]
    lines = _lines(["eproc", "lsass.exe", "--target", timed.path])
    assert _line(lines, "    UserTime") == "    %-34s%s" % ("UserTime", duration(user))
    assert _line(lines, "    KernelTime") == "    %-34s%s" % ("KernelTime", duration(kernel))
    assert _line(lines, "    VadRoot") == "    VadRoot %016x Vads %d" % (vad_root, vads)
    assert _line(lines, "    PageFaultCount") == "    %-34s%d" % ("PageFaultCount", faults)
    # WinDbg's order: VadRoot right after the Image line, before the Token/time labels
    assert lines.index(_line(lines, "    VadRoot")) == 4 and lines[3] == "    Image: lsass.exe"


def test_no_clock_increment_means_ticks_and_a_note(untimed: World) -> None:
    user, kernel, _wait = THREAD_TIMES[704]
    code, text = run_text(["ethread", "0x%x" % untimed.thread_va[704], "--no-stack",
                           "--target", untimed.path])
    lines = text.splitlines()
    assert code == 0
    assert _line(lines, "UserTime") == "%-26s%d ticks" % ("UserTime", user)
    assert "Ticks:" not in _line(lines, "Wait Start TickCount")
    doc = run_text(["ethread", "0x%x" % untimed.thread_va[704], "--no-stack", "--target", untimed.path],
                   fmt="json")[1]
    assert "KeMaximumIncrement" in doc and "not guessed" in doc
    assert "00:00:" not in _line(lines, "KernelTime")       # 15.625 ms was not assumed


def test_impersonation_line_is_windbgs(timed: World) -> None:
    lines = _lines(["ethread", "0x%x" % timed.thread_va[IMPERSONATING_TID], "--no-stack",
                    "--target", timed.path])
    # THREAD line, its one wait object, then the impersonation line (reference order)
    token = timed.impersonation_token  # type: ignore[attr-defined]
    assert lines[2] == "Impersonation token:  %016x (Level Impersonation)" % token
    other = _lines(["ethread", "0x%x" % timed.thread_va[708], "--no-stack", "--target", timed.path])
    assert other[1] == "Not impersonating"


# ---- markers keep the columns ------------------------------------------------------------------

def test_thread_text_with_markers_keeps_columns() -> None:
    from pykd_ext.render.windbg import thread_full_lines
    fault = Fault(NOT_IN_DUMP, 0xFFFFA08000000000)
    rec: Dict[str, Any] = {key: fault for key in (
        "tid", "pid", "process", "state", "wait_start_tick", "context_switches", "ideal_processor",
        "user_time", "kernel_time", "win32_start_address", "start_address", "affinity", "teb")}
    rec["address"] = 0xFFFFA08000001000
    lines = thread_full_lines(rec, {"process_name": fault, "ticks_text": "Ticks: 5 (0:00:00:00.050)"})
    marker = fault.marker
    assert not any("0x<" in line for line in lines), lines          # no `0x<not in dump>`
    owning = _line(lines, "Owning Process")
    assert owning[26:26 + len(marker)] == marker and owning.index("Image:") == 41
    assert _line(lines, "Context Switch Count").index("IdealProcessor:") == 41
    assert _line(lines, "Wait Start TickCount").index("Ticks:") == 41
    assert _line(lines, "Win32 Start Address") == "Win32 Start Address " + marker


def test_token_trailer_keeps_a_space_after_markers(real_dir: Path) -> None:
    """The real triage dump's token is not in the dump: every trailer field is a marker."""
    lines = _lines(["token", "--target", str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")])
    pairs = (("Source:", "TokenFlags:"), ("Token ID:", "ParentToken ID:"),
             ("RestrictedSidCount:", "RestrictedSids:"))
    for first, second in pairs:
        line = _line(lines, first)
        at = line.index(second)
        assert line[at - 1] == " ", line
        assert at == 27 or (at > 27 and line[:at].rstrip(" ") == line[:at - 1]), line


def test_job_security_lines_at_column_27() -> None:
    """The sample's svchost job (the forge planted it); values at column 27 as `!job`'s counters."""
    lines = _lines(["job", "svchost.exe", "--target", SAMPLE])
    table = table_for_build(19041)
    for label, member in (("SecurityLimitFlags", "SecurityLimitFlags"), ("Token", "Token")):
        line = _line(lines, "  %s " % label)
        assert line[:27].rstrip() == "  " + label and line[26] == " " and line[27] != " "
        # Windows Vista+ _EJOB has no such member (the ISF says so): the line says n/a, not 0
        assert not table.has_member("_EJOB", member)
        assert "n/a" in line[27:]
    ui = lines.index(_line(lines, "  UIRestrictionsClass"))
    assert lines.index(_line(lines, "  SecurityLimitFlags")) == ui + 1


# ---- notes name the right structure --------------------------------------------------------------

def test_peb_note_does_not_call_a_teb_address_peb(real_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """A minidump without TEB memory: the PEB's address is unknown; the note names the TEB (whose
    address the dump's own thread list gives), and no note calls a TEB address the PEB's."""
    path = str(real_dir / "user-dumps" / "win10-18362-x64-minidump-handles.mdmp")
    target = open_target(path)
    try:
        tebs = [t["teb"] for t in target.info().extra["threads"] if t.get("teb")]
    finally:
        target.close()
    assert tebs
    capsys.readouterr()
    run_text(["peb", "--target", path])
    notes = [n for n in capsys.readouterr().err.splitlines() if n.startswith("note:")]
    for note in notes:
        if note.startswith("note: PEB"):
            assert not any("%x" % teb in note for teb in tebs), note
    assert any("TEB of thread" in n and "%x" % tebs[0] in n and "PEB" in n for n in notes), notes


# ---- the real triage dumps: KTHREAD values at the ISF's offsets ----------------------------------

@pytest.mark.parametrize("name,revision", [("win10-19041-x64-triage.dmp", 804),
                                           ("win10-17763-x64-triage.dmp", 437)])
def test_triage_thread_times_match_the_kthread(real_dir: Path, name: str, revision: int) -> None:
    path = str(real_dir / "kernel-triage" / name)
    table = table_for_build(int(name.split("-")[1]), revision=revision)
    code, text = run_text(["ethread", "--no-stack", "--target", path])
    lines = text.splitlines()
    thread = int(lines[0].split()[1], 16)
    target = open_target(path)
    try:
        def u32(path_: str) -> int:
            where = thread + table.offset("_ETHREAD", path_)
            return int.from_bytes(target.kernel.read(where, 4), "little")
        wait, user, kernel = u32("Tcb.WaitTime"), u32("Tcb.UserTime"), u32("Tcb.KernelTime")
        increment_at = target.info().kernel_base + table.rva("KeMaximumIncrement")
        with pytest.raises(Exception):
            target.kernel.read(increment_at, 4)          # the tick length really is not in the dump
    finally:
        target.close()
    assert _line(lines, "Wait Start TickCount")[26:].split()[0] == str(wait)
    assert _line(lines, "UserTime") == "%-26s%d ticks" % ("UserTime", user)
    assert _line(lines, "KernelTime") == "%-26s%d ticks" % ("KernelTime", kernel)
    doc = run_text(["ethread", "--no-stack", "--target", path], fmt="json")[1]
    assert "KeMaximumIncrement (at 0x%x) is not in this dump" % increment_at in doc


# ---- defect 9: streaming and progress ------------------------------------------------------------

def test_threads_jsonl_streams_before_the_last_thread_is_decoded(untimed: World,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from pykd_ext.kernel.thread import Thread
    from pykd_ext.render.renderers import render_lines
    from pykd_ext.commands import threads as threads_command
    from pykd_ext.session import Session
    import argparse
    decoded: List[int] = []
    original = Thread.record

    def record(self: Thread) -> Dict[str, Any]:
        decoded.append(self.address)
        return original(self)
    monkeypatch.setattr(Thread, "record", record)
    parser = argparse.ArgumentParser()
    threads_command.add_arguments(parser)
    session = Session(target_path=untimed.path)
    try:
        lines = render_lines(threads_command.run(session, parser.parse_args([])), "jsonl")
        first = next(line for line in lines if '"tid"' in line)
        at_first = len(decoded)
        rest = [line for line in lines if '"tid"' in line]
    finally:
        session.close()
    assert first and at_first == 1, "the first record waited for %d decodes" % at_first
    assert len(rest) + 1 == len(decoded) >= 3


PROGRESS_SCRIPT = """
import sys
from pykd_ext.progress import Progress
Progress.delay_default = 0.0          # the 1 s threshold, shortened for a small dump
from pykd_ext.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_progress_on_a_terminal_stderr_only(untimed: World) -> None:
    """stderr a pseudo-terminal, stdout a pipe: the count is drawn and wiped on stderr, stdout gets
    only the JSON lines; with stderr a pipe nothing but notes appears there."""
    argv = [sys.executable, "-c", PROGRESS_SCRIPT, "threads", "-f", "jsonl", "--target", untimed.path]
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:                      # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    records = [line for line in out.decode().splitlines() if '"tid"' in line]
    total = sum(len(p.threads) for p in untimed.specs)
    assert len(records) == total
    assert re.search(r"\rthreads: \d+ records", err), repr(err[:200])
    assert "\r" not in out.decode()
    piped = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert b"records" not in piped.stderr and b"\r" not in piped.stderr
