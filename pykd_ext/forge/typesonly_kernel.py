"""Forge a Windows kernel from a types-only layout (derived ISFs): x86 PAE/non-PAE and x64.

Why: the derived layouts (`shared/isf-derived`, generated into `structs/`) have no symbol
addresses: 32-bit Windows 7/10 and Windows 11 22H2-24H2 (22621, 22631, 26100). The full-ISF forge
(`kernel_objects`) needs a PDB's globals; this builder chooses the globals' places itself (inside
the forged kernel image's .data section) and states them the ways a real dump does: the dump
header (`PsActiveProcessHead`, `PsLoadedModuleList`, `KdDebuggerDataBlock`) and the KDBG block
(KDDEBUGGER_DATA64; 32-bit kernels store its pointers sign-extended). `symbol_rvas` returns the
RVAs used, so a test can hand Volatility 3 a copy of the derived ISF with exactly those symbols
added (`volatility_isf`).

What is built (every offset, size and enum value from the build's layout):
- page tables: the forge's `PageTables` in the build's paging mode, with Windows' self map and
  the kernel half shared by every process; `_KUSER_SHARED_DATA`'s frame is mapped at its kernel
  and user addresses as Windows does;
- a kernel image (`KernelImage` of the build's architecture: PE32 or PE32+) whose CodeView
  record names the build's kernel PDB and a chosen GUID;
- `_EPROCESS`/`_ETHREAD` objects linked on `PsActiveProcessHead` and on both thread lists, with
  PIDs, names, create times, thread Cids, start addresses, states and wait reasons;
- a `_TOKEN` per process that asks for one (user and group SIDs, privilege bit masks, session,
  integrity level), reached through `_EPROCESS.Token`;
- object headers for every process, thread and token (`TypeIndex` encoded with the header cookie
  on Windows 10+), object types in `ObTypeIndexTable`, `ObpInfoMaskToOffset`, and one handle
  table per process (handles to itself, its first thread, its token) in the build's
  `_HANDLE_TABLE_ENTRY` format;
- one processor where the layout has a `_KPRCB` (26100's derived file has none: no PRCB is
  planted and readers must degrade): `KiProcessorBlock[0]` -> the PRCB, CurrentThread set.
Facts not in any symbol file are named where used (architecture constants, fixed addresses).
"""
import json
import lzma
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.forge.dumpfile import DumpSpec, write_bitmap_dump, write_full_dump
from pykd_ext.forge.kernel_image import KernelImage
from pykd_ext.forge.pagetables import PageTables
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import LayoutBits, PteFormat
from pykd_ext.errors import MissingLayoutError
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.paging_modes import X64_4LEVEL, X86_NONPAE, X86_PAE
from pykd_ext.memory.space import PAGE_SIZE
from pykd_ext.targets.arch import Arch, arch_named
from pykd_ext.targets.kdbg import build_kdbg

#: _KUSER_SHARED_DATA's user view (its kernel view is `Arch.kuser_shared_data`)
KUSER_SHARED_DATA_USER = 0x7FFE0000

#: where the forge puts the kernel image, its pool and the processor control region
KERNEL_BASE = {4: 0x82A00000, 8: 0xFFFFF80512400000}
POOL_BASE = {4: 0x84000000, 8: 0xFFFF9A0000000000}
KPCR_ADDRESS = {4: 0x83F00000, 8: 0xFFFFF80510000000}
STACK_SIZE = 0x3000
#: valid x64 page-table entry bits (Intel SDM 3A 4.5, table 4-19..4-20), for builds whose layout
#: has no `_MMPTE_HARDWARE` (the derived 26100 file): P 0, R/W 1, U/S 2, A 5, D 6, PS 7, G 8,
#: frame 12..51, XD 63
X64_HARDWARE_PTE_BITS = {"Valid": (0, 1), "Dirty1": (1, 1), "Owner": (2, 1), "Accessed": (5, 1),
                         "Dirty": (6, 1), "LargePage": (7, 1), "Global": (8, 1),
                         "PageFrameNumber": (12, 40), "NoExecute": (63, 1)}

