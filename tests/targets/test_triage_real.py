"""Kernel triage minidumps: what the dumps' own redundancy proves about our reading of them."""
import json
import struct
from pathlib import Path
from typing import Any, Dict, Tuple

import pefile
import pytest

from isf_facts import field_offset, isf_files_for_build, load_isf
from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import NOT_IN_DUMP
from pykd_ext.targets.opener import open_target
from pykd_ext.targets.triage import TriageTarget, _prcb_from_self_links

DUMPS = [("win10-19041-x64-triage.dmp", 19041, 16), ("win10-17763-x64-triage.dmp", 17763, 8)]


def _raw_triage(path: Path) -> Dict[str, Any]:
    """The TRIAGE_DUMP64 fields read with plain struct (ntiodump.h order), independent of ours."""
    data = path.read_bytes()
    names = ("ServicePackBuild SizeOfDump ValidOffset ContextOffset ExceptionOffset MmOffset "
             "UnloadedDriversOffset PrcbOffset ProcessOffset ThreadOffset CallStackOffset "
             "SizeOfCallStack DriverListOffset DriverCount StringPoolOffset StringPoolSize "
             "BrokenDriverOffset TriageOptions TopOfStack").split()
    values = dict(zip(names, struct.unpack_from("<18IQ", data, 0x2000)))
    (values["DataBlocksOffset"], values["DataBlocksCount"]) = struct.unpack_from("<II", data, 0x2078)
    values["_data"] = data
    return values


def _layout(isf_dir: Path, build: int) -> Dict[str, int]:
    """Offsets used by the checks, required to be identical in every revision of the build."""
    wanted = {
        "thread.Process": ("_ETHREAD", "Tcb.Process"),
        "thread.Cid.UniqueProcess": ("_ETHREAD", "Cid.UniqueProcess"),
        "thread.Cid.UniqueThread": ("_ETHREAD", "Cid.UniqueThread"),
        "process.UniqueProcessId": ("_EPROCESS", "UniqueProcessId"),
        "kpcr.Prcb": ("_KPCR", "Prcb"),
        "prcb.CurrentThread": ("_KPRCB", "CurrentThread"),
    }
    seen: Dict[str, set] = {key: set() for key in wanted}
    for path in isf_files_for_build(isf_dir, build)[-3:]:
        isf = load_isf(str(path))
        for key, (type_name, dotted) in wanted.items():
            seen[key].add(field_offset(isf, type_name, dotted))
    assert all(len(values) == 1 for values in seen.values()), seen
    return {key: values.pop() for key, values in seen.items()}


@pytest.fixture(scope="module", params=DUMPS, ids=[d[0] for d in DUMPS])
def triage(request: Any, real_dir: Path, isf_dir: Path) -> Tuple[TriageTarget, Dict, Dict, int]:
    name, build, processors = request.param
    path = real_dir / "kernel-triage" / name
    target = open_target(str(path))
    yield target, _raw_triage(path), _layout(isf_dir, build), processors
    target.close()


def test_info_basics(triage: Any) -> None:
    target, raw, _layout_, processors = triage
    info = target.info()
    assert isinstance(target, TriageTarget)
    assert info.container == "PAGEDU64" and info.dump_type == "triage" and info.dump_type_code == 4
    assert info.processors == processors and info.arch == "x64"
    assert target.physical is None
    assert target.process_space(0x1AD000) is target.kernel
    assert info.notes == []
    assert info.extra["triage"]["DataBlocksCount"] == raw["DataBlocksCount"]
    assert info.extra["triage"]["TopOfStack"] == raw["TopOfStack"]
    assert info.to_dict()["extra"]["process"] == info.extra["process"]
    json.dumps(info.to_dict())                  # the `info --format json` payload


def test_thread_and_process_blocks_agree(triage: Any) -> None:
    target, raw, layout, _ = triage
    info, space = target.info(), target.kernel
    process, thread = info.extra["process"], info.extra["thread"]
    # The blocks are served at their VAs, with the file's bytes.
    data = raw["_data"]
    assert space.read(process, 0x100) == data[raw["ProcessOffset"]:raw["ProcessOffset"] + 0x100]
    assert space.read(thread, 0x100) == data[raw["ThreadOffset"]:raw["ThreadOffset"] + 0x100]
    assert space.label_at(thread) == "thread" and space.label_at(process) == "process"
    # Independent: the ISF's _KTHREAD.Process (not the KDBG's ApcState offset we used).
    assert space.read_pointer(thread + layout["thread.Process"]) == process
    unique_pid = space.read_pointer(process + layout["process.UniqueProcessId"])
    assert space.read_pointer(thread + layout["thread.Cid.UniqueProcess"]) == unique_pid
    assert unique_pid % 4 == 0 and 0 < unique_pid < 1 << 32
    assert 0 < space.read_pointer(thread + layout["thread.Cid.UniqueThread"]) < 1 << 32


