"""`pykd-ext watch`: a raw image rewritten under a running `watch` is reported change by change.

Independent source: the forge plants the standard scenario and tells where each object sits; the
test edits the raw file at the offsets the ISF JSON gives (the forge's `SymbolTable`, not the
generated layouts the decoders use) with values of the ISF's own enums, and expects exactly the
changes it made, keyed by the planted addresses, PIDs and TIDs.
"""
import io
import json
import lzma
import os
import pty
import select
import time
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from pykd_ext.forge import write_raw_image
from pykd_ext.render.renderers import addresses_as_ints
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.live.changes import ADDED, CHANGED, REMOVED, Snapshot, diff, identity_fields
from pykd_ext.live.watch_view import LiveView, change_line
from pykd_ext.render.grid import Column

INTERVAL = "0.6"          # seconds between runs: room for the test to edit between two of them


class Forged:
    """The standard scenario forged once for the module (the machine model is never edited)."""

    def __init__(self) -> None:
        self.machine, self.planted = build_scenario(standard_scenario(), "win10")
        self.table = self.machine.table
        with lzma.open(self.table.path, "rb") as handle:
            self.enums = {n: e["constants"] for n, e in json.load(handle)["enums"].items()}


class Image:
    """One test's raw image of the forged machine; pokes and reads go to the file itself."""

    def __init__(self, forged: Forged, folder: Path) -> None:
        self.machine, self.planted = forged.machine, forged.planted
        self.table, self.enums = forged.table, forged.enums
        self.path = str(folder / "guest.raw")
        write_raw_image(self.path, self.machine.phys)

    def _pa(self, va: int) -> int:
        pa = self.machine.pt.translate(va)
        assert pa is not None
        return pa

    def poke(self, va: int, data: bytes) -> None:
        with open(self.path, "r+b") as out:
            for n, byte in enumerate(data):             # byte by byte: a write may cross a page
                out.seek(self._pa(va + n))
                out.write(bytes([byte]))

    def u64(self, va: int) -> int:
        with open(self.path, "rb") as image:
            data = b""
            for n in range(8):
                image.seek(self._pa(va + n))
                data += image.read(1)
        return int.from_bytes(data, "little")

    def poke_u64(self, va: int, value: int) -> None:
        self.poke(va, value.to_bytes(8, "little"))


@pytest.fixture(scope="module")
def forged() -> Forged:
    return Forged()


@pytest.fixture()
def image(forged: Forged, tmp_path: Path) -> Image:
    return Image(forged, tmp_path)