#: where the forge puts each global inside the image's .data section (RVA from .data start)
GLOBAL_SLOTS: Tuple[Tuple[str, int], ...] = (
    ("PsActiveProcessHead", 0x000), ("PsLoadedModuleList", 0x010), ("PspCidTable", 0x020),
    ("PsInitialSystemProcess", 0x024), ("KeNumberProcessors", 0x028), ("NtBuildNumber", 0x02C),
    ("ObHeaderCookie", 0x030), ("KiProcessorBlock", 0x040), ("KdDebuggerDataBlock", 0x100),
    ("ObTypeIndexTable", 0x600), ("ObpInfoMaskToOffset", 0x800), ("NtBuildLab", 0x900),
)
#: Object types the forge creates, at contiguous ObTypeIndexTable indexes from 2, in the order
#: Windows 7-11 create the first ones (index 0 is NULL; index 1 holds the 0xBAD0B0B0 sentinel:
#: readers such as Volatility stop at the first NULL after index 0).
OBJECT_TYPES: Tuple[Tuple[str, int], ...] = (
    ("Type", 2), ("Directory", 3), ("SymbolicLink", 4), ("Token", 5), ("Job", 6), ("Process", 7),
    ("Thread", 8))
OB_TYPE_INDEX_SENTINEL = 0xBAD0B0B0
#: Windows 10 (build 10240) introduced the header cookie: `_OBJECT_HEADER.TypeIndex` is stored
#: XORed with `ObHeaderCookie` and the second byte of the header address (Windows Internals 7th
#: ed., part 2, ch. 8 "Object headers and bodies"); earlier kernels store the index as is.
HEADER_COOKIE_FIRST_BUILD = 10240
HEADER_COOKIE = 0x5A
#: access masks of the planted handles (winnt.h PROCESS_ALL_ACCESS, THREAD_ALL_ACCESS,
#: TOKEN_QUERY)
PROCESS_ALL_ACCESS = 0x1FFFFF
THREAD_ALL_ACCESS = 0x1FFFFF
TOKEN_QUERY = 0x0008


class _HardwareBits:
    """`PteFormat`'s view of the architectural x64 PTE bits (no software formats)."""

    def has_member(self, type_name: str, member: str) -> bool:
        return type_name == "_MMPTE_HARDWARE" and member in X64_HARDWARE_PTE_BITS

    def bits(self, type_name: str, member: str) -> Tuple[int, int]:
        return X64_HARDWARE_PTE_BITS[member]


@dataclass
class ThreadSpec:
    """A thread to plant in a types-only forged kernel: ids, start addresses, state, wait reason."""

    tid: int
    start_address: int = 0x82A01000
    win32_start_address: int = 0
    create_time: int = 0x01D707F23DBB0000
    state: str = "Waiting"                 # a _KTHREAD_STATE name (ignored where the build has none)
    wait_reason: str = "Executive"         # a _KWAIT_REASON name
    priority: int = 8


#: A SID as (identifier authority, sub-authorities): S-1-5-18 is (5, (18,)).
Sid = Tuple[int, Tuple[int, ...]]
#: SE_GROUP_* attribute bits (winnt.h): MANDATORY 1, ENABLED_BY_DEFAULT 2, ENABLED 4, OWNER 8,
#: INTEGRITY 0x20, INTEGRITY_ENABLED 0x40
GROUP_ENABLED = 0x7
GROUP_INTEGRITY = 0x60


@dataclass
class TokenSpec:
    """What a process token holds: user, groups (with SE_GROUP_* attributes), privileges as
    bit masks of privilege LUID values (SeDebugPrivilege = 20, wdm.h SE_*_PRIVILEGE), session."""

    user: Sid = (5, (18,))
    groups: List[Tuple[Sid, int]] = field(default_factory=lambda: [
        ((5, (32, 544)), GROUP_ENABLED | 0x8), ((1, (0,)), GROUP_ENABLED),
        ((16, (16384,)), GROUP_INTEGRITY)])
    present: int = (1 << 2) | (1 << 3) | (1 << 7) | (1 << 20) | (1 << 23) | (1 << 29)
    enabled: int = (1 << 7) | (1 << 20) | (1 << 23)
    enabled_by_default: int = (1 << 7) | (1 << 23)
    session_id: int = 0
    token_id: int = 0


