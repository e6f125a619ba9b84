"""Plant a scenario's processes and threads into a forged kernel, as a real kernel lays them out.

Why: the process/thread decoders and their Volatility-3 agreement tests need dumps whose every
process and thread is known. `build_scenario(spec, build)` takes a `ScenarioSpec`
(`pykd_ext.forge.scenario`) and one shipped build, forges the machine (`forge_machine`) and
writes, with offsets/bits/enum values from that build's symbol data (`kernel_memory.BuildFacts`):

- per process: a nonpaged-pool allocation (`_POOL_HEADER` tag "Proc", `_OBJECT_HEADER` with the
  encoded type index, `_EPROCESS`), its own page tables sharing the kernel half, a user DTB
  (KVA shadow), PEB + process parameters in user memory, a `_TOKEN` (as `_EX_FAST_REF`), the
  audit image path, session membership, handle table, job, protection, minimal/pico/secure/frozen
  flags, WoW64 PEB;
- per thread: pool "Thre" + `_OBJECT_HEADER` + `_ETHREAD`: state, wait reason and mode, wait
  blocks on dispatcher objects, priorities, affinity, times, stack bounds, start addresses, both
  thread lists (KPROCESS and EPROCESS);
- globals: `PsActiveProcessHead` (every process but the DKOM-unlinked one), `PspCidTable`
  (every process and thread), `PsInitialSystemProcess`, `PsIdleProcess`, `KiProcessorBlock` and
  one `_KPCR`/`_KPRCB` per processor (CurrentThread, NextThread, IdleThread),
  `KeNumberProcessors`, `ObTypeIndexTable` + `_OBJECT_TYPE`s, `ObHeaderCookie`,
  `PsLoadedModuleList` with ntoskrnl's entry, `KUSER_SHARED_DATA` (kernel and user mappings),
  and the KDBG fields that point at them.

What Volatility 3's Windows stack needs from a dump, and so the forge provides: the kernel DTB
with a PML4 self-map found by its page-map scan in low memory, `KUSER_SHARED_DATA` at its fixed
kernel address with a valid `NtMajorVersion`, the PE image with the RSDS record within 4 MiB of
its base (pdbscan's limit), pool headers/object headers whose tags, pool types, block sizes and
encoded type indexes pass psscan/thrdscan, and `_EPROCESS`/`_ETHREAD` values that pass its
`is_valid` checks (create times, PIDs divisible by 4, a DTB, kernel-mode thread list links).

The result is a `Planted` record: every fact the decoders should report, in the JSON keys of the
`ps`/`threads` commands, so tests compare against what was planted, not against our reader.
"""
import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union, cast

from pykd_ext.forge.paths import dos_path
from pykd_ext.forge.builds import BuildChoice, resolve_build
from pykd_ext.forge.dumpfile import write_bitmap_dump, write_full_dump
from pykd_ext.forge.handle_tables import levels_for, link_entry_pages
from pykd_ext.forge.kernel_image import (IMAGE_SCN_CNT_CODE, IMAGE_SCN_CNT_INITIALIZED_DATA,
                                         IMAGE_SCN_MEM_EXECUTE, IMAGE_SCN_MEM_READ,
                                         IMAGE_SCN_MEM_WRITE, Section)
from pykd_ext.forge.kernel_memory import (MODES, WAIT_ALL, WAIT_ANY, Arena, BuildFacts,
                                          KernelMemory)
from pykd_ext.forge.machine import ForgedMachine, forge_machine, rewrite_kdbg
from pykd_ext.forge.pagetables import PAGE_2M, PageTables, canonical
from pykd_ext.forge.physmem import pc_memory_map
from pykd_ext.forge.ram_budget import scenario_ram_bytes
from pykd_ext.forge.scenario import ProcessSpec, ScenarioSpec, ThreadSpec
from pykd_ext.memory.space import PAGE_SIZE

# --- fixed addresses (choices of the forge, like a machine's ASLR draw) --------------------------

#: KUSER_SHARED_DATA's kernel and user addresses: fixed on every x64 Windows (ntddk.h
#: KI_USER_SHARED_DATA / MM_SHARED_USER_DATA_VA).
KUSER_KERNEL = 0xFFFFF78000000000
KUSER_USER = 0x7FFE0000
#: IMAGE_FILE_MACHINE_I386 (PE format specification): the WoW64 machine.
MACHINE_I386 = 0x014C
#: The sentinel Windows keeps in ObTypeIndexTable[1].
TYPE_INDEX_SENTINEL = 0xBAD0B0B0
#: The executive object types the forge creates, in ObTypeIndexTable order from index 2.
OBJECT_TYPES = ("Type", "Directory", "SymbolicLink", "Token", "Job", "Process", "Thread",
                "Partition", "UserApcReserve", "IoCompletionReserve", "DebugObject", "Event",
                "Mutant", "Callback", "Semaphore", "Timer")
#: Pool tags (four ASCII bytes; Windows 7 sets the high bit of the last byte on "protected"
#: allocations of processes and threads — poolscanner's "Pro\\xe3"/"Thr\\xe5").
PROCESS_TAG = b"Proc"
THREAD_TAG = b"Thre"
#: `_POOL_HEADER.PoolType` of an in-use nonpaged allocation as Vista and later record it (even
#: and non-zero; a paged allocation's value is odd, a free block's 0 — the reading Volatility's
#: POOL_HEADER_VISTA applies).
NONPAGED_POOL_HEADER_TYPE = 2
#: A kernel thread's stack: 24 KiB (KERNEL_STACK_SIZE in the WDK's ntddk.h, x64: 0x6000).
KERNEL_STACK_SIZE = 0x6000
#: ObHeaderCookie the forged kernels draw (one byte is used).
HEADER_COOKIE = 0x2C
#: MmSystemRangeStart, MmHighestUserAddress, MmUserProbeAddress of x64 Windows (8 TiB / 128 TiB
#: user space layouts share these values: the top of the canonical lower half).
KERNEL_SPACE_START = 0xFFFF800000000000
HIGHEST_USER_ADDRESS = 0x7FFFFFFEFFFF
USER_PROBE_ADDRESS = 0x7FFFFFFF0000

#: Kernel virtual bases (nonpaged pool, thread stacks) per build family.
POOL_BASE = {6: 0xFFFFFA8001A00000, 10: 0xFFFFB30C8A000000}
STACK_BASE = {6: 0xFFFFF88003000000, 10: 0xFFFFF60B4D000000}
#: Where process PEBs go (each process its own address space; varied so tests can tell them apart).
PEB_BASE = 0x000000A21E400000
PEB_STRIDE = 0x30000

#: Globals the builder writes (besides the machine's own); SizeOfImage must cover them.
GLOBALS = ("PsActiveProcessHead", "PspCidTable", "PsInitialSystemProcess", "PsIdleProcess",
           "KiProcessorBlock", "KeNumberProcessors", "ObTypeIndexTable", "PsLoadedModuleList",
           "NtBuildNumber", "PsProcessType", "PsThreadType", "SeTokenObjectType", "PsJobType",
           "MmSystemRangeStart", "MmHighestUserAddress", "MmUserProbeAddress", "KiInitialThread")
OPTIONAL_GLOBALS = ("ObHeaderCookie", "KiKvaShadow")
#: Kernel functions scenario threads may start at (RVAs from the ISF).
START_SYMBOLS = ("KeBalanceSetManager", "ExpWorkerThread", "KeSwapProcessOrStack",
                 "PspSystemThreadStartup")

#: Dispatcher object type (a `_KOBJECTS` constant) -> the structure that carries it.
DISPATCHER_TYPES = {"EventNotificationObject": "_KEVENT", "EventSynchronizationObject": "_KEVENT",
                    "SemaphoreObject": "_KSEMAPHORE", "MutantObject": "_KMUTANT",
                    "QueueObject": "_KQUEUE", "TimerNotificationObject": "_KTIMER",
                    "TimerSynchronizationObject": "_KTIMER", "GateObject": "_KGATE"}
DISPATCHER_TAGS = {"_KEVENT": b"Even", "_KSEMAPHORE": b"Sema", "_KMUTANT": b"Muta",
                   "_KQUEUE": b"Queu", "_KTIMER": b"Time", "_KGATE": b"Gate"}
