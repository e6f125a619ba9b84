"""Lab 6's guest: a raw memory image in which a process gets created, one step at a time.

    python samples/labs/process_creation.py IMAGE.raw                # write step 0 (before)
    python samples/labs/process_creation.py IMAGE.raw --step 3       # move the image to step 3
    python samples/labs/process_creation.py IMAGE.raw --play 3       # step 0..5, one every 3 s

The forge plants a small Windows 10 machine (System, csrss.exe, explorer.exe and the new
calc.exe) in its final state; the steps before it are derived by undoing, in reverse, what the
kernel does when `CreateProcess` runs (the order of the process-creation walk-through):

1. the `_EPROCESS` is inserted: `ActiveProcessLinks` and its `PspCidTable` entry (PspInsertProcess);
2. the initial thread is created: on both thread lists, its CID entry, `ActiveThreads` 1;
3. the PEB is mapped: `_EPROCESS.Peb` points at it (MmCreatePeb);
4. CSRSS is notified: csrss.exe gets handles to the new process (CsrCreateProcess);
5. the first user-mode instruction: the thread goes from Ready to Running on processor 1
   (`_KPRCB.CurrentThread`) at `RtlUserThreadStart`.

Each step rewrites whole physical pages of the image in place (what a guest writing its RAM
looks like to a reader), so `pykd-ext watch ps --target IMAGE.raw` in another terminal shows
each change. `facts()` returns what the lab's test checks against.
"""
import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List, Tuple

from pykd_ext.forge import write_raw_image
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import (DEFAULT_BOOT_TIME, TICKS_PER_SECOND, ProcessSpec, ScenarioSpec,
                                     ThreadSpec)

PAGE = 0x1000
STEPS = ("before: calc.exe does not exist yet", "EPROCESS inserted (active list, CID table)",
         "initial thread created", "PEB mapped", "CSRSS notified (csrss holds handles to calc.exe)",
         "first user-mode instruction: the thread runs on processor 1")
NEW_PID, NEW_TID = 840, 844
NTDLL_THREAD_START = 0x00007FFD_1C2A2640


def scenario() -> ScenarioSpec:
    boot = DEFAULT_BOOT_TIME
    return ScenarioSpec(name="process-creation", processors=2, processes=[
        ProcessSpec("System", 4, 0, system=True, user_mode=False, protection="PP-WinSystem", threads=[
            ThreadSpec(tid=8, system=True, state="Running", running_on=0, wait_mode="KernelMode",
                       wait_reason="Executive", start_symbol="KeBalanceSetManager", priority=16),
            ThreadSpec(tid=12, system=True, wait_mode="KernelMode", wait_reason="WrQueue",
                       wait_objects=["QueueObject"], start_symbol="ExpWorkerThread")]),
        ProcessSpec("csrss.exe", 460, 4, session=1, handles=24, protection="PPL-WinTcb",
                    image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\csrss.exe",
                    command_line="%SystemRoot%\\system32\\csrss.exe ObjectDirectory=\\Windows",
                    create_time=boot + 2 * TICKS_PER_SECOND, threads=[
                        ThreadSpec(tid=464, wait_reason="WrLpcReceive", wait_objects=["SemaphoreObject"])]),
        ProcessSpec("explorer.exe", 620, 600, session=1, handles=30,
                    image_path="\\Device\\HarddiskVolume3\\Windows\\explorer.exe",
                    command_line="C:\\Windows\\Explorer.EXE", create_time=boot + 41 * TICKS_PER_SECOND,
                    threads=[ThreadSpec(tid=624, wait_reason="WrUserRequest",
                                        wait_objects=["EventSynchronizationObject"])]),
        ProcessSpec("calc.exe", NEW_PID, 620, session=1, handles=6,
                    image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\calc.exe",
                    command_line="\"C:\\Windows\\System32\\calc.exe\"",
                    create_time=boot + 3000 * TICKS_PER_SECOND, threads=[
                        ThreadSpec(tid=NEW_TID, state="Running", running_on=1, priority=10,
                                   start_address=NTDLL_THREAD_START, teb=0x000000A2_1E3F0000)]),
    ])