@dataclass
class ProcessSpec:
    """A process to plant in a types-only forged kernel: ids, name, threads, token."""

    pid: int
    ppid: int
    name: str
    threads: List[ThreadSpec] = field(default_factory=list)
    create_time: int = 0x01D707F23DB00000
    token: Optional[TokenSpec] = None


@dataclass
class TypesOnlyScenario:
    """A scenario for a types-only build (x86 or x64)."""

    build_id: str                                  # e.g. "6.1.7601.17514-x86", "10.0.26100"
    processes: List[ProcessSpec]
    guid: str = "5F3D1A2B4C6E4F7A8B9C0D1E2F3A4B5C"
    age: int = 1
    pae: Optional[bool] = None                     # None: what the build's kernel uses
    running_tid: Optional[int] = None
    #: the kernel image's PE TimeDateStamp/SizeOfImage (e.g. a real kernel's, from kphdyn, so
    #: readers can name its exact version); defaults: a made-up identity
    kernel_timestamp: int = 0x4CE78A09
    kernel_size_of_image: int = 0x40000


@dataclass
class ForgedKernel:
    """The built machine and everything a test needs to know about it."""

    scenario: TypesOnlyScenario
    layouts: Any
    phys: PhysicalImage
    kernel: PageTables                             # the kernel's address space (x86 or x64 mode)
    pae: bool
    kernel_base: int
    image: KernelImage
    globals: Dict[str, int]                        # name -> virtual address
    processes: Dict[int, int] = field(default_factory=dict)      # pid -> EPROCESS
    tokens: Dict[int, int] = field(default_factory=dict)         # pid -> _TOKEN
    object_types: Dict[str, int] = field(default_factory=dict)   # type name -> _OBJECT_TYPE
    #: pid -> [(handle value, object body, type name, granted access)]
    handles: Dict[int, List[Tuple[int, int, str, int]]] = field(default_factory=dict)
    cookie: Optional[int] = None

    def object_symbols(self) -> List[str]:
        """Globals this build states (ObHeaderCookie only where the kernel has the cookie)."""
        return [n for n in self.globals if n != "ObHeaderCookie" or self.cookie is not None]
    threads: Dict[int, int] = field(default_factory=dict)        # tid -> ETHREAD
    dtbs: Dict[int, int] = field(default_factory=dict)           # pid -> DirectoryTableBase
    prcb: int = 0

    @property
    def pdb_name(self) -> str:
        return self.layouts.entry.pdb

    def symbol_rvas(self) -> Dict[str, int]:
        return {name: va - self.kernel_base for name, va in self.globals.items()
                if name in self.object_symbols()}

    @property
    def pointer_size(self) -> int:
        return int(self.layouts.pointer_size)

    @property
    def arch(self) -> Arch:
        return _arch_of(self.layouts)

    def dump_spec(self) -> Any:
        """The dump header's facts; the architecture's machine type chooses the header flavour."""
        return DumpSpec(build=self.layouts.build, dtb=self.kernel.dtb, pae=self.pae,
                        machine_type=self.arch.machine_types[0],
                        kd_debugger_data_block=self.globals["KdDebuggerDataBlock"],
                        ps_active_process_head=self.globals["PsActiveProcessHead"],
                        ps_loaded_module_list=self.globals["PsLoadedModuleList"])

    def write(self, path: str, kind: str = "full", overwrite: bool = False) -> str:
        if kind not in ("full", "bitmap"):
            raise ValueError("dump kind is 'full' or 'bitmap', not %r" % kind)
        writer = write_full_dump if kind == "full" else write_bitmap_dump
        return writer(path, self.phys, self.dump_spec(), overwrite=overwrite)


def _arch_of(layouts: Any) -> Arch:
    arch = arch_named(str(layouts.arch))
    if arch is None:
        raise ValueError("no architecture named %r" % layouts.arch)
    return arch


