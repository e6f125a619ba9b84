"""`teb` on forged kernel dumps of four builds, against what the forge planted.

Every user thread's TEB (found from `KTHREAD.Teb`, read through the owning process's page
tables) decodes to the planted NT_TIB, ClientId, PEB, last error/status, TLS pointer and fiber
fields; a TEB is found by thread id, by `_ETHREAD` address and by its own address.
"""
from pathlib import Path
from typing import Any, Tuple

import pytest

from pykd_ext.forge.builds import BUILDS
from pykd_ext.forge.kernel_objects import Planted

from user_world import forged, run_json, user_processes


@pytest.fixture(scope="module", params=sorted(BUILDS))
def world(request: Any, tmp_path_factory: Any, isf_dir: Path) -> Tuple[str, Planted]:
    del isf_dir
    return forged(tmp_path_factory, request.param)


def test_tebs_of_every_user_thread(world: Tuple[str, Planted]) -> None:
    path, planted = world
    checked = 0
    for proc in user_processes(planted):
        tebs = proc["user"]["tebs"]
        doc = run_json("teb", "-p", "0n%d" % proc["pid"], "--target", path)
        by_tid = {r["tid"]: r for r in doc["records"]}
        for tid, facts in tebs.items():
            rec = by_tid[int(tid)]
            assert rec["address"] == rec["self"] == facts["address"]
            assert rec["client_id_tid"] == int(tid) and rec["client_id_pid"] == proc["pid"]
            for key in ("stack_base", "stack_limit", "deallocation_stack", "peb", "last_error",
                        "last_status", "tls_pointer", "fiber_data", "has_fiber_data"):
                assert rec[key] == facts[key], (proc["name"], tid, key)
            checked += 1
    assert checked >= 20
    explorer = planted.by_name("explorer.exe")
    fibers = [t for t in explorer["user"]["tebs"].values() if t["has_fiber_data"]]
    assert len(fibers) == 1


def test_teb_by_tid_ethread_and_teb_address(world: Tuple[str, Planted]) -> None:
    path, planted = world
    lsass = planted.by_name("lsass.exe")
    thread = lsass["threads"][1]
    facts = lsass["user"]["tebs"][thread["tid"]]
    for spec in ("0n%d" % thread["tid"], "0x%x" % thread["address"], "0x%x" % facts["address"]):
        (rec,) = run_json("teb", spec, "--target", path)["records"]
        assert rec["address"] == facts["address"] and rec["tid"] == thread["tid"]
        assert rec["thread"] == thread["address"] and rec["process"] == lsass["address"]


def test_low_teb_address_of_a_wow64_thread(world: Tuple[str, Planted]) -> None:
    """A WoW64 thread's TEB sits below 16 MiB: a page-aligned user address is looked up as a TEB
    before it is taken for a thread id."""
    path, planted = world
    proc = [p for p in user_processes(planted) if p["wow64"]][0]
    thread = proc["threads"][0]
    assert thread["teb"] < 0x1000000
    (rec,) = run_json("teb", "0x%x" % thread["teb"], "--target", path)["records"]
    assert rec["tid"] == thread["tid"] and rec["teb32"]["address"] == thread["teb"] + 0x2000
