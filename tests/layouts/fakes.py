"""Fake targets for layout-choice tests: memory and KDBG values planted from the ISF JSON."""
import struct
import types
from typing import Any, Dict, Optional

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.space import AddressSpace
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo


class DictSpace(AddressSpace):
    """Sparse memory: {start: bytes} blocks."""

    def __init__(self) -> None:
        self.blocks: Dict[int, bytes] = {}

    def plant(self, address: int, data: bytes) -> None:
        self.blocks[address] = bytes(data)

    def read(self, address: int, size: int) -> bytes:
        for start, data in self.blocks.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start:address - start + size]
        for start, data in self.blocks.items():
            if start <= address < start + len(data):
                raise MemoryReadError(Fault(NOT_IN_DUMP, start + len(data)), start + len(data) - address)
        raise MemoryReadError(Fault(NOT_IN_DUMP, address), 0)


class FakeTarget(Target):
    def __init__(self, info: TargetInfo, space: Optional[DictSpace] = None) -> None:
        self._info = info
        self._space = space or DictSpace()

    @property
    def kernel(self) -> AddressSpace:
        return self._space

    def info(self) -> TargetInfo:
        return self._info

    def describe(self) -> TargetDescription:
        return TargetDescription("fake", "fake")


KERNBASE = 0xFFFFF80000000000
PROCESS = 0xFFFFC00000100000
THREAD = 0xFFFFC00000200000
PRCB = 0xFFFFF80001000000


def off(isf: Dict[str, Any], type_name: str, path: str) -> int:
    total = 0
    for part in path.split("."):
        member = isf["user_types"][type_name]["fields"][part]
        total += member["offset"]
        type_name = member["type"].get("name", "")
    return total


def triage_like(isf: Dict[str, Any], build: int, system: bool = True) -> FakeTarget:
    """A triage-like target whose KDBG, header sizes and bytes follow this ISF's layout."""
    ut = isf["user_types"]
    sym = {k: v["address"] for k, v in isf["symbols"].items()}
    kdbg = {
        "KernBase": KERNBASE,
        "SizeEProcess": ut["_EPROCESS"]["size"], "SizeEThread": ut["_ETHREAD"]["size"],
        "SizePrcb": ut["_KPRCB"]["size"],
        "OffsetEprocessPeb": off(isf, "_EPROCESS", "Peb"),
        "OffsetKThreadState": off(isf, "_KTHREAD", "State"),
        "OffsetKThreadTeb": off(isf, "_KTHREAD", "Teb"),
        "OffsetPrcbCurrentThread": off(isf, "_KPRCB", "CurrentThread"),
        "PsActiveProcessHead": KERNBASE + sym["PsActiveProcessHead"],
        "PsLoadedModuleList": KERNBASE + sym["PsLoadedModuleList"],
        "PspCidTable": KERNBASE + sym["PspCidTable"],
    }
    space = DictSpace()
    ep = bytearray(ut["_EPROCESS"]["size"])
    th = bytearray(ut["_ETHREAD"]["size"])
    pid = 4 if system else 0x1F0
    struct.pack_into("<Q", ep, off(isf, "_EPROCESS", "UniqueProcessId"), pid)
    name = b"System\0" if system else b"lsass.exe\0"
    o = off(isf, "_EPROCESS", "ImageFileName")
    ep[o:o + len(name)] = name
    struct.pack_into("<Q", ep, off(isf, "_EPROCESS", "ActiveProcessLinks") + 8, kdbg["PsActiveProcessHead"])
    struct.pack_into("<Q", ep, off(isf, "_EPROCESS", "Pcb.DirectoryTableBase"), 0x1AD002)
    struct.pack_into("<Q", th, off(isf, "_ETHREAD", "Tcb.Process"), PROCESS)
    struct.pack_into("<Q", th, off(isf, "_ETHREAD", "Tcb.ApcState.Process"), PROCESS)
    struct.pack_into("<Q", th, off(isf, "_ETHREAD", "Cid.UniqueProcess"), pid)
    space.plant(PROCESS, bytes(ep))
    space.plant(THREAD, bytes(th))
    space.plant(PRCB + off(isf, "_KPRCB", "CurrentThread"), struct.pack("<Q", THREAD))
    info = TargetInfo(container="PAGEDU64", dump_type="triage", build=build, kdbg=kdbg,
                      kernel_base=KERNBASE, directory_table_base=0x1AD000,
                      ps_active_process_head=kdbg["PsActiveProcessHead"],
                      extra={"process": PROCESS, "thread": THREAD, "prcb": PRCB,
                             "process_size": ut["_EPROCESS"]["size"], "thread_size": ut["_ETHREAD"]["size"]})
    return FakeTarget(info, space)


def fake_pe_module(guid: Optional[str], age: Optional[int], version: Optional[str]) -> types.ModuleType:
    mod = types.ModuleType("pykd_ext.targets.pe")

    def read_pe_info(space: Any, base: int) -> Dict[str, Any]:
        assert base == KERNBASE
        return {"pdb_guid": guid, "pdb_age": age, "file_version": version}
    mod.read_pe_info = read_pe_info  # type: ignore[attr-defined]
    return mod