class _Writer:
    """Field writes through the kernel space, every offset from the layout."""

    def __init__(self, layouts: Any, pt: Any) -> None:
        self.layouts = layouts
        self.pt = pt
        self.ptr = int(layouts.pointer_size)
        self._pool = POOL_BASE[self.ptr]
        self._pool_end = POOL_BASE[self.ptr]

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

    def with_header(self, type_name: str, size: Optional[int] = None) -> int:
        """An object body preceded by its `_OBJECT_HEADER` (16-byte aligned header, as the
        handle entry's pointer bits assume); returns the body address."""
        header = self.layouts.type("_OBJECT_HEADER")
        body_offset = header.offset("Body")
        size = self.layouts.type(type_name).size if size is None else size
        start = self.alloc(body_offset + size, align=16)
        return start + body_offset

    def unicode_string(self, type_name: str, address: int, path: str, text: str) -> None:
        data = text.encode("utf-16-le")
        buffer = self.alloc(len(data) + 2, align=8)
        self.pt.write_virtual(buffer, data + b"\0\0")
        self.put(type_name, address, path + ".Length", len(data))
        self.put(type_name, address, path + ".MaximumLength", len(data) + 2)
        self.put(type_name, address, path + ".Buffer", buffer)

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

    def pointer(self, va: int, value: int) -> None:
        self.pt.write_virtual(va, (value & ((1 << (8 * self.ptr)) - 1)).to_bytes(self.ptr, "little"))

    def list_link(self, head: int, entries: List[int]) -> None:
        """A circular LIST_ENTRY list (Flink/Blink offsets from the layout's `_LIST_ENTRY`)."""
        le = self.layouts.type("_LIST_ENTRY")
        flink, blink = le.offset("Flink"), le.offset("Blink")
        chain = [head] + entries
        for i, node in enumerate(chain):
            self.pointer(node + flink, chain[(i + 1) % len(chain)])
            self.pointer(node + blink, chain[i - 1])

    def enum_value(self, enum: str, name: str) -> Optional[int]:
        if not self.layouts.has_enum(enum):
            return None
        try:
            return self.layouts.enum(enum).value_of(name)
        except MissingLayoutError:      # a name the build does not have: leave the field unset
            return None


#: where the forge puts the functions whose code names globals (RVAs in the first .text page)
CODE_RVAS: Tuple[Tuple[str, int], ...] = (
    ("ObGetObjectType", 0x1100), ("PsLookupProcessByProcessId", 0x1200),
    ("PsLookupThreadByThreadId", 0x1300), ("PspReferenceCidTableEntry", 0x1400))


def code_exports(layouts: Any, global_rvas: Dict[str, int], image_base: Optional[int] = None) -> List[Any]:
    """`kernel_image.global_code_exports` at `CODE_RVAS`, naming the forge's own globals (the
    cookie only where the build has one), with the layout's `_OBJECT_HEADER` offsets; with
    `image_base`, 32-bit code (absolute addresses)."""
    from pykd_ext.forge.kernel_image import global_code_exports
    rvas = dict(CODE_RVAS)
    rvas.update(global_rvas)
    if layouts.build < HEADER_COOKIE_FIRST_BUILD:
        rvas.pop("ObHeaderCookie", None)
    return global_code_exports(rvas.__getitem__, lambda t, p: layouts.type(t).offset(p), image_base)


