"""The lab sheets of samples/labs cannot rot: their commands run, and their answers are true.

For each sheet: every `$ pykd-ext ...` line of its ```console blocks runs (exit 0) against the
shipped sample; its ```facts block must equal the facts this test derives from what the forge
planted (`build_scenario(standard_scenario(), "win10")`, the scenario and build
`samples/make_samples.py` writes the sample from; `tests/forge/test_scenario_samples.py` keeps
the file current), and every value it states must appear in the commands' output (the commands
really answer the question). Constants below come from winnt.h, not from pykd-ext.
"""
import io
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.forge.kernel_objects import Planted, build_scenario
from pykd_ext.forge.scenario import standard_scenario

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "samples" / "labs"
#: winnt.h JOB_OBJECT_LIMIT_* bits (the ones the forge plants), by bit
JOB_LIMITS = {0x8: "ACTIVE_PROCESS", 0x200: "JOB_MEMORY", 0x800: "BREAKAWAY_OK", 0x1000: "SILENT_BREAKAWAY_OK",
              0x2000: "KILL_ON_JOB_CLOSE"}
#: winnt.h SECURITY_MANDATORY_*_RID as integrity SIDs
INTEGRITY = {"S-1-16-4096": "Low", "S-1-16-8192": "Medium", "S-1-16-12288": "High", "S-1-16-16384": "System"}