def _start(args: List[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pykd_ext"] + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")


def _wait_refresh(proc: subprocess.Popen, number: int) -> str:
    """Read stderr up to the status line of refresh `number` (the watcher sleeps after it)."""
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        assert line, "watch ended before refresh %d" % number
        if line.startswith("watch: refresh %d:" % number):
            return line



def _changes(out: str) -> List[Dict[str, Any]]:
    return [addresses_as_ints(json.loads(line)) for line in out.splitlines()]


def _finish(proc: subprocess.Popen) -> Tuple[int, str]:
    try:
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


@pytest.mark.parametrize("prefix", ["", "live:"], ids=["reopened-file", "live-refreshed"])
def test_thread_state_and_priority_changes(image: Image, prefix: str) -> None:
    """A plain file is re-opened for every run; `live:` (a target that changes under us) is kept
    open and refreshed between runs: both see each edit."""
    lsass = image.planted.by_name("lsass.exe")
    thread = next(t for t in lsass["threads"] if t["tid"] == 100)
    assert thread["state"] == "Waiting" and thread["priority"] == 9
    ready = int(image.enums["_KTHREAD_STATE"]["Ready"])
    proc = _start(["watch", "threads", "lsass.exe", "--target", prefix + image.path, "--interval", INTERVAL,
                   "--count", "3", "--format", "jsonl"])
    try:
        _wait_refresh(proc, 1)
        image.poke(thread["address"] + image.table.offset("_ETHREAD", "Tcb.State"), bytes([ready]))
        _wait_refresh(proc, 2)
        image.poke(thread["address"] + image.table.offset("_ETHREAD", "Tcb.Priority"), bytes([15]))
    finally:
        code, out = _finish(proc)
    assert code == 0
    changes = _changes(out)
    assert [c["refresh"] for c in changes] == [2, 3]
    first, second = changes
    assert first["change"] == CHANGED and first["identity"] == {"address": thread["address"], "tid": 100}
    assert first["fields"]["state"] == ["Waiting", "Ready"]
    assert first["record"]["state"] == "Ready" and first["record"]["pid"] == 636
    assert second["fields"] == {"priority": [9, 15]}


def test_process_appears_and_leaves_the_active_list(image: Image) -> None:
    links = image.table.offset("_EPROCESS", "ActiveProcessLinks")
    head = image.planted.globals["PsActiveProcessHead"]
    hidden = image.planted.by_name("rootkit.exe")
    leaving = image.planted.by_name("winlogon.exe")
    assert not hidden["linked"] and leaving["linked"]
    proc = _start(["watch", "ps", "--target", image.path, "--interval", INTERVAL, "--count", "2",
                   "--format", "jsonl", "--ignore", "handle_count,create_time"])
    try:
        _wait_refresh(proc, 1)
        # winlogon off the list (DKOM), rootkit onto its tail: the pointers a kernel would write
        entry = leaving["address"] + links
        flink, blink = image.u64(entry), image.u64(entry + 8)
        image.poke_u64(blink, flink)
        image.poke_u64(flink + 8, blink)
        new = hidden["address"] + links
        tail = image.u64(head + 8)
        image.poke_u64(new, head)
        image.poke_u64(new + 8, tail)
        image.poke_u64(tail, new)
        image.poke_u64(head + 8, new)
    finally:
        code, out = _finish(proc)
    assert code == 0
    changes = {(c["change"], c["record"]["pid"]): c for c in _changes(out)}
    assert set(changes) == {(REMOVED, leaving["pid"]), (ADDED, hidden["pid"])}
    added = changes[(ADDED, hidden["pid"])]
    assert added["identity"] == {"address": hidden["address"], "pid": 6660}
    assert added["record"]["name"] == "rootkit.exe" and added["refresh"] == 2
    assert changes[(REMOVED, leaving["pid"])]["record"]["address"] == leaving["address"]


def test_hostile_rename_is_escaped_and_ctrl_c_exits_cleanly(image: Image) -> None:
    victim = image.planted.by_name("explorer.exe")
    proc = _start(["watch", "ps", "explorer.exe", "--target", image.path, "--interval", INTERVAL])
    try:
        _wait_refresh(proc, 1)
        image.poke(victim["address"] + image.table.offset("_EPROCESS", "ImageFileName"),
                   b"ex\x1b[2J\x07.exe\x00")
        _wait_refresh(proc, 2)
        proc.send_signal(signal.SIGINT)
    finally:
        code, out = _finish(proc)
    assert code == 0                                     # Ctrl-C: a clean stop
    lines = out.splitlines()
    assert len(lines) == 1 and "\x1b" not in out and "\x07" not in out
    assert lines[0].startswith("[2] ~ process address=0x%x pid=%d" % (victim["address"], victim["pid"]))
    assert "name explorer.exe -> ex\\x1b[2J\\x07.exe" in lines[0]


def test_identity_and_diff_rules() -> None:
    threads = [{"address": 0x10, "tid": 4, "state": "Waiting"}, {"address": 0x20, "tid": 8, "state": "Ready"}]
    assert identity_fields(threads) == ("address", "tid")
    assert identity_fields([{"address": 1, "pid": 4, "name": "x"}]) == ("address", "pid")
    assert identity_fields([{"pid": 4, "handle": 8, "object": 1}]) == ("pid", "handle")
    # an address reused by another TID is an exit plus a new thread, not a changed TID
    moved = [{"address": 0x10, "tid": 12, "state": "Waiting"}, {"address": 0x20, "tid": 8, "state": "Running"}]
    changes = diff(Snapshot(threads), Snapshot(moved))
    assert [(c.change, c.record["tid"]) for c in changes] == [(REMOVED, 4), (ADDED, 12), (CHANGED, 8)]
    assert changes[2].fields == {"state": ["Ready", "Running"]}
    assert diff(Snapshot(threads), Snapshot(list(threads))) == []
    ignored = diff(Snapshot(threads), Snapshot(moved), ignore=("state",))
    assert [(c.change, c.record["tid"]) for c in ignored] == [(REMOVED, 4), (ADDED, 12)]


def test_full_screen_view_highlights_and_escapes() -> None:
    from rich.console import Console
    old = Snapshot([{"address": 0x10, "pid": 4, "name": "a.exe", "handle_count": 3}])
    new = Snapshot([{"address": 0x10, "pid": 4, "name": "a.exe", "handle_count": 9},
                    {"address": 0x20, "pid": 8, "name": "[bold]\x1b]0;pwn\x07", "handle_count": 1}])
    changes = diff(old, new)
    sink = io.StringIO()
    view = LiveView("ps", [Column("pid", "PID", "int"), Column("name", "Name"),
                           Column("handle_count", "Hnds", "int")])
    console = Console(file=sink, force_terminal=True, width=120, color_system="standard")
    console.print(view.render(2, new.records, changes, "2 records, 2 changes"))
    screen = sink.getvalue()
    assert "\x07" not in screen and "]0;pwn" in screen and "\\x1b]0;pwn\\x07" in screen
    assert "[bold]" in screen                                 # markup stays text
    assert "\x1b[1;33m9" in screen                           # the changed count, highlighted
    assert "\x1b[1;32m8" in screen                           # the added process, highlighted
    assert change_line(changes[0], 2).endswith("handle_count 3 -> 9")


def test_terminal_gets_the_full_screen_view(image: Image) -> None:
    """On a TTY: rich's Live on the alternate screen, the watched records in a table."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="160", LINES="60", TERM="xterm-256color")
    proc = subprocess.Popen([sys.executable, "-m", "pykd_ext", "watch", "ps", "lsass.exe", "--target",
                             image.path, "--interval", "0.1", "--count", "2"],
                            stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:                       # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert b"\x1b[?1049h" in screen and b"\x1b[?1049l" in screen     # entered and left the alternate screen
    text = screen.decode("utf-8", "replace")
    assert "pykd-ext watch ps" in text and "lsass.exe" in text and str(636) in text
