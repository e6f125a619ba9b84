"""Forge kernel triage minidumps (`PAGEDU64`, DumpType 4) with chosen bugchecks, drivers and stacks.

Why: batch triage (issue 13) must be tested and benchmarked on thousands of varied crashes whose
truth is known: which driver faulted, which frames are on the stack, which process and thread
crashed. Real triage dumps are few (`shared/real/kernel-triage`); this module writes new ones laid
out like them, so the reader (`pykd_ext.targets.triage`) reads them through exactly the code path
real dumps take.

Layout (the order of `win10-19041-x64-triage.dmp`, every block back to back):
    DUMP_HEADER64 (ContextRecord at 0x348, Exception at 0xF00: TRIAGE_DUMP64 points at both)
    0x2000 TRIAGE_DUMP64 | DUMP_MM_STORAGE64 | unloaded drivers | PRCB | EPROCESS | ETHREAD |
    call stack | KDBG copy | DUMP_DRIVER_ENTRY64[] | string pool | TRIAGE_DATA_BLOCK[] |
    data block bytes | 'TRGD'
Every file-format structure is built with the reader's own definitions (`targets.dumpheader`,
`targets.triage`, `targets.kdbg`); every kernel structure offset, size, enum value and global RVA
comes from the build's layouts/ISF (`forge.kernel_memory.BuildFacts`, `forge.machine.
kdbg_values_for`); the kernel's TimeDateStamp/SizeOfImage come from kphdyn for the chosen
ntoskrnl version, so the reader names that exact version.

Where the reader looks for each fact, and so where the forge puts it:
- PRCB address: KiProcessorBlock[PRCB.Number] (a data block holding the array);
- thread: PRCB.CurrentThread; process: the thread's ApcState.Process; sizes from the KDBG;
- the crashing thread's stack: TopOfStack .. stack base; exception bugchecks (those whose
  reference parameters have the `exception_record`/`context_record` roles) get an
  EXCEPTION_RECORD64 and a CONTEXT inside the stack at the addresses their parameters name, and
  the header's ContextRecord is the faulting context (Rip = fault address, Rsp = the faulting
  frame), as in the real 0x1000007E dumps;
- the active process list head (PsActiveProcessHead) as a data block, code bytes around the fault.

Entry points: `TriageCrash` (what to plant), `write_triage_dump(crash, path)` -> `TriageFacts`
(what was planted, for tests), `random_crash(rng)` and `write_corpus(folder, count, seed)` for
many varied dumps (seeded: the same seed writes the same files).
"""
import datetime
import os
import random
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pykd_ext.forge.builds import BuildChoice
from pykd_ext.forge.dumpfile import DumpSpec, build_context, build_header
from pykd_ext.forge.kernel_memory import BuildFacts
from pykd_ext.forge.machine import kdbg_values_for
from pykd_ext.targets.dumpheader import (CONTEXT_OFFSET64, DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                         DUMP_HEADER64, DUMP_TYPE_TRIAGE, EXCEPTION_RECORD64,
                                         FILL, FILL32, FILL64, HEADER64_SIZE)
from pykd_ext.targets.arch import X86
from pykd_ext.targets.kdbg import build_kdbg
from pykd_ext.targets.triage import (DUMP_DRIVER_ENTRY64, DUMP_MM_STORAGE64,
                                     DUMP_UNLOADED_DRIVERS64, MAX_UNLOADED_NAME_LENGTH,
                                     TRIAGE_DATA_BLOCK_FORMAT, TRIAGE_DUMP64, TRIAGE_DUMP64_SIZE,
                                     TRIAGE_DUMP_VALID, TRIAGE_FIELD_BITS, TRIAGE_OFFSET,
                                     UNLOADED_HEADER_SIZE)

def _offset_of(struct_: Any, name: str) -> int:
    """Offset of a fixed-size member of a construct Struct, from the definition itself."""
    at = 0
    for sub in struct_.subcons:
        if sub.name == name:
            return at
        at += sub.sizeof()
    raise KeyError(name)


#: Where the dump header keeps the exception record (the triage block's ExceptionOffset).
EXCEPTION_OFFSET64 = _offset_of(DUMP_HEADER64, "Exception")
PHYSICAL_MEMORY_BLOCK_OFFSET = _offset_of(DUMP_HEADER64, "PhysicalMemoryBlock")
#: Every TRIAGE_DUMP_* part this writer fills (all but "broken driver", "mm info"... see below).
WRITTEN_PARTS = ("context", "exception", "prcb", "process", "thread", "stack", "driver list",
                 "mm info", "debugger data", "data blocks")
#: The kernel image's names as the driver list spells them, and the HAL (the "kernel" of blame).
KERNEL_FILE = "ntoskrnl.exe"
HAL_FILE = "hal.dll"
#: ntoskrnl versions the random generator draws from: each has an ISF in shared/isf, shipped
#: layouts and a kphdyn row (tests/batch check all three), one per Windows 10/11 release family.
CORPUS_VERSIONS = ("10.0.14393.4583", "10.0.17763.2183", "10.0.18362.418", "10.0.19041.1288",
                   "10.0.20348.288", "10.0.22000.318")
#: Crash times of random crashes: FILETIMEs from 2020-01-01 over five years (100 ns units).
FORGED_EPOCH = (datetime.datetime(2020, 1, 1) - datetime.datetime(1601, 1, 1)) // datetime.timedelta(microseconds=1) * 10
FORGED_SPAN = 5 * 365 * 86400 * 10 ** 7
#: winnt.h / ntstatus.h exception codes the random crashes use.
EXCEPTION_CODES = (0xC0000005, 0xC000001D, 0x80000003, 0xC0000094, 0xC0000096, 0x80000004)
#: Third-party driver names the random crashes blame (a fleet's usual suspects).
CULPRITS = ("nvlddmkm.sys", "amdppm.sys", "atikmdag.sys", "iaStorAC.sys", "rtwlane.sys",
            "Netwtw06.sys", "e1d68x64.sys", "klif.sys", "aswSP.sys", "bdselfpr.sys",
            "vgk.sys", "ssudbus.sys", "RTKVHD64.sys", "igdkmd64.sys", "winhvr.sys")
