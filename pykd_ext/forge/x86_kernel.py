"""Forge a 32-bit Windows kernel (PAE or non-PAE) with processes and threads, as a PAGEDUMP.

Why: 32-bit Windows 7/10 must work end to end (issue 7), and no 32-bit ISF has symbol addresses:
the derived x86 layouts (`shared/isf-derived`, generated into `structs/nt_*_x86.py`) give types
only. This builder therefore chooses the globals' places itself (inside the forged kernel image's
.data section) and states them the ways a real dump does: the dump header (`PsActiveProcessHead`,
`PsLoadedModuleList`, `KdDebuggerDataBlock`) and the KDBG block (KDDEBUGGER_DATA64 with
sign-extended 32-bit pointers, as 32-bit kernels write it). `symbol_rvas` returns the RVAs used,
so a test can hand Volatility 3 a copy of the derived ISF with exactly those symbols added
(`volatility_isf`).

What is built (every offset, size and enum value from the build's layout):
- page tables through `X86PageTables` (Windows' self map; kernel half shared by every process;
  `_KUSER_SHARED_DATA`'s frame mapped at 0xFFDF0000 and 0x7FFE0000 like Windows does);
- a PE32 kernel image (`KernelImage32`) whose CodeView record names the build's kernel PDB
  (`ntkrpamp.pdb` for PAE builds, `ntkrnlmp.pdb` otherwise) and a chosen GUID;
- `_EPROCESS`/`_ETHREAD` objects linked on `PsActiveProcessHead` and on both thread lists, with
  PIDs, names, create times, thread Cids, start addresses, states and wait reasons;
- one processor: `KiProcessorBlock[0]` -> the `_KPRCB` inside a `_KPCR`, CurrentThread set.
Facts not in any symbol file are named where used (architecture constants, the KUSER address).
"""
import json
import lzma
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.forge.dumpfile32 import DumpSpec32, write_bitmap_dump32, write_full_dump32
from pykd_ext.forge.kernel_image import (E_LFANEW, IMAGE_FILE_EXECUTABLE_IMAGE,
                                         IMAGE_NUMBEROF_DIRECTORY_ENTRIES, IMAGE_SCN_CNT_CODE,
                                         IMAGE_SCN_CNT_INITIALIZED_DATA, IMAGE_SUBSYSTEM_NATIVE,
                                         _DATA_DIRECTORIES, _DOS_FIELDS, KernelImage)
from pykd_ext.forge.paging_x86 import LayoutBits, X86PageTables
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import PteFormat
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.space import PAGE_SIZE
from pykd_ext.targets.kdbg import build_kdbg
from pykd_ext.targets.pe import (IMAGE_DEBUG_DIRECTORY, IMAGE_DIRECTORY_ENTRY_DEBUG,
                                 IMAGE_DOS_HEADER, IMAGE_FILE_HEADER, IMAGE_NT_SIGNATURE,
                                 IMAGE_OPTIONAL_HEADER, IMAGE_SECTION_HEADER, PE32_MAGIC)

IMAGE_FILE_MACHINE_I386 = 0x14C           # PE/COFF specification
IMAGE_FILE_32BIT_MACHINE = 0x0100
#: sizeof(IMAGE_OPTIONAL_HEADER32): 96 bytes of fields + 16 data directories of 8 bytes
OPTIONAL_HEADER32_SIZE = 0xE0
#: _KUSER_SHARED_DATA's fixed addresses on 32-bit Windows (kernel view, user view)
KUSER_SHARED_DATA_KERNEL = 0xFFDF0000
KUSER_SHARED_DATA_USER = 0x7FFE0000

KERNEL_BASE = 0x82A00000
POOL_BASE = 0x84000000
KPCR_ADDRESS = 0x83F00000
STACK_SIZE = 0x3000

#: where the forge puts each global inside the image's .data section (RVA from .data start)
GLOBAL_SLOTS: Tuple[Tuple[str, int], ...] = (
    ("PsActiveProcessHead", 0x000), ("PsLoadedModuleList", 0x010), ("PspCidTable", 0x020),
    ("PsInitialSystemProcess", 0x024), ("KeNumberProcessors", 0x028), ("NtBuildNumber", 0x02C),
    ("KiProcessorBlock", 0x040), ("KdDebuggerDataBlock", 0x100),
)