def parse_sheet(path: Path) -> Tuple[List[List[str]], Dict[str, str], str]:
    """(command lines, facts, title) of a lab sheet."""
    text = path.read_text(encoding="utf-8")
    commands: List[List[str]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ pykd-ext "):
                commands.append(shlex.split(line[len("$ pykd-ext "):]))
    blocks = re.findall(r"```facts\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "%s: one ```facts block" % path.name
    facts = {}
    for line in blocks[0].splitlines():
        key, _, value = line.partition(": ")
        facts[key.strip()] = value.strip()
    for section in ("## Question", "## Commands", "## Answer"):
        assert section in text, "%s lacks %s" % (path.name, section)
    return commands, facts, text.splitlines()[0]


def _threads_by_address(planted: Planted) -> Dict[int, Tuple[str, Dict[str, Any]]]:
    return {t["address"]: (p["name"], t) for p in planted.processes for t in p["threads"]}


def hidden_process(planted: Planted) -> Dict[str, str]:
    hidden = [p for p in planted.processes if not p["linked"]]
    assert len(hidden) == 1
    proc = hidden[0]
    own = {t["address"]: t for t in proc["threads"]}
    cpu = next(c for c in planted.processors if c["current_thread"] in own)
    return {"hidden_process": proc["name"], "hidden_pid": str(proc["pid"]),
            "hidden_eprocess": "0x%x" % proc["address"], "running_on_processor": str(cpu["number"]),
            "running_thread": str(own[cpu["current_thread"]]["tid"])}


def protected_processes(planted: Planted) -> Dict[str, str]:
    protected = [p for p in planted.processes if p["protection"]]
    lsass = planted.by_name("lsass.exe")["protection"]
    return {"protected": ", ".join("%s=%s" % (p["name"], p["protection"]["text"]) for p in protected),
            "lsass_signer": lsass["signer"], "lsass_type": lsass["type"]}


def impersonation(planted: Planted) -> Dict[str, str]:
    security = planted.security
    (tid, imp), = security["impersonation"].items()
    proc = planted.process(imp["pid"])
    same_user = next(t for t in security["tokens"].values() if t["user"] == imp["user"])
    return {"thread": str(tid), "process": proc["name"], "pid": str(proc["pid"]),
            "token": "0x%x" % imp["token"], "user": imp["user"], "level": imp["level"],
            "integrity": INTEGRITY[same_user["integrity"]],
            "primary_user": security["tokens"][proc["pid"]]["user"]}


def jobs_and_silos(planted: Planted) -> Dict[str, str]:
    jobs = planted.security["jobs"]
    job, fact = next((a, f) for a, f in jobs.items() if 1040 in f["members"])
    flags = fact["limit_flags"]
    assert sum(bit for bit in JOB_LIMITS if flags & bit) == flags        # every bit named
    silo = next(f for f in jobs.values() if 812 in f["members"])
    return {"job": "0x%x" % job, "limit_flags": "0x%x" % flags,
            "limits": ", ".join(name for bit, name in sorted(JOB_LIMITS.items()) if flags & bit),
            "active_process_limit": str(fact["active_limit"]), "parent_job": "0x%x" % fact["parent"],
            "silo_812": "server silo" if silo["server_silo"] else "silo" if silo["silo"] else "none",
            "container_id_812": silo["container_id"]}


def processors_and_waits(planted: Planted) -> Dict[str, str]:
    threads = _threads_by_address(planted)

    def who(address: int) -> str:
        name, thread = threads[address]
        return "%s/%d" % (name, thread["tid"])

    lsass = planted.by_name("lsass.exe")
    return {"running": ", ".join("%d=%s" % (c["number"], who(c["current_thread"])) for c in planted.processors),
            "standby": ", ".join("%d=%s" % (c["number"], who(c["next_thread"]))
                                 for c in planted.processors if c["next_thread"]),
            "lsass_waits": ", ".join("%d=%s" % (t["tid"], t["wait_reason"]) for t in lsass["threads"]
                                     if t["state"] == "Waiting")}


#: winnt.h PAGE_EXECUTE* protections, by value
EXECUTABLE = {0x10: "PAGE_EXECUTE", 0x20: "PAGE_EXECUTE_READ", 0x40: "PAGE_EXECUTE_READWRITE",
              0x80: "PAGE_EXECUTE_WRITECOPY"}


def scheduler_and_address_space(planted: Planted) -> Dict[str, str]:
    threads = _threads_by_address(planted)
    ready = []
    for queue in planted.scheduling["queues"]:
        for member in queue["threads"]:
            name, thread = threads[member["thread"]]
            ready.append("%s=%s/%d/%d" % (queue["processor"], name, thread["tid"], member["priority"]))
    explorer = planted.by_name("explorer.exe")
    listed = {m["base"] for m in explorer["user"]["modules"]}
    (unlisted,) = [v for v in explorer["vads"] if v["kind"] == "image" and v["start"] not in listed]
    (rwx,) = [v for v in explorer["vads"] if v["private"] and v["protection_value"] in EXECUTABLE]
    (fiber,) = [t for t in explorer["user"]["tebs"].values() if t["has_fiber_data"]]
    return {"ready": ", ".join(ready), "unlisted_image": unlisted["file_name"],
            "unlisted_image_start": "0x%x" % unlisted["start"], "executable_private": "0x%x" % rwx["start"],
            "executable_private_protection": EXECUTABLE[rwx["protection_value"]],
            "fiber_thread": str(fiber["tid"]), "current_fiber": "0x%x" % fiber["fiber_data"]}


EXPECTED: Dict[str, Callable[[Planted], Dict[str, str]]] = {
    "01-hidden-process": hidden_process, "02-protected-processes": protected_processes,
    "03-impersonation": impersonation, "04-jobs-and-silos": jobs_and_silos,
    "05-processors-and-waits": processors_and_waits,
    "07-scheduler-and-address-space": scheduler_and_address_space,
}


@pytest.fixture(scope="module")
def planted() -> Planted:
    return build_scenario(standard_scenario(), "win10")[1]


def _atoms(value: str) -> List[str]:
    """The pieces of a fact that the output must show (hex without 0x: WinDbg prints it bare)."""
    out = []
    for part in re.split(r", |=|/", value):
        part = part.strip()
        if re.fullmatch(r"0x[0-9a-f]+", part):
            part = part[2:]
        if part:
            out.append(part)
    return out


def test_every_sheet_is_checked_and_indexed() -> None:
    sheets = sorted(p.stem for p in LABS.glob("[0-9][0-9]-*.md"))
    assert len(sheets) >= 5 and set(sheets) <= set(EXPECTED) | {"06-process-creation"}
    index = (LABS / "README.md").read_text(encoding="utf-8")
    for stem in sheets:
        assert "(%s.md)" % stem in index


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_lab_sheet(stem: str, planted: Planted, monkeypatch: pytest.MonkeyPatch) -> None:
    commands, facts, _title = parse_sheet(LABS / ("%s.md" % stem))
    assert facts == EXPECTED[stem](planted)
    monkeypatch.chdir(REPO)
    output = []
    assert commands
    for argv in commands:
        assert "--target" in argv and "samples/win10-19041-standard.dmp" in argv
        sink = io.StringIO()
        assert run_command(argv + ["--quiet"], out=sink) == 0, argv
        output.append(sink.getvalue())
    shown = "\n".join(output)
    for key, value in facts.items():
        for atom in _atoms(value):
            assert atom in shown, "%s: %s=%r: %r is not in the commands' output" % (stem, key, value, atom)