#: Inbox drivers every crash also loads (never planted as culprits, may appear in stacks above).
INBOX = ("kd.dll", "mcupdate_GenuineIntel.dll", "CLFS.SYS", "tm.sys", "FLTMGR.SYS", "ksecdd.sys",
         "Wdf01000.sys", "ACPI.sys", "pci.sys", "storport.sys", "Ntfs.sys", "NETIO.SYS",
         "ndis.sys", "tcpip.sys", "fvevol.sys", "volsnap.sys", "dxgkrnl.sys", "win32k.sys")


@dataclass
class DriverSpec:
    """One loaded driver of the triage driver list."""

    name: str
    base: int
    size: int
    timestamp: int = 0
    checksum: int = 0

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class TriageCrash:
    """What a forged triage dump states. Addresses are kernel virtual addresses.

    `stack_words` maps an offset from `top_of_stack` (8-aligned) to the value stored there;
    everything else in the stack is zero. `context_rsp` is the header CONTEXT's Rsp (the frame
    that faulted, for exception bugchecks; `top_of_stack` otherwise).
    """

    version: str
    kernel_base: int
    drivers: List[DriverSpec]                  # kernel image first (as Windows lists it)
    bugcheck_code: int
    bugcheck_parameters: Sequence[int]
    top_of_stack: int
    stack_size: int
    context_rip: int
    context_rsp: int
    stack_words: Dict[int, int] = field(default_factory=dict)
    exception: Optional[Tuple[int, int]] = None    # (code, address) written at its parameter
    processors: int = 4
    processor: int = 0
    process_address: int = 0xFFFFC08BDCE94180
    thread_address: int = 0xFFFFC08BDE9E1640
    process_name: str = "System"
    pid: int = 4
    tid: int = 264
    process_dtb: int = 0x1AD000
    dump_dtb: int = 0x1AD000
    prcb_address: int = 0xFFFFF804782D4180
    fault_code: Optional[bytes] = None         # bytes at context_rip (a data block)
    unloaded: List[Tuple[str, int, int]] = field(default_factory=list)
    system_time: int = 0x01D707F23DBB3399      # FILETIME
    system_uptime: int = 0x023BC1E9            # 100 ns units
    create_time: int = 0x01D707F0A1C2E000
    other_processes: Sequence[int] = ()        # further (absent) EPROCESS addresses on the list


@dataclass
class TriageFacts:
    """What `write_triage_dump` planted (for tests: compare the reader's output with these)."""

    path: str
    version: str
    build: int
    bugcheck_code: int
    bugcheck_parameters: List[int]
    drivers: List[Dict[str, Any]]
    kernel_base: int
    process_name: str
    pid: int
    tid: int
    thread: int
    process: int
    processor: int
    top_of_stack: int
    stack_size: int
    context_rip: int
    context_rsp: int
    stack_words: Dict[int, int]
    fault_code: Optional[bytes]
    system_time: int
    system_uptime: int
    expected_blame: Optional[str] = None       # the module the documented rules must blame
    expected_offset: Optional[int] = None      # and the offset in it
    expected_source: Optional[str] = None      # "parameter", "exception record", "stack scan", "kernel"


# --- per-build facts (loaded once per process) ------------------------------------------------

_FACTS: Dict[str, BuildFacts] = {}


def facts_for(version: str) -> BuildFacts:
    """ISF + layouts of one ntoskrnl version (cached: ISF files take a few hundred ms)."""
    found = _FACTS.get(version)
    if found is None:
        choice = BuildChoice(version, version)
        found = BuildFacts(choice.table(), choice.layouts())
        _FACTS[version] = found
    return found


def kernel_identity(version: str) -> Tuple[int, int]:
    """(TimeDateStamp, SizeOfImage) of that ntoskrnl from kphdyn (what names the version)."""
    from pykd_ext.layouts.kernel_versions import load_table
    build = int(version.split(".")[2])
    for entry in load_table().versions_for_build(build):
        if entry.version == version:
            return entry.timestamp, entry.size_of_image
    raise KeyError("kphdyn has no x64 ntoskrnl %s" % version)


class _Block:
    """A zeroed structure buffer written by field name (offsets and bits from BuildFacts)."""

    def __init__(self, facts: BuildFacts, type_name: str, size: int) -> None:
        self.facts = facts
        self.type_name = type_name
        self.data = bytearray(size)

    def put(self, path: str, value: int) -> None:
        info = self.facts.field(self.type_name, path)
        end = info.offset + info.size
        if end > len(self.data):
            raise ValueError("%s.%s lies beyond the 0x%x-byte block" % (self.type_name, path,
                                                                       len(self.data)))
        if info.bit_position is None:
            self.data[info.offset:end] = (value & ((1 << (8 * info.size)) - 1)).to_bytes(
                info.size, "little")
            return
        word = int.from_bytes(self.data[info.offset:end], "little")
        mask = ((1 << int(info.bit_length or 0)) - 1) << info.bit_position
        word = (word & ~mask) | ((value << info.bit_position) & mask)
        self.data[info.offset:end] = word.to_bytes(info.size, "little")

    def put_if(self, path: str, value: int) -> None:
        if self.facts.has(self.type_name, path):
            self.put(path, value)

    def put_bytes(self, path: str, raw: bytes) -> None:
        info = self.facts.field(self.type_name, path)
        self.data[info.offset:info.offset + min(len(raw), info.size)] = raw[:info.size]


