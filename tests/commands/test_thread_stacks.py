"""Issue 12, stacks: `ethread` and `threads -v` show a thread's kernel stack as `!thread`'s table
(`Child-SP  RetAddr  : Call Site`), every frame marked with how it was found.

Independent expectations:
- a forged dump with return addresses the test itself plants into two kernel stacks (a waiting
  lsass thread's, above its saved `KernelStack`, and the crash thread's, above the header
  CONTEXT's rsp), pointing into a driver the forge planted on `PsLoadedModuleList`;
- the real triage dumps (`shared/real/README.md`): on 19041 frame 0 is the bugcheck's exception
  address (parameter 2), amdppm+0x334c; on 17763 the first driver on the stack is winhvr.
"""
from pathlib import Path
from typing import Any, Dict

import pytest

from planted import run_json, run_text
from pykd_ext.forge.dumpfile import build_context, write_bitmap_dump
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.targets.opener import open_target

PAGE_SIZE = 0x1000
#: where the planted return addresses point: into amdppm.sys, past its header page
RETURN_OFFSET = 0x1234


def addr(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def tick(value: int) -> str:
    return "%08x`%08x" % (value >> 32, value & 0xFFFFFFFF)


def _stack_write(machine: Any, slot: int, value: int) -> None:
    """Write a pointer into a kernel stack; the forge leaves stack pages unmapped, so the page
    is mapped (zero-filled) first, as a resident stack page would be."""
    page = slot & ~(PAGE_SIZE - 1)
    if machine.pt.translate(page) is None:
        machine.pt.map_new(page, PAGE_SIZE, user=False)
    machine.pt.write_virtual(slot, value.to_bytes(8, "little"))


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    machine, planted = build_scenario(standard_scenario(), "win10")
    amdppm = next(d for d in planted.drivers if d["name"] == "amdppm.sys")
    ret = amdppm["base"] + RETURN_OFFSET
    lsass = planted.by_name("lsass.exe")
    waiting = next(t for t in lsass["threads"] if t["state"] == "Waiting")
    waiting_slot = waiting["stack_current"] + 0x20
    _stack_write(machine, waiting_slot, ret)
    crash = next(t for t in lsass["threads"] if t["running_on"] == 2)
    rsp = crash["stack_current"] - 0x100
    _stack_write(machine, rsp + 8, ret + 0x10)
    machine.spec.context = build_context(machine.table, rip=machine.symbol("KeBugCheckEx"), rsp=rsp)
    path = str(tmp_path_factory.mktemp("stacks") / "stacks.dmp")
    write_bitmap_dump(path, machine.phys, machine.spec, overwrite=True)
    return {"path": path, "ret": ret, "waiting": waiting, "slot": waiting_slot, "crash": crash,
            "rsp": rsp, "bugcheck": machine.symbol("KeBugCheckEx"), "kernel_base": planted.kernel_base}


def test_scanned_frame_of_a_waiting_thread(forged: Dict[str, Any]) -> None:
    waiting = forged["waiting"]
    doc = run_json(["threads", "-v", "lsass.exe", "--target", forged["path"]])
    rec = next(r for r in doc["records"] if r["tid"] == waiting["tid"])
    frames = rec["stack"]["frames"]
    assert [(addr(f["slot"]), addr(f["address"]), f["module"], f["offset"], f["method"]) for f in frames] == \
        [(forged["slot"], forged["ret"], "amdppm.sys", RETURN_OFFSET, "scan")]
    code, text = run_text(["ethread", "0x%x" % waiting["address"], "--target", forged["path"]])
    lines = text.splitlines()
    at = lines.index("Child-SP          RetAddr               : Call Site")
    assert lines[at - 1].startswith("Stack: stack scan from the saved Tcb.KernelStack")
    assert lines[at + 1].startswith("%s %s" % (tick(forged["slot"] + 8), "?"))
    assert lines[at + 1].endswith(": amdppm+0x%x  [scan]" % RETURN_OFFSET)


def test_crash_thread_starts_at_the_context(forged: Dict[str, Any]) -> None:
    doc = run_json(["ethread", "--target", forged["path"]])
    (rec,) = doc["records"]
    assert addr(rec["address"]) == forged["crash"]["address"]
    frames = rec["stack"]["frames"]
    assert frames[0]["method"] == "context" and addr(frames[0]["address"]) == forged["bugcheck"]
    assert frames[0]["module"] == "ntoskrnl.exe"
    assert frames[0]["offset"] == forged["bugcheck"] - forged["kernel_base"]
    assert (addr(frames[1]["slot"]), addr(frames[1]["address"]), frames[1]["symbol"]) == \
        (forged["rsp"] + 8, forged["ret"] + 0x10, "amdppm+0x%x" % (RETURN_OFFSET + 0x10))
    code, text = run_text(["ethread", "--target", forged["path"]])
    row = [l for l in text.splitlines() if l.endswith("[context]")][0]
    assert row.startswith("%s %s     : ntoskrnl+0x" % (tick(forged["rsp"]), tick(forged["ret"] + 0x10)))


def test_triage_19041_frame0_is_the_exception_address(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")
    target = open_target(path)
    try:
        exception_address = target.info().bugcheck_parameters[1]
    finally:
        target.close()
    (rec,) = run_json(["ethread", "--target", path])["records"]
    first = rec["stack"]["frames"][0]
    assert (addr(first["address"]), first["symbol"], first["method"]) == \
        (exception_address, "amdppm+0x334c", "context")
    code, text = run_text(["threads", "-v", "--target", path])
    assert code == 0 and any(l.strip().endswith(": amdppm+0x334c  [context]") for l in text.splitlines())


def test_triage_17763_first_driver_is_winhvr(real_dir: Path) -> None:
    path = str(real_dir / "kernel-triage" / "win10-17763-x64-triage.dmp")
    (rec,) = run_json(["ethread", "--target", path])["records"]
    drivers = [f["module"] for f in rec["stack"]["frames"] if f["module"] not in ("ntoskrnl.exe", None)]
    assert drivers[0] == "winhvr.sys"


# --- x64 unwinding with .pdata (kernel/unwind.py) ---------------------------------------------
#: UNWIND_INFO of two functions, as the Microsoft Learn "x64 exception handling" page lays them
#: out: version 1, no flags, prolog size, code count, no frame register, then the codes in reverse
#: prolog order (UNWIND_CODE byte 1 = UnwindOp | OpInfo << 4):
#: F1 `push rbx; sub rsp, 20h`: UWOP_ALLOC_SMALL (2) OpInfo 3 at offset 5, UWOP_PUSH_NONVOL (0) rbx (3) at 1
F1_UNWIND = bytes([0x01, 5, 2, 0, 5, 0x32, 1, 0x30])
F1_FRAME = 8 + 0x20
#: F2 `sub rsp, 90h`: UWOP_ALLOC_LARGE (1) OpInfo 0 at offset 7, size / 8 = 0x12 in the next slot
F2_UNWIND = bytes([0x01, 7, 2, 0, 7, 0x01, 0x12, 0x00])
F2_FRAME = 0x90
F1, F2, LEAF = (0x1000, 0x1100), (0x1100, 0x1200), 0x1400      # function ranges / a leaf's RVA
PDATA, UNWIND1, UNWIND2 = 0x3000, 0x3100, 0x3110


@pytest.fixture(scope="module")
def unwound(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    from pykd_ext.forge.kernel_image import (IMAGE_SCN_CNT_CODE, IMAGE_SCN_CNT_INITIALIZED_DATA,
                                             IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_READ, E_LFANEW,
                                             KernelImage, Section)
    machine, planted = build_scenario(standard_scenario(), "win10")
    amdppm = next(d for d in planted.drivers if d["name"] == "amdppm.sys")
    base = amdppm["base"]
    image = KernelImage(guid="0123456789ABCDEF0123456789ABCDEF", size_of_image=0x4000, dll_name="amdppm.sys",
                        entry_rva=0x1000, sections=[
                            Section(".text", 0x1000, 0x1000, IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE
                                    | IMAGE_SCN_MEM_READ),
                            Section(".rdata", 0x2000, 0x2000, IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ)])
    flat = bytearray(image.flat_image(base))
    # PE format spec: the PE32+ optional header's data directories start 112 bytes in; entry 3
    # is the exception directory (.pdata: RUNTIME_FUNCTION {Begin, End, UnwindInfo})
    directory = E_LFANEW + 4 + 20 + 112 + 3 * 8
    flat[directory:directory + 8] = (PDATA.to_bytes(4, "little") + (2 * 12).to_bytes(4, "little"))
    flat[PDATA:PDATA + 24] = b"".join(b.to_bytes(4, "little") for b in (F1[0], F1[1], UNWIND1, F2[0], F2[1], UNWIND2))
    flat[UNWIND1:UNWIND1 + len(F1_UNWIND)] = F1_UNWIND
    flat[UNWIND2:UNWIND2 + len(F2_UNWIND)] = F2_UNWIND
    machine.pt.map_new(base, len(flat), user=False)
    machine.pt.write_virtual(base, bytes(flat))
    lsass = planted.by_name("lsass.exe")
    crash = next(t for t in lsass["threads"] if t["running_on"] == 2)
    rsp = crash["stack_current"] - 0x200
    rip = base + F1[0] + 0x50
    slot1 = rsp + F1_FRAME                       # F1 returns into F2
    slot2 = slot1 + 8 + F2_FRAME                 # F2 returns into a leaf
    slot3 = slot2 + 8                            # the leaf returns into ntoskrnl (no .pdata there)
    kernel_return = machine.symbol("KeBugCheckEx") + 0x40
    _stack_write(machine, rsp + 0x10, base + F2[0] + 0x10)          # a stale pointer: no frame
    _stack_write(machine, slot1, base + F2[0] + 0x80)
    _stack_write(machine, slot2, base + LEAF)
    _stack_write(machine, slot3, kernel_return)
    _stack_write(machine, slot3 + 0x18, base + F1[0] + 0x20)        # above: found by the scan
    machine.spec.context = build_context(machine.table, rip=rip, rsp=rsp)
    path = str(tmp_path_factory.mktemp("unwind") / "unwind.dmp")
    write_bitmap_dump(path, machine.phys, machine.spec, overwrite=True)
    return {"path": path, "base": base, "rsp": rsp, "slots": (slot1, slot2, slot3),
            "kernel_return": kernel_return, "kernel_base": planted.kernel_base}


def test_pdata_unwinds_the_crash_thread(unwound: Dict[str, Any]) -> None:
    base, (slot1, slot2, slot3) = unwound["base"], unwound["slots"]
    (rec,) = run_json(["ethread", "--target", unwound["path"]])["records"]
    frames = [(f["method"], addr(f["slot"]) if f["slot"] is not None else None, addr(f["address"]))
              for f in rec["stack"]["frames"]]
    assert frames[:5] == [("context", None, base + F1[0] + 0x50),
                          ("unwind", slot1, base + F2[0] + 0x80),
                          ("unwind", slot2, base + LEAF),
                          ("unwind", slot3, unwound["kernel_return"]),
                          ("scan", slot3 + 0x18, base + F1[0] + 0x20)]
    assert base + F2[0] + 0x10 not in [a for _, _, a in frames]      # the stale slot below rsp+frame
    assert "3 frame(s) unwound" in rec["stack"]["how"] and "ntoskrnl.exe" in rec["stack"]["how"]
    code, text = run_text(["ethread", "--target", unwound["path"]])
    rows = [l for l in text.splitlines() if l.endswith("[unwind]")]
    assert rows[0] == "%s %s     : amdppm+0x%x  [unwind]" % (tick(slot1 + 8), tick(base + LEAF), F2[0] + 0x80)
