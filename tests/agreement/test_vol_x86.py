"""32-bit Windows end to end: forged PAGEDUMP dumps (PAE and non-PAE) read by Volatility 3 and by us.

Per build (Windows 7 SP1 x86 non-PAE, Windows 10 1507 and 2004 x86 PAE; full and bitmap bodies):
- the forge (`pykd_ext.forge.x86_kernel`) plants processes and threads with every offset from the
  derived types-only layout, and places the globals itself;
- Volatility 3 gets a copy of the same derived ISF with the forged kernel's GUID and exactly the
  symbol RVAs the forge used (`volatility_isf`), finds the DTB and the kernel by itself, and runs
  `windows.pslist`, `windows.threads`, `windows.privileges` and `windows.handles`;
- Volatility's rows must equal the planted facts, and our `ps`/`threads` JSON must equal
  Volatility's rows field by field (PID, PPID, name, object address, thread counts, create times,
  TIDs, start addresses, privileges, handle values/objects/access), plus the planted facts
  Volatility does not report (DTB, thread state and wait reason where the build has the enums,
  stacks, token SIDs, layout used). Handle type names: a types-only layout has no
  `ObTypeIndexTable`/`ObHeaderCookie` addresses; we find the table by its shape and derive the
  cookie (`kernel.typeindex_scan`), Volatility is given the forge's symbols.
Volatility is run offline with a private identifier cache (no symbol download is ever tried).
"""
import datetime
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from volrun import VolatilityRun
from pykd_ext.forge.x86_kernel import (ForgedX86, ProcessSpec32, ThreadSpec32, TokenSpec32,
                                       X86Scenario, build_x86, volatility_isf)
from typesonly_checks import check_handles, check_token_privileges_and_sids
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

pytestmark = pytest.mark.slow

BUILDS = [("6.1.7601.17514-x86", "full", False),     # Windows 7 SP1, non-PAE ntkrnlmp
          ("10.0.10240.16384-x86", "bitmap", True),  # Windows 10 1507, PAE ntkrpamp
          ("10.0.19041.1288-x86", "full", True)]     # Windows 10 2004, PAE ntkrpamp
BASE_TIME = 0x01D707F23DB00000            # a FILETIME in 2021


def _scenario(build_id: str) -> X86Scenario:
    procs: List[ProcessSpec32] = []
    tid = 8
    layout = [("System", 4, 0, 4), ("smss.exe", 288, 4, 2), ("csrss.exe", 376, 288, 9),
              ("wininit.exe", 424, 288, 3), ("lsass.exe", 560, 424, 7), ("busy.exe", 1200, 424, 40)]
    for n, (name, pid, ppid, count) in enumerate(layout):
        threads = []
        for i in range(count):
            threads.append(ThreadSpec32(tid, start_address=0x82A01000 + 0x10 * tid,
                                        win32_start_address=0 if pid == 4 else 0x77000000 + tid,
                                        create_time=BASE_TIME + 10_000_000 * (60 * n + i + 1),
                                        state="Waiting" if i else "Ready",
                                        wait_reason="UserRequest" if i % 2 else "Executive"))
            tid += 4
        procs.append(ProcessSpec32(pid, ppid, name, threads, create_time=BASE_TIME + 10_000_000 * 60 * n,
                                   token=_token(pid, n)))
    return X86Scenario(build_id, procs, running_tid=8)


def _token(pid: int, n: int) -> TokenSpec32:
    """System-like tokens for the first processes, a user token (session 1) for the others."""
    if n < 2:
        return TokenSpec32(token_id=0x3E4 + n)
    return TokenSpec32(user=(5, (21, 1111, 2222, 3333, 1000 + n)), session_id=1,
                       present=(1 << 19) | (1 << 23) | (1 << 25) | (1 << 33) | (1 << 34),
                       enabled=1 << 23, enabled_by_default=1 << 23, token_id=0x1000 + n)


