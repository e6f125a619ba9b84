"""Tiny forged kernels with processes and threads planted by the test itself.

Why: tests need dumps whose every expected value is known because the test wrote it. Offsets,
bit positions and enum values here come straight from the ISF JSON through the forge's own
reader (`pykd_ext.forge.isf.SymbolTable`), not from the generated layouts the decoder uses, so
a wrong generated layout makes these tests fail instead of agreeing with itself.
"""
import json
import lzma
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.forge import forge_machine, pc_memory_map, table_for_build, write_bitmap_dump
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

POOL_BASE = 0xFFFFA08000000000
POOL_SIZE = 0x800000
MISSING_VA = 0xFFFFA0F000000000      # never mapped: a link pointing here is "not in dump"
HEADER_GAP = 0x40                    # room for an object header before each body


#: Windows 7 KTHREAD_STATE values (the 8.1 ISF's enum, unchanged since NT 4: ReactOS ketypes.h);
#: only used to *plant* Windows 7 threads, whose ISF carries no such enum.
WIN7_STATES = {"Initialized": 0, "Ready": 1, "Running": 2, "Standby": 3, "Terminated": 4,
               "Waiting": 5, "Transition": 6, "DeferredReady": 7}


@dataclass
class TSpec:
    tid: int
    state: Any = None                 # _KTHREAD_STATE name, a number, or None for "Waiting"
    wait_reason: str = "UserRequest"
    wait_mode: int = 1
    alertable: bool = False
    start: int = 0xFFFFF8047BC25870
    win32_start: int = 0x00007FF64A3B1000
    create: int = 132583451020698648
    priority: int = 9
    base_priority: int = 8
    running_on: Optional[int] = None
    in_elist: bool = True
    in_klist: bool = True
    wait_event: bool = False
    system: bool = False


@dataclass
class PSpec:
    pid: int
    ppid: int
    name: str
    threads: List[TSpec] = field(default_factory=list)
    session: Optional[int] = None
    protection: int = 0               # raw _PS_PROTECTION.Level
    minimal: bool = False
    pico: bool = False
    exited: bool = False
    wow64: bool = False
    unlinked: bool = False
    create: int = 132583451020698648
    image_path: str = ""
    peb: int = 0