def build_types_only(scenario: TypesOnlyScenario) -> ForgedKernel:
    """Build the machine of a scenario for a types-only (derived) x86 or x64 layout."""
    layouts = load_layouts(scenario.build_id)
    ptr = int(layouts.pointer_size)
    x86 = layouts.arch == "x86"
    # RAM: the image, ~3.5 pages per thread (stack + objects), ~12 per process (tables, token...)
    threads = sum(len(p.threads) for p in scenario.processes)
    ram_pages = max(0xF00, (scenario.kernel_size_of_image >> 12) + 0x1000,
                    4 * threads + 12 * len(scenario.processes) + 0x1000)
    phys = PhysicalImage(((0x1, 0x9E), (0x100, ram_pages)))
    if x86:
        mmpte = layouts.type("_MMPTE").size if layouts.has_type("_MMPTE") else 8
        pae = (mmpte == 8) if scenario.pae is None else scenario.pae
        ptes = PteFormat(LayoutBits(layouts))
        kernel = PageTables(phys, ptes, X86_PAE if pae else X86_NONPAE)
    else:
        pae = False
        bits: Any = LayoutBits(layouts) if layouts.has_type("_MMPTE_HARDWARE") else _HardwareBits()
        ptes = PteFormat(bits)
        kernel = PageTables(phys, ptes, X64_4LEVEL)
    w = _Writer(layouts, kernel)
    # KUSER_SHARED_DATA: one frame, kernel and user views (Volatility's DTB check uses both)
    kuser = phys.allocate(1)
    phys.touch(kuser)
    kernel.map(int(_arch_of(layouts).kuser_shared_data or 0), kuser * PAGE_SIZE, PAGE_SIZE, user=False)
    kernel.map(KUSER_SHARED_DATA_USER, kuser * PAGE_SIZE, PAGE_SIZE, user=True, writable=False)
    # the kernel image, globals in its .data
    base = KERNEL_BASE[ptr]
    image = KernelImage(guid=scenario.guid, age=scenario.age,
                        size_of_image=scenario.kernel_size_of_image,
                        pdb_name=layouts.entry.pdb, timestamp=scenario.kernel_timestamp,
                        arch=_arch_of(layouts))
    data_rva = image.sections[2].rva
    globals_: Dict[str, int] = {name: base + data_rva + slot * (ptr // 4) for name, slot in GLOBAL_SLOTS}
    # H12 (issue 15): code naming ObHeaderCookie, ObTypeIndexTable, PspCidTable (x64 or x86)
    image = KernelImage(guid=scenario.guid, age=scenario.age,
                        size_of_image=scenario.kernel_size_of_image, pdb_name=layouts.entry.pdb,
                        timestamp=scenario.kernel_timestamp, arch=_arch_of(layouts),
                        exports=code_exports(layouts, {n: a - base for n, a in globals_.items()},
                                             base if x86 else None))
    image.place(kernel, base, large_pages=False)
    for name in globals_:
        kernel.write_virtual(globals_[name], bytes(ptr))        # materialise the .data pages
    kernel.write_virtual(globals_["ObTypeIndexTable"], bytes(ptr * 64))
    forged = ForgedKernel(scenario, layouts, phys, kernel, pae, base, image, globals_)
    w.list_link(globals_["PsLoadedModuleList"], [])
    w.u32(globals_["KeNumberProcessors"], 1)
    w.u32(globals_["NtBuildNumber"], 0xF0000000 | layouts.build)
    # NtBuildLab: "<build>.<revision>.<arch>fre.<branch>.<date>", as Windows writes it
    lab = "%d.%d.%sfre.forged.000101-0000" % (layouts.build, layouts.entry.revision or 0,
                                              "x86" if x86 else "amd64")
    kernel.write_virtual(globals_["NtBuildLab"], lab.encode("ascii") + b"\0")
    # processes and threads
    eprocs: List[int] = []
    for spec in scenario.processes:
        ep = w.with_header("_EPROCESS")
        eprocs.append(ep)
        forged.processes[spec.pid] = ep
        if not eprocs[:-1]:
            space = kernel
        else:
            space = PageTables(phys, ptes, kernel.mode, kernel_from=kernel)
        forged.dtbs[spec.pid] = space.dtb
        w.put("_EPROCESS", ep, "Pcb.DirectoryTableBase", space.dtb)
        w.put("_EPROCESS", ep, "UniqueProcessId", spec.pid)
        w.put("_EPROCESS", ep, "InheritedFromUniqueProcessId", spec.ppid)
        w.put_bytes("_EPROCESS", ep, "ImageFileName", spec.name.encode("ascii")[:14] + b"\0")
        w.put("_EPROCESS", ep, "CreateTime", spec.create_time)
        w.put_if("_EPROCESS", ep, "ActiveThreads", len(spec.threads))
        if spec.token is not None:
            forged.tokens[spec.pid] = _plant_token(w, ep, spec.token)
        thread_addrs: List[int] = []
        for t in spec.threads:
            et = w.with_header("_ETHREAD")
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
        w.pointer(globals_["PsInitialSystemProcess"], eprocs[0])
    _plant_objects(forged, w)
    _plant_processor(forged, w, scenario.running_tid)
    ext = _arch_of(layouts).kdbg_pointer          # sign-extended on 32-bit kernels
    # the KDBG block: KernBase, list heads and the offsets/sizes it states (from the layout)
    kdbg_values = {
        "KernBase": ext(base),
        "PsLoadedModuleList": ext(globals_["PsLoadedModuleList"]),
        "PsActiveProcessHead": ext(globals_["PsActiveProcessHead"]),
        "PspCidTable": ext(globals_["PspCidTable"]),
        "NtBuildLab": ext(globals_["NtBuildLab"]),
        "KiProcessorBlock": ext(globals_["KiProcessorBlock"]),
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
    kdbg = build_kdbg(dict(kdbg_values, _list_flink=ext(kdbg_va), _list_blink=ext(kdbg_va)))
    kernel.write_virtual(kdbg_va, kdbg)
    return forged


def _plant_sid(w: _Writer, sid: Sid) -> int:
    """A `_SID` (Revision 1, big-endian 48-bit authority, sub-authorities past the declared [1])."""
    authority, subs = sid
    sid_type = w.layouts.type("_SID")
    first = sid_type.offset("SubAuthority")
    at = w.alloc(first + 4 * max(1, len(subs)), align=4)
    w.put("_SID", at, "Revision", 1)
    w.put("_SID", at, "SubAuthorityCount", len(subs))
    w.put_bytes("_SID", at, "IdentifierAuthority", authority.to_bytes(6, "big"))
    for i, sub in enumerate(subs):
        w.u32(at + first + 4 * i, sub)
    return at


def _plant_token(w: _Writer, ep: int, spec: TokenSpec) -> int:
    """A `_TOKEN` with its SID_AND_ATTRIBUTES array and SIDs; `_EPROCESS.Token` points at it."""
    token = w.with_header("_TOKEN")
    entries = [(spec.user, 0)] + list(spec.groups)
    saa = w.layouts.type("_SID_AND_ATTRIBUTES")
    array_at = w.alloc(saa.size * len(entries), align=8)
    for i, (sid, attributes) in enumerate(entries):
        w.put("_SID_AND_ATTRIBUTES", array_at + i * saa.size, "Sid", _plant_sid(w, sid))
        w.put("_SID_AND_ATTRIBUTES", array_at + i * saa.size, "Attributes", attributes)
    w.put("_TOKEN", token, "UserAndGroups", array_at)
    w.put("_TOKEN", token, "UserAndGroupCount", len(entries))
    w.put("_TOKEN", token, "Privileges.Present", spec.present)
    w.put("_TOKEN", token, "Privileges.Enabled", spec.enabled)
    w.put("_TOKEN", token, "Privileges.EnabledByDefault", spec.enabled_by_default)
    w.put("_TOKEN", token, "SessionId", spec.session_id)
    w.put("_TOKEN", token, "TokenId.LowPart", spec.token_id)
    primary = w.enum_value("_TOKEN_TYPE", "TokenPrimary")
    if primary is not None:
        w.put("_TOKEN", token, "TokenType", primary)
    integrity = [i for i, (_sid, attributes) in enumerate(entries) if attributes & GROUP_INTEGRITY]
    if integrity:
        w.put_if("_TOKEN", token, "IntegrityLevelIndex", integrity[0])
    w.put("_EPROCESS", ep, "Token.Value", token)        # _EX_FAST_REF: reference count bits 0
    return token


def _plant_objects(forged: ForgedKernel, w: _Writer) -> None:
    """Object types (`ObTypeIndexTable`), object headers of every process, thread and token,
    and one handle table per process holding handles to itself, its first thread and its token.

    Handle entries use the build's `_HANDLE_TABLE_ENTRY`: `ObjectPointerBits` (Windows 8+; the
    header address shifted right by the bits the field does not hold: 48-bit x64 addresses,
    32-bit x86 ones) or, before Windows 8, `Object` = header address | the unlocked bit.
    """
    lay = forged.layouts
    if not (lay.has_type("_OBJECT_HEADER") and lay.has_type("_OBJECT_TYPE")
            and lay.has_type("_HANDLE_TABLE") and lay.has_type("_HANDLE_TABLE_ENTRY")):
        return
    if lay.build >= HEADER_COOKIE_FIRST_BUILD:
        forged.cookie = HEADER_COOKIE
        forged.kernel.write_virtual(forged.globals["ObHeaderCookie"], bytes([HEADER_COOKIE]))
    index_of = dict(OBJECT_TYPES)
    w.pointer(forged.globals["ObTypeIndexTable"] + w.ptr, OB_TYPE_INDEX_SENTINEL)
    forged.kernel.write_virtual(forged.globals["ObpInfoMaskToOffset"], info_mask_to_offset(lay))
    for name, index in OBJECT_TYPES:
        ot = w.with_header("_OBJECT_TYPE")
        forged.object_types[name] = ot
        w.unicode_string("_OBJECT_TYPE", ot, "Name", name)
        w.put_if("_OBJECT_TYPE", ot, "Index", index)
        w.pointer(forged.globals["ObTypeIndexTable"] + index * w.ptr, ot)
        _set_header(forged, w, ot, index_of["Type"])
    scenario = forged.scenario
    for spec in scenario.processes:
        _set_header(forged, w, forged.processes[spec.pid], index_of["Process"])
        for t in spec.threads:
            _set_header(forged, w, forged.threads[t.tid], index_of["Thread"])
        if spec.pid in forged.tokens:
            _set_header(forged, w, forged.tokens[spec.pid], index_of["Token"])
    for spec in scenario.processes:
        wanted = [(forged.processes[spec.pid], "Process", PROCESS_ALL_ACCESS)]
        if spec.threads:
            wanted.append((forged.threads[spec.threads[0].tid], "Thread", THREAD_ALL_ACCESS))
        if spec.pid in forged.tokens:
            wanted.append((forged.tokens[spec.pid], "Token", TOKEN_QUERY))
        table = w.object("_HANDLE_TABLE")
        page = w.alloc(PAGE_SIZE, align=PAGE_SIZE)
        entry_size = lay.type("_HANDLE_TABLE_ENTRY").size
        planted: List[Tuple[int, int, str, int]] = []
        for i, (body, type_name, access) in enumerate(wanted, start=1):
            _set_handle_entry(w, page + i * entry_size, body, access)
            planted.append((i * 4, body, type_name, access))
        w.put("_HANDLE_TABLE", table, "TableCode", page)          # level 0: one entry page
        w.put_if("_HANDLE_TABLE", table, "UniqueProcessId", spec.pid)
        w.put_if("_HANDLE_TABLE", table, "QuotaProcess", forged.processes[spec.pid])
        w.put_if("_HANDLE_TABLE", table, "HandleCount", len(wanted))
        w.put("_EPROCESS", forged.processes[spec.pid], "ObjectTable", table)
        forged.handles[spec.pid] = planted


def info_mask_to_offset(layouts: Any) -> bytes:
    """`ObpInfoMaskToOffset`: for each InfoMask value, the bytes of optional headers it names
    (sizes from the layout; bit -> type as `kernel.objects.INFO_MASK_HEADERS`). Bits whose type
    the layout lacks count 0 (the forge never sets them)."""
    from pykd_ext.kernel.objects import INFO_MASK_HEADERS
    sizes = {bit: (layouts.type(name).size if layouts.has_type(name) else 0)
             for bit, name in INFO_MASK_HEADERS}
    return bytes(min(0xFF, sum(size for bit, size in sizes.items() if mask & bit))
                 for mask in range(256))


def _set_header(forged: ForgedKernel, w: _Writer, body: int, type_index: int) -> None:
    header = body - w.layouts.type("_OBJECT_HEADER").offset("Body")
    stored = type_index
    if forged.cookie is not None:
        stored = (type_index ^ forged.cookie ^ (header >> 8)) & 0xFF
    w.put("_OBJECT_HEADER", header, "TypeIndex", stored)
    w.put("_OBJECT_HEADER", header, "PointerCount", 2)
    w.put("_OBJECT_HEADER", header, "HandleCount", 1)


def _set_handle_entry(w: _Writer, entry: int, body: int, access: int) -> None:
    hte = w.layouts.type("_HANDLE_TABLE_ENTRY")
    header = body - w.layouts.type("_OBJECT_HEADER").offset("Body")
    if hte.has_field("ObjectPointerBits"):
        bits = hte.field("ObjectPointerBits")
        address_bits = 48 if w.ptr == 8 else 32
        shift = address_bits - bits.bit_length
        if header & ((1 << shift) - 1):
            raise ValueError("object header 0x%x is not %d-byte aligned" % (header, 1 << shift))
        w.put("_HANDLE_TABLE_ENTRY", entry, "ObjectPointerBits", (header & ((1 << address_bits) - 1)) >> shift)
        w.put_if("_HANDLE_TABLE_ENTRY", entry, "Unlocked", 1)
        w.put("_HANDLE_TABLE_ENTRY", entry, "GrantedAccessBits", access)
    else:
        w.put("_HANDLE_TABLE_ENTRY", entry, "Object", header | 1)   # bit 0: entry unlocked
        w.put("_HANDLE_TABLE_ENTRY", entry, "GrantedAccess", access)


def _plant_processor(forged: ForgedKernel, w: _Writer, running: Optional[int]) -> None:
    """Processor 0: a `_KPCR` at a fixed address, its PRCB, `KiProcessorBlock[0]`.

    The PRCB is the KPCR's embedded `Prcb`/`PrcbData` where the layout has it; the derived
    22621/22631 `_KPCR` is partial (no Prcb member), so the PRCB is placed on its own and
    `CurrentPrcb` points at it. Without a `_KPRCB` (derived 26100) nothing is planted.
    """
    layouts = forged.layouts
    if not layouts.has_type("_KPRCB") or not layouts.has_type("_KPCR"):
        return
    ptr = int(layouts.pointer_size)
    kpcr = KPCR_ADDRESS[ptr]
    pcr = layouts.type("_KPCR")
    prcb_type = layouts.type("_KPRCB")
    forged.kernel.map_new(kpcr, max(PAGE_SIZE, pcr.size), user=False)
    embedded = "PrcbData" if pcr.has_field("PrcbData") else "Prcb"
    if pcr.has_field(embedded) and pcr.field(embedded).kind != "pointer":
        prcb = kpcr + pcr.offset(embedded)
    else:
        prcb = w.alloc(prcb_type.size, align=64)
    forged.prcb = prcb
    w.put_if("_KPCR", kpcr, "SelfPcr", kpcr)
    w.put_if("_KPCR", kpcr, "Self", kpcr)
    if pcr.has_field("Prcb") and pcr.field("Prcb").kind == "pointer":
        w.put("_KPCR", kpcr, "Prcb", prcb)
    w.put_if("_KPCR", kpcr, "CurrentPrcb", prcb)
    w.pointer(forged.globals["KiProcessorBlock"], prcb)
    if running is not None and running in forged.threads:
        w.put_if("_KPRCB", prcb, "CurrentThread", forged.threads[running])
        state = w.enum_value("_KTHREAD_STATE", "Running")
        if state is not None:
            w.put("_ETHREAD", forged.threads[running], "Tcb.State", state)
    w.put_if("_KPRCB", prcb, "Number", 0)


def build_x86(scenario: TypesOnlyScenario) -> ForgedKernel:
    """`build_types_only` for an x86 build (refuses x64 layouts)."""
    if load_layouts(scenario.build_id).arch != "x86":
        raise ValueError("%s is not an x86 build" % scenario.build_id)
    return build_types_only(scenario)


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


def volatility_isf(forged: ForgedKernel, derived_isf: str, out_dir: str) -> str:
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


#: the x86-flavoured names the first tests used
X86Scenario, ProcessSpec32, ThreadSpec32, TokenSpec32, ForgedX86 = (
    TypesOnlyScenario, ProcessSpec, ThreadSpec, TokenSpec, ForgedKernel)

__all__ = ["ForgedKernel", "ProcessSpec", "ThreadSpec", "TokenSpec", "TypesOnlyScenario",
           "build_types_only", "build_x86", "volatility_isf", "X86Scenario", "ProcessSpec32",
           "ThreadSpec32", "TokenSpec32", "ForgedX86"]
