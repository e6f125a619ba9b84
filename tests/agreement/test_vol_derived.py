"""Windows 11 22H2/23H2/24H2 from the derived types-only layouts: forged dumps, Volatility 3 and us.

Per build (22621.382, 22631.2428, 26100) the forge (`typesonly_kernel`) plants processes and
threads with every offset from the derived layout and gives the kernel image the PE
TimeDateStamp/SizeOfImage of a real ntoskrnl that kphdyn lists, so the whole chain runs:
kphdyn names the exact version, the layout is chosen for it (revision range or nearby revision,
said in the output), Volatility 3 (given a copy of the derived ISF with the forge's symbol RVAs)
and our `ps`/`threads`/`token`/`handles` agree field by field (handle type names through
`kernel.typeindex_scan`: types-only layouts give no `ObTypeIndexTable`), and partial/absent types (the 22621 `_KPRCB`
prefix, 26100's missing `_KPRCB` and `_MM_SESSION_SPACE`) degrade per field.
"""
import datetime
import io
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from volrun import VolatilityRun
from pykd_ext.forge.typesonly_kernel import (ForgedKernel, ProcessSpec, ThreadSpec, TokenSpec,
                                             TypesOnlyScenario, build_types_only, volatility_isf)
from pykd_ext.layouts.kernel_versions import versions_for_build
from typesonly_checks import check_handles, check_token_privileges_and_sids
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

pytestmark = pytest.mark.slow

MASK48 = (1 << 48) - 1
BASE_TIME = 0x01D9F1E0A0000000


def _kernel_row(build: int, revision: int) -> Any:
    return [r for r in versions_for_build(build) if r.revision == revision][0]


# (derived file stem, layout build id, kphdyn kernel the forged image claims to be, expected match)
CASES = [
    ("10.0.22621.382-x64", "10.0.22621.382", (22621, 2861), "revision range"),
    ("10.0.22631.2428-x64", "10.0.22631.2428", (22621, 2428), "revision range"),
    ("10.0.26100-x64", "10.0.26100", (26100, 7931), "nearby revision"),
]


def _scenario(build_id: str, kernel: Any) -> TypesOnlyScenario:
    procs: List[ProcessSpec] = []
    tid = 8
    for n, (name, pid, ppid, count) in enumerate(
            [("System", 4, 0, 3), ("Registry", 92, 4, 2), ("smss.exe", 380, 4, 2),
             ("lsass.exe", 760, 380, 6), ("svchost.exe", 1044, 380, 12)]):
        threads = [ThreadSpec(tid + 4 * i, start_address=0xFFFFF80512401000 + 0x40 * (tid + 4 * i),
                                win32_start_address=0 if pid == 4 else 0x7FF612340000 + tid + 4 * i,
                                create_time=BASE_TIME + 10_000_000 * (60 * n + i + 1),
                                wait_reason="WrQueue" if i % 2 else "Executive")
                   for i in range(count)]
        tid += 4 * count
        procs.append(ProcessSpec(pid, ppid, name, threads,
                                   create_time=BASE_TIME + 10_000_000 * 60 * n, token=_token(pid, n)))
    return TypesOnlyScenario(build_id, procs, running_tid=8, kernel_timestamp=kernel.timestamp,
                       kernel_size_of_image=kernel.size_of_image)


def _token(pid: int, n: int) -> TokenSpec:
    """System-like tokens for the first processes, a user token (session 1) for the others."""
    if n < 2:
        return TokenSpec(token_id=0x3E4 + n)
    return TokenSpec(user=(5, (21, 1111, 2222, 3333, 1000 + n)), session_id=1,
                       present=(1 << 19) | (1 << 23) | (1 << 25) | (1 << 33) | (1 << 34),
                       enabled=1 << 23, enabled_by_default=1 << 23, token_id=0x1000 + n)


class DerivedRun:
    def __init__(self, forged: ForgedKernel, path: str, kernel: Any, match: str) -> None:
        self.forged, self.path, self.kernel, self.match = forged, path, kernel, match
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


