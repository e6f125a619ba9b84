"""PEB, TEB, modules and threads on the real user-mode dumps (`../shared/real/user-dumps/`).

Expected values come from the dumps' own redundancy, never from our decoders: the thread list
(MINIDUMP_THREAD / USERDU64 thread table) names each thread id and TEB address; the module list
stream names each module's base, size and path; MiscInfo/the debug event name the process id.
The TEB's ClientId and NT_TIB.Self, the PEB loader lists and process parameters must agree.
"""
import io
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pykd_ext.cli import run_command
from pykd_ext.targets.opener import open_target
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

WOW64 = "user-dumps/win10-17134-wow64-fullmem.dmp"
NATIVE = "user-dumps/win10-17134-x64-userdu64.dmp"
DUMPS = (WOW64, NATIVE)


def run_json(*argv: str) -> Dict[str, Any]:
    out = io.StringIO()
    code = run_command(list(argv) + ["--format", "json", "--quiet"], out=out)
    assert code == 0, out.getvalue()[-400:]
    return addresses_as_ints(json.loads(out.getvalue()))


def listed(real_dir: Path, name: str) -> Dict[str, Any]:
    with open_target(str(real_dir / name)) as target:
        return target.info().extra


@pytest.mark.parametrize("name", DUMPS)
def test_every_teb_names_its_thread_and_itself(real_dir: Path, name: str) -> None:
    extra = listed(real_dir, name)
    doc = run_json("teb", "--target", str(real_dir / name))
    records = doc["records"]
    assert [r["address"] for r in records] == [t["teb"] for t in extra["threads"]]
    for rec, thread in zip(records, extra["threads"]):
        assert rec["client_id_tid"] == thread["id"]
        assert rec["tid"] == thread["id"]
        assert rec["self"] == thread["teb"]
        assert rec["client_id_pid"] == extra["process_id"]
        assert rec["stack_limit"] < rec["stack_base"]
    assert len({r["peb"] for r in records}) == 1
    assert not [n for n in doc["notes"] if "ClientId" in n or "NtTib.Self" in n]


@pytest.mark.parametrize("name", DUMPS)
def test_threads_command_lists_the_dump_threads(real_dir: Path, name: str) -> None:
    extra = listed(real_dir, name)
    doc = run_json("threads", "--target", str(real_dir / name))
    assert [r["tid"] for r in doc["records"]] == [t["id"] for t in extra["threads"]]
    assert [r["client_id_tid"] for r in doc["records"]] == [t["id"] for t in extra["threads"]]
    assert all(r["pid"] == extra["process_id"] for r in doc["records"])


@pytest.mark.parametrize("name", DUMPS)
def test_loader_lists_match_the_dump_module_list(real_dir: Path, name: str) -> None:
    extra = listed(real_dir, name)
    doc = run_json("modules", "--target", str(real_dir / name))
    ours = {(r["base"], r["size"]) for r in doc["records"]}
    theirs = {(m["base"], m["size"]) for m in extra["modules"]}
    assert ours == theirs
    by_base = {r["base"]: r for r in doc["records"]}
    for module in extra["modules"]:
        rec = by_base[module["base"]]
        assert rec["name"].lower() == module["name"].lower()
        if "\\" in module["path"] and rec["bitness"] == 64:
            assert rec["path"].lower() == module["path"].lower()
        else:   # a 32-bit loader list says System32 where the dump says SysWOW64 (redirection)
            assert rec["path"].lower().rsplit("\\", 1)[-1] == module["name"].lower()
        assert "load" in rec["lists"] and "memory" in rec["lists"]
    assert any("agrees with the loader lists" in n for n in doc["notes"])


@pytest.mark.parametrize("name", DUMPS)
def test_peb_image_and_parameters(real_dir: Path, name: str) -> None:
    extra = listed(real_dir, name)
    doc = run_json("peb", "--target", str(real_dir / name))
    (rec,) = doc["records"]
    exe = extra["modules"][0]
    assert rec["pid"] == extra["process_id"]
    assert rec["image_base"] == exe["base"]
    assert rec["image_path"].lower().endswith(exe["name"].lower())
    if "\\" in exe["path"]:
        assert rec["image_path"].lower() == exe["path"].lower()
    assert rec["command_line"].startswith(rec["image_path"])
    assert rec["command_line"].endswith(" stacktest")           # kdlibcpp's test mode argument
    assert rec["ldr_initialized"] is True
    assert rec["modules"][0]["base"] == exe["base"]
    env = rec["environment"]
    assert isinstance(env, list) and len(env) > 20
    names = {e.split("=", 1)[0].upper() for e in env if "=" in e[1:]}
    assert {"PATH", "SYSTEMROOT", "COMPUTERNAME", "WINDIR"} <= names
    assert rec["os_build"] == 17134                              # the PEB states its build
    assert rec["os_major"] == 10 and rec["os_minor"] == 0
    assert rec["number_of_processors"] in (None, extra.get("processors"), 4, 8)
    assert doc["meta"]["layout"]["build_id"]                     # the layout that decoded it is named


