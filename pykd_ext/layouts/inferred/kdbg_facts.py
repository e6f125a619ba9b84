"""Which structure member each KDDEBUGGER_DATA64 offset/size field states.

Why a module of its own: the layout choice (`layouts.select`, which checks candidate layouts
against these fields) and the inferred layouts (`layouts.inferred`, which take them as proven
offsets) read the same pairing; it lives here, below both. Field names are wdbgexts.h's
(`structs/sources/wdbgexts_KDDEBUGGER_DATA64.h`); the pairing is checked against the ISF of every
shipped build that has a KDBG-bearing forge (tests/layouts/inferred) and against the KDBG blocks
of the real triage dumps.
"""
from typing import Tuple

#: KDBG field (wdbgexts.h name) -> (type, member path) it states the offset of; "SIZE" = sizeof.
KDBG_LAYOUT_FACTS: Tuple[Tuple[str, str, str], ...] = (
    ("SizeEProcess", "_EPROCESS", "SIZE"),
    ("SizeEThread", "_ETHREAD", "SIZE"),
    ("SizePrcb", "_KPRCB", "SIZE"),
    ("SizePcr", "_KPCR", "SIZE"),
    ("OffsetEprocessPeb", "_EPROCESS", "Peb"),
    ("OffsetEprocessParentCID", "_EPROCESS", "InheritedFromUniqueProcessId"),
    ("OffsetEprocessDirectoryTableBase", "_EPROCESS", "Pcb.DirectoryTableBase"),
    ("OffsetKThreadState", "_KTHREAD", "State"),
    ("OffsetKThreadTeb", "_KTHREAD", "Teb"),
    ("OffsetKThreadKernelStack", "_KTHREAD", "KernelStack"),
    ("OffsetKThreadInitialStack", "_KTHREAD", "InitialStack"),
    ("OffsetKThreadApcProcess", "_KTHREAD", "ApcState.Process"),
    ("OffsetKThreadNextProcessor", "_KTHREAD", "NextProcessor"),
    ("OffsetKThreadStackLimit", "_KTHREAD", "StackLimit"),
    ("OffsetKThreadStackBase", "_KTHREAD", "StackBase"),
    ("OffsetKThreadQueueListEntry", "_KTHREAD", "QueueListEntry"),
    ("OffsetKThreadWaitReason", "_KTHREAD", "WaitReason"),
    ("OffsetEThreadIrpList", "_ETHREAD", "IrpList"),
    ("OffsetPrcbCurrentThread", "_KPRCB", "CurrentThread"),
    ("OffsetPrcbIdleThread", "_KPRCB", "IdleThread"),
    ("OffsetPrcbNumber", "_KPRCB", "Number"),
    ("OffsetPrcbMhz", "_KPRCB", "MHz"),
    ("OffsetPrcbCpuType", "_KPRCB", "CpuType"),
    ("OffsetPrcbVendorString", "_KPRCB", "VendorString"),
    ("OffsetPrcbProcStateContext", "_KPRCB", "ProcessorState.ContextFrame"),
    ("OffsetPrcbProcStateSpecialReg", "_KPRCB", "ProcessorState.SpecialRegisters"),
    ("OffsetPrcbContext", "_KPRCB", "Context"),
    ("OffsetPrcbDpcStack", "_KPRCB", "DpcStack"),
    ("OffsetPrcbIsrStack", "_KPRCB", "IsrStack"),
    ("OffsetPcrSelfPcr", "_KPCR", "Self"),
    ("OffsetPcrCurrentPrcb", "_KPCR", "CurrentPrcb"),
    ("OffsetPcrContainedPrcb", "_KPCR", "Prcb"),
)

__all__ = ["KDBG_LAYOUT_FACTS"]