class X86Run:
    def __init__(self, forged: ForgedX86, path: str) -> None:
        self.forged = forged
        self.path = path
        self.vol: Dict[str, List[Dict[str, Any]]] = {}
        self._ours: Dict[str, Dict[str, Any]] = {}

    def ours(self, *argv: str) -> Dict[str, Any]:
        key = " ".join(argv)
        if key not in self._ours:
            from pykd_ext.cli import run_command
            out = io.StringIO()
            code = run_command(list(argv) + ["--target", self.path, "--format", "json", "--quiet"],
                               out=out)
            assert code == 0, (argv, out.getvalue()[-500:])
            self._ours[key] = addresses_as_ints(json.loads(out.getvalue()))
        return self._ours[key]


@pytest.fixture(scope="module", params=BUILDS, ids=[b[0] for b in BUILDS])
def x86_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            shared_dir: Path) -> X86Run:
    from volatility3.framework import constants
    build_id, kind, pae = request.param
    folder = tmp_path_factory.mktemp("x86-" + build_id)
    forged = build_x86(_scenario(build_id))
    assert forged.pae == pae
    path = forged.write(str(folder / "x86.dmp"), kind)
    isf = volatility_isf(forged, str(shared_dir / "isf-derived" / ("%s.json.xz" % build_id)), str(folder / "isf"))
    saved = (constants.OFFLINE, constants.CACHE_PATH)
    constants.OFFLINE = True
    constants.CACHE_PATH = str(folder / "volcache")
    os.makedirs(constants.CACHE_PATH, exist_ok=True)
    try:
        vol = VolatilityRun(path, isf)
        run = X86Run(forged, path)
        run.vol["pslist"] = vol.rows("windows.pslist.PsList")
        run.vol["threads"] = vol.rows("windows.threads.Threads")
        run.vol["privileges"] = vol.rows("windows.privileges.Privs")
        run.vol["handles"] = vol.rows("windows.handles.Handles")
    finally:
        constants.OFFLINE, constants.CACHE_PATH = saved
    return run


def seconds(raw: int) -> Optional[datetime.datetime]:
    if not raw:
        return None
    when = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(microseconds=raw // 10)
    return when.replace(microsecond=0)


def iso_seconds(text: Optional[str]) -> Optional[datetime.datetime]:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)


def test_volatility_lists_what_was_planted(x86_run: X86Run) -> None:
    f = x86_run.forged
    got = [(r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["CreateTime"])
           for r in x86_run.vol["pslist"]]
    want = [(p.pid, p.ppid, p.name, f.processes[p.pid], len(p.threads), seconds(p.create_time))
            for p in f.scenario.processes]
    assert got == want
    got_t = sorted((r["PID"], r["TID"], r["Offset"], r["StartAddress"], r["Win32StartAddress"],
                    r["CreateTime"]) for r in x86_run.vol["threads"])
    want_t = sorted((p.pid, t.tid, f.threads[t.tid], t.start_address, t.win32_start_address,
                     seconds(t.create_time)) for p in f.scenario.processes for t in p.threads)
    assert got_t == want_t


def test_our_ps_agrees_with_volatility_pslist(x86_run: X86Run) -> None:
    doc = x86_run.ours("ps")
    ours = [(r["pid"], r["ppid"], r["name"], r["address"], r["threads_active"],
             iso_seconds(r["create_time"])) for r in doc["records"]]
    vol = [(r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["CreateTime"])
           for r in x86_run.vol["pslist"]]
    assert ours == vol
    f = x86_run.forged
    for r in doc["records"]:
        assert r["layout"] == f.layouts.build_id
        assert r["dtb"] == f.dtbs[r["pid"]]
        assert r["threads_listed"] == r["threads_active"]
        assert "ActiveProcessLinks" in r["found_by"]