def _dump_string(text: str) -> bytes:
    """DUMP_STRING: ULONG length in UTF-16 units (what Windows writes), the text, a NUL,
    padded to 8 bytes (as in the real dumps' string pools)."""
    units = text.encode("utf-16-le")
    raw = struct.pack("<I", len(units) // 2) + units + b"\0\0"
    return raw + bytes(-len(raw) % 8)


def _list_entry(facts: BuildFacts, flink: int, blink: int) -> bytes:
    out = bytearray(facts.size("_LIST_ENTRY"))
    out[facts.offset("_LIST_ENTRY", "Flink"):][:8] = flink.to_bytes(8, "little")
    out[facts.offset("_LIST_ENTRY", "Blink"):][:8] = blink.to_bytes(8, "little")
    return bytes(out)


@dataclass
class _Tail:
    """Where each part of a triage dump lands and the bytes after them (`_lay_out`)."""

    offsets: Dict[str, int]
    entries: bytes           # DUMP_DRIVER_ENTRY32/64[]
    pool: bytes              # the driver names (DUMP_STRING)
    block_table: bytes       # TRIAGE_DATA_BLOCK[]
    block_bytes: bytes
    valid_offset: int        # where 'TRGD' goes
    file_size: int

    def body(self, parts: List[Tuple[str, bytes]]) -> List[bytes]:
        """The parts and everything after them, in file order, up to and including 'TRGD'."""
        return [raw for _, raw in parts] + [self.entries, self.pool, self.block_table,
                                            self.block_bytes, TRIAGE_DUMP_VALID]


def _lay_out(at_file: int, parts: List[Tuple[str, bytes]], drivers: Sequence[DriverSpec],
             blocks: List[Tuple[int, bytes]], driver_entry: Any) -> _Tail:
    """The layout both widths share: the parts back to back from `at_file`, then the driver list
    (`driver_entry`: the width's DUMP_DRIVER_ENTRY definition), the string pool, the data-block
    table and the blocks' bytes, then 'TRGD'."""
    pool = bytearray()
    name_offsets: List[int] = []
    for driver in drivers:
        name_offsets.append(len(pool))
        pool += _dump_string(driver.name)
    offsets: Dict[str, int] = {}
    for name, raw in parts:
        offsets[name] = at_file
        at_file += len(raw)
    offsets["drivers"] = at_file
    offsets["pool"] = at_file + len(drivers) * driver_entry.size
    offsets["blocks"] = offsets["pool"] + len(pool)
    data_at = offsets["blocks"] + len(blocks) * struct.calcsize(TRIAGE_DATA_BLOCK_FORMAT)
    block_table, block_bytes = bytearray(), bytearray()
    for address, raw in blocks:
        block_table += struct.pack(TRIAGE_DATA_BLOCK_FORMAT, address, data_at + len(block_bytes),
                                   len(raw))
        block_bytes += raw
    valid_offset = data_at + len(block_bytes)
    entries = bytearray()
    for driver, name_at in zip(drivers, name_offsets):
        values = {"DriverNameOffset": offsets["pool"] + name_at, "NonPagedDebugInfo": 0,
                  "DllBase": driver.base, "EntryPoint": driver.base + 0x1000,
                  "SizeOfImage": driver.size, "Flags": 0, "LoadCount": 1,
                  "CheckSum": driver.checksum, "TimeDateStamp": driver.timestamp}
        entries += driver_entry.struct.pack(*(values[n] for n in driver_entry.names))
    return _Tail(offsets, bytes(entries), bytes(pool), bytes(block_table), bytes(block_bytes),
                 valid_offset, valid_offset + len(TRIAGE_DUMP_VALID))


def _exception_record(code: int, address: int) -> bytes:
    return EXCEPTION_RECORD64.build({
        "ExceptionCode": code, "ExceptionFlags": 0, "ExceptionRecord": 0,
        "ExceptionAddress": address, "NumberParameters": 2,
        "ExceptionInformation": [0, address] + [0] * 13})


# --- the writer ----------------------------------------------------------------------------------

def write_triage_dump(crash: TriageCrash, path: str, overwrite: bool = False) -> TriageFacts:
    """Write `crash` as a triage dump at `path` (see the module docstring for the layout)."""
    facts = facts_for(crash.version)
    table = facts.table
    build = int(crash.version.split(".")[2])
    kdbg_values = kdbg_values_for(table, crash.kernel_base)
    kdbg_address = crash.kernel_base + table.rva("KdDebuggerDataBlock")
    active_head = kdbg_values["PsActiveProcessHead"]
    processor_block = kdbg_values["KiProcessorBlock"]
    sizes = {name: kdbg_values[name] for name in ("SizePrcb", "SizeEProcess", "SizeEThread")}

    # --- kernel structures
    prcb = _Block(facts, "_KPRCB", sizes["SizePrcb"])
    prcb.put("CurrentThread", crash.thread_address)
    prcb.put("Number", crash.processor)
    objects = facts.enum("_KOBJECTS")
    states = facts.enum("_KTHREAD_STATE")
    stack_base = crash.top_of_stack + crash.stack_size
    link = facts.offset("_EPROCESS", "ActiveProcessLinks")
    members = list(crash.other_processes)
    if crash.pid == 4:
        chain = [crash.process_address] + members          # System is first, as in Windows
    else:
        chain = members[:1] + [crash.process_address] + members[1:]
    at = chain.index(crash.process_address)
    nodes = [active_head] + [p + link for p in chain]
    flink = nodes[(at + 2) % len(nodes)]
    blink = nodes[at]

    eproc = _Block(facts, "_EPROCESS", sizes["SizeEProcess"])
    eproc.put("Pcb.Header.Type", objects["ProcessObject"])
    eproc.put("Pcb.DirectoryTableBase", crash.process_dtb)
    eproc.put("UniqueProcessId", crash.pid)
    eproc.put("InheritedFromUniqueProcessId", 0 if crash.pid == 4 else 4)
    eproc.put_bytes("ImageFileName", crash.process_name.encode("latin-1")[:14] + b"\0")
    eproc.put("ActiveProcessLinks.Flink", flink)
    eproc.put("ActiveProcessLinks.Blink", blink)
    eproc.put("CreateTime", crash.create_time)
    thread_links = facts.offset("_ETHREAD", "ThreadListEntry")
    tcb_links = facts.offset("_KTHREAD", "ThreadListEntry")
    for head, node in (("ThreadListHead", crash.thread_address + thread_links),
                       ("Pcb.ThreadListHead", crash.thread_address + tcb_links)):
        eproc.put(head + ".Flink", node)
        eproc.put(head + ".Blink", node)

    ethread = _Block(facts, "_ETHREAD", sizes["SizeEThread"])
    ethread.put("Tcb.Header.Type", objects["ThreadObject"])
    ethread.put("Tcb.Process", crash.process_address)
    ethread.put("Tcb.ApcState.Process", crash.process_address)
    ethread.put("Tcb.State", states["Running"])
    ethread.put("Tcb.InitialStack", stack_base)
    ethread.put("Tcb.StackBase", stack_base)
    ethread.put("Tcb.StackLimit", stack_base - 0x6000)   # KERNEL_STACK_SIZE (ntddk.h, x64)
    ethread.put("Tcb.KernelStack", crash.top_of_stack)
    ethread.put("Tcb.NextProcessor", crash.processor)
    ethread.put("Cid.UniqueProcess", crash.pid)
    ethread.put("Cid.UniqueThread", crash.tid)
    ethread.put("CreateTime", crash.create_time + 1000)
    for head, base in (("ThreadListEntry", crash.process_address
                        + facts.offset("_EPROCESS", "ThreadListHead")),
                       ("Tcb.ThreadListEntry", crash.process_address
                        + facts.offset("_EPROCESS", "Pcb.ThreadListHead"))):
        ethread.put(head + ".Flink", base)
        ethread.put(head + ".Blink", base)
    kernel_start = crash.kernel_base + table.rva("PspSystemThreadStartup")
    ethread.put("StartAddress", kernel_start)
    ethread.put_if("Win32StartAddress", kernel_start)

    # --- the call stack (with the exception and context records exception bugchecks point at)
    stack = bytearray(crash.stack_size)
    for offset, value in crash.stack_words.items():
        stack[offset:offset + 8] = (value & ((1 << 64) - 1)).to_bytes(8, "little")
    context = build_context(table, rip=crash.context_rip, rsp=crash.context_rsp)
    if crash.exception is not None:
        from pykd_ext.batch.bugcodes import parameter_with_role
        code, address = crash.exception
        for role, raw in (("exception_record", _exception_record(code, address)),
                          ("context_record", context)):
            index = parameter_with_role(crash.bugcheck_code, role)
            if index is None:
                continue
            at_va = crash.bugcheck_parameters[index]
            offset = at_va - crash.top_of_stack
            if not 0 <= offset <= crash.stack_size - len(raw):
                raise ValueError("%s at 0x%x is not inside the stack" % (role, at_va))
            stack[offset:offset + len(raw)] = raw

    # --- unloaded drivers
    unloaded = bytearray(struct.pack("<I", len(crash.unloaded)).ljust(UNLOADED_HEADER_SIZE, b"\0"))
    for name, start, end in crash.unloaded:
        units = name.encode("utf-16-le")
        unloaded += DUMP_UNLOADED_DRIVERS64.build({
            "Name": {"Length": len(units), "MaximumLength": len(units), "_pad": bytes(4),
                     "Buffer": 0},
            "DriverName": units[:MAX_UNLOADED_NAME_LENGTH].ljust(MAX_UNLOADED_NAME_LENGTH, b"\0"),
            "StartAddress": start, "EndAddress": end})

    # --- data blocks: KiProcessorBlock, the active list head, the code at the fault
    prcbs = [crash.prcb_address + (n - crash.processor) * 0x20000 if n != crash.processor
             else crash.prcb_address for n in range(crash.processors)]
    blocks: List[Tuple[int, bytes]] = [
        (processor_block, b"".join(p.to_bytes(8, "little") for p in prcbs)),
        (active_head, _list_entry(facts, nodes[1], nodes[-1])),
    ]
    if crash.fault_code:
        blocks.append((crash.context_rip, bytes(crash.fault_code)))

    # --- file layout (offsets of every block, back to back after the triage header)
    mm_offset = TRIAGE_OFFSET + TRIAGE_DUMP64_SIZE
    mm = DUMP_MM_STORAGE64.build({
        "Version": 1, "Size": DUMP_MM_STORAGE64.sizeof(), "MmSpecialPoolTag": 0,
        "MiTriageActionTaken": 0, "MmVerifyDriverLevel": 0, "KernelVerifier": 0,
        "MmMaximumNonPagedPool": 0, "MmAllocatedNonPagedPool": 0, "PagedPoolMaximum": 0,
        "PagedPoolAllocated": 0, "CommittedPages": 0, "CommittedPagesPeak": 0,
        "CommitLimitMaximum": 0})
    parts: List[Tuple[str, bytes]] = [
        ("mm", mm), ("unloaded", bytes(unloaded)), ("prcb", bytes(prcb.data)),
        ("process", bytes(eproc.data)), ("thread", bytes(ethread.data)),
        ("stack", bytes(stack)), ("kdbg", build_kdbg(kdbg_values))]
    # --- the driver list, string pool and data blocks after the parts
    tail = _lay_out(mm_offset, parts, crash.drivers, blocks, DUMP_DRIVER_ENTRY64)
    offsets, file_size = tail.offsets, tail.file_size

    triage = TRIAGE_DUMP64.build({
        "ServicePackBuild": 0, "SizeOfDump": file_size, "ValidOffset": tail.valid_offset,
        "ContextOffset": CONTEXT_OFFSET64, "ExceptionOffset": EXCEPTION_OFFSET64,
        "MmOffset": offsets["mm"], "UnloadedDriversOffset": offsets["unloaded"],
        "PrcbOffset": offsets["prcb"], "ProcessOffset": offsets["process"],
        "ThreadOffset": offsets["thread"], "CallStackOffset": offsets["stack"],
        "SizeOfCallStack": crash.stack_size, "DriverListOffset": offsets["drivers"],
        "DriverCount": len(crash.drivers), "StringPoolOffset": offsets["pool"],
        "StringPoolSize": len(tail.pool), "BrokenDriverOffset": 0, "TriageOptions": FILL32,
        "TopOfStack": crash.top_of_stack, "ArchitectureSpecific": bytes(16),
        "DataPageAddress": 0, "DataPageOffset": 0, "DataPageSize": 0,
        "DebuggerDataOffset": offsets["kdbg"], "DebuggerDataSize": len(parts[-1][1]),
        "DataBlocksOffset": offsets["blocks"], "DataBlocksCount": len(blocks)})

    written = {name for name in WRITTEN_PARTS}
    fields_bits = sum(bit for bit, name in TRIAGE_FIELD_BITS if name in written)
    spec = DumpSpec(build=build, dtb=crash.dump_dtb, processors=crash.processors,
                    bugcheck_code=crash.bugcheck_code,
                    bugcheck_parameters=tuple(crash.bugcheck_parameters),
                    kd_debugger_data_block=kdbg_address, ps_active_process_head=active_head,
                    ps_loaded_module_list=kdbg_values["PsLoadedModuleList"],
                    pfn_database=kdbg_values.get("MmPfnDatabase", FILL64),
                    system_time=crash.system_time, system_uptime=crash.system_uptime,
                    context=context,
                    exception_address=crash.kernel_base + table.rva("KeBugCheckEx"),
                    extra_fields={"MiniDumpFields": fields_bits, "WriterStatus": 0})
    header = bytearray(build_header(spec, DUMP_TYPE_TRIAGE, [], file_size))
    # Triage dumps leave the whole PhysicalMemoryBlock with the "PAGE" fill (both real ones).
    start, end = PHYSICAL_MEMORY_BLOCK_OFFSET, PHYSICAL_MEMORY_BLOCK_OFFSET + DMP_PHYSICAL_MEMORY_BLOCK_SIZE
    header[start:end] = (FILL * (DMP_PHYSICAL_MEMORY_BLOCK_SIZE // 4 + 1))[:end - start]
    if len(header) != HEADER64_SIZE:
        raise AssertionError("header is 0x%x bytes" % len(header))

    body = [bytes(header), triage] + tail.body(parts)
    with open(path, "wb" if overwrite else "xb") as out:
        out.write(b"".join(body))
    return TriageFacts(
        path=path, version=crash.version, build=build, bugcheck_code=crash.bugcheck_code,
        bugcheck_parameters=list(crash.bugcheck_parameters),
        drivers=[{"name": d.name, "base": d.base, "size": d.size, "timestamp": d.timestamp}
                 for d in crash.drivers],
        kernel_base=crash.kernel_base, process_name=crash.process_name, pid=crash.pid,
        tid=crash.tid, thread=crash.thread_address, process=crash.process_address,
        processor=crash.processor, top_of_stack=crash.top_of_stack, stack_size=crash.stack_size,
        context_rip=crash.context_rip, context_rsp=crash.context_rsp,
        stack_words=dict(crash.stack_words), fault_code=crash.fault_code,
        system_time=crash.system_time, system_uptime=crash.system_uptime)


# --- random crashes -------------------------------------------------------------------------------

#: Bugchecks the generator draws, with how the culprit shows: through a parameter with the
#: `fault_address` role, or only on the stack (the reference gives no code address).
ADDRESS_BUGCHECKS = (0x1000007E, 0x7E, 0x1E, 0x1000008E, 0x3B, 0x50, 0xD1, 0x0A, 0xD5)
STACK_BUGCHECKS = (0x133, 0xEF, 0x9F, 0x1C8, 0xC4)


@dataclass
class CrashPlan:
    """A random crash and its truth (filled by `random_crash`)."""

    crash: TriageCrash
    expected_blame: str
    expected_offset: Optional[int]
    expected_source: str


def _layout_drivers(rng: random.Random, version: str, kernel_base: int,
                    culprits: Sequence[str]) -> List[DriverSpec]:
    timestamp, size = kernel_identity(version)
    drivers = [DriverSpec(KERNEL_FILE, kernel_base, size, timestamp, rng.getrandbits(24))]
    hal_size = 0x6000 + 0x1000 * rng.randrange(4)
    drivers.append(DriverSpec(HAL_FILE, kernel_base - 0x400000, hal_size, rng.getrandbits(31)))
    cursor = kernel_base + size + 0x200000
    names = list(rng.sample(INBOX, rng.randrange(8, len(INBOX) + 1))) + list(culprits)
    rng.shuffle(names)
    for name in names:
        length = 0x1000 * rng.randrange(0x10, 0x800)
        drivers.append(DriverSpec(name, cursor, length, rng.getrandbits(31), rng.getrandbits(24)))
        cursor += length + 0x1000 * rng.randrange(1, 0x40)
    return drivers


def _inside(rng: random.Random, driver: DriverSpec) -> int:
    return driver.base + 0x1000 + rng.randrange(0, max(driver.size - 0x2000, 0x10), 1)


def random_crash(rng: random.Random, versions: Sequence[str] = CORPUS_VERSIONS) -> CrashPlan:
    """One varied crash and the blame the documented rules must give it.

    Kinds: a culprit named by the fault-address parameter; a fault inside the kernel with the
    culprit first on the stack above the faulting frame; a stack-only bugcheck with the culprit
    on the stack; a pure kernel crash (no third-party frame: the kernel is blamed).
    """
    from pykd_ext.batch.bugcodes import parameter_with_role
    version = rng.choice(list(versions))
    kernel_base = 0xFFFFF80000000000 + (rng.randrange(0x100, 0x3F00) << 21)
    culprit_name = rng.choice(CULPRITS)
    drivers = _layout_drivers(rng, version, kernel_base, [culprit_name])
    kernel = drivers[0]
    culprit = [d for d in drivers if d.name == culprit_name][0]
    inbox = [d for d in drivers[2:] if d.name != culprit_name]
    kind = rng.choice(("parameter", "parameter", "kernel-fault", "stack", "kernel"))
    code = rng.choice(STACK_BUGCHECKS if kind in ("stack", "kernel") else ADDRESS_BUGCHECKS)

    stack_size = 0x2000 + 0x8 * rng.randrange(0, 0x100)
    stack_base = 0xFFFF800000000000 + (rng.randrange(0x10000, 0x7FFFF) << 16)
    top = stack_base - stack_size
    words: Dict[int, int] = {}

    def kernel_pc() -> int:
        return kernel.base + rng.randrange(0x1000, kernel.size - 0x1000)

    def noise(first: int, last: int) -> None:
        """Kernel return addresses, stack pointers, small values (never a third-party address)."""
        for offset in range(first, last, 8):
            pick = rng.random()
            if pick < 0.12:
                words[offset] = kernel_pc()
            elif pick < 0.22:
                words[offset] = top + rng.randrange(0, stack_size, 8)
            elif pick < 0.30:
                words[offset] = rng.randrange(0, 0x100)

    params = [0, 0, 0, 0]
    exception = None
    fault = kernel_pc()
    fault_code = bytes(rng.getrandbits(8) for _ in range(16))
    expected_offset: Optional[int] = None
    fault_role = parameter_with_role(code, "fault_address")
    context_rsp = top
    context_rip = kernel.base + facts_for(version).table.rva("KeBugCheckEx")
    scan_from = 0
    if kind in ("parameter", "kernel-fault"):
        fault = _inside(rng, culprit) if kind == "parameter" else kernel_pc()
        exc_code = rng.choice(EXCEPTION_CODES)
        record_role = parameter_with_role(code, "exception_record")
        context_role = parameter_with_role(code, "context_record")
        code_role = parameter_with_role(code, "exception_code")
        if code_role is not None:
            params[code_role] = exc_code | (0xFFFFFFFF00000000 if exc_code >> 31 else 0)
        if fault_role is not None:
            params[fault_role] = fault
        for index in range(4):
            if index not in (fault_role, record_role, context_role, code_role):
                params[index] = rng.choice((0, 2, 8, top + rng.randrange(0, 0x100, 8)))
        if record_role is not None or context_role is not None:
            exception = (exc_code, fault)
        if context_role is not None:
            params[context_role] = top + 0x600
        if record_role is not None:
            params[record_role] = top + 0xE00
        context_rip = fault
        context_rsp = top + 0x1000                            # the faulting frame
        scan_from = 0x1000
        noise(0, 0x600)
        noise(0xEA0, 0x1000)
    else:
        params = [rng.randrange(0, 8), rng.getrandbits(32), top + 0x40, 0]
        noise(0, 0x100)
        scan_from = 0x100
    # frames above the start of the scan: optional kernel frames, then the culprit, then callers
    offset = scan_from
    for _ in range(rng.randrange(0, 4)):
        words[offset] = kernel_pc()
        offset += 8 * rng.randrange(2, 8)
    culprit_return: Optional[int] = None
    if kind != "kernel":
        culprit_return = _inside(rng, culprit)
        words[offset] = culprit_return
        offset += 8 * rng.randrange(2, 8)
        for _ in range(rng.randrange(1, 6)):                   # more culprit/inbox frames above
            words[offset] = _inside(rng, rng.choice([culprit] + inbox))
            offset += 8 * rng.randrange(2, 10)
    noise(offset, stack_size - 0x40)
    words[stack_size - 0x20] = kernel.base + facts_for(version).table.rva("PspSystemThreadStartup")

    if kind == "parameter":
        expected, expected_offset, source = culprit.name, fault - culprit.base, "parameter"
    elif kind == "kernel":
        expected, source = KERNEL_FILE, "kernel"
    else:
        assert culprit_return is not None
        expected, expected_offset, source = culprit.name, culprit_return - culprit.base, "stack scan"

    processors = rng.choice((2, 4, 8, 16))
    processor = rng.randrange(processors)
    system = rng.random() < 0.5
    pool = 0xFFFF800000000000 + (rng.randrange(0x4000, 0x7FFF) << 32)
    crash = TriageCrash(
        version=version, kernel_base=kernel_base, drivers=drivers, bugcheck_code=code,
        bugcheck_parameters=params, top_of_stack=top, stack_size=stack_size,
        context_rip=context_rip, context_rsp=context_rsp, stack_words=words, exception=exception,
        processors=processors, processor=processor,
        process_address=pool + 0x40 * rng.randrange(0x1000, 0x100000),
        thread_address=pool + 0x40 * rng.randrange(0x100000, 0x200000),
        process_name="System" if system else rng.choice(("svchost.exe", "explorer.exe",
                                                         "audiodg.exe", "MsMpEng.exe")),
        pid=4 if system else 4 * rng.randrange(50, 5000), tid=4 * rng.randrange(10, 5000),
        process_dtb=0x1AD000 if system else 0x1000 * rng.randrange(0x1000, 0x100000),
        prcb_address=0xFFFFF80000000180 + (rng.randrange(0x1000, 0x3F000) << 12),
        fault_code=fault_code,
        unloaded=[("dam.sys", kernel_base + 0x1000000, kernel_base + 0x101C000)][:rng.randrange(2)],
        system_time=FORGED_EPOCH + rng.randrange(FORGED_SPAN),
        system_uptime=rng.randrange(10 ** 7, 10 ** 12),
        other_processes=[pool + 0x40 * rng.randrange(0x200000, 0x300000)
                         for _ in range(rng.randrange(0, 4))])
    crash.create_time = crash.system_time - crash.system_uptime
    return CrashPlan(crash, expected, expected_offset, source)


def write_corpus(folder: str, count: int, seed: int = 13,
                 versions: Sequence[str] = CORPUS_VERSIONS) -> List[TriageFacts]:
    """Write `count` random triage dumps (`crash-00000.dmp`, ...) into `folder`; same seed, same
    files. Returns what each one planted, with the blame the rules must give."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    out = []
    for index in range(count):
        plan = random_crash(rng, versions)
        path = os.path.join(folder, "crash-%05d.dmp" % index)
        facts = write_triage_dump(plan.crash, path, overwrite=True)
        facts.expected_blame = plan.expected_blame
        facts.expected_offset = plan.expected_offset
        facts.expected_source = plan.expected_source
        out.append(facts)
    return out


# --- 32-bit (x86) triage dumps (H8, issue 15) ------------------------------------------------------

#: x86 layouts the 32-bit writer uses by default (a derived, types-only ISF: PAE kernel).
X86_TRIAGE_VERSION = "10.0.19041.1288-x86"
#: CONTEXT_i386 | CONTROL | INTEGER | SEGMENTS (winnt.h)
CONTEXT_X86_FLAGS = 0x10007


@dataclass
class TriageCrash32:
    """What a forged 32-bit x86 triage dump (`PAGEDUMP`, TRIAGE_DUMP32) states.

    `stack_words` maps an offset from `top_of_stack` (4-aligned) to a 32-bit value there."""

    kernel_base: int
    drivers: List[DriverSpec]                  # kernel image first
    bugcheck_code: int
    bugcheck_parameters: Sequence[int]
    top_of_stack: int
    stack_size: int
    context_eip: int
    context_esp: int
    version: str = X86_TRIAGE_VERSION
    stack_words: Dict[int, int] = field(default_factory=dict)
    processors: int = 2
    processor: int = 0
    process_address: int = 0x8A6D3040
    thread_address: int = 0x8A6F5080
    prcb_address: int = 0x82D3F120            # KPCR+0x120, as x86 Windows places it
    process_name: str = "System"
    pid: int = 4
    tid: int = 8
    dump_dtb: int = 0x1A8000
    fault_code: Optional[bytes] = None         # bytes at context_eip (a data block)
    unloaded: List[Tuple[str, int, int]] = field(default_factory=list)
    system_time: int = 0x01D707F23DBB3399
    system_uptime: int = 0x023BC1E9


def write_triage_dump32(crash: TriageCrash32, path: str, overwrite: bool = False) -> Dict[str, Any]:
    """Write `crash` as a 32-bit x86 triage dump laid out like the real 32-bit ones
    (DUMP_HEADER32 | TRIAGE_DUMP32 at 0x1000 | unloaded drivers | PRCB | EPROCESS | ETHREAD |
    call stack | KDBG copy | DUMP_DRIVER_ENTRY32[] | string pool | TRIAGE_DATA_BLOCK[] | data |
    'TRGD'). Structure offsets and sizes come from the x86 layouts of `crash.version`; the
    file formats from the reader's definitions (`targets.triage`, `targets.dumpheader`).
    Returns what was planted (addresses, drivers) for tests."""
    from pykd_ext.forge.dumpfile import DumpSpec, build_header
    from pykd_ext.layouts.registry import load_layouts
    from pykd_ext.targets.cpu_context import CONTEXT_X86_INTEGER, CONTEXT_X86_SIZE
    from pykd_ext.targets.dumpheader import header_offsets
    from pykd_ext.targets.triage import (DUMP_DRIVER_ENTRY32, DUMP_UNLOADED_DRIVERS32,
                                         TRIAGE_DUMP32, TRIAGE_DUMP32_SIZE)
    layouts = load_layouts(crash.version)
    prcb_type, process_type, thread_type = (layouts.type(n) for n in ("_KPRCB", "_EPROCESS",
                                                                       "_ETHREAD"))
    build = int(crash.version.split(".")[2])
    globals_at = crash.kernel_base + 0x300000          # planted kernel globals (no symbols)
    active_head, module_list, processor_block = globals_at, globals_at + 0x10, globals_at + 0x40
    kdbg_address = globals_at + 0x100

    def put(buffer: bytearray, type_: Any, path_: str, value: int, size: int = 4) -> None:
        at = type_.offset(path_)
        buffer[at:at + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    prcb = bytearray(prcb_type.size)
    put(prcb, prcb_type, "CurrentThread", crash.thread_address)
    put(prcb, prcb_type, "Number", crash.processor, 1)
    eproc = bytearray(process_type.size)
    put(eproc, process_type, "UniqueProcessId", crash.pid)
    name_at = process_type.offset("ImageFileName")
    eproc[name_at:name_at + 15] = crash.process_name.encode("latin-1")[:14].ljust(15, b"\0")
    ethread = bytearray(thread_type.size)
    put(ethread, thread_type, "Tcb.ApcState.Process", crash.process_address)
    put(ethread, thread_type, "Tcb.Process", crash.process_address)
    put(ethread, thread_type, "Cid.UniqueProcess", crash.pid)
    put(ethread, thread_type, "Cid.UniqueThread", crash.tid)
    kdbg_values = {
        "KernBase": X86.kdbg_pointer(crash.kernel_base),
        "PsActiveProcessHead": X86.kdbg_pointer(active_head),
        "PsLoadedModuleList": X86.kdbg_pointer(module_list),
        "KiProcessorBlock": X86.kdbg_pointer(processor_block),
        "PaeEnabled": 1, "SizePrcb": prcb_type.size, "SizeEProcess": process_type.size,
        "SizeEThread": thread_type.size,
        "OffsetPrcbCurrentThread": prcb_type.offset("CurrentThread"),
        "OffsetPrcbNumber": prcb_type.offset("Number"),
        "OffsetKThreadApcProcess": thread_type.offset("Tcb.ApcState.Process"),
        "_list_flink": X86.kdbg_pointer(kdbg_address),
        "_list_blink": X86.kdbg_pointer(kdbg_address)}
    kdbg = build_kdbg(kdbg_values)

    stack = bytearray(crash.stack_size)
    for offset, value in crash.stack_words.items():
        stack[offset:offset + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
    context = CONTEXT_X86_INTEGER.build(dict(
        {name: 0 for name in ("Dr0", "Dr1", "Dr2", "Dr3", "Dr6", "Dr7", "SegGs", "SegFs", "SegEs",
                              "SegDs", "Edi", "Esi", "Ebx", "Edx", "Ecx", "Eax", "Ebp", "SegSs")},
        ContextFlags=CONTEXT_X86_FLAGS, FloatSave=bytes(112), Eip=crash.context_eip,
        SegCs=8, EFlags=0x202, Esp=crash.context_esp))
    context += bytes(CONTEXT_X86_SIZE - len(context))

    unloaded = bytearray(struct.pack("<I", len(crash.unloaded)))
    for name, start, end in crash.unloaded:
        units = name.encode("utf-16-le")
        unloaded += DUMP_UNLOADED_DRIVERS32.build({
            "Name": {"Length": len(units), "MaximumLength": len(units), "Buffer": 0},
            "DriverName": units[:MAX_UNLOADED_NAME_LENGTH].ljust(MAX_UNLOADED_NAME_LENGTH, b"\0"),
            "StartAddress": start, "EndAddress": end})
    prcbs = [crash.prcb_address + (n - crash.processor) * 0x4000 for n in range(crash.processors)]
    blocks: List[Tuple[int, bytes]] = [
        (processor_block, b"".join(p.to_bytes(4, "little") for p in prcbs)),
        (active_head, struct.pack("<II", crash.process_address + process_type.offset(
            "ActiveProcessLinks"), crash.process_address + process_type.offset("ActiveProcessLinks")))]
    if crash.fault_code:
        blocks.append((crash.context_eip, bytes(crash.fault_code)))

    triage_at = 0x1000                               # after DUMP_HEADER32
    at_file = triage_at + TRIAGE_DUMP32_SIZE
    at_file += -at_file % 8                          # ALIGN_8, as the real 32-bit dumps
    parts = [("unloaded", bytes(unloaded)), ("prcb", bytes(prcb)), ("process", bytes(eproc)),
             ("thread", bytes(ethread)), ("stack", bytes(stack)), ("kdbg", kdbg)]
    tail = _lay_out(at_file, parts, crash.drivers, blocks, DUMP_DRIVER_ENTRY32)
    offsets, file_size = tail.offsets, tail.file_size
    head = header_offsets(32)
    triage = TRIAGE_DUMP32.build({
        "ServicePackBuild": 0, "SizeOfDump": file_size, "ValidOffset": tail.valid_offset,
        "ContextOffset": head["ContextRecord"], "ExceptionOffset": head["Exception"],
        "MmOffset": 0, "UnloadedDriversOffset": offsets["unloaded"],
        "PrcbOffset": offsets["prcb"], "ProcessOffset": offsets["process"],
        "ThreadOffset": offsets["thread"], "CallStackOffset": offsets["stack"],
        "SizeOfCallStack": crash.stack_size, "DriverListOffset": offsets["drivers"],
        "DriverCount": len(crash.drivers), "StringPoolOffset": offsets["pool"],
        "StringPoolSize": len(tail.pool), "BrokenDriverOffset": 0, "TriageOptions": FILL32,
        "TopOfStack": crash.top_of_stack, "DataPageAddress": 0, "DataPageOffset": 0,
        "DataPageSize": 0, "DebuggerDataOffset": offsets["kdbg"], "DebuggerDataSize": len(kdbg),
        "DataBlocksOffset": offsets["blocks"], "DataBlocksCount": len(blocks)})
    written = {"context", "exception", "prcb", "process", "thread", "stack", "driver list",
               "debugger data", "data blocks"}
    spec = DumpSpec(build=build, dtb=crash.dump_dtb, processors=crash.processors,
                    machine_type=X86.machine_types[0], pae=True, bugcheck_code=crash.bugcheck_code,
                    bugcheck_parameters=tuple(crash.bugcheck_parameters),
                    kd_debugger_data_block=kdbg_address, ps_active_process_head=active_head,
                    ps_loaded_module_list=module_list, system_time=crash.system_time,
                    system_uptime=crash.system_uptime, context=context,
                    exception_address=crash.context_eip,
                    extra_fields={"MiniDumpFields": sum(bit for bit, name in TRIAGE_FIELD_BITS
                                                        if name in written),
                                  "WriterStatus": 0})
    header = build_header(spec, DUMP_TYPE_TRIAGE, [], file_size)
    body = [header, triage, bytes(-(triage_at + TRIAGE_DUMP32_SIZE) % 8)] + \
        tail.body(parts)
    with open(path, "wb" if overwrite else "xb") as out:
        out.write(b"".join(body))
    return {"path": path, "kernel_base": crash.kernel_base, "kdbg": kdbg_address,
            "active_head": active_head, "processor_block": processor_block,
            "prcb": crash.prcb_address, "thread": crash.thread_address,
            "process": crash.process_address, "top_of_stack": crash.top_of_stack,
            "stack_size": crash.stack_size, "eip": crash.context_eip, "esp": crash.context_esp,
            "drivers": [(d.name, d.base, d.size) for d in crash.drivers],
            "sizes": (prcb_type.size, process_type.size, thread_type.size)}