def _sign_extend32(value: int) -> int:
    """KDDEBUGGER_DATA64 pointers of a 32-bit kernel are sign-extended to 64 bits."""
    return value | 0xFFFFFFFF00000000 if value & 0x80000000 else value


class KernelImage32(KernelImage):
    """A PE32 (i386) kernel image: same sections and CodeView record, 32-bit headers."""

    def headers(self, image_base: int) -> bytes:
        code = sum(s.size for s in self.sections if s.characteristics & IMAGE_SCN_CNT_CODE)
        init = sum(s.size for s in self.sections if s.characteristics & IMAGE_SCN_CNT_INITIALIZED_DATA)
        directories = [{"VirtualAddress": 0, "Size": 0} for _ in range(IMAGE_NUMBEROF_DIRECTORY_ENTRIES)]
        directories[IMAGE_DIRECTORY_ENTRY_DEBUG] = {"VirtualAddress": self.debug_rva,
                                                   "Size": IMAGE_DEBUG_DIRECTORY.sizeof()}
        dos = IMAGE_DOS_HEADER.build({"_dos": _DOS_FIELDS, "e_lfanew": E_LFANEW})
        file_header = IMAGE_FILE_HEADER.build({
            "Machine": IMAGE_FILE_MACHINE_I386, "NumberOfSections": len(self.sections),
            "TimeDateStamp": self.timestamp, "PointerToSymbolTable": 0, "NumberOfSymbols": 0,
            "SizeOfOptionalHeader": OPTIONAL_HEADER32_SIZE,
            "Characteristics": IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_32BIT_MACHINE})
        optional = IMAGE_OPTIONAL_HEADER.build({
            "Magic": PE32_MAGIC,
            "common": {"MajorLinkerVersion": 14, "MinorLinkerVersion": 0, "SizeOfCode": code,
                       "SizeOfInitializedData": init, "SizeOfUninitializedData": 0,
                       "AddressOfEntryPoint": self.entry_rva, "BaseOfCode": self.sections[0].rva},
            "BaseOfData": self.sections[1].rva,
            "windows": {
                "ImageBase": image_base, "SectionAlignment": PAGE_SIZE, "FileAlignment": PAGE_SIZE,
                "MajorOperatingSystemVersion": 10, "MinorOperatingSystemVersion": 0,
                "MajorImageVersion": 10, "MinorImageVersion": 0, "MajorSubsystemVersion": 10,
                "MinorSubsystemVersion": 0, "Win32VersionValue": 0,
                "SizeOfImage": self.size_of_image, "SizeOfHeaders": PAGE_SIZE, "CheckSum": 0,
                "Subsystem": IMAGE_SUBSYSTEM_NATIVE, "DllCharacteristics": 0,
                "SizeOfStackReserve": 0x40000, "SizeOfStackCommit": 0x1000,
                "SizeOfHeapReserve": 0x100000, "SizeOfHeapCommit": 0x1000, "LoaderFlags": 0,
                "NumberOfRvaAndSizes": IMAGE_NUMBEROF_DIRECTORY_ENTRIES}})
        optional += _DATA_DIRECTORIES.build(directories)
        if len(optional) != OPTIONAL_HEADER32_SIZE:
            raise AssertionError("PE32 optional header built 0x%x bytes" % len(optional))
        table = b"".join(IMAGE_SECTION_HEADER.build({
            "Name": s.name.encode("ascii").ljust(8, b"\0")[:8], "VirtualSize": s.size,
            "VirtualAddress": s.rva, "SizeOfRawData": s.size, "PointerToRawData": s.rva,
            "PointerToRelocations": 0, "PointerToLinenumbers": 0, "NumberOfRelocations": 0,
            "NumberOfLinenumbers": 0, "Characteristics": s.characteristics}) for s in self.sections)
        page = bytearray(PAGE_SIZE)
        page[:len(dos)] = dos
        nt = IMAGE_NT_SIGNATURE + file_header + optional + table
        page[E_LFANEW:E_LFANEW + len(nt)] = nt
        return bytes(page)


