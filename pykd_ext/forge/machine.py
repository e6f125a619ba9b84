"""A minimal forged Windows x64 machine: memory, page tables, ntoskrnl image, globals, KDBG.

Why: scenario code and tests all start from the same skeleton of a crashed kernel, assembled
from the pieces in this package. `forge_machine` gives a `ForgedMachine` whose `spec` can be
handed straight to the dump writers; callers then plant processes, threads or special PTEs.

What is in it (every Windows offset/RVA from the build's ISF):
- physical memory with a non-contiguous memory map and a PML4 with the self-map entry;
- the kernel image (PE headers with the ISF's PDB GUID/age, `ntkrnlmp.pdb`) at `kernel_base`,
  mapped with 2 MiB pages;
- the globals `PsActiveProcessHead` and `PsLoadedModuleList` (empty lists), `MmPfnDatabase`
  (pointing at `pfn_database`), `NtBuildNumber`, and the KDBG block at `KdDebuggerDataBlock`
  (built with `pykd_ext.targets.kdbg.build_kdbg`), linked into `KdpDebuggerDataListHead` as in
  real kernels, with every address field that names a kernel global set to that global's
  address and the size/offset fields set from the ISF (`kdbg_values_for`);
- the processor start block in low memory (raw images find the DTB and kernel from it);
- a `DumpSpec` whose header fields agree with all of the above.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Sequence, Tuple

from pykd_ext.forge.dumpfile import DumpSpec, build_context
from pykd_ext.forge.isf import SymbolTable, table_for_build
from pykd_ext.forge.kernel_image import KernelImage, PlacedImage, Section, getter_exports
from pykd_ext.forge.lowstub import DEFAULT_LOW_STUB_ADDRESS, write_low_stub
from pykd_ext.forge.pagetables import PAGE_2M, PageTables
from pykd_ext.forge.physmem import SMALL_MEMORY_MAP, PhysicalImage, Run
from pykd_ext.forge.ptebits import PteFormat
from pykd_ext.targets.kdbg import KDBG_FIELDS, build_kdbg

DEFAULT_KERNEL_BASE = 0xFFFFF8047BA00000
DEFAULT_PFN_DATABASE = 0xFFFFDE8000000000
DEFAULT_STACK = 0xFFFFF38000000000
#: NtBuildNumber carries 0xF in its top nibble on free (retail) builds (as KDBG/`vertarget` show).
FREE_BUILD_TAG = 0xF0000000

#: Globals the forge lays out; their addresses go to the header and the KDBG block.
LIST_HEADS = ("PsActiveProcessHead", "PsLoadedModuleList")

#: KDDEBUGGER_DATA64 size/offset fields and the ISF type (and member) each one states, by the
#: wdbgexts.h field names. The pairing is checked against the KDBG of a real Windows 19041 dump
#: (tests/forge/test_forge_machine.py); values are always read from the build's ISF.
KDBG_LAYOUT_FIELDS: Dict[str, Tuple[str, Optional[str]]] = {
    "SizeEProcess": ("_EPROCESS", None),
    "SizeEThread": ("_ETHREAD", None),
    "SizePrcb": ("_KPRCB", None),
    "SizePcr": ("_KPCR", None),
    "OffsetEprocessPeb": ("_EPROCESS", "Peb"),
    "OffsetEprocessParentCID": ("_EPROCESS", "InheritedFromUniqueProcessId"),
    "OffsetEprocessDirectoryTableBase": ("_EPROCESS", "Pcb.DirectoryTableBase"),
    "OffsetKThreadNextProcessor": ("_KTHREAD", "NextProcessor"),
    "OffsetKThreadTeb": ("_KTHREAD", "Teb"),
    "OffsetKThreadKernelStack": ("_KTHREAD", "KernelStack"),
    "OffsetKThreadInitialStack": ("_KTHREAD", "InitialStack"),
    "OffsetKThreadApcProcess": ("_KTHREAD", "ApcState.Process"),
    "OffsetKThreadState": ("_KTHREAD", "State"),
    "OffsetKThreadStackLimit": ("_KTHREAD", "StackLimit"),
    "OffsetKThreadStackBase": ("_KTHREAD", "StackBase"),
    "OffsetKThreadQueueListEntry": ("_KTHREAD", "QueueListEntry"),
    "OffsetKThreadWaitReason": ("_KTHREAD", "WaitReason"),
    "OffsetEThreadIrpList": ("_ETHREAD", "IrpList"),
    "OffsetPrcbCurrentThread": ("_KPRCB", "CurrentThread"),
    "OffsetPrcbIdleThread": ("_KPRCB", "IdleThread"),
    "OffsetPrcbNumber": ("_KPRCB", "Number"),
    "OffsetPrcbDpcRoutine": ("_KPRCB", "DpcRoutineActive"),
    "OffsetPrcbMhz": ("_KPRCB", "MHz"),
    "OffsetPrcbCpuType": ("_KPRCB", "CpuType"),
    "OffsetPrcbVendorString": ("_KPRCB", "VendorString"),
    "OffsetPrcbContext": ("_KPRCB", "Context"),
    "OffsetPrcbProcStateContext": ("_KPRCB", "ProcessorState.ContextFrame"),
    "OffsetPrcbProcStateSpecialReg": ("_KPRCB", "ProcessorState.SpecialRegisters"),
    "OffsetPcrSelfPcr": ("_KPCR", "Self"),
    "OffsetPcrCurrentPrcb": ("_KPCR", "CurrentPrcb"),
    "OffsetPcrContainedPrcb": ("_KPCR", "Prcb"),
    "OffsetKPriQueueThreadListHead": ("_KPRIQUEUE", "ThreadListHead"),
}


def kdbg_values_for(table: SymbolTable, kernel_base: int) -> Dict[str, int]:
    """KDBG field values a kernel of this build at `kernel_base` would state.

    Address fields (ULONG64) named like a kernel global get base + the global's RVA; size and
    offset fields get the ISF's value (fields the ISF cannot answer are left 0).
    """
    values = {"KernBase": kernel_base, "PaeEnabled": 1}     # x64 kernels state PaeEnabled = 1
    for name, (_offset, size, bits) in KDBG_FIELDS.items():
        if size != 8 or bits is not None or name in ("Header", "KernBase"):
            continue
        try:
            values[name] = kernel_base + table.rva(name)
        except KeyError:
            continue
    for name, (type_name, member) in KDBG_LAYOUT_FIELDS.items():
        if name not in KDBG_FIELDS:
            continue
        try:
            value = table.size(type_name) if member is None else table.offset(type_name, member)
        except KeyError:
            continue
        if value < 1 << (8 * KDBG_FIELDS[name][1]):
            values[name] = value
    return values


@dataclass
class ForgedMachine:
    """Everything a forged machine is made of: symbols, physical memory, page tables, kernel, KDBG."""

    table: SymbolTable
    phys: PhysicalImage
    pt: PageTables
    image: KernelImage
    kernel: PlacedImage
    spec: DumpSpec
    globals: Dict[str, int] = field(default_factory=dict)   # symbol -> virtual address
    kdbg_address: int = 0
    kdbg_values: Dict[str, int] = field(default_factory=dict)
    low_stub: Optional[int] = None

    def symbol(self, name: str) -> int:
        """Virtual address of a kernel global (base + the ISF's RVA)."""
        return self.kernel.base + self.table.rva(name)


def _has_symbol(table: SymbolTable, name: str) -> bool:
    try:
        table.rva(name)
        return True
    except KeyError:
        return False


def _image_size(table: SymbolTable, symbols: Iterable[str]) -> int:
    end = max(table.rva(name) for name in symbols) + 0x1000
    return -(-end // PAGE_2M) * PAGE_2M


def forge_machine(build: int = 19041, memory_map: Optional[Sequence[Run]] = SMALL_MEMORY_MAP,
                  kernel_base: int = DEFAULT_KERNEL_BASE, processors: int = 2,
                  bugcheck_code: int = 0x1000007E,
                  bugcheck_parameters: Sequence[int] = (0xFFFFFFFFC0000005, 0, 0, 0),
                  table: Optional[SymbolTable] = None, low_stub: bool = True,
                  kdbg_extra: Optional[Dict[str, int]] = None,
                  sections: Optional[Sequence[Section]] = None,
                  extra_symbols: Sequence[str] = (),
                  kernel_large_pages: bool = True) -> ForgedMachine:
    """Assemble the skeleton machine described in the module docstring.

    `sections`: the kernel image's section table (default: KernelImage's own);
    `extra_symbols`: more globals the caller will write, so SizeOfImage covers them too;
    `kernel_large_pages`: map the image with 2 MiB pages (False: 4 KiB pages, only the pages
    that hold data are mapped, so a sparse dump has no half-present large page).
    """
    table = table or table_for_build(build)
    phys = PhysicalImage(memory_map)
    pt = PageTables(phys, PteFormat(table))
    used: Tuple[str, ...] = ("KdDebuggerDataBlock", "MmPfnDatabase", "NtBuildNumber", "KiSystemStartup",
            "KeBugCheckEx") + LIST_HEADS
    # KDBG addresses lie inside the image, as do the caller's extra globals.
    used += tuple(name for name in ("KdpDebuggerDataListHead",) + tuple(KDBG_FIELDS)
                  if _has_symbol(table, name)) + tuple(extra_symbols)
    image = KernelImage(guid=table.guid, age=table.age, size_of_image=_image_size(table, used),
                        entry_rva=table.rva("KiSystemStartup"),
                        sections=list(sections) if sections else [],
                        exports=getter_exports(table))     # H9 (issue 15): real getter code
    placed = image.place(pt, kernel_base, large_pages=kernel_large_pages)
    machine = ForgedMachine(table=table, phys=phys, pt=pt, image=image, kernel=placed,
                            spec=DumpSpec(build=build, dtb=pt.dtb))
    for name in LIST_HEADS:                      # empty LIST_ENTRYs: Flink = Blink = head
        head = machine.symbol(name)
        pt.write_u64(head + table.offset("_LIST_ENTRY", "Flink"), head)
        pt.write_u64(head + table.offset("_LIST_ENTRY", "Blink"), head)
        machine.globals[name] = head
    pfn_global = machine.symbol("MmPfnDatabase")
    pt.write_u64(pfn_global, DEFAULT_PFN_DATABASE)
    machine.globals["MmPfnDatabase"] = pfn_global
    build_global = machine.symbol("NtBuildNumber")
    pt.write_virtual(build_global, (FREE_BUILD_TAG | build).to_bytes(4, "little"))
    machine.globals["NtBuildNumber"] = build_global

    machine.kdbg_address = machine.symbol("KdDebuggerDataBlock")
    machine.kdbg_values = kdbg_values_for(table, kernel_base)
    try:                                          # the list of debugger data blocks
        list_head = machine.symbol("KdpDebuggerDataListHead")
    except KeyError:
        list_head = 0
    if list_head:
        machine.kdbg_values.update({"_list_flink": list_head, "_list_blink": list_head})
        pt.write_u64(list_head + table.offset("_LIST_ENTRY", "Flink"), machine.kdbg_address)
        pt.write_u64(list_head + table.offset("_LIST_ENTRY", "Blink"), machine.kdbg_address)
    machine.kdbg_values.update(kdbg_extra or {})
    pt.write_virtual(machine.kdbg_address, build_kdbg(machine.kdbg_values))

    if low_stub:
        machine.low_stub = write_low_stub(phys, table, pt.dtb, placed.entry_point,
                                          DEFAULT_LOW_STUB_ADDRESS)
    bugcheck_at = machine.symbol("KeBugCheckEx")
    spec = machine.spec
    spec.processors = processors
    spec.bugcheck_code = bugcheck_code
    spec.bugcheck_parameters = tuple(bugcheck_parameters)
    spec.kd_debugger_data_block = machine.kdbg_address
    spec.ps_active_process_head = machine.globals["PsActiveProcessHead"]
    spec.ps_loaded_module_list = machine.globals["PsLoadedModuleList"]
    spec.pfn_database = pfn_global
    spec.context = build_context(table, rip=bugcheck_at, rsp=DEFAULT_STACK)
    spec.exception_address = bugcheck_at
    return machine


def rewrite_kdbg(machine: ForgedMachine, values: Dict[str, int]) -> None:
    """Update KDBG fields of a forged machine (e.g. after scenario code placed more globals)."""
    machine.kdbg_values.update(values)
    machine.pt.write_virtual(machine.kdbg_address, build_kdbg(machine.kdbg_values))
