"""`peb`, `teb` and `modules` on forged kernel dumps of four builds, against what the forge planted.

The forge (`pykd_ext.forge.user_objects`) records every value it wrote into each process's user
memory (`planted.processes[i]["user"]`); Volatility 3's agreement on the same dumps is checked in
`tests/agreement/test_vol_peb.py`. Here: every field, the hidden (load-order-unlinked) DLL, TEBs
of every user thread, the WoW64 32-bit PEB/TEBs, and a kernel-only dump where user memory is
absent (each field says so, the commands still succeed).
"""
import io
from pathlib import Path
from typing import Any, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.forge.builds import BUILDS
from pykd_ext.forge.kernel_objects import Planted

from user_world import forged, run_json, user_processes


@pytest.fixture(scope="module", params=sorted(BUILDS))
def world(request: Any, tmp_path_factory: Any, isf_dir: Path) -> Tuple[str, Planted]:
    del isf_dir
    return forged(tmp_path_factory, request.param)


def test_every_user_process_peb_matches_the_planted_one(world: Tuple[str, Planted]) -> None:
    path, planted = world
    procs = user_processes(planted)
    assert len(procs) >= 10
    for proc in procs:
        facts = proc["user"]
        (rec,) = run_json("peb", "0x%x" % proc["address"], "--target", path)["records"]
        assert rec["address"] == facts["peb"] == proc["peb"]
        assert rec["pid"] == proc["pid"]
        for key in ("image_base", "ldr", "process_parameters", "command_line", "image_path",
                    "current_directory", "window_title", "desktop", "environment",
                    "environment_address", "being_debugged", "number_of_heaps", "process_heap"):
            assert rec[key] == facts[key], (proc["name"], key)
        assert rec["ldr_initialized"] is True
        assert [(m["base"], m["size"], m["path"]) for m in rec["modules"]] == \
            [(m["base"], m["size"], m["path"]) for m in facts["modules"]]
        assert "PYKD_FORGE_PID=%d" % proc["pid"] in rec["environment"]   # its own address space


def test_modules_lists_and_the_unlinked_dll(world: Tuple[str, Planted]) -> None:
    path, planted = world
    rootkit = planted.by_name("rootkit.exe")
    doc = run_json("modules", "rootkit.exe", "--target", path)
    planted_mods = rootkit["user"]["modules"] + rootkit["user"]["hidden_modules"]
    by_base = {r["base"]: r for r in doc["records"]}
    assert set(by_base) == {m["base"] for m in planted_mods}
    for m in planted_mods:
        rec = by_base[m["base"]]
        assert rec["lists"] == m["lists"]
        assert rec["name"] == m["name"] and rec["entry_point"] == m["entry_point"]
        assert rec["time_date_stamp"] == m["time_date_stamp"]
        assert rec["load_time_raw"] == m["load_time_raw"]
    hidden = rootkit["user"]["hidden_modules"][0]
    assert by_base[hidden["base"]]["lists"] == ["memory", "init"]
    assert any("inject.dll" in n and "InMemoryOrderModuleList" in n for n in doc["notes"])
    init = run_json("modules", "rootkit.exe", "--order", "init", "--target", path)["records"]
    assert init[0]["name"] == "ntdll.dll"          # the image is never on the init-order list
    assert init[-1]["name"] == rootkit["name"]     # ... so it comes after that list's modules


def test_all_processes_modules(world: Tuple[str, Planted]) -> None:
    path, planted = world
    doc = run_json("modules", "--target", path)
    got = {(r["pid"], r["bitness"], r["base"]) for r in doc["records"]}
    want = set()
    for proc in user_processes(planted):
        if not proc["linked"]:          # like dlllist: the active list (rootkit.exe is unlinked)
            continue
        facts = proc["user"]
        want |= {(proc["pid"], 64, m["base"]) for m in facts["modules"] + facts["hidden_modules"]}
        if facts["wow64"] and facts["wow64"]["modules"]:
            want |= {(proc["pid"], 32, m["base"]) for m in facts["wow64"]["modules"]}
    assert got == want


def test_wow64_32bit_peb_and_tebs(world: Tuple[str, Planted]) -> None:
    path, planted = world
    wow = [p for p in user_processes(planted) if p["wow64"]]
    assert len(wow) == 1
    proc = wow[0]
    facts32 = proc["user"]["wow64"]
    (rec,) = run_json("peb", "0n%d" % proc["pid"], "--target", path)["records"]
    sub = rec["peb32"]
    assert rec["wow64"] is True
    assert sub["address"] == facts32["peb"] == proc["peb32"] < 2 ** 32
    assert sub["image_base"] == facts32["image_base"] == rec["image_base"]
    for key in ("command_line", "image_path", "current_directory", "environment", "ldr",
                "process_parameters"):
        assert sub[key] == facts32[key], key
    assert [(m["base"], m["path"]) for m in sub["modules"]] == \
        [(m["base"], m["path"]) for m in facts32["modules"]]
    doc = run_json("teb", "-p", "0n%d" % proc["pid"], "--target", path)
    for r in doc["records"]:
        t32 = proc["user"]["tebs"][r["tid"]]["teb32"]
        assert r["teb32"]["address"] == r["teb32"]["self"] == t32["address"]
        assert r["teb32"]["peb"] == facts32["peb"]
        assert r["teb32"]["client_id_tid"] == r["tid"]
        assert r["teb32"]["stack_base"] == t32["stack_base"]
        assert r["exception_list"] == t32["address"]


def test_kernel_only_dump_says_user_memory_is_absent(tmp_path_factory: Any, isf_dir: Path) -> None:
    del isf_dir
    path, planted = forged(tmp_path_factory, "win10", kind="kernel")
    lsass = planted.by_name("lsass.exe")
    doc = run_json("peb", "lsass.exe", "--target", path)
    (rec,) = doc["records"]
    assert rec["address"] == lsass["peb"]                       # from the (kernel) EPROCESS
    assert rec["image_base"] == {"unreadable": rec["image_base"]["unreadable"]}
    assert rec["image_base"]["unreadable"]["reason"] == "not in dump"
    assert any("user memory not in dump" in n for n in doc["notes"])
    mods = run_json("modules", "lsass.exe", "--target", path, status=1)     # no module: exit 1
    assert mods["records"] == [] and any("user memory not in dump" in n for n in mods["notes"])
    tebs = run_json("teb", "-p", "lsass.exe", "--target", path)
    assert [r["address"] for r in tebs["records"]] == [t["teb"] for t in lsass["threads"]]
    assert all(r["stack_base"]["unreadable"]["reason"] == "not in dump" for r in tebs["records"])
    out = io.StringIO()
    assert run_command(["eproc", "lsass.exe", "-v", "--target", path, "--quiet"], out=out) == 0
    assert "user memory not in dump" in out.getvalue()


def test_eproc_verbose_summarises_the_peb(world: Tuple[str, Planted]) -> None:
    path, planted = world
    out = io.StringIO()
    assert run_command(["eproc", "explorer.exe", "-v", "--target", path, "--quiet"], out=out) == 0
    explorer = planted.by_name("explorer.exe")
    line = [l for l in out.getvalue().splitlines() if l.strip().startswith("PEB %x" % explorer["peb"])]
    assert line, out.getvalue()[:2000]
    assert "%d modules" % len(explorer["user"]["modules"]) in line[0]
    assert "%d environment variables" % len(explorer["user"]["environment"]) in line[0]