@dataclass
class ThreadSpec32:
    tid: int
    start_address: int = 0x82A01000
    win32_start_address: int = 0
    create_time: int = 0x01D707F23DBB0000
    state: str = "Waiting"                 # a _KTHREAD_STATE name (ignored where the build has none)
    wait_reason: str = "Executive"         # a _KWAIT_REASON name
    priority: int = 8


@dataclass
class ProcessSpec32:
    pid: int
    ppid: int
    name: str
    threads: List[ThreadSpec32] = field(default_factory=list)
    create_time: int = 0x01D707F23DB00000


@dataclass
class X86Scenario:
    build_id: str                                  # e.g. "6.1.7601.17514-x86"
    processes: List[ProcessSpec32]
    guid: str = "5F3D1A2B4C6E4F7A8B9C0D1E2F3A4B5C"
    age: int = 1
    pae: Optional[bool] = None                     # None: what the build's kernel uses
    running_tid: Optional[int] = None


@dataclass
class ForgedX86:
    """The built machine and everything a test needs to know about it."""

    scenario: X86Scenario
    layouts: Any
    phys: PhysicalImage
    kernel: X86PageTables
    pae: bool
    kernel_base: int
    image: KernelImage32
    globals: Dict[str, int]                        # name -> virtual address
    processes: Dict[int, int] = field(default_factory=dict)      # pid -> EPROCESS
    threads: Dict[int, int] = field(default_factory=dict)        # tid -> ETHREAD
    dtbs: Dict[int, int] = field(default_factory=dict)           # pid -> DirectoryTableBase
    prcb: int = 0

    @property
    def pdb_name(self) -> str:
        return self.layouts.entry.pdb

    def symbol_rvas(self) -> Dict[str, int]:
        return {name: va - self.kernel_base for name, va in self.globals.items()}

    def dump_spec(self) -> DumpSpec32:
        return DumpSpec32(build=self.layouts.build, dtb=self.kernel.dtb, pae=self.pae,
                          kd_debugger_data_block=self.globals["KdDebuggerDataBlock"],
                          ps_active_process_head=self.globals["PsActiveProcessHead"],
                          ps_loaded_module_list=self.globals["PsLoadedModuleList"])

    def write(self, path: str, kind: str = "full", overwrite: bool = False) -> str:
        if kind == "full":
            return write_full_dump32(path, self.phys, self.dump_spec(), overwrite=overwrite)
        if kind == "bitmap":
            return write_bitmap_dump32(path, self.phys, self.dump_spec(), overwrite=overwrite)
        raise ValueError("dump kind is 'full' or 'bitmap', not %r" % kind)