def test_our_threads_agree_with_volatility_threads(x86_run: X86Run) -> None:
    f = x86_run.forged
    ours: List[Any] = []
    for p in f.scenario.processes:
        for r in x86_run.ours("threads", "0n%d" % p.pid)["records"]:
            ours.append((r["pid"], r["tid"], r["address"], r["start_address"],
                         r["win32_start_address"], iso_seconds(r["create_time"])))
    vol = [(r["PID"], r["TID"], r["Offset"], r["StartAddress"], r["Win32StartAddress"],
            r["CreateTime"]) for r in x86_run.vol["threads"]]
    assert sorted(ours) == sorted(vol)


def test_our_threads_decode_what_volatility_does_not_report(x86_run: X86Run) -> None:
    f = x86_run.forged
    lay = f.layouts
    has_state = lay.has_enum("_KTHREAD_STATE")
    for p in f.scenario.processes:
        records = {r["tid"]: r for r in x86_run.ours("threads", "0n%d" % p.pid)["records"]}
        assert sorted(records) == sorted(t.tid for t in p.threads)
        for t in p.threads:
            r = records[t.tid]
            assert r["wait_reason"] == t.wait_reason
            assert r["priority"] == t.priority
            assert r["stack_base"] - r["stack_limit"] == 0x3000
            assert r["stack_limit"] < r["stack_current"] < r["stack_init"] < r["stack_base"]
            if has_state:
                want = "Running" if t.tid == f.scenario.running_tid else t.state
                assert r["state"] == want
            assert r["layout"] == lay.build_id


def test_info_names_x86_paging_and_layout_choice(x86_run: X86Run) -> None:
    f = x86_run.forged
    info = x86_run.ours("info")["records"][0]
    assert (info["container"], info["arch"], info["build"]) == ("PAGEDUMP", "x86", f.layouts.build)
    assert info["extra"]["paging"] == ("x86 PAE" if f.pae else "x86 non-PAE")
    assert info["kernel_base"] == f.kernel_base
    assert info["kdbg"]["PsActiveProcessHead"] == f.globals["PsActiveProcessHead"]
    assert info["extra"]["pdb_name"] == f.pdb_name
    choice = x86_run.ours("ps")["meta"]["layout_choice"]
    assert choice["chosen"] == f.layouts.build_id


def test_token_privileges_agree_with_volatility_and_sids_with_the_plant(x86_run: X86Run) -> None:
    check_token_privileges_and_sids(x86_run)


def test_handles_agree_with_volatility(x86_run: X86Run) -> None:
    check_handles(x86_run)


def test_raw_x86_image_pslist_agrees_with_volatility(tmp_path_factory: pytest.TempPathFactory,
                                                     shared_dir: Path) -> None:
    """A raw (headerless) PAE image: Volatility finds the DTB by its own scan, we by ours."""
    from volatility3.framework import constants
    from pykd_ext.forge.dumpfile import write_raw_image
    build_id = "10.0.19041.1288-x86"
    folder = tmp_path_factory.mktemp("x86-raw")
    forged = build_x86(_scenario(build_id))
    path = write_raw_image(str(folder / "x86.raw"), forged.phys)
    isf = volatility_isf(forged, str(shared_dir / "isf-derived" / ("%s.json.xz" % build_id)),
                         str(folder / "isf"))
    saved = (constants.OFFLINE, constants.CACHE_PATH)
    constants.OFFLINE, constants.CACHE_PATH = True, str(folder / "volcache")
    os.makedirs(constants.CACHE_PATH, exist_ok=True)
    try:
        vol = VolatilityRun(path, isf).rows("windows.pslist.PsList")
    finally:
        constants.OFFLINE, constants.CACHE_PATH = saved
    run = X86Run(forged, path)
    ours = [(r["pid"], r["ppid"], r["name"], r["address"], r["threads_active"],
             iso_seconds(r["create_time"])) for r in run.ours("ps")["records"]]
    want = [(r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["CreateTime"])
            for r in vol]
    assert ours == want and len(ours) == len(forged.scenario.processes)
    info = run.ours("info")["records"][0]
    assert (info["container"], info["arch"], info["directory_table_base"]) == ("raw", "x86", forged.kernel.dtb)
