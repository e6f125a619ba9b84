"""Lab 6: `watch` over an image that `process_creation.py` moves step by step reports each step.

Independent source: the forge's planted facts of the lab's scenario (calc.exe's EPROCESS and
ETHREAD addresses, PID/TID, PEB, csrss.exe's planted handle count, the processor the thread
runs on); the sheet's facts block must state them, and the changes `watch` reports at each
step must be the ones the sheet's answer describes.
"""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from pykd_ext.forge import write_raw_image
from pykd_ext.render.renderers import addresses_as_ints

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "samples" / "labs"
INTERVAL = "0.6"


def _lab_module() -> Any:
    spec = importlib.util.spec_from_file_location("process_creation", str(LABS / "process_creation.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    module = _lab_module()
    machine, planted, steps, facts = module.build()
    path = str(tmp_path_factory.mktemp("creation") / "creation.raw")
    write_raw_image(path, machine.phys)
    module.write_step(path, steps, 0)
    return {"module": module, "planted": planted, "steps": steps, "facts": facts, "path": path}



def _watch(lab: Dict[str, Any], argv: List[str], first: int, last: int) -> List[Dict[str, Any]]:
    """Run `watch ARGV` while moving the image from step `first` to `last`, one step per refresh."""
    lab["module"].write_step(lab["path"], lab["steps"], first)
    count = last - first + 1
    proc = subprocess.Popen([sys.executable, "-m", "pykd_ext", "watch"] + argv +
                            ["--target", lab["path"], "--interval", INTERVAL, "--count", str(count),
                             "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for refresh in range(1, count):
            while not proc.stderr.readline().startswith("watch: refresh %d:" % refresh):
                assert proc.poll() is None, "watch ended early"
            lab["module"].write_step(lab["path"], lab["steps"], first + refresh)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return [addresses_as_ints(json.loads(line)) for line in out.splitlines()]


def test_sheet_states_the_planted_facts(lab: Dict[str, Any]) -> None:
    text = (LABS / "06-process-creation.md").read_text(encoding="utf-8")
    block = re.findall(r"```facts\n(.*?)```", text, flags=re.S)[0]
    facts = dict(line.split(": ", 1) for line in block.strip().splitlines())
    planted = lab["planted"]
    calc = planted.process(lab["facts"]["pid"])
    thread = calc["threads"][0]
    csrss = planted.process(460)
    cpu = next(c["number"] for c in planted.processors if c["current_thread"] == thread["address"])
    handles = facts.pop("csrss_handles")
    assert facts == {"process": calc["name"], "pid": str(calc["pid"]), "tid": str(thread["tid"]),
                     "eprocess": "0x%x" % calc["address"], "peb": "0x%x" % calc["peb"],
                     "first_run_processor": str(cpu)}
    before, after = (int(n) for n in handles.split(" -> "))
    assert after == csrss["handle_count"] and before < after      # the count `watch` must show
    lab["csrss_before"] = before
    assert "$ pykd-ext watch ps --target /tmp/creation.raw" in text
    assert "$ python samples/labs/process_creation.py /tmp/creation.raw --play" in text


def test_each_step_is_reported(lab: Dict[str, Any]) -> None:
    planted = lab["planted"]
    calc = planted.process(lab["facts"]["pid"])
    thread = calc["threads"][0]
    csrss = planted.process(460)
    changes = _watch(lab, ["ps"], 0, 4)
    by_refresh: Dict[int, List[Dict[str, Any]]] = {}
    for change in changes:
        by_refresh.setdefault(change["refresh"], []).append(change)
    assert sorted(by_refresh) == [2, 3, 4, 5]
    (added,) = by_refresh[2]                          # step 1: EPROCESS inserted
    assert added["change"] == "added" and added["identity"] == {"address": calc["address"], "pid": calc["pid"]}
    assert added["record"]["name"] == "calc.exe" and added["record"]["threads_listed"] == 0
    (threads,) = by_refresh[3]                        # step 2: initial thread
    assert threads["fields"]["threads_active"] == [0, 1] and threads["fields"]["threads_listed"] == [0, 1]
    (peb,) = by_refresh[4]                            # step 3: PEB
    assert peb["fields"] == {"peb": [0, calc["peb"]]}
    (csrss_change,) = by_refresh[5]                   # step 4: csrss holds handles to calc.exe
    assert csrss_change["identity"]["pid"] == 460
    old, new = csrss_change["fields"]["handle_count"]
    assert new == csrss["handle_count"] and old < new
    assert old == lab.get("csrss_before", old)               # what the sheet says watch prints
    # step 5: the first instruction: the thread runs on its planted processor
    (run,) = _watch(lab, ["threads", "0n%d" % calc["pid"]], 4, 5)
    assert run["identity"] == {"address": thread["address"], "tid": thread["tid"]}
    assert run["fields"]["state"] == ["Ready", "Running"]
    assert run["fields"]["running_on"] == [None, thread["running_on"]]