@pytest.fixture(scope="module", params=CASES, ids=[c[1] for c in CASES])
def derived_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                shared_dir: Path) -> DerivedRun:
    from volatility3.framework import constants
    stem, build_id, (kbuild, krev), match = request.param
    kernel = _kernel_row(kbuild, krev)
    folder = tmp_path_factory.mktemp("derived-" + build_id)
    forged = build_types_only(_scenario(build_id, kernel))
    path = forged.write(str(folder / "win11.dmp"), "bitmap")
    isf = volatility_isf(forged, str(shared_dir / "isf-derived" / (stem + ".json.xz")), str(folder / "isf"))
    saved = (constants.OFFLINE, constants.CACHE_PATH)
    constants.OFFLINE = True
    constants.CACHE_PATH = str(folder / "volcache")
    os.makedirs(constants.CACHE_PATH, exist_ok=True)
    try:
        vol = VolatilityRun(path, isf)
        run = DerivedRun(forged, path, kernel, match)
        run.vol["pslist"] = vol.rows("windows.pslist.PsList")
        run.vol["threads"] = vol.rows("windows.threads.Threads")
        run.vol["privileges"] = vol.rows("windows.privileges.Privs")
        run.vol["handles"] = vol.rows("windows.handles.Handles")
    finally:
        constants.OFFLINE, constants.CACHE_PATH = saved
    return run


def seconds(raw: int) -> Optional[datetime.datetime]:
    when = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc) + \
        datetime.timedelta(microseconds=raw // 10)
    return when.replace(microsecond=0) if raw else None


def iso_seconds(text: Optional[str]) -> Optional[datetime.datetime]:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)


def test_volatility_lists_what_was_planted(derived_run: DerivedRun) -> None:
    f = derived_run.forged
    got = [(r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["CreateTime"])
           for r in derived_run.vol["pslist"]]
    want = [(p.pid, p.ppid, p.name, f.processes[p.pid] & MASK48, len(p.threads),
             seconds(p.create_time)) for p in f.scenario.processes]
    assert got == want
    assert len(derived_run.vol["threads"]) == sum(len(p.threads) for p in f.scenario.processes)


def test_our_ps_and_threads_agree_with_volatility(derived_run: DerivedRun) -> None:
    f = derived_run.forged
    doc = derived_run.ours("ps")
    ours = [(r["pid"], r["ppid"], r["name"], r["address"] & MASK48, r["threads_active"],
             iso_seconds(r["create_time"])) for r in doc["records"]]
    vol = [(r["PID"], r["PPID"], r["ImageFileName"], r["Offset(V)"], r["Threads"], r["CreateTime"])
           for r in derived_run.vol["pslist"]]
    assert ours == vol
    for r in doc["records"]:
        assert r["dtb"] == f.dtbs[r["pid"]] and r["layout"] == f.layouts.build_id
    mine = []
    for p in f.scenario.processes:
        for t in derived_run.ours("threads", "0n%d" % p.pid)["records"]:
            # Volatility shows addresses as 48-bit values
            mine.append((t["pid"], t["tid"], t["address"] & MASK48, t["start_address"] & MASK48,
                         t["win32_start_address"] & MASK48, iso_seconds(t["create_time"])))
            assert t["wait_reason"] in ("WrQueue", "Executive")
    vol_t = [(r["PID"], r["TID"], r["Offset"], r["StartAddress"], r["Win32StartAddress"],
              r["CreateTime"]) for r in derived_run.vol["threads"]]
    assert sorted(mine) == sorted(vol_t)


def test_exact_version_and_layout_choice_are_said(derived_run: DerivedRun) -> None:
    f = derived_run.forged
    info = derived_run.ours("info")["records"][0]
    assert info["extra"]["kernel_version"] == derived_run.kernel.version
    assert info["extra"]["kernel_version_source"]["method"].startswith("kernel PE header")
    choice = derived_run.ours("ps")["meta"]["layout_choice"]
    assert choice["chosen"] == f.layouts.build_id
    assert choice["kernel_version"] == derived_run.kernel.version
    assert choice["match"] == derived_run.match
    assert any(derived_run.match in w and derived_run.kernel.version in w for w in choice["warnings"])
    assert choice["kphdyn_check"]["ok"]


def test_running_thread_from_the_prcb_where_the_layout_has_one(derived_run: DerivedRun) -> None:
    f = derived_run.forged
    system = {t["tid"]: t for t in derived_run.ours("threads", "4")["records"]}
    if f.layouts.has_type("_KPRCB"):                 # 22621/22631: the prefix holds CurrentThread
        assert system[8]["running_on"] == 0 and system[8]["state"] == "Running"
    else:                                            # 26100: no _KPRCB, degrade, do not fail
        assert system[8]["running_on"] is None


def test_token_privileges_agree_with_volatility_and_sids_with_the_plant(derived_run: DerivedRun) -> None:
    check_token_privileges_and_sids(derived_run)


def test_handles_agree_with_volatility(derived_run: DerivedRun) -> None:
    check_handles(derived_run)