MASK64 = (1 << 64) - 1
#: Kinds in the order the `ps` JSON lists them (contract of issue 4).
KIND_ORDER = ("system", "secure", "pico", "minimal", "protected", "exited", "frozen", "normal")
#: Audit/auth ids of the well-known logon sessions (ntifs.h SYSTEM_LUID, LOCALSERVICE_LUID).
SYSTEM_LUID = 0x3E7


def filetime_to_datetime(raw: int) -> Optional[datetime.datetime]:
    """A FILETIME as an aware UTC datetime (microsecond precision), None for 0."""
    if not raw:
        return None
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
    return epoch + datetime.timedelta(microseconds=raw // 10)


@dataclass
class Planted:
    """What a scenario put where: the facts decoders and independent readers must report."""

    build: str                                 # ISF version, e.g. "10.0.19041.1288"
    layout: str                                # layouts build id the forge used
    guid: str
    age: int
    kernel_base: int
    dtb: int
    processors: List[Dict[str, Any]] = field(default_factory=list)
    processes: List[Dict[str, Any]] = field(default_factory=list)
    globals: Dict[str, int] = field(default_factory=dict)
    sessions: Dict[int, int] = field(default_factory=dict)      # session id -> _MM_SESSION_SPACE
    # H4 (issue 12): PsLoadedModuleList / MmUnloadedDrivers facts (forge.kernel_modules)
    drivers: List[Dict[str, Any]] = field(default_factory=list)
    unloaded_drivers: List[Dict[str, Any]] = field(default_factory=list)
    # H10 (issue 17): ready queues and the clock increment planted (forge.scheduling)
    scheduling: Dict[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    path: Optional[str] = None
    kind: Optional[str] = None                 # dump kind once written

    def process(self, pid: int) -> Dict[str, Any]:
        for proc in self.processes:
            if proc["pid"] == pid:
                return proc
        raise KeyError(pid)

    def by_name(self, name: str) -> Dict[str, Any]:
        for proc in self.processes:
            if proc["name"] == name[:15]:
                return proc
        raise KeyError(name)

    def linked(self) -> List[Dict[str, Any]]:
        """Processes on ActiveProcessLinks, in list order."""
        return [p for p in self.processes if p["linked"]]

    def threads(self) -> List[Dict[str, Any]]:
        return [t for p in self.processes for t in p["threads"]]

    def thread(self, tid: int) -> Dict[str, Any]:
        for thread in self.threads():
            if thread["tid"] == tid:
                return thread
        raise KeyError(tid)


class _Builder:
    """One build's writer for one scenario (see the module docstring)."""

    def __init__(self, spec: ScenarioSpec, choice: BuildChoice) -> None:
        self.spec = spec
        self.choice = choice
        table = choice.table()
        layouts = choice.layouts()
        self.facts = BuildFacts(table, layouts)
        self.family = 10 if choice.build >= 10000 else 6
        self._validate()
        symbols = GLOBALS + START_SYMBOLS + tuple(
            s for s in OPTIONAL_GLOBALS if self.facts.has_symbol(s))
        size = max(table.rva(s) for s in symbols + ("KdDebuggerDataBlock", "MmPfnDatabase"))
        size = -(-(size + 0x1000) // PAGE_2M) * PAGE_2M
        ram = scenario_ram_bytes(spec, self.facts, size)     # sized from the scenario
        self.machine: ForgedMachine = forge_machine(
            build=choice.build, table=table, memory_map=pc_memory_map(ram),
            processors=spec.processors, bugcheck_code=spec.bugcheck_code,
            bugcheck_parameters=(0, 0, 0, 0), sections=_sections(size), extra_symbols=symbols,
            kernel_large_pages=False)
        self.machine.spec.system_time = spec.dump_time
        self.machine.spec.system_uptime = spec.dump_time - spec.boot_time
        self.pt = self.machine.pt
        self.mem = KernelMemory(self.pt, self.facts)
        self.pool = Arena(self.pt, POOL_BASE[self.family])
        self.stacks_base = STACK_BASE[self.family]
        self.planted = Planted(build=choice.version, layout=layouts.build_id, guid=table.guid,
                               age=table.age, kernel_base=self.machine.kernel.base,
                               dtb=self.pt.dtb)
        self.types: Dict[str, int] = {}            # object type name -> _OBJECT_TYPE address
        self.image_bases: Dict[int, int] = {}      # PID -> the exe's base (PEB.ImageBaseAddress)
        self.type_index: Dict[str, int] = {}
        self.eprocess: Dict[int, int] = {}          # pid -> EPROCESS
        self.ethread: Dict[int, int] = {}           # tid -> ETHREAD
        self.headers: Dict[int, int] = {}           # object body -> object header
        self.tokens: Dict[int, int] = {}            # pid -> token body
        self.spaces: Dict[int, PageTables] = {}
        self.waiters: Dict[int, List[int]] = {}     # dispatcher object -> wait-list entries
        self.kobjects = self.facts.enum("_KOBJECTS")
        self.states = self.facts.enum("_KTHREAD_STATE")
        self.reasons = self.facts.enum("_KWAIT_REASON")
        self.cookie = HEADER_COOKIE if self.facts.has_symbol("ObHeaderCookie") else None

    # --- checks --------------------------------------------------------------------------------

    def _validate(self) -> None:
        cids: Dict[int, str] = {}
        running: Dict[int, int] = {}
        for proc in self.spec.processes:
            items = [(proc.pid, "process %s" % proc.name)]
            items += [(t.tid, "thread %d of %s" % (t.tid, proc.name)) for t in proc.threads]
            for cid, what in items:
                if cid <= 0 or cid % 4 or cid % 1024 == 0:
                    raise ValueError("%s: client id %d is not a valid handle value" % (what, cid))
                if cid in cids:
                    raise ValueError("%s reuses client id %d of %s" % (what, cid, cids[cid]))
                cids[cid] = what
            for t in proc.threads:
                if t.running_on is not None:
                    if t.running_on in running or not 0 <= t.running_on < self.spec.processors:
                        raise ValueError("thread %d: processor %r taken or absent"
                                         % (t.tid, t.running_on))
                    running[t.running_on] = t.tid
                if t.standby_on is not None and not 0 <= t.standby_on < self.spec.processors:
                    raise ValueError("thread %d: no processor %d" % (t.tid, t.standby_on))
                if len(t.wait_objects) > 4:
                    raise ValueError("thread %d waits on more than 4 objects" % t.tid)

    # --- small helpers -------------------------------------------------------------------------

    def sym(self, name: str) -> int:
        return self.machine.symbol(name)

    def pool_object(self, tag: bytes, body_type: str, type_name: Optional[str],
                    body_size: Optional[int] = None, pointer_count: int = 1,
                    handle_count: int = 0) -> int:
        """A nonpaged pool block: `_POOL_HEADER`, optionally an `_OBJECT_HEADER` of an executive
        object type, then the body (which ends the block, as Windows 7's bottom-up scan needs).
        Returns the body address."""
        facts, mem = self.facts, self.mem
        header_size = facts.size("_POOL_HEADER")
        object_header = facts.offset("_OBJECT_HEADER", "Body") if type_name else 0
        body = body_size if body_size is not None else facts.size(body_type)
        total = -(-(header_size + object_header + body) // 16) * 16
        block = self.pool.alloc(total, 16)
        mem.put("_POOL_HEADER", block, "BlockSize", total // 16)
        mem.put("_POOL_HEADER", block, "PoolType", NONPAGED_POOL_HEADER_TYPE)
        pool_tag = bytearray(tag)
        if self.family == 6 and self.choice.build < 9200 and tag in (PROCESS_TAG, THREAD_TAG):
            pool_tag[3] |= 0x80                        # Windows 7: protected allocation bit
        mem.put("_POOL_HEADER", block, "PoolTag", int.from_bytes(bytes(pool_tag), "little"))
        address = block + header_size + object_header
        if type_name:
            header = block + header_size
            mem.put("_OBJECT_HEADER", header, "PointerCount", pointer_count)
            mem.put("_OBJECT_HEADER", header, "HandleCount", handle_count)
            mem.put("_OBJECT_HEADER", header, "TypeIndex", self.encoded_type_index(type_name,
                                                                                  header))
            mem.put("_OBJECT_HEADER", header, "InfoMask", 0)
            self.headers[address] = header
        return address

    def encoded_type_index(self, type_name: str, header: int) -> int:
        """TypeIndex as stored: Windows 10 XORs it with ObHeaderCookie and the header address'
        second byte (what nt!ObGetObjectType undoes)."""
        index = self.type_index[type_name]
        if self.cookie is None:
            return index
        return (index ^ self.cookie ^ (header >> 8)) & 0xFF

    def raw_block(self, type_name: str, size: Optional[int] = None) -> int:
        return self.pool.alloc(size if size is not None else self.facts.size(type_name), 16)

    # --- globals ---------------------------------------------------------------------------------

    def plant_kuser(self) -> int:
        facts, mem = self.facts, self.mem
        self.pt.map_new(KUSER_KERNEL, PAGE_SIZE, user=False)
        parts = [int(p) for p in self.choice.version.split(".")]
        mem.put("_KUSER_SHARED_DATA", KUSER_KERNEL, "NtMajorVersion", parts[0])
        mem.put("_KUSER_SHARED_DATA", KUSER_KERNEL, "NtMinorVersion", parts[1])
        mem.put_if("_KUSER_SHARED_DATA", KUSER_KERNEL, "NtBuildNumber", parts[2])
        mem.put("_KUSER_SHARED_DATA", KUSER_KERNEL, "NtProductType", 1)   # NtProductWinNt
        mem.put_if("_KUSER_SHARED_DATA", KUSER_KERNEL, "ActiveProcessorCount",
                   self.spec.processors)
        for name, value in (("SystemTime", self.spec.dump_time),
                            ("InterruptTime", self.spec.dump_time - self.spec.boot_time)):
            base = KUSER_KERNEL + facts.offset("_KUSER_SHARED_DATA", name)
            mem.put("_KSYSTEM_TIME", base, "LowPart", value & 0xFFFFFFFF)
            mem.put("_KSYSTEM_TIME", base, "High1Time", value >> 32)
            mem.put("_KSYSTEM_TIME", base, "High2Time", value >> 32)
        # TickCountMultiplier: 2^24 * (clock interval in 100 ns units / 10^4) for a 15.625 ms tick
        mem.put("_KUSER_SHARED_DATA", KUSER_KERNEL, "TickCountMultiplier", 0x0FA00000)
        uptime_ticks = (self.spec.dump_time - self.spec.boot_time) // 156250
        mem.put("_KUSER_SHARED_DATA", KUSER_KERNEL, "TickCountQuad", uptime_ticks)
        self.planted.globals["KUSER_SHARED_DATA"] = KUSER_KERNEL
        self.planted.globals["TickCount"] = uptime_ticks
        return self.pt.translate(KUSER_KERNEL) or 0

    def plant_object_types(self) -> None:
        facts, mem = self.facts, self.mem
        table = self.sym("ObTypeIndexTable")
        mem.u64(table + 8, TYPE_INDEX_SENTINEL)
        for n, name in enumerate(OBJECT_TYPES):
            self.type_index[name] = n + 2
        if self.cookie is not None:
            mem.write(self.sym("ObHeaderCookie"), bytes([self.cookie, 0, 0, 0]))
        for name in OBJECT_TYPES:
            body = self.pool_object(b"ObjT", "_OBJECT_TYPE", "Type", pointer_count=2)
            mem.put("_OBJECT_TYPE", body, "Index", self.type_index[name])
            buffer = self.pool.alloc(len(name) * 2 + 2, 8)
            mem.unicode_string("_OBJECT_TYPE", body, "Name", name, buffer)
            mem.list_init(body + facts.offset("_OBJECT_TYPE", "TypeList"))
            mem.u64(table + 8 * self.type_index[name], body)
            self.types[name] = body
        for symbol, name in (("PsProcessType", "Process"), ("PsThreadType", "Thread"),
                             ("SeTokenObjectType", "Token"), ("PsJobType", "Job")):
            mem.u64(self.sym(symbol), self.types[name])
            self.planted.globals[symbol] = self.sym(symbol)
        self.planted.globals["ObTypeIndexTable"] = table

    def plant_loaded_modules(self) -> None:
        facts, mem = self.facts, self.mem
        entry = self.raw_block("_LDR_DATA_TABLE_ENTRY")
        kernel = self.machine.kernel
        mem.put("_LDR_DATA_TABLE_ENTRY", entry, "DllBase", kernel.base)
        mem.put("_LDR_DATA_TABLE_ENTRY", entry, "EntryPoint", kernel.entry_point)
        mem.put("_LDR_DATA_TABLE_ENTRY", entry, "SizeOfImage", kernel.size_of_image)
        full = "\\SystemRoot\\system32\\ntoskrnl.exe"
        buf = self.pool.alloc(2 * (len(full) + len("ntoskrnl.exe")) + 8, 8)
        nxt = mem.unicode_string("_LDR_DATA_TABLE_ENTRY", entry, "FullDllName", full, buf)
        mem.unicode_string("_LDR_DATA_TABLE_ENTRY", entry, "BaseDllName", "ntoskrnl.exe", nxt)
        head = self.sym("PsLoadedModuleList")
        mem.list_link(head, [entry + facts.offset("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")])
        mem.list_init(entry + facts.offset("_LDR_DATA_TABLE_ENTRY", "InMemoryOrderLinks"))
        self.planted.globals["PsLoadedModuleList"] = head
        self.planted.globals["ntoskrnl_ldr_entry"] = entry

    # --- handle tables -----------------------------------------------------------------------

    def handle_table(self, entries: Dict[int, int], pid: Optional[int], owner: int,
                     access: int) -> int:
        """A `_HANDLE_TABLE` whose entry `index` (handle value / 4) points at `entries[index]`
        (an object header for process tables, an object body for PspCidTable). One level-0
        page holds PAGE_SIZE / sizeof(_HANDLE_TABLE_ENTRY) entries (the first one of each page
        is never handed out); more entries use one or two levels of pointer pages
        (`handle_tables`), every entry page up to the highest index allocated, as the kernel
        grows a table."""
        facts, mem = self.facts, self.mem
        table = self.pool_object(b"Obtb", "_HANDLE_TABLE", None)
        entry_size = facts.size("_HANDLE_TABLE_ENTRY")
        per_page = PAGE_SIZE // entry_size
        top = max(entries) if entries else 0
        pages = top // per_page + 1
        leaf_pages = [self.pool.page() for _ in range(pages)]
        encode = self._entry_encoder()
        leaves = [bytearray(PAGE_SIZE) for _ in range(pages)]
        for index, target in entries.items():
            if index % per_page == 0:              # the first entry of a page: never a handle
                raise ValueError("handle index %d is reserved" % index)
            at = (index % per_page) * entry_size
            leaves[index // per_page][at:at + 16] = encode(target, access)
        for page, data in zip(leaf_pages, leaves):
            mem.write(page, bytes(data))
        pointer_size = facts.field("_HANDLE_TABLE", "TableCode").size
        levels = levels_for(pages, PAGE_SIZE // pointer_size)
        code = link_entry_pages(dict(enumerate(leaf_pages)), levels, pointer_size,
                                self.pool.page, mem.write)
        mem.put("_HANDLE_TABLE", table, "TableCode", code)
        mem.put("_HANDLE_TABLE", table, "NextHandleNeedingPool", pages * per_page * 4)
        mem.put_if("_HANDLE_TABLE", table, "HandleCount", len(entries))
        if pid is not None:
            mem.put_if("_HANDLE_TABLE", table, "UniqueProcessId", pid)
        if owner:
            mem.put_if("_HANDLE_TABLE", table, "QuotaProcess", owner)
        mem.list_init(table + facts.offset("_HANDLE_TABLE", "HandleTableList"))
        return table

    def _entry_encoder(self) -> Any:
        """encode(object, access) -> the 16 bytes of a `_HANDLE_TABLE_ENTRY`, bit positions from
        the build (8.1+: ObjectPointerBits/Unlocked/RefCnt/GrantedAccessBits; 7: Object with
        the low "unlocked" bit, GrantedAccess)."""
        facts = self.facts
        if facts.has("_HANDLE_TABLE_ENTRY", "ObjectPointerBits"):
            pointer = facts.field("_HANDLE_TABLE_ENTRY", "ObjectPointerBits")
            unlocked = facts.field("_HANDLE_TABLE_ENTRY", "Unlocked")
            refcnt = facts.field("_HANDLE_TABLE_ENTRY", "RefCnt")
            granted = facts.field("_HANDLE_TABLE_ENTRY", "GrantedAccessBits")
            assert (refcnt.bit_length is not None and granted.bit_position is not None   # bitfields
                    and granted.bit_length is not None)
            ref_max = (1 << refcnt.bit_length) - 1
            high_shift = 8 * (granted.offset - 8) + granted.bit_position
            granted_mask = (1 << granted.bit_length) - 1

            def encode_new(target: int, access: int) -> bytes:
                # bitfields: their bit_position is set (mypy does not narrow inside a closure)
                low = (((target & 0xFFFFFFFFFFFF) >> 4) << cast(int, pointer.bit_position)
                       | 1 << cast(int, unlocked.bit_position)
                       | (ref_max >> 1) << cast(int, refcnt.bit_position))
                high = (access & granted_mask) << high_shift
                return (low & MASK64).to_bytes(8, "little") + high.to_bytes(8, "little")
            return encode_new
        access_at = facts.offset("_HANDLE_TABLE_ENTRY", "GrantedAccess") - 8

        def encode_old(target: int, access: int) -> bytes:
            high = bytearray(8)
            high[access_at:access_at + 4] = (access & 0xFFFFFFFF).to_bytes(4, "little")
            return ((target | 1) & MASK64).to_bytes(8, "little") + bytes(high)
        return encode_old

    # --- processes ---------------------------------------------------------------------------

    def allocate_processes(self) -> None:
        for proc in self.spec.processes:
            handles = 1 if proc.exited else max(proc.handles, 0)
            self.eprocess[proc.pid] = self.pool_object(PROCESS_TAG, "_EPROCESS", "Process",
                                                       pointer_count=32 + len(proc.threads),
                                                       handle_count=handles)
            for thread in proc.threads:
                self.ethread[thread.tid] = self.pool_object(THREAD_TAG, "_ETHREAD", "Thread",
                                                            pointer_count=4, handle_count=1)

    def plant_idle(self) -> Tuple[int, List[int]]:
        """The Idle process (PID 0, not in pool, not on any list) and one idle thread per
        processor (processor 0's is KiInitialThread inside the kernel image)."""
        facts, mem = self.facts, self.mem
        idle = self.raw_block("_EPROCESS")
        mem.put("_EPROCESS", idle, "Pcb.Header.Type", self.kobjects["ProcessObject"])
        mem.put("_EPROCESS", idle, "Pcb.DirectoryTableBase", self.pt.dtb)
        mem.put_bytes("_EPROCESS", idle, "ImageFileName", b"Idle")
        mem.list_init(idle + facts.offset("_EPROCESS", "ThreadListHead"))
        mem.list_init(idle + facts.offset("_EPROCESS", "ActiveProcessLinks"))
        threads = []
        for cpu in range(self.spec.processors):
            thread = self.sym("KiInitialThread") if cpu == 0 else self.raw_block("_ETHREAD")
            mem.put("_ETHREAD", thread, "Tcb.Header.Type", self.kobjects["ThreadObject"])
            mem.put("_ETHREAD", thread, "Tcb.State", self.states["Ready"])
            mem.put("_ETHREAD", thread, "Tcb.Process", idle)
            mem.put("_ETHREAD", thread, "Tcb.ApcState.Process", idle)
            mem.put("_ETHREAD", thread, "Tcb.SystemThread", 1)
            mem.put_if("_ETHREAD", thread, "Tcb.NextProcessor", cpu)
            threads.append(thread)
        mem.u64(self.sym("PsIdleProcess"), idle)
        self.planted.globals["PsIdleProcess"] = self.sym("PsIdleProcess")
        self.planted.globals["IdleProcess"] = idle
        return idle, threads

    def address_space(self, proc: ProcessSpec) -> PageTables:
        """A process' own page tables; the kernel half is copied in at the end (`share_kernel`).
        PML4 frames stay out of the windows Volatility scans first for "recent Windows" DTBs,
        so its DTB scan settles on the kernel's (System's) directory, as on a real machine."""
        phys = self.pt.phys
        while True:
            pfn = phys.allocate(1)
            pa = pfn * PAGE_SIZE
            if not any(start <= pa < start + size for start, size in VOLATILITY_DTB_WINDOWS):
                break
        space = PageTables(phys, self.pt.ptes, pml4_pfn=pfn)
        self.spaces[proc.pid] = space
        return space

    def share_kernel(self) -> None:
        """Copy the kernel's upper-half PML4 entries into every process' PML4 (not the self-map)."""
        kernel = [(index, canonical(index << 39)) for index in range(256, 512)]
        entries = [(index, va, self.pt.get_pte_raw(va, "PML4E")) for index, va in kernel]
        entries = [(index, va, entry) for index, va, entry in entries if entry]
        for space in self.spaces.values():
            for index, va, entry in entries:
                if index != space.self_map_index:
                    space.set_pte_raw(va, cast(int, entry), "PML4E")

    def plant_user_memory(self, proc: ProcessSpec, index: int, space: PageTables,
                          kuser_pa: int) -> Tuple[int, int]:
        """PEB, process parameters and (WoW64) the 32-bit PEB in the process' user memory."""
        facts = self.facts
        umem = KernelMemory(space, facts)
        peb = PEB_BASE + index * PEB_STRIDE
        space.map_new(peb, PAGE_SIZE)
        space.map(KUSER_USER, kuser_pa, PAGE_SIZE, user=True, writable=False)
        params = peb + 0x20000
        space.map_new(params, PAGE_SIZE)
        image_base = 0x00007FF6_4A3B0000 + index * 0x100000
        umem.put("_PEB", peb, "ImageBaseAddress", image_base)
        self.image_bases[proc.pid] = image_base
        umem.put("_PEB", peb, "ProcessParameters", params)
        umem.put_if("_PEB", peb, "OSMajorVersion", int(self.choice.version.split(".")[0]))
        umem.put_if("_PEB", peb, "OSMinorVersion", int(self.choice.version.split(".")[1]))
        umem.put_if("_PEB", peb, "OSBuildNumber", self.choice.build)
        umem.put_if("_PEB", peb, "SessionId", proc.session or 0)
        size = facts.size("_RTL_USER_PROCESS_PARAMETERS")
        umem.put("_RTL_USER_PROCESS_PARAMETERS", params, "Length", size)
        umem.put("_RTL_USER_PROCESS_PARAMETERS", params, "MaximumLength", size)
        nxt = params + size
        nxt = umem.unicode_string("_RTL_USER_PROCESS_PARAMETERS", params, "ImagePathName",
                                  dos_path(proc.image_path or proc.name), nxt)
        umem.unicode_string("_RTL_USER_PROCESS_PARAMETERS", params, "CommandLine",
                            proc.command_line or proc.name, nxt)
        peb32 = 0
        if proc.wow64:
            peb32 = peb + PAGE_SIZE
            space.map_new(peb32, PAGE_SIZE)
            umem.write(peb32 + 8, (image_base & 0xFFFFFFFF).to_bytes(4, "little"))
        return peb, peb32

    def plant_process(self, proc: ProcessSpec, index: int, kuser_pa: int,
                      sessions: Dict[int, int]) -> Dict[str, Any]:
        facts, mem = self.facts, self.mem
        ep = self.eprocess[proc.pid]
        record: Dict[str, Any] = {"address": ep, "pid": proc.pid, "ppid": proc.ppid,
                                  "name": proc.name[:15], "linked": not proc.unlinked,
                                  "threads": []}
        put = mem.put
        put("_EPROCESS", ep, "Pcb.Header.Type", self.kobjects["ProcessObject"])
        put("_EPROCESS", ep, "Pcb.Header.Size", facts.size("_KPROCESS") // 4)
        mem.list_init(ep + facts.offset("_EPROCESS", "Pcb.Header.WaitListHead"))
        put("_EPROCESS", ep, "Pcb.BasePriority", proc.base_priority)
        if proc.system or not proc.user_mode:
            dtb = self.pt.dtb
            self.spaces.pop(proc.pid, None)
        else:
            dtb = self.address_space(proc).dtb
        put("_EPROCESS", ep, "Pcb.DirectoryTableBase", dtb)
        record["dtb"] = dtb
        user_dtb = 0
        if (self.spec.kva_shadow and proc.user_mode and not proc.system
                and facts.has("_EPROCESS", "Pcb.UserDirectoryTableBase")):
            shadow = PageTables(self.pt.phys, self.pt.ptes, self_map_index=None)
            user_dtb = shadow.dtb
            put("_EPROCESS", ep, "Pcb.UserDirectoryTableBase", user_dtb)
        record["user_dtb"] = user_dtb
        put("_EPROCESS", ep, "UniqueProcessId", proc.pid)
        put("_EPROCESS", ep, "InheritedFromUniqueProcessId", proc.ppid)
        put_name = (proc.name.encode("latin-1", "replace"))[:15]
        mem.put_bytes("_EPROCESS", ep, "ImageFileName", put_name)
        put("_EPROCESS", ep, "CreateTime", proc.create_time)
        put("_EPROCESS", ep, "ExitTime", proc.exit_time)
        put("_EPROCESS", ep, "ExitStatus", proc.exit_status)
        record.update(create_time_raw=proc.create_time, exit_time_raw=proc.exit_time,
                      exit_status=proc.exit_status)
        live_threads = [] if proc.exited else list(proc.threads)
        active = sum(1 for t in live_threads if t.state != "Terminated")
        put("_EPROCESS", ep, "ActiveThreads", active)
        record["threads_active"] = active
        record["threads_listed"] = len(live_threads)
        mem.put_if("_EPROCESS", ep, "HasAddressSpace", 1)
        if proc.exited:
            put("_EPROCESS", ep, "ProcessExiting", 1)
            put("_EPROCESS", ep, "ExitProcessReported", 1)
        # --- image path (SeAuditProcessCreationInfo -> OBJECT_NAME_INFORMATION) ---
        record["image_path"] = proc.image_path
        if proc.image_path is not None:
            size = facts.size("_OBJECT_NAME_INFORMATION")
            info = self.pool.alloc(size + 2 * len(proc.image_path) + 2, 16)
            mem.unicode_string("_OBJECT_NAME_INFORMATION", info, "Name", proc.image_path,
                               info + size)
            put("_EPROCESS", ep, "SeAuditProcessCreationInfo.ImageFileName", info)
        # --- session ---
        record["session_id"] = proc.session
        if proc.session is not None:
            put("_EPROCESS", ep, "Session", sessions[proc.session])
            put("_EPROCESS", ep, "ProcessInSession", 1)
        # --- token, job ---
        token = self.plant_token(proc)
        put("_EPROCESS", ep, "Token.Object", token)
        put("_EPROCESS", ep, "Token.RefCnt", 0xA)
        record["token"] = token
        record["job"] = 0
        if proc.job:
            job = self.pool_object(b"Job ", "_EJOB", "Job", pointer_count=3, handle_count=1)
            head = job + facts.offset("_EJOB", "ProcessListHead")
            mem.list_link(head, [ep + facts.offset("_EPROCESS", "JobLinks")])
            put("_EJOB", job, "ActiveProcesses", 1)
            put("_EJOB", job, "TotalProcesses", 1)
            mem.list_init(job + facts.offset("_EJOB", "JobLinks"))
            put("_EPROCESS", ep, "Job", job)
            record["job"] = job
        # --- user memory ---
        record["peb"] = 0
        record["peb32"] = 0
        record["wow64"] = False
        if proc.user_mode and not proc.system and not proc.exited:
            peb, peb32 = self.plant_user_memory(proc, index, self.spaces[proc.pid], kuser_pa)
            put("_EPROCESS", ep, "Peb", peb)
            record["peb"] = peb
            if proc.wow64:
                record["wow64"] = True
                record["peb32"] = peb32
                if facts.has_type("_EWOW64PROCESS"):
                    wow = self.raw_block("_EWOW64PROCESS")
                    put("_EWOW64PROCESS", wow, "Peb", peb32)
                    mem.put_if("_EWOW64PROCESS", wow, "Machine", MACHINE_I386)
                    put("_EPROCESS", ep, "WoW64Process", wow)
                else:
                    put("_EPROCESS", ep, "Wow64Process", peb32)
        # --- protection, flags, kind ---
        record["protection"] = self.plant_protection(proc, ep)
        record["signature_level"] = None           # builds without the fields: None
        record["section_signature_level"] = None
        if facts.has("_EPROCESS", "SignatureLevel"):
            put("_EPROCESS", ep, "SignatureLevel", proc.signature_level)
            put("_EPROCESS", ep, "SectionSignatureLevel", proc.section_signature_level)
            record["signature_level"] = proc.signature_level
            record["section_signature_level"] = proc.section_signature_level
        flags = []
        if proc.system:
            flags.append("system")
            mem.put_if("_EPROCESS", ep, "SystemProcess", 1)
        if proc.secure and facts.has("_EPROCESS", "Pcb.SecureState.SecureHandle"):
            put("_EPROCESS", ep, "Pcb.SecureState.SecureHandle", (proc.pid << 8) | 1)
            put("_EPROCESS", ep, "Pcb.SecureState.Flags.SecureProcess", 1)
            flags.append("secure")
        if proc.pico and facts.has("_EPROCESS", "PicoContext"):
            context = self.pool.alloc(0x100, 16)
            put("_EPROCESS", ep, "PicoContext", context)
            mem.put_if("_EPROCESS", ep, "PicoCreated", 1)
            flags.append("pico")
        if proc.minimal and facts.has("_EPROCESS", "Minimal"):
            put("_EPROCESS", ep, "Minimal", 1)
            flags.append("minimal")
        if record["protection"] is not None:
            flags.append("protected")
        if proc.exited:
            flags.append("exited")
        if (proc.frozen or proc.deep_frozen) and facts.has("_EPROCESS", "Pcb.FreezeCount"):
            put("_EPROCESS", ep, "Pcb.FreezeCount", 1)
            if proc.deep_frozen:
                put("_EPROCESS", ep, "Pcb.DeepFreeze", 1)
            flags.append("frozen")
        ordered = [k for k in KIND_ORDER if k in flags]
        record["kind_flags"] = ordered or ["normal"]
        record["kind"] = record["kind_flags"][0]
        record["deep_frozen"] = bool(proc.deep_frozen and "frozen" in flags)
        return record

    def plant_protection(self, proc: ProcessSpec, ep: int) -> Optional[Dict[str, Any]]:
        if not proc.protection:
            return None
        if not self.facts.has("_EPROCESS", "Protection.Type"):
            self.planted.notes.append("%s: build %s has no _PS_PROTECTION; %s not planted"
                                      % (proc.name, self.choice.version, proc.protection))
            return None
        kind, _, signer = proc.protection.partition("-")
        types = self.facts.enum("_PS_PROTECTED_TYPE")
        signers = self.facts.enum("_PS_PROTECTED_SIGNER")
        type_name = {"PPL": "PsProtectedTypeProtectedLight",
                     "PP": "PsProtectedTypeProtected"}[kind]
        signer_name = "PsProtectedSigner" + signer
        if signer_name not in signers:
            self.planted.notes.append("%s: build %s has no signer %s; not protected"
                                      % (proc.name, self.choice.version, signer))
            return None
        self.mem.put("_EPROCESS", ep, "Protection.Type", types[type_name])
        self.mem.put("_EPROCESS", ep, "Protection.Signer", signers[signer_name])
        self.mem.put("_EPROCESS", ep, "Protection.Audit", int(proc.protection_audit))
        level = types[type_name] | (int(proc.protection_audit) << 3) | (signers[signer_name] << 4)
        return {"type": type_name[len("PsProtectedType"):], "signer": signer,
                "audit": proc.protection_audit, "text": proc.protection, "level": level}

    def plant_token(self, proc: ProcessSpec) -> int:
        mem = self.mem
        token = self.pool_object(b"Toke", "_TOKEN", "Token", pointer_count=3, handle_count=0)
        types = self.facts.enum("_TOKEN_TYPE")
        mem.put("_TOKEN", token, "TokenType", types["TokenPrimary"])
        mem.put("_TOKEN", token, "SessionId", proc.session or 0)
        mem.put("_TOKEN", token, "TokenId.LowPart", 0x1000 + proc.pid)
        luid = SYSTEM_LUID if (proc.session in (None, 0)) else 0x5A000 + proc.pid
        mem.put("_TOKEN", token, "AuthenticationId.LowPart", luid)
        self.tokens[proc.pid] = token
        return token

    # --- threads -----------------------------------------------------------------------------

    def dispatcher_object(self, name: str) -> int:
        kind = DISPATCHER_TYPES.get(name)
        if kind is None or name not in self.kobjects:
            raise ValueError("no dispatcher object %r on build %s" % (name, self.choice.version))
        size = self.facts.size(kind) if self.facts.has_type(kind) else \
            self.facts.size("_DISPATCHER_HEADER") + 0x20
        obj = self.pool_object(DISPATCHER_TAGS[kind], kind, None, body_size=size)
        self.mem.put("_DISPATCHER_HEADER", obj, "Type", self.kobjects[name])
        self.mem.put("_DISPATCHER_HEADER", obj, "Size", size // 4)
        self.mem.list_init(obj + self.facts.offset("_DISPATCHER_HEADER", "WaitListHead"))
        if kind == "_KSEMAPHORE":
            self.mem.put("_KSEMAPHORE", obj, "Limit", 0x7FFFFFFF)
        return obj

    def resolve_state(self, thread: ThreadSpec) -> Optional[str]:
        if thread.state in self.states:
            return thread.state
        if thread.state == "GateWaitObsolete" and "GateWait" in self.states:
            return "GateWait"
        return None

    def plant_thread(self, proc: ProcessSpec, thread: ThreadSpec, ordinal: int,
                     running: Dict[int, int], standby: Dict[int, int]) -> Optional[Dict[str, Any]]:
        facts, mem = self.facts, self.mem
        state = self.resolve_state(thread)
        if state is None:
            self.planted.notes.append("thread %d: build %s has no state %s; not planted"
                                      % (thread.tid, self.choice.version, thread.state))
            return None
        reason = thread.wait_reason if thread.wait_reason in self.reasons else "UserRequest"
        if reason != thread.wait_reason:
            self.planted.notes.append("thread %d: build %s has no wait reason %s; %s planted"
                                      % (thread.tid, self.choice.version, thread.wait_reason,
                                         reason))
        et = self.ethread[thread.tid]
        ep = self.eprocess[proc.pid]
        put = mem.put
        put("_ETHREAD", et, "Tcb.Header.Type", self.kobjects["ThreadObject"])
        put("_ETHREAD", et, "Tcb.Header.Size", facts.size("_KTHREAD") // 4)
        mem.list_init(et + facts.offset("_ETHREAD", "Tcb.Header.WaitListHead"))
        put("_ETHREAD", et, "Tcb.State", self.states[state])
        put("_ETHREAD", et, "Tcb.WaitReason", self.reasons[reason])
        put("_ETHREAD", et, "Tcb.WaitMode", MODES[thread.wait_mode])
        put("_ETHREAD", et, "Tcb.Alertable", int(thread.alertable))
        put("_ETHREAD", et, "Tcb.Priority", thread.priority)
        put("_ETHREAD", et, "Tcb.BasePriority", thread.base_priority)
        put("_ETHREAD", et, "Tcb.IdealProcessor", thread.ideal_processor)
        mem.put_if("_ETHREAD", et, "Tcb.UserIdealProcessor", thread.ideal_processor)
        affinity = thread.affinity or ((1 << self.spec.processors) - 1)
        if facts.has("_ETHREAD", "Tcb.Affinity.Mask"):
            put("_ETHREAD", et, "Tcb.Affinity.Mask", affinity)
            mem.put_if("_ETHREAD", et, "Tcb.UserAffinity.Mask", affinity)
        else:                                      # Windows 11: pointers to _KAFFINITY_EX
            for member in ("Tcb.Affinity", "Tcb.UserAffinity"):
                block = self.raw_block("_KAFFINITY_EX")
                put("_KAFFINITY_EX", block, "Count", 1)
                put("_KAFFINITY_EX", block, "Size", facts.field("_KAFFINITY_EX", "Bitmap").size
                    // 8)
                put("_KAFFINITY_EX", block, "Bitmap[0]", affinity)
                put("_ETHREAD", et, member, block)
        put("_ETHREAD", et, "Tcb.ContextSwitches", thread.context_switches)
        put("_ETHREAD", et, "Tcb.KernelTime", thread.kernel_time)
        put("_ETHREAD", et, "Tcb.UserTime", thread.user_time)
        put("_ETHREAD", et, "Tcb.WaitTime", thread.wait_tick)
        put("_ETHREAD", et, "Tcb.Teb", thread.teb)
        put("_ETHREAD", et, "Tcb.Process", ep)
        put("_ETHREAD", et, "Tcb.ApcState.Process", ep)
        put("_ETHREAD", et, "Tcb.SystemThread", int(thread.system))
        top = self.stacks_base + (ordinal + 1) * 2 * KERNEL_STACK_SIZE
        stack = {"stack_base": top, "stack_limit": top - KERNEL_STACK_SIZE,
                 "stack_init": top - 0x1C0, "stack_current": top - 0x1C0 - 0x3A8 - 8 * (ordinal % 16)}
        put("_ETHREAD", et, "Tcb.StackBase", stack["stack_base"])
        put("_ETHREAD", et, "Tcb.StackLimit", stack["stack_limit"])
        put("_ETHREAD", et, "Tcb.InitialStack", stack["stack_init"])
        put("_ETHREAD", et, "Tcb.KernelStack", stack["stack_current"])
        put("_ETHREAD", et, "Cid.UniqueProcess", proc.pid)
        put("_ETHREAD", et, "Cid.UniqueThread", thread.tid)
        create = thread.create_time or proc.create_time or self.spec.boot_time
        put("_ETHREAD", et, "CreateTime", create)
        put("_ETHREAD", et, "ExitTime", thread.exit_time)
        put("_ETHREAD", et, "ExitStatus", thread.exit_status)
        start = thread.start_address
        if thread.start_symbol:
            start = self.sym(thread.start_symbol)
        put("_ETHREAD", et, "StartAddress", start)
        put("_ETHREAD", et, "Win32StartAddress", thread.win32_start_address)
        put("_ETHREAD", et, "ThreadInserted", 1)
        put("_ETHREAD", et, "ThreadIoPriority", thread.io_priority)
        put("_ETHREAD", et, "ThreadPagePriority", thread.page_priority)
        put("_ETHREAD", et, "ActiveImpersonationInfo", int(thread.impersonating))
        if state == "Terminated":
            put("_ETHREAD", et, "Terminated", 1)
        flags = []
        if thread.system:
            flags.append("system")
        if proc.pico and facts.has("_ETHREAD", "PicoContext"):
            put("_ETHREAD", et, "PicoContext", self.pool.alloc(0x80, 16))
            flags.append("pico")
        running_on = None
        if thread.running_on is not None:
            running_on = thread.running_on
            running[running_on] = et
            put("_ETHREAD", et, "Tcb.Running", 1)
        if thread.standby_on is not None:
            standby[thread.standby_on] = et
        cpu = running_on if running_on is not None else thread.standby_on
        if cpu is not None:
            mem.put_if("_ETHREAD", et, "Tcb.NextProcessor", cpu)
        waits = self.plant_waits(et, thread, state)
        return {"address": et, "tid": thread.tid, "pid": proc.pid, "process": ep,
                "state": state, "state_value": self.states[state], "wait_reason": reason,
                "wait_reason_value": self.reasons[reason], "wait_mode": thread.wait_mode,
                "alertable": thread.alertable, "wait_objects": waits,
                "priority": thread.priority, "base_priority": thread.base_priority,
                "io_priority": thread.io_priority, "page_priority": thread.page_priority,
                "ideal_processor": thread.ideal_processor, "affinity": affinity,
                "context_switches": thread.context_switches, "kernel_time": thread.kernel_time,
                "user_time": thread.user_time, "wait_start_tick": thread.wait_tick,
                "teb": thread.teb, "start_address": start,
                "win32_start_address": thread.win32_start_address,
                "start_symbol": thread.start_symbol,
                "create_time_raw": create, "exit_time_raw": thread.exit_time,
                "exit_status": thread.exit_status, "thread_flags": flags,
                "running_on": running_on, "standby_on": thread.standby_on,
                "impersonating": thread.impersonating, **stack}

    def plant_waits(self, et: int, thread: ThreadSpec, state: str) -> List[Dict[str, Any]]:
        facts, mem = self.facts, self.mem
        if state != "Waiting" or not thread.wait_objects:
            return []
        block_size = facts.size("_KWAIT_BLOCK")
        first = et + facts.offset("_ETHREAD", "Tcb.WaitBlock")
        active = facts.enum("_KWAIT_BLOCK_STATE").get("WaitBlockActive") \
            if self._has_enum("_KWAIT_BLOCK_STATE") else None
        out = []
        count = len(thread.wait_objects)
        for n, name in enumerate(thread.wait_objects):
            if name.startswith("Process:"):
                obj = self.eprocess[int(name.split(":", 1)[1])]
                type_name = "ProcessObject"
            else:
                obj = self.dispatcher_object(name)
                type_name = name
            block = first + n * block_size
            mem.put("_KWAIT_BLOCK", block, "Thread", et)
            mem.put("_KWAIT_BLOCK", block, "Object", obj)
            mem.put("_KWAIT_BLOCK", block, "WaitKey", n)
            mem.put("_KWAIT_BLOCK", block, "WaitType", WAIT_ALL if thread.wait_all else WAIT_ANY)
            if active is not None:
                mem.put("_KWAIT_BLOCK", block, "BlockState", active)
            if facts.has("_KWAIT_BLOCK", "NextWaitBlock"):
                mem.put("_KWAIT_BLOCK", block, "NextWaitBlock",
                        first + ((n + 1) % count) * block_size)
            entry = block + facts.offset("_KWAIT_BLOCK", "WaitListEntry")
            self.waiters.setdefault(obj, []).append(entry)
            out.append({"address": obj, "type": type_name,
                        "type_value": self.kobjects[type_name]})
        mem.put("_ETHREAD", et, "Tcb.WaitBlockList", first)
        mem.put_if("_ETHREAD", et, "Tcb.WaitBlockCount", count)
        return out

    def _has_enum(self, name: str) -> bool:
        try:
            self.facts.enum(name)
        except KeyError:
            return False
        return True

    def link_waiters(self) -> None:
        offset = self.facts.offset("_DISPATCHER_HEADER", "WaitListHead")
        for obj, entries in self.waiters.items():
            self.mem.list_link(obj + offset, entries)

    # --- processors --------------------------------------------------------------------------

    def plant_processors(self, running: Dict[int, int], standby: Dict[int, int],
                         idle_threads: List[int]) -> None:
        facts, mem = self.facts, self.mem
        block = self.sym("KiProcessorBlock")
        prcb_offset = facts.offset("_KPCR", "Prcb")
        for cpu in range(self.spec.processors):
            kpcr = self.pool.alloc(facts.size("_KPCR"), PAGE_SIZE)
            prcb = kpcr + prcb_offset
            mem.put("_KPCR", kpcr, "Self", kpcr)
            mem.put("_KPCR", kpcr, "CurrentPrcb", prcb)
            mem.put("_KPRCB", prcb, "Number", cpu)
            current = running.get(cpu, idle_threads[cpu])
            if current == idle_threads[cpu]:
                mem.put("_ETHREAD", current, "Tcb.State", self.states["Running"])
                mem.put("_ETHREAD", current, "Tcb.Running", 1)
            mem.put("_KPRCB", prcb, "CurrentThread", current)
            mem.put("_KPRCB", prcb, "NextThread", standby.get(cpu, 0))
            mem.put("_KPRCB", prcb, "IdleThread", idle_threads[cpu])
            mem.u64(block + 8 * cpu, prcb)
            self.planted.processors.append({"number": cpu, "kpcr": kpcr, "prcb": prcb,
                                            "current_thread": current,
                                            "next_thread": standby.get(cpu, 0),
                                            "idle_thread": idle_threads[cpu]})
        mem.write(self.sym("KeNumberProcessors"), self.spec.processors.to_bytes(4, "little"))
        self.planted.globals["KiProcessorBlock"] = block
        self.planted.globals["KeNumberProcessors"] = self.sym("KeNumberProcessors")

    # --- sessions ------------------------------------------------------------------------------

    def plant_sessions(self) -> Dict[int, int]:
        facts, mem = self.facts, self.mem
        sessions: Dict[int, int] = {}
        for session in sorted({p.session for p in self.spec.processes if p.session is not None}):
            space = self.pool_object(b"MmSt", "_MM_SESSION_SPACE", None)
            mem.put("_MM_SESSION_SPACE", space, "SessionId", session)
            mem.put("_MM_SESSION_SPACE", space, "ReferenceCount", 1)
            mem.put_if("_MM_SESSION_SPACE", space, "Session", space)
            mem.list_init(space + facts.offset("_MM_SESSION_SPACE", "WsListEntry"))
            sessions[session] = space
        self.planted.sessions = dict(sessions)
        return sessions

    # --- the whole scenario --------------------------------------------------------------------

    def build(self) -> Tuple[ForgedMachine, Planted]:
        mem = self.mem
        kuser_pa = self.plant_kuser()
        self.plant_object_types()
        self.plant_loaded_modules()
        sessions = self.plant_sessions()
        self.allocate_processes()
        _idle, idle_threads = self.plant_idle()
        running: Dict[int, int] = {}
        standby: Dict[int, int] = {}
        ordinal = 0
        for index, proc in enumerate(self.spec.processes):
            record = self.plant_process(proc, index, kuser_pa, sessions)
            if not proc.exited:
                for thread in proc.threads:
                    planted = self.plant_thread(proc, thread, ordinal, running, standby)
                    ordinal += 1
                    if planted is not None:
                        record["threads"].append(planted)
            record["threads_listed"] = len(record["threads"])
            active = sum(1 for t in record["threads"] if t["state"] != "Terminated")
            record["threads_active"] = active
            mem.put("_EPROCESS", record["address"], "ActiveThreads", active)
            self.planted.processes.append(record)
        self.link_lists(sessions)
        self.plant_handles()
        # --- H8 hook: full tokens, typed/named handles, jobs and silos (forge.security_objects)
        from pykd_ext.forge.security_objects import plant_security
        plant_security(self)
        # --- H9 hook: loader lists, process parameters, environments, TEBs, WoW64 (forge.user_objects)
        from pykd_ext.forge.user_objects import plant_user_objects
        plant_user_objects(self)
        self.plant_processors(running, standby, idle_threads)
        # --- H10 hook (issue 17): ready queues, quantum/cycle fields, KeMaximumIncrement
        from pykd_ext.forge.scheduling import plant_scheduling
        plant_scheduling(self)
        from pykd_ext.forge.vads import plant_vads      # H10 (issue 17): VAD trees
        plant_vads(self)
        self.link_waiters()
        self.plant_globals()
        # --- H4 hook (issue 12): drivers on PsLoadedModuleList, MmUnloadedDrivers; allocated
        # last so that no address planted above moves (forge.kernel_modules)
        from pykd_ext.forge.kernel_modules import plant_kernel_modules
        plant_kernel_modules(self)
        self.trim_kernel_image()
        self.share_kernel()
        for record in self.planted.processes:       # where physical scanners see the objects
            record["physical"] = self.pt.translate(record["address"])
            for thread in record["threads"]:
                thread["physical"] = self.pt.translate(thread["address"])
        return self.machine, self.planted

    def trim_kernel_image(self) -> None:
        """Unmap the image pages nothing was written to (as if discarded after boot), so the
        image is mapped exactly where the dump has data: scanners that read the image in large
        chunks (Volatility's PDB scan reads 4 MiB from the MZ header) then never straddle a
        page the dump lacks."""
        kernel = self.machine.kernel
        phys = self.pt.phys
        for va in range(kernel.base, kernel.base + kernel.size_of_image, PAGE_SIZE):
            pa = self.pt.translate(va)
            if pa is not None and phys.page(pa // PAGE_SIZE) is None:
                self.pt.set_pte_raw(va, 0)

    def link_lists(self, sessions: Dict[int, int]) -> None:
        facts, mem = self.facts, self.mem
        apl = facts.offset("_EPROCESS", "ActiveProcessLinks")
        spl = facts.offset("_EPROCESS", "SessionProcessLinks")
        head = self.sym("PsActiveProcessHead")
        linked = [r["address"] + apl for r in self.planted.processes if r["linked"]]
        mem.list_link(head, linked)
        for record in self.planted.processes:
            if not record["linked"]:                # DKOM: the links point at themselves
                mem.list_init(record["address"] + apl)
        for session, space in sessions.items():
            members = [r["address"] + spl for r in self.planted.processes
                       if r["session_id"] == session]
            mem.list_link(space + facts.offset("_MM_SESSION_SPACE", "ProcessList"), members)
            mem.put_if("_MM_SESSION_SPACE", space, "ResidentProcessCount", len(members))
        for record in self.planted.processes:
            if record["session_id"] is None:
                mem.list_init(record["address"] + spl)
            ep = record["address"]
            kthreads = [t["address"] + facts.offset("_ETHREAD", "Tcb.ThreadListEntry")
                        for t in record["threads"]]
            ethreads = [t["address"] + facts.offset("_ETHREAD", "ThreadListEntry")
                        for t in record["threads"]]
            mem.list_link(ep + facts.offset("_EPROCESS", "Pcb.ThreadListHead"), kthreads)
            mem.list_link(ep + facts.offset("_EPROCESS", "ThreadListHead"), ethreads)

    def plant_handles(self) -> None:
        """PspCidTable (every process and thread by client id) and each live process' handle
        table: csrss.exe holds handles to the processes created after it (the cross-view
        source psxview uses); every other table refers to the process' own objects."""
        mem = self.mem
        cid: Dict[int, int] = {}
        for record in self.planted.processes:
            cid[record["pid"] // 4] = record["address"]
            for thread in record["threads"]:
                cid[thread["tid"] // 4] = thread["address"]
        cid_table = self.handle_table(cid, None, 0, 0)
        mem.u64(self.sym("PspCidTable"), cid_table)
        self.planted.globals["PspCidTable"] = self.sym("PspCidTable")
        self.planted.globals["PspCidTable_table"] = cid_table
        seen_csrss = False
        later: List[int] = []
        for spec, record in zip(self.spec.processes, self.planted.processes):
            if seen_csrss and not spec.exited:
                later.append(record["address"])
            if spec.name.lower() == "csrss.exe":
                seen_csrss = True
        for spec, record in zip(self.spec.processes, self.planted.processes):
            record["handle_count"] = None
            if spec.exited:
                continue
            own = [self.headers[record["address"]], self.headers[self.tokens[spec.pid]]]
            own += [self.headers[t["address"]] for t in record["threads"]]
            is_csrss = spec.name.lower() == "csrss.exe"
            targets = ([self.headers[a] for a in later] + own) if is_csrss else own
            count = max(spec.handles, 0)
            per_page = PAGE_SIZE // self.facts.size("_HANDLE_TABLE_ENTRY")
            entries: Dict[int, int] = {}
            index = 1
            for n in range(count):
                if index % per_page == 0:
                    index += 1
                entries[index] = targets[n % len(targets)]
                index += 1
            table = self.handle_table(entries, spec.pid, record["address"], 0x1FFFFF)
            mem.put("_EPROCESS", record["address"], "ObjectTable", table)
            record["handle_count"] = count
            record["handle_table"] = table
            referenced = set(entries.values())
            record["csrss_handles_to"] = [p["address"] for p in self.planted.processes
                                          if self.headers[p["address"]] in referenced] \
                if is_csrss else []

    def plant_globals(self) -> None:
        mem = self.mem
        system = self.eprocess[4] if 4 in self.eprocess else 0
        mem.u64(self.sym("PsInitialSystemProcess"), system)
        mem.u64(self.sym("MmSystemRangeStart"), KERNEL_SPACE_START)
        mem.u64(self.sym("MmHighestUserAddress"), HIGHEST_USER_ADDRESS)
        mem.u64(self.sym("MmUserProbeAddress"), USER_PROBE_ADDRESS)
        if self.facts.has_symbol("KiKvaShadow"):
            mem.write(self.sym("KiKvaShadow"), b"\x01" if self.spec.kva_shadow else b"\x00")
        for name in ("PsActiveProcessHead", "PsInitialSystemProcess", "MmSystemRangeStart",
                     "KiInitialThread", "NtBuildNumber"):
            self.planted.globals[name] = self.sym(name)
        if self.cookie is not None:
            self.planted.globals["ObHeaderCookie"] = self.sym("ObHeaderCookie")
            self.planted.globals["ObHeaderCookieValue"] = self.cookie
        rewrite_kdbg(self.machine, {
            "PspCidTable": self.sym("PspCidTable"),
            "KiProcessorBlock": self.sym("KiProcessorBlock"),
            "PsLoadedModuleList": self.sym("PsLoadedModuleList"),
            "PsActiveProcessHead": self.sym("PsActiveProcessHead"),
            "MmSystemRangeStart": self.sym("MmSystemRangeStart"),
            "MmHighestUserAddress": self.sym("MmHighestUserAddress"),
            "MmUserProbeAddress": self.sym("MmUserProbeAddress"),
        })


#: The physical windows Volatility 3's WindowsIntelStacker scans first for a DTB with a randomised
#: self-map ("recent windows": automagic/windows.py test_sets) — (start, length).
VOLATILITY_DTB_WINDOWS = ((0x150000, 0x150000), (0x550000, 0x1A0000), (0x900000, 0x100000))


def _sections(size_of_image: int) -> List[Section]:
    """ntoskrnl-like sections: code, then read-only data holding the debug directory within
    the first 4 MiB (Volatility's pdbscan reads at most 4 MiB past the MZ header), then data."""
    text = 0x200000 - PAGE_SIZE
    rdata = 0x80000
    return [
        Section(".text", PAGE_SIZE, text,
                IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ),
        Section(".rdata", PAGE_SIZE + text, rdata,
                IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ),
        Section(".data", PAGE_SIZE + text + rdata, size_of_image - (PAGE_SIZE + text + rdata),
                IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_WRITE),
    ]


def build_scenario(spec: ScenarioSpec, build: Union[str, int, BuildChoice]
                   ) -> Tuple[ForgedMachine, Planted]:
    """Forge a machine for `build` (a key of `builds.BUILDS`, a version, a build number or a
    BuildChoice) holding `spec`; returns the machine (write it with the dumpfile writers) and
    the planted facts."""
    return _Builder(spec, resolve_build(build)).build()


def write_scenario_dump(path: str, spec: ScenarioSpec, build: Union[str, int, BuildChoice],
                        kind: str = "bitmap", overwrite: bool = False) -> Planted:
    """Build `spec` on `build` and write it: kind "bitmap" (complete bitmap dump, FDMP),
    "kernel" (kernel bitmap dump, SDMP: no user pages) or "full" (type 1). Returns the facts."""
    machine, planted = build_scenario(spec, build)
    if kind == "bitmap":
        write_bitmap_dump(path, machine.phys, machine.spec, overwrite=overwrite)
    elif kind == "kernel":
        write_bitmap_dump(path, machine.phys, machine.spec, kernel_only=True,
                          overwrite=overwrite)
    elif kind == "full":
        write_full_dump(path, machine.phys, machine.spec, overwrite=overwrite)
    else:
        raise ValueError("unknown dump kind %r (bitmap, kernel, full)" % kind)
    planted.path = path
    planted.kind = kind
    return planted


__all__ = ["Planted", "build_scenario", "dos_path", "filetime_to_datetime",
           "write_scenario_dump"]