def test_wow64_both_pebs_agree_with_module_list(real_dir: Path) -> None:
    extra = listed(real_dir, WOW64)
    assert extra["wow64"] is True
    doc = run_json("peb", "--target", str(real_dir / WOW64))
    (rec,) = doc["records"]
    sub = rec["peb32"]
    assert rec["wow64"] is True and isinstance(sub, dict)
    assert sub["bitness"] == 32 and sub["address"] < 2 ** 32
    assert sub["image_base"] == rec["image_base"] == extra["modules"][0]["base"]
    assert sub["image_path"] == rec["image_path"]
    assert sub["command_line"] == rec["command_line"]
    ntdlls = sorted(m["base"] for m in extra["modules"] if m["name"].lower() == "ntdll.dll")
    assert len(ntdlls) == 2 and ntdlls[0] < 2 ** 32 <= ntdlls[1]
    ntdll64 = [m for m in rec["modules"] if m["name"].lower() == "ntdll.dll"]
    ntdll32 = [m for m in sub["modules"] if m["name"].lower() == "ntdll.dll"]
    assert [m["base"] for m in ntdll64] == [ntdlls[1]]
    assert [m["base"] for m in ntdll32] == [ntdlls[0]]
    assert "syswow64" in ntdll32[0]["path"].lower() or "system32" in ntdll32[0]["path"].lower()
    assert isinstance(sub["environment"], list) and len(sub["environment"]) > 20
    assert doc["meta"]["layout32"]["build_id"]


def test_wow64_teb32_is_self_consistent(real_dir: Path) -> None:
    extra = listed(real_dir, WOW64)
    doc = run_json("teb", "--target", str(real_dir / WOW64))
    peb = run_json("peb", "--target", str(real_dir / WOW64))["records"][0]
    for rec, thread in zip(doc["records"], extra["threads"]):
        sub = rec["teb32"]
        assert isinstance(sub, dict), rec
        assert sub["self"] == sub["address"] < 2 ** 32
        assert sub["client_id_tid"] == thread["id"]
        assert sub["client_id_pid"] == extra["process_id"]
        assert sub["peb"] == peb["peb32"]["address"]
        # WoW64 keeps the 32-bit TEB's address in the 64-bit TEB's ExceptionList
        assert rec["exception_list"] == sub["address"]
        if rec["wow_teb_offset"] is not None:
            assert rec["address"] + rec["wow_teb_offset"] == sub["address"]
            assert sub["wow_teb_offset"] == -rec["wow_teb_offset"]


def test_x64_userdu64_is_not_wow64(real_dir: Path) -> None:
    doc = run_json("peb", "--target", str(real_dir / NATIVE))
    (rec,) = doc["records"]
    assert rec["wow64"] is False and rec["peb32"] is None
    tebs = run_json("teb", "--target", str(real_dir / NATIVE))["records"]
    assert all(t["teb32"] is None for t in tebs)


def test_text_output_shapes(real_dir: Path) -> None:
    out = io.StringIO()
    assert run_command(["peb", "--target", str(real_dir / WOW64), "--quiet"], out=out) == 0
    text = out.getvalue().splitlines()
    assert text[0].startswith("PEB at 00000000")
    assert any(line.startswith("Wow64 PEB32 at ") for line in text)
    assert any(line.strip().startswith("CommandLine:  '") for line in text)
    out = io.StringIO()
    assert run_command(["teb", "--target", str(real_dir / NATIVE), "--quiet"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("TEB at ")
    labels = [line.split(":")[0].strip() for line in lines[1:17]]
    assert labels[:8] == ["ExceptionList", "StackBase", "StackLimit", "SubSystemTib", "FiberData",
                          "ArbitraryUserPointer", "Self", "EnvironmentPointer"]


def test_argument_naming_another_process_is_refused(real_dir: Path) -> None:
    err = io.StringIO()
    import contextlib
    with contextlib.redirect_stderr(err):
        code = run_command(["peb", "lsass.exe", "--target", str(real_dir / NATIVE), "--quiet"],
                           out=io.StringIO())
    assert code == 2
    assert "holds one process" in err.getvalue()


def test_wow64_thread_found_by_its_32bit_teb(real_dir: Path) -> None:
    extra = listed(real_dir, WOW64)
    tebs = run_json("teb", "--target", str(real_dir / WOW64))["records"]
    for rec, thread in zip(tebs, extra["threads"]):
        (found,) = run_json("teb", "0x%x" % rec["teb32"]["address"], "--target", str(real_dir / WOW64))["records"]
        assert found["tid"] == thread["id"] and found["address"] == thread["teb"]