class Undo:
    """Writes into the forged machine that remember each touched physical page's bytes."""

    def __init__(self, machine: Any) -> None:
        self.pt = machine.pt
        self.phys = machine.phys
        self.final: Dict[int, bytes] = {}          # pfn -> bytes in the final state

    def write(self, va: int, data: bytes) -> None:
        for n in range(len(data)):
            pa = self.pt.translate(va + n)
            if pa is None:
                raise ValueError("0x%x is not mapped" % (va + n))
            pfn = pa // PAGE
            if pfn not in self.final:
                self.final[pfn] = bytes(self.phys.page_bytes(pfn))
        self.pt.write_virtual(va, data)

    def u64(self, va: int) -> int:
        return int.from_bytes(self.pt.read_virtual(va, 8), "little")

    def put_u64(self, va: int, value: int) -> None:
        self.write(va, value.to_bytes(8, "little"))

    def pages(self) -> Dict[int, bytes]:
        return {pfn: bytes(self.phys.page_bytes(pfn)) for pfn in self.final}


def _cid_entry(table: Any, code: int, handle: int) -> int:
    """The `_HANDLE_TABLE_ENTRY` of `handle` in a one-level table (TableCode level 0, asserted by
    the caller: every ID of this scenario is below 1024, one page of entries)."""
    return (code & ~3) + (handle // 4) * table.size("_HANDLE_TABLE_ENTRY")


def build() -> Tuple[Any, Any, List[Dict[int, bytes]], Dict[str, Any]]:
    """(machine, planted, pages of each step 0..5, facts)."""
    machine, planted = build_scenario(scenario(), "win10")
    table = machine.table
    undo = Undo(machine)
    calc = planted.process(NEW_PID)
    thread = calc["threads"][0]
    csrss = planted.process(460)
    ep, et = calc["address"], thread["address"]
    off = table.offset
    states: List[Dict[int, bytes]] = []

    # undo 5: the thread is Ready (chosen, not yet running); processor 1 runs its idle thread
    enums = _enums(table.path)
    prcb = next(p for p in planted.processors if p["number"] == 1)
    undo.write(et + off("_ETHREAD", "Tcb.State"), bytes([int(enums["_KTHREAD_STATE"]["Ready"])]))
    undo.put_u64(prcb["prcb"] + off("_KPRCB", "CurrentThread"), prcb["idle_thread"])
    states.append(undo.pages())
    # undo 4: csrss has no handle to calc.exe yet
    for entry in _handle_entries_to(machine, csrss["handle_table"], [ep], table):
        undo.write(entry, bytes(16))
    states.append(undo.pages())
    # undo 3: no PEB yet
    undo.put_u64(ep + off("_EPROCESS", "Peb"), 0)
    states.append(undo.pages())
    # undo 2: no thread yet: both thread lists empty, no CID entry, no active thread
    for head in ("ThreadListHead", "Pcb.ThreadListHead"):
        address = ep + off("_EPROCESS", head)
        undo.put_u64(address, address)
        undo.put_u64(address + 8, address)
    undo.write(ep + off("_EPROCESS", "ActiveThreads"), (0).to_bytes(4, "little"))
    cid_table = planted.globals["PspCidTable_table"]
    code = undo.u64(cid_table + off("_HANDLE_TABLE", "TableCode"))
    assert code & 3 == 0, "the lab expects a one-level CID table"
    undo.write(_cid_entry(table, code, NEW_TID), bytes(16))
    states.append(undo.pages())
    # undo 1: not inserted: off the active list, no CID entry
    links = ep + off("_EPROCESS", "ActiveProcessLinks")
    flink, blink = undo.u64(links), undo.u64(links + 8)
    undo.put_u64(blink, flink)
    undo.put_u64(flink + 8, blink)
    undo.put_u64(links, links)
    undo.put_u64(links + 8, links)
    undo.write(_cid_entry(table, code, NEW_PID), bytes(16))
    states.append(undo.pages())
    final = dict(undo.final)
    # snapshots were taken going back (states 4, 3, 2, 1, 0): step k's bytes of every touched
    # page are the snapshot taken on reaching state k, or the final bytes (pages not yet undone)
    steps: List[Dict[int, bytes]] = []
    for k in range(6):
        if k == 5:
            steps.append(dict(final))
        else:
            snap = states[4 - k]
            steps.append({pfn: snap.get(pfn, final[pfn]) for pfn in final})
    facts = {"pid": NEW_PID, "tid": NEW_TID, "eprocess": ep, "ethread": et, "peb": calc["peb"],
             "csrss_pid": 460, "csrss_eprocess": csrss["address"], "processor": 1,
             "steps": list(STEPS), "build": planted.build}
    return machine, planted, steps, facts


def _enums(path: str) -> Dict[str, Dict[str, int]]:
    import lzma
    with lzma.open(path, "rb") as handle:
        return {n: e["constants"] for n, e in json.load(handle)["enums"].items()}


def _handle_entries_to(machine: Any, table: int, objects: List[int], isf: Any) -> List[int]:
    """Addresses of the handle-table entries (a 1-level table) whose object is one of `objects`:
    entries are compared with what the forge's own encoder wrote for each object."""
    pt = machine.pt
    code = int.from_bytes(pt.read_virtual(table + isf.offset("_HANDLE_TABLE", "TableCode"), 8), "little")
    assert code & 3 == 0, "the lab expects a one-level handle table"
    base = code & ~3
    headers = [o - isf.offset("_OBJECT_HEADER", "Body") for o in objects]
    size = isf.size("_HANDLE_TABLE_ENTRY")
    position, length = isf.bits("_HANDLE_TABLE_ENTRY", "ObjectPointerBits")
    found = []
    for index in range(1, PAGE // size):
        raw = int.from_bytes(pt.read_virtual(base + index * size, 8), "little")
        if raw and _decoded_object(raw, position, length) in headers:
            found.append(base + index * size)
    return found


def _decoded_object(raw: int, position: int, length: int) -> int:
    """The object header an x64 Windows 8.1+ handle entry points at: `ObjectPointerBits` (bit
    position and width from the ISF) shifted left by 4 (16-byte aligned headers), sign-extended."""
    value = ((raw >> position) & ((1 << length) - 1)) << 4
    top = 1 << (length + 4 - 1)
    return value | (~((1 << (length + 4)) - 1) & ((1 << 64) - 1)) if value & top else value


def write_step(path: str, steps: List[Dict[int, bytes]], step: int) -> None:
    """Move the image at `path` to `step` (whole pages, in place)."""
    with open(path, "r+b") as out:
        for pfn, data in sorted(steps[step].items()):
            out.seek(pfn * PAGE)
            out.write(data)
        out.flush()
        os.fsync(out.fileno())


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="the raw image to write (step 0) or to move to --step")
    parser.add_argument("--step", type=int, choices=range(6), help="move an existing image to this step")
    parser.add_argument("--play", type=float, metavar="SECONDS", help="write step 0, then 1..5 at this pace")
    parser.add_argument("--facts", action="store_true", help="print the planted facts as JSON")
    args = parser.parse_args(argv)
    machine, _planted, steps, facts = build()
    if args.step is None or not os.path.exists(args.image):
        write_raw_image(args.image, machine.phys, overwrite=True)
    first = 0 if args.step is None else args.step
    write_step(args.image, steps, first)
    print("%s: step %d - %s" % (args.image, first, STEPS[first]))
    if args.play:
        for step in range(first + 1, 6):
            time.sleep(args.play)
            write_step(args.image, steps, step)
            print("%s: step %d - %s" % (args.image, step, STEPS[step]))
            sys.stdout.flush()
    if args.facts:
        print(json.dumps(facts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