class World:
    """One forged machine plus the planted objects; `va` maps names to addresses."""

    def __init__(self, build: int, processors: int = 3, pool_size: int = POOL_SIZE) -> None:
        self.table = table_for_build(build)
        with lzma.open(self.table.path, "rb") as handle:
            raw = json.load(handle)
        self.enums = {n: e["constants"] for n, e in raw["enums"].items()}
        self.base_sizes = {n: b["size"] for n, b in raw["base_types"].items()}
        self.m = forge_machine(build=build, table=self.table, processors=processors,
                               memory_map=pc_memory_map(max(64 << 20, 2 * pool_size)))
        self.pt = self.m.pt
        self.pool_size = pool_size
        self.pt.map_new(POOL_BASE, pool_size, page_size=0x200000)
        self.cursor = POOL_BASE
        self.processors = processors
        self.process_va: Dict[int, int] = {}
        self.thread_va: Dict[int, int] = {}
        self.prcb_va: List[int] = []
        self.event_va: Dict[int, int] = {}
        self.sessions: Dict[int, int] = {}
        self.token_va: Dict[int, int] = {}
        self.wow64_peb32: Dict[int, int] = {}
        self.specs: List[PSpec] = []
        self.path = ""

    # ---- low level
    def alloc(self, size: int, align: int = 16) -> int:
        self.cursor = -(-self.cursor // align) * align
        va = self.cursor
        self.cursor += size
        assert self.cursor < POOL_BASE + self.pool_size, "pool exhausted: pass a larger pool_size"
        return va

    def locate(self, type_name: str, path: str) -> Tuple[int, Dict[str, Any]]:
        offset, current, member = 0, type_name, None
        parts = path.split(".")
        for i, part in enumerate(parts):
            name, index = part, None
            if part.endswith("]"):
                name, idx = part[:-1].split("[")
                index = int(idx)
            member = self.table._fields(current)[name]
            offset += int(member["offset"])
            mtype = member["type"]
            if index is not None:
                sub = mtype["subtype"]
                offset += index * self._size_of(sub)
                mtype = sub
            if i < len(parts) - 1:
                current = mtype["name"]
            member = {"type": mtype}
        return offset, member["type"]

    def _size_of(self, t: Dict[str, Any]) -> int:
        kind = t["kind"]
        if kind == "pointer":
            return 8
        if kind == "base":
            return self.base_sizes[t["name"]]
        if kind == "enum":
            return 4
        if kind in ("struct", "union"):
            return self.table.size(t["name"])
        if kind == "array":
            return t["count"] * self._size_of(t["subtype"])
        raise ValueError(kind)

    def has(self, type_name: str, path: str) -> bool:
        try:
            self.locate(type_name, path)
            return True
        except KeyError:
            return False

    def put(self, type_name: str, base: int, path: str, value: int) -> None:
        offset, t = self.locate(type_name, path)
        va = base + offset
        if t["kind"] == "bitfield":
            pos, length = t["bit_position"], t["bit_length"]
            word = int.from_bytes(self.pt.read_virtual(va, 8), "little")
            mask = ((1 << length) - 1) << pos
            word = (word & ~mask) | ((value << pos) & mask)
            self.pt.write_virtual(va, word.to_bytes(8, "little"))
            return
        size = self._size_of(t) if t["kind"] != "struct" else 8
        self.pt.write_virtual(va, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def enum(self, name: str, constant: str) -> int:
        return int(self.enums[name][constant])

    def link_tail(self, head: int, entry: int) -> None:
        """Insert `entry` (a LIST_ENTRY address) before `head` (at the tail)."""
        blink = int.from_bytes(self.pt.read_virtual(head + 8, 8), "little")
        self.pt.write_u64(entry, head)
        self.pt.write_u64(entry + 8, blink)
        self.pt.write_u64(blink, entry)
        self.pt.write_u64(head + 8, entry)

    def empty_list(self, head: int) -> None:
        self.pt.write_u64(head, head)
        self.pt.write_u64(head + 8, head)

    def unicode_string(self, text: str) -> int:
        data = text.encode("utf-16-le")
        us = self.alloc(16 + len(data) + 2)
        self.put("_UNICODE_STRING", us, "Length", len(data))
        self.put("_UNICODE_STRING", us, "MaximumLength", len(data) + 2)
        self.put("_UNICODE_STRING", us, "Buffer", us + 16)
        self.pt.write_virtual(us + 16, data)
        return us

    # ---- objects
    def plant(self, processes: List[PSpec]) -> None:
        head = self.m.globals["PsActiveProcessHead"]
        E = "_EPROCESS"
        for spec in processes:
            self.alloc(HEADER_GAP)
            ep = self.alloc(self.table.size(E))
            self.process_va[spec.pid] = ep
            self.put(E, ep, "UniqueProcessId", spec.pid)
            self.put(E, ep, "Pcb.Header.Type", self.enum("_KOBJECTS", "ProcessObject"))
            self.put(E, ep, "InheritedFromUniqueProcessId", spec.ppid)
            self.pt.write_virtual(ep + self.locate(E, "ImageFileName")[0], spec.name.encode()[:14])
            self.put(E, ep, "CreateTime.QuadPart", spec.create)
            self.put(E, ep, "Pcb.DirectoryTableBase", 0x1AD000 + spec.pid * 0x1000)
            self.put(E, ep, "Peb", spec.peb)
            self.put(E, ep, "ActiveThreads", len(spec.threads))
            if spec.pid == 4:
                self.pt.write_u64(self.m.symbol("PsInitialSystemProcess"), ep)
                if self.has(E, "SystemProcess"):
                    self.put(E, ep, "SystemProcess", 1)
            self.empty_list(ep + self.locate(E, "ThreadListHead")[0])
            self.empty_list(ep + self.locate(E, "Pcb.ThreadListHead")[0])
            links = ep + self.locate(E, "ActiveProcessLinks")[0]
            if spec.unlinked:
                self.empty_list(links)
            else:
                self.link_tail(head, links)
            token = self.alloc(0x40)
            self.token_va[spec.pid] = token
            self.put(E, ep, "Token.Value", token | 0x3)
            if spec.image_path:
                name_info = self.unicode_string(spec.image_path)
                self.put(E, ep, "SeAuditProcessCreationInfo.ImageFileName", name_info)
            if spec.protection:
                self.pt.write_virtual(ep + self.locate(E, "Protection")[0], bytes([spec.protection]))
            if spec.minimal:
                self.put(E, ep, "Minimal", 1)
            if spec.pico:
                self.put(E, ep, "PicoContext", self.alloc(0x40))
            if spec.exited:
                self.put(E, ep, "ExitTime.QuadPart", spec.create + 50000000)
                self.put(E, ep, "ExitStatus", 0)
            else:
                self.put(E, ep, "ExitStatus", 0x103)
            if spec.wow64:
                peb32 = 0x7E000000 + spec.pid
                self.wow64_peb32[spec.pid] = peb32
                if self.table.has_type("_EWOW64PROCESS"):
                    block = self.alloc(0x20)
                    self.pt.write_u64(block + self.locate("_EWOW64PROCESS", "Peb")[0], peb32)
                    self.put(E, ep, "WoW64Process" if self.has(E, "WoW64Process") else "Wow64Process", block)
                else:
                    # H9: Windows 7/8.1 (no _EWOW64PROCESS in the PDB) store the PEB32 itself in
                    # Wow64Process, as Volatility 3's get_peb32 reads it
                    self.put(E, ep, "WoW64Process" if self.has(E, "WoW64Process") else "Wow64Process", peb32)
            if spec.session is not None:
                session = self.sessions.get(spec.session)
                if session is None:
                    session = self.alloc(self.table.size("_MM_SESSION_SPACE"), 0x1000)
                    self.sessions[spec.session] = session
                    self.put("_MM_SESSION_SPACE", session, "SessionId", spec.session)
                    self.empty_list(session + self.locate("_MM_SESSION_SPACE", "ProcessList")[0])
                self.put(E, ep, "Session", session)
                self.link_tail(session + self.locate("_MM_SESSION_SPACE", "ProcessList")[0],
                               ep + self.locate(E, "SessionProcessLinks")[0])
            for t in spec.threads:
                self._plant_thread(spec, ep, t)
        self._plant_processors(processes)
        self._plant_cid_table(processes)

    def _plant_thread(self, spec: PSpec, ep: int, t: TSpec) -> None:
        T = "_ETHREAD"
        self.alloc(HEADER_GAP)
        et = self.alloc(self.table.size(T))
        self.thread_va[t.tid] = et
        self.put(T, et, "Cid.UniqueProcess", spec.pid)
        self.put(T, et, "Tcb.Header.Type", self.enum("_KOBJECTS", "ThreadObject"))
        self.put(T, et, "Cid.UniqueThread", t.tid)
        self.put(T, et, "Tcb.Process", ep)
        self.put(T, et, "Tcb.ApcState.Process", ep)
        state = t.state if t.state is not None else "Waiting"
        if not isinstance(state, int):
            if "_KTHREAD_STATE" in self.enums:
                state = self.enum("_KTHREAD_STATE", state)
            else:   # Windows 7's ISF has no _KTHREAD_STATE; these are its KTHREAD_STATE values
                state = WIN7_STATES[state]
        self.put(T, et, "Tcb.State", state)
        self.put(T, et, "Tcb.WaitReason", self.enum("_KWAIT_REASON", t.wait_reason))
        self.put(T, et, "Tcb.WaitMode", t.wait_mode)
        self.put(T, et, "Tcb.Alertable", int(t.alertable))
        self.put(T, et, "Tcb.Priority", t.priority)
        self.put(T, et, "Tcb.BasePriority", t.base_priority)
        self.put(T, et, "Tcb.SystemThread", int(t.system))
        self.put(T, et, "StartAddress", t.start)
        self.put(T, et, "Win32StartAddress", t.win32_start)
        self.put(T, et, "CreateTime.QuadPart", t.create)
        stack_base = 0xFFFF850429893000 + t.tid * 0x10000
        self.put(T, et, "Tcb.StackBase", stack_base)
        self.put(T, et, "Tcb.InitialStack", stack_base - 0x370)
        self.put(T, et, "Tcb.KernelStack", stack_base - 0x1000)
        self.put(T, et, "Tcb.StackLimit", stack_base - 0x6000)
        if t.in_elist:
            self.link_tail(ep + self.locate("_EPROCESS", "ThreadListHead")[0],
                           et + self.locate(T, "ThreadListEntry")[0])
        if t.in_klist:
            self.link_tail(ep + self.locate("_EPROCESS", "Pcb.ThreadListHead")[0],
                           et + self.locate(T, "Tcb.ThreadListEntry")[0])
        if t.wait_event:
            event = self.alloc(0x18)
            self.event_va[t.tid] = event
            self.put("_DISPATCHER_HEADER", event, "Type", self.enum("_KOBJECTS", "EventSynchronizationObject"))
            block = et + self.locate(T, "Tcb.WaitBlock")[0]
            self.put(T, et, "Tcb.WaitBlockList", block)
            self.put("_KWAIT_BLOCK", block, "Object", event)
            if self.has("_KWAIT_BLOCK", "NextWaitBlock"):
                self.put("_KWAIT_BLOCK", block, "NextWaitBlock", block)
            else:
                self.put(T, et, "Tcb.WaitBlockCount", 1)

    def _plant_processors(self, processes: List[PSpec]) -> None:
        block = self.m.symbol("KiProcessorBlock")
        running: Dict[int, int] = {}
        for p in processes:
            for t in p.threads:
                if t.running_on is not None:
                    running[t.running_on] = self.thread_va[t.tid]
        for n in range(self.processors):
            prcb = self.alloc(self.table.size("_KPRCB"), 0x1000)
            self.prcb_va.append(prcb)
            self.put("_KPRCB", prcb, "Number", n)
            self.put("_KPRCB", prcb, "CurrentThread", running.get(n, 0))
            self.pt.write_u64(block + 8 * n, prcb)
        self.pt.write_virtual(self.m.symbol("KeNumberProcessors"), self.processors.to_bytes(4, "little"))
        self.m.spec.processors = self.processors

    def encode_entry(self, body: int) -> int:
        H = "_HANDLE_TABLE_ENTRY"
        if self.table.has_member(H, "ObjectPointerBits"):
            pos, length = self.table.bits(H, "ObjectPointerBits")
            value = ((body & ((1 << 48) - 1)) >> (48 - length)) << pos
            return value | 1           # the Unlocked bit (bit 0), as live entries have it
        return body | 1                # Windows 7: the pointer with its lock bit

    def _plant_cid_table(self, processes: List[PSpec]) -> None:
        entries: Dict[int, int] = {}
        for p in processes:
            if not p.exited and p.pid:              # CID 0 (Idle) is never in the table
                entries[p.pid // 4] = self.process_va[p.pid]
            for t in p.threads:
                if t.tid:
                    entries[t.tid // 4] = self.thread_va[t.tid]
        size = self.table.size("_HANDLE_TABLE_ENTRY")
        per_page = 0x1000 // size
        pages: Dict[int, int] = {}
        for index in sorted(entries):
            page = pages.get(index // per_page)
            if page is None:
                page = pages[index // per_page] = self.alloc(0x1000, 0x1000)
            self.pt.write_u64(page + (index % per_page) * size, self.encode_entry(entries[index]))
        table = self.alloc(self.table.size("_HANDLE_TABLE"), 0x10)
        if max(pages) == 0:
            code = pages[0]
        else:
            top = self.alloc(0x1000, 0x1000)
            for i in range(max(pages) + 1):
                if i in pages:
                    self.pt.write_u64(top + 8 * i, pages[i])
            code = top | 1
        self.put("_HANDLE_TABLE", table, "TableCode", code)
        self.pt.write_u64(self.m.symbol("PspCidTable"), table)

    def write(self, path: str) -> str:
        write_bitmap_dump(str(path), self.m.phys, self.m.spec)
        return str(path)


def standard_processes(build: int) -> List[PSpec]:
    """A small, varied set: System, a minimal process, a PPL, a pico, an exited, a WoW64, an
    unlinked one, a session process, thread lists that disagree, a running and a waiting thread."""
    modern = build >= 9600
    waiting, running = "Waiting", "Running"
    procs = [
        PSpec(4, 0, "System", [TSpec(8, running, "Executive", 0, running_on=0, system=True),
                               TSpec(12, waiting, "WrQueue", 0, system=True)]),
        PSpec(88, 4, "Registry", [TSpec(92, waiting, "WrQueue", 0, system=True)], minimal=modern),
        PSpec(388, 4, "smss.exe", [TSpec(392)], image_path=r"\Device\HarddiskVolume2\Windows\System32\smss.exe"),
        PSpec(700, 388, "lsass.exe", [TSpec(704, waiting, "WrLpcReceive", 1, alertable=True, wait_event=True),
                                      TSpec(708, running, "Executive", 1, running_on=1)],
              session=0, protection=0x41 if modern else 0, peb=0xC7661B7000,
              image_path=r"\Device\HarddiskVolume2\Windows\System32\lsass.exe"),
        PSpec(1200, 700, "init", [TSpec(1204)], pico=modern, session=0),
        PSpec(1300, 700, "gone.exe", [], exited=True, session=1),
        PSpec(1400, 700, "app32.exe", [TSpec(1404), TSpec(1408, in_elist=False)], wow64=True, session=1),
        PSpec(1500, 700, "hidden.exe", [TSpec(1504)], unlinked=True, session=1),
        # the Idle process is on no list and in no table: only a processor's current thread shows it
        PSpec(0, 0, "Idle", [TSpec(0, running, "Executive", 0, running_on=2, system=True)], unlinked=True),
    ]
    return procs


def bulk_processes(processes: int, threads_per_process: int) -> List[PSpec]:
    """Many plain processes (System first), each with the same number of waiting threads."""
    out = [PSpec(4, 0, "System", [TSpec(8, "Running", "Executive", 0, running_on=0, system=True)])]
    next_id = 12
    for i in range(processes - 1):
        pid = next_id
        next_id += 4
        threads = []
        for _ in range(threads_per_process):
            threads.append(TSpec(next_id, create=132583451020698648 + next_id))
            next_id += 4
        out.append(PSpec(pid, 4, "proc%03d.exe" % i, threads, session=1,
                         create=132583451020698648 + pid))
    return out


#: the four builds the issue names: Windows 7 SP1, 8.1, 10 2004, 11 21H2
BUILDS = (7601, 9600, 19041, 22000)
_WORLDS: Dict[Tuple[int, str], "World"] = {}


def standard_world(build: int, folder: str) -> "World":
    """The standard planted world of a build, written once per test session (`world.path`)."""
    key = (build, "")
    world = _WORLDS.get(key)
    if world is None:
        world = World(build)
        world.specs = standard_processes(build)
        world.plant(world.specs)
        world.path = world.write("%s/standard-%d.dmp" % (folder, build))
        _WORLDS[key] = world
    return world


def run_json(argv: List[str], status: int = 0) -> Dict[str, Any]:
    """Run a CLI command with --format json and return the parsed document (exit code asserted:
    0 records printed, 1 none, README "Exit codes")."""
    import io
    from pykd_ext.cli import run_command
    out = io.StringIO()
    code = run_command(list(argv) + ["--format", "json", "--quiet"], out=out)
    assert code == status, "%s exited %d" % (argv, code)
    return addresses_as_ints(json.loads(out.getvalue()))


def run_text(argv: List[str], fmt: str = "text") -> Tuple[int, str]:
    import io
    from pykd_ext.cli import run_command
    out = io.StringIO()
    code = run_command(list(argv) + ["--format", fmt, "--quiet"], out=out)
    return code, out.getvalue()