def test_prcb_address(triage: Any) -> None:
    target, raw, layout, processors = triage
    info, space = target.info(), target.kernel
    prcb = info.extra["prcb"]
    # A PRCB lives inside its page-aligned KPCR at _KPCR.Prcb (ISF).
    assert prcb & 0xFFF == layout["kpcr.Prcb"]
    assert space.read_pointer(prcb + layout["prcb.CurrentThread"]) == info.extra["thread"]
    data = raw["_data"]
    size = info.extra["prcb_size"]
    assert space.read(prcb, size) == data[raw["PrcbOffset"]:raw["PrcbOffset"] + size]
    # Two independent proofs agree where both exist (19041 holds KiProcessorBlock).
    by_links, votes = _prcb_from_self_links(memoryview(data)[raw["PrcbOffset"]:
                                                             raw["PrcbOffset"] + size])
    assert by_links == prcb and votes >= 100
    if info.extra["prcb_source"].startswith("KiProcessorBlock"):
        table = info.kdbg["KiProcessorBlock"]
        number = info.extra["processor"]
        assert number < processors
        assert space.read_pointer(table + 8 * number) == prcb


def test_call_stack(triage: Any) -> None:
    target, raw, _layout_, _ = triage
    info, space = target.info(), target.kernel
    top, size = raw["TopOfStack"], raw["SizeOfCallStack"]
    assert info.extra["stack"] == (top, size)
    assert (top + size) & 0xFFF == 0            # the saved stack ends at the (page-aligned) base
    rsp = info.extra["context"]["rsp"]
    assert top <= rsp < top + size
    data = raw["_data"]
    assert space.read(top, size) == data[raw["CallStackOffset"]:raw["CallStackOffset"] + size]
    with pytest.raises(MemoryReadError) as err:
        space.read(top + size - 8, 64)          # runs off the stack's end
    assert err.value.fault.reason == NOT_IN_DUMP and err.value.readable == 8


def test_driver_list_names_the_kernel(triage: Any) -> None:
    target, raw, _layout_, _ = triage
    info, space = target.info(), target.kernel
    drivers = info.extra["drivers"]
    assert len(drivers) == raw["DriverCount"]
    kernel = [d for d in drivers if d["name"].lower() == "ntoskrnl.exe"]
    assert len(kernel) == 1 and kernel[0]["base"] == info.kernel_base
    # Independent: the kernel's PE header page is among the data blocks; pefile parses it.
    pe = pefile.PE(data=space.read(info.kernel_base, 0x1000), fast_load=True)
    assert kernel[0]["timestamp"] == pe.FILE_HEADER.TimeDateStamp
    assert kernel[0]["size"] == pe.OPTIONAL_HEADER.SizeOfImage
    assert kernel[0]["checksum"] == pe.OPTIONAL_HEADER.CheckSum
    assert all(d["base"] >> 47 == 0x1FFFF and d["size"] > 0 for d in drivers)
    assert sum(1 for d in drivers if d["name"].lower().endswith((".sys", ".dll", ".exe"))) \
        >= len(drivers) - 2
    for unloaded in info.extra["unloaded_drivers"]:
        assert unloaded["start"] < unloaded["end"]
        assert unloaded["name"].lower().endswith((".sys", ".dll"))


def test_data_blocks_are_served_and_consistent(triage: Any) -> None:
    target, raw, _layout_, _ = triage
    space = target.kernel
    data = raw["_data"]
    assert space.inconsistent_overlaps() == []
    blocks = list(struct.iter_unpack("<QII", data[raw["DataBlocksOffset"]:raw["DataBlocksOffset"]
                                                   + 16 * raw["DataBlocksCount"]]))
    assert len(blocks) == raw["DataBlocksCount"]
    for address, offset, size in blocks[::7]:
        assert space.read(address, size) == data[offset:offset + size]


def test_kdbg_lists_are_in_the_dump(triage: Any) -> None:
    """PsActiveProcessHead's LIST_ENTRY is among the data blocks and points at kernel memory."""
    target, _raw, _layout_, _ = triage
    info, space = target.info(), target.kernel
    if info.build == 19041:
        flink = space.read_pointer(info.ps_active_process_head)
        assert flink >> 47 == 0x1FFFF
    else:   # the 17763 dump's 40 data blocks do not include it: a typed fault, not a crash
        with pytest.raises(MemoryReadError) as err:
            space.read_pointer(info.ps_active_process_head)
        assert err.value.fault.reason == NOT_IN_DUMP
        assert err.value.fault.address == info.ps_active_process_head


def test_bugcheck_records_on_the_saved_stack(triage: Any) -> None:
    """0x1000007E: P1 = status, P2 = faulting address, P3/P4 = EXCEPTION_RECORD/CONTEXT addresses.

    The two records live on the crashing thread's stack, so reading them at P3/P4 through our
    mapping of the call stack (at TopOfStack) must give back P1, P2 and the header's context:
    an independent check of the stack's virtual placement (winnt.h EXCEPTION_RECORD64: code at
    +0, address at +0x10; CONTEXT: Rsp at +0x98, Rip at +0xf8).
    """
    target, _raw, _layout_, _ = triage
    info, space = target.info(), target.kernel
    assert info.bugcheck_code == 0x1000007E
    status, address, record, context = info.bugcheck_parameters
    assert space.label_at(record) == "stack" and space.label_at(context) == "stack"
    assert int.from_bytes(space.read(record, 4), "little") == status & 0xFFFFFFFF
    assert space.read_pointer(record + 0x10) == address
    assert space.read_pointer(context + 0xF8) == address == info.extra["context"]["rip"]
    assert space.read_pointer(context + 0x98) == info.extra["context"]["rsp"]
    # The faulting address lies inside one driver of the dump's own driver list.
    owners = [d["name"] for d in info.extra["drivers"]
              if d["base"] <= address < d["base"] + d["size"]]
    assert len(owners) == 1