class _Writer:
    """Field writes through the kernel space, every offset from the layout."""

    def __init__(self, layouts: Any, pt: X86PageTables) -> None:
        self.layouts = layouts
        self.pt = pt
        self._pool = POOL_BASE
        self._pool_end = POOL_BASE

    def alloc(self, size: int, align: int = 8) -> int:
        at = -(-self._pool // align) * align
        end = at + size
        while self._pool_end < end:
            self.pt.map_new(self._pool_end, PAGE_SIZE, user=False)
            self._pool_end += PAGE_SIZE
        self._pool = end
        return at

    def object(self, type_name: str) -> int:
        return self.alloc(self.layouts.type(type_name).size)

    def has(self, type_name: str, path: str) -> bool:
        return self.layouts.has_type(type_name) and self.layouts.type(type_name).has_field(path)

    def put(self, type_name: str, address: int, path: str, value: int) -> None:
        f = self.layouts.type(type_name).field(path)
        at = address + f.offset
        if f.bit_position is not None:
            old = int.from_bytes(self.pt.read_virtual(at, f.size), "little")
            mask = ((1 << f.bit_length) - 1) << f.bit_position
            value = (old & ~mask) | ((value << f.bit_position) & mask)
        self.pt.write_virtual(at, (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little"))

    def put_if(self, type_name: str, address: int, path: str, value: int) -> bool:
        if self.has(type_name, path):
            self.put(type_name, address, path, value)
            return True
        return False

    def put_bytes(self, type_name: str, address: int, path: str, data: bytes) -> None:
        f = self.layouts.type(type_name).field(path)
        self.pt.write_virtual(address + f.offset, data[:f.size].ljust(f.size, b"\0"))

    def u32(self, va: int, value: int) -> None:
        self.pt.write_virtual(va, struct.pack("<I", value & 0xFFFFFFFF))

    def list_link(self, head: int, entries: List[int]) -> None:
        """A circular LIST_ENTRY list (Flink at +0, Blink at +4: `_LIST_ENTRY` of the layout)."""
        le = self.layouts.type("_LIST_ENTRY")
        flink, blink = le.offset("Flink"), le.offset("Blink")
        chain = [head] + entries
        for i, node in enumerate(chain):
            self.u32(node + flink, chain[(i + 1) % len(chain)])
            self.u32(node + blink, chain[i - 1])

    def enum_value(self, enum: str, name: str) -> Optional[int]:
        if not self.layouts.has_enum(enum):
            return None
        try:
            return self.layouts.enum(enum).value_of(name)
        except Exception:       # noqa: BLE001 - a name the build does not have: leave unset
            return None


def build_x86(scenario: X86Scenario) -> ForgedX86:
    layouts = load_layouts(scenario.build_id)
    if layouts.arch != "x86":
        raise ValueError("%s is not an x86 build" % scenario.build_id)
    mmpte = layouts.type("_MMPTE").size if layouts.has_type("_MMPTE") else 8
    pae = (mmpte == 8) if scenario.pae is None else scenario.pae
    phys = PhysicalImage(((0x1, 0x9E), (0x100, 0xF00)))
    ptes = PteFormat(LayoutBits(layouts))
    kernel = X86PageTables(phys, ptes, pae)
    w = _Writer(layouts, kernel)
    # KUSER_SHARED_DATA: one frame, kernel and user views (Volatility's DTB check uses both)
    kuser = phys.allocate(1)
    phys.touch(kuser)
    kernel.map(KUSER_SHARED_DATA_KERNEL, kuser * PAGE_SIZE, PAGE_SIZE, user=False)
    kernel.map(KUSER_SHARED_DATA_USER, kuser * PAGE_SIZE, PAGE_SIZE, user=True, writable=False)
    # the kernel image, globals in its .data
    image = KernelImage32(guid=scenario.guid, age=scenario.age, size_of_image=0x40000,
                          pdb_name=layouts.entry.pdb, timestamp=0x4CE78A09)
    image.place(kernel, KERNEL_BASE, large_pages=False)
    data_rva = image.sections[2].rva
    globals_: Dict[str, int] = {name: KERNEL_BASE + data_rva + slot for name, slot in GLOBAL_SLOTS}
    for name in globals_:
        kernel.write_virtual(globals_[name], bytes(4))          # materialise the .data pages
    forged = ForgedX86(scenario, layouts, phys, kernel, pae, KERNEL_BASE, image, globals_)
    w.list_link(globals_["PsLoadedModuleList"], [])
    w.u32(globals_["KeNumberProcessors"], 1)
    w.u32(globals_["NtBuildNumber"], 0xF0000000 | layouts.build)
    # processes and threads
    eprocs: List[int] = []
    for spec in scenario.processes:
        ep = w.object("_EPROCESS")
        eprocs.append(ep)
        forged.processes[spec.pid] = ep
        space = kernel if not eprocs[:-1] else X86PageTables(phys, ptes, pae, kernel_from=kernel)
        forged.dtbs[spec.pid] = space.dtb
        w.put("_EPROCESS", ep, "Pcb.DirectoryTableBase", space.dtb)
        w.put("_EPROCESS", ep, "UniqueProcessId", spec.pid)
        w.put("_EPROCESS", ep, "InheritedFromUniqueProcessId", spec.ppid)
        w.put_bytes("_EPROCESS", ep, "ImageFileName", spec.name.encode("ascii")[:14] + b"\0")
        w.put("_EPROCESS", ep, "CreateTime", spec.create_time)
        w.put_if("_EPROCESS", ep, "ActiveThreads", len(spec.threads))
        thread_addrs: List[int] = []
        for t in spec.threads:
            et = w.object("_ETHREAD")
            thread_addrs.append(et)
            forged.threads[t.tid] = et
            w.put("_ETHREAD", et, "Cid.UniqueProcess", spec.pid)
            w.put("_ETHREAD", et, "Cid.UniqueThread", t.tid)
            w.put("_ETHREAD", et, "Tcb.Process", ep)
            w.put_if("_ETHREAD", et, "Tcb.ApcState.Process", ep)
            w.put_if("_ETHREAD", et, "StartAddress", t.start_address)
            w.put_if("_ETHREAD", et, "Win32StartAddress", t.win32_start_address)
            w.put("_ETHREAD", et, "CreateTime", t.create_time)
            w.put_if("_ETHREAD", et, "Tcb.Priority", t.priority)
            w.put_if("_ETHREAD", et, "Tcb.BasePriority", t.priority)
            state = w.enum_value("_KTHREAD_STATE", t.state)
            if state is not None:
                w.put("_ETHREAD", et, "Tcb.State", state)
            reason = w.enum_value("_KWAIT_REASON", t.wait_reason)
            if reason is not None:
                w.put_if("_ETHREAD", et, "Tcb.WaitReason", reason)
            stack = w.alloc(STACK_SIZE, align=PAGE_SIZE)
            w.put_if("_ETHREAD", et, "Tcb.StackLimit", stack)
            w.put_if("_ETHREAD", et, "Tcb.StackBase", stack + STACK_SIZE)
            w.put_if("_ETHREAD", et, "Tcb.InitialStack", stack + STACK_SIZE - 0x210)
            w.put_if("_ETHREAD", et, "Tcb.KernelStack", stack + STACK_SIZE - 0x400)
        head_e = ep + layouts.type("_EPROCESS").offset("ThreadListHead")
        w.list_link(head_e, [t + layouts.type("_ETHREAD").offset("ThreadListEntry") for t in thread_addrs])
        if w.has("_EPROCESS", "Pcb.ThreadListHead"):
            head_k = ep + layouts.type("_EPROCESS").offset("Pcb.ThreadListHead")
            w.list_link(head_k, [t + layouts.type("_ETHREAD").offset("Tcb.ThreadListEntry")
                                 for t in thread_addrs])
    links = layouts.type("_EPROCESS").offset("ActiveProcessLinks")
    w.list_link(globals_["PsActiveProcessHead"], [ep + links for ep in eprocs])
    if eprocs:
        w.u32(globals_["PsInitialSystemProcess"], eprocs[0])
    # one processor: a _KPCR at a fixed address, its PRCB, KiProcessorBlock[0]
    kernel.map_new(KPCR_ADDRESS, max(PAGE_SIZE, layouts.type("_KPCR").size), user=False)
    pcr = layouts.type("_KPCR")
    prcb_path = "PrcbData" if pcr.has_field("PrcbData") else "Prcb"
    prcb = KPCR_ADDRESS + pcr.offset(prcb_path)
    forged.prcb = prcb
    w.put_if("_KPCR", KPCR_ADDRESS, "SelfPcr", KPCR_ADDRESS)
    w.put_if("_KPCR", KPCR_ADDRESS, "Prcb", prcb)
    w.u32(globals_["KiProcessorBlock"], prcb)
    running = scenario.running_tid
    if running is not None and running in forged.threads:
        w.put("_KPRCB", prcb, "CurrentThread", forged.threads[running])
        state = w.enum_value("_KTHREAD_STATE", "Running")
        if state is not None:
            w.put("_ETHREAD", forged.threads[running], "Tcb.State", state)
    w.put_if("_KPRCB", prcb, "Number", 0)
    # the KDBG block: KernBase, list heads and the offsets/sizes it states (from the layout)
    kdbg_values = {
        "KernBase": _sign_extend32(KERNEL_BASE),
        "PsLoadedModuleList": _sign_extend32(globals_["PsLoadedModuleList"]),
        "PsActiveProcessHead": _sign_extend32(globals_["PsActiveProcessHead"]),
        "PspCidTable": _sign_extend32(globals_["PspCidTable"]),
        "KiProcessorBlock": _sign_extend32(globals_["KiProcessorBlock"]),
        "PaeEnabled": 1 if pae else 0,
        "SizeEProcess": layouts.type("_EPROCESS").size,
        "SizeEThread": layouts.type("_ETHREAD").size,
        "OffsetEprocessPeb": layouts.type("_EPROCESS").offset("Peb"),
        "OffsetEprocessParentCID": layouts.type("_EPROCESS").offset("InheritedFromUniqueProcessId"),
        "OffsetEprocessDirectoryTableBase": layouts.type("_EPROCESS").offset("Pcb.DirectoryTableBase"),
        "OffsetKThreadState": layouts.type("_KTHREAD").offset("State"),
        "OffsetKThreadTeb": layouts.type("_KTHREAD").offset("Teb"),
        "OffsetKThreadInitialStack": layouts.type("_KTHREAD").offset("InitialStack"),
        "OffsetKThreadApcProcess": layouts.type("_KTHREAD").offset("ApcState.Process"),
    }
    if layouts.has_type("_KPRCB") and layouts.type("_KPRCB").has_field("CurrentThread"):
        kdbg_values["OffsetPrcbCurrentThread"] = layouts.type("_KPRCB").offset("CurrentThread")
    kdbg_va = globals_["KdDebuggerDataBlock"]
    kdbg = build_kdbg(dict(kdbg_values, _list_flink=_sign_extend32(kdbg_va),
                           _list_blink=_sign_extend32(kdbg_va)))
    kernel.write_virtual(kdbg_va, kdbg)
    return forged


#: Types Volatility 3's Windows kernel symbol table binds classes to when it loads (framework
#: 2.28 `symbols/windows/__init__.py`, `set_type_class`): a derived file lacks most of them. The
#: Volatility copy gets an empty placeholder for each missing one (no members, no offsets), which
#: the plugins the tests run (pslist, threads) never read.
VOLATILITY_BOUND_TYPES: Tuple[str, ...] = (
    "_ETHREAD", "_KTHREAD", "_LIST_ENTRY", "_EPROCESS", "_ERESOURCE", "_UNICODE_STRING",
    "_EX_FAST_REF", "_TOKEN", "_OBJECT_HEADER", "_FILE_OBJECT", "_DEVICE_OBJECT", "_CM_KEY_BODY",
    "_CMHIVE", "_CM_KEY_NODE", "_CM_KEY_VALUE", "_HMAP_ENTRY", "_MMVAD_SHORT", "_MMVAD",
    "_KSYSTEM_TIME", "_KMUTANT", "_DRIVER_OBJECT", "_OBJECT_SYMBOLIC_LINK", "_CONTROL_AREA",
    "_SHARED_CACHE_MAP", "_VACB", "_POOL_TRACKER_BIG_PAGES", "_IMAGE_DOS_HEADER", "_KTIMER",
    "_LDR_DATA_TABLE_ENTRY")


def volatility_isf(forged: ForgedX86, derived_isf: str, out_dir: str) -> str:
    """A Volatility-legal copy of the derived ISF for the forged kernel: GUID/age of its image,
    `metadata.source` removed (the schema allows no such key), the forge's symbol RVAs added.
    Written as `<out_dir>/windows/<pdb>/<GUID>-<age>.json.xz`; returns the symbols folder."""
    with lzma.open(derived_isf, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    meta = doc.setdefault("metadata", {})
    meta.pop("source", None)
    pdb = meta.setdefault("windows", {}).setdefault("pdb", {})
    pdb["GUID"] = forged.image.guid.upper()
    pdb["age"] = forged.image.age
    doc["symbols"] = {name: {"address": rva} for name, rva in sorted(forged.symbol_rvas().items())}
    user_types = doc.setdefault("user_types", {})
    for name in VOLATILITY_BOUND_TYPES:
        user_types.setdefault(name, {"kind": "struct", "size": 0, "fields": {}})
    folder = os.path.join(out_dir, "windows", forged.pdb_name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "%s-%d.json.xz" % (forged.image.guid.upper(), forged.image.age))
    with lzma.open(path, "wt", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return out_dir


__all__ = ["ForgedX86", "KernelImage32", "ProcessSpec32", "ThreadSpec32", "X86Scenario",
           "build_x86", "volatility_isf"]
