"""Scenario descriptions: which processes and threads a forged kernel dump holds.

Why: tests, samples and benchmarks all need dumps with *known* processes and threads (the
special ones a real machine has — System, minimal, protected, pico, secure, WoW64, exited,
DKOM-hidden — and threads in every scheduler state). A scenario says what to plant in
build-independent words (names of `_KTHREAD_STATE` / `_KWAIT_REASON` / `_KOBJECTS` constants,
protection as WinDbg spells it, times as FILETIMEs); `pykd_ext.forge.kernel_objects` turns it
into memory using one build's layouts, so the same scenario runs on every shipped build.

A scenario is plain data: dataclasses here, or the same fields as YAML/JSON
(`load_scenario(path)`, `scenario_from_dict(d)`, `scenario_to_dict(s)`).
"""
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Iterable, Iterator, List, Optional

#: FILETIME ticks (100 ns) per second / per microsecond (FILETIME is documented in minwinbase.h).
TICKS_PER_SECOND = 10_000_000
TICKS_PER_US = 10
#: 2026-11-20 08:00:00 UTC as a FILETIME: the forged machines' boot time.
DEFAULT_BOOT_TIME = (1_795_161_600 + 11_644_473_600) * TICKS_PER_SECOND
#: STATUS_PENDING (ntstatus.h): the ExitStatus of a process/thread that has not exited.
STATUS_PENDING = 0x103


@dataclass
class ThreadSpec:
    """One thread. State/wait reason/wait object types are constant names of the build's enums
    (`_KTHREAD_STATE`, `_KWAIT_REASON`, `_KOBJECTS`); a name the build lacks is an error."""

    tid: int
    state: str = "Waiting"
    wait_reason: str = "UserRequest"
    wait_mode: str = "UserMode"              # "KernelMode" or "UserMode" (_MODE)
    alertable: bool = False
    wait_objects: List[str] = field(default_factory=list)   # _KOBJECTS names, or "Process:<pid>"
    wait_all: bool = False
    priority: int = 9
    base_priority: int = 8
    io_priority: int = 2
    page_priority: int = 5
    ideal_processor: int = 0
    affinity: int = 0
    context_switches: int = 0
    kernel_time: int = 0
    user_time: int = 0
    wait_tick: int = 0
    teb: int = 0
    start_symbol: Optional[str] = None       # kernel function (RVA from the ISF) ...
    start_address: int = 0                   # ... or a plain address
    win32_start_address: int = 0
    create_time: int = 0                     # FILETIME; 0 = the owning process's create time
    exit_time: int = 0
    exit_status: int = STATUS_PENDING
    system: bool = False                     # KTHREAD.SystemThread
    running_on: Optional[int] = None         # processor whose PRCB.CurrentThread this is
    standby_on: Optional[int] = None         # processor whose PRCB.NextThread this is
    impersonating: bool = False
    # H10 (issue 17): scheduling facts; 0/None/False plant nothing (the standard scenario's bytes)
    ready_on: Optional[int] = None           # processor whose DispatcherReadyListHead[priority] holds it
    ready_shared: bool = False               # on the shared ready queue (builds that have one)
    quantum_target: int = 0                  # KTHREAD.QuantumTarget (cycles)
    cycle_time: int = 0                      # KTHREAD.CycleTime (cycles)
    fiber: bool = False                      # H10: TEB as ConvertThreadToFiber leaves it (+ FlsData)


@dataclass
class ProcessSpec:
    """One process. `name` is the image file name (ImageFileName keeps its first 15 bytes)."""

    name: str
    pid: int
    ppid: int
    threads: List[ThreadSpec] = field(default_factory=list)
    image_path: Optional[str] = None         # SeAuditProcessCreationInfo (NT path)
    command_line: Optional[str] = None       # PEB.ProcessParameters.CommandLine
    session: Optional[int] = None            # None: no session (System, minimal, smss...)
    create_time: int = 0                     # FILETIME; 0 only for System (as on Windows)
    exit_time: int = 0
    exit_status: int = STATUS_PENDING
    protection: Optional[str] = None         # "PPL-WinTcb", "PP-WinTcb", "PPL-Lsa", ...
    protection_audit: bool = False
    signature_level: int = 0
    section_signature_level: int = 0
    base_priority: int = 8
    handles: int = 0
    system: bool = False                     # the System process
    minimal: bool = False                    # EPROCESS.Minimal (Registry, MemCompression)
    pico: bool = False                       # WSL1 pico process (PicoContext)
    secure: bool = False                     # IUM process (KPROCESS.SecureState.SecureProcess)
    frozen: bool = False                     # KPROCESS.FreezeCount > 0
    deep_frozen: bool = False                # KPROCESS.DeepFreeze
    wow64: bool = False
    unlinked: bool = False                   # DKOM: off ActiveProcessLinks, everywhere else
    job: bool = False
    user_mode: bool = True                   # has a PEB and a user address space
    quantum_reset: int = 0                   # H10: KPROCESS.QuantumReset (0: not planted)
    #: H10: VADs as plain dicts (forge.vads: start, size, protection, private, commit, image, file)
    vads: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def exited(self) -> bool:
        return self.exit_time != 0


@dataclass
class ScenarioSpec:
    """A machine: processors, times, processes (in creation order)."""

    name: str
    processes: List[ProcessSpec]
    processors: int = 4
    boot_time: int = DEFAULT_BOOT_TIME
    dump_time: int = DEFAULT_BOOT_TIME + 3600 * TICKS_PER_SECOND
    kva_shadow: bool = True                  # user DTBs for user processes (builds that have it)
    bugcheck_code: int = 0x000000E2          # MANUALLY_INITIATED_CRASH (bugcodes.h)
    #: H10: KeMaximumIncrement in 100 ns (156250 = the 15.625 ms clock tick); 0 plants none
    clock_increment: int = 0

    def process(self, pid: int) -> ProcessSpec:
        for proc in self.processes:
            if proc.pid == pid:
                return proc
        raise KeyError("scenario %s has no process %d" % (self.name, pid))

    def thread_count(self) -> int:
        return sum(len(p.threads) for p in self.processes)


# --- (de)serialisation ---------------------------------------------------------------------------

def _build(cls: Any, data: Dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError("%s: unknown key(s) %s" % (cls.__name__, ", ".join(unknown)))
    return cls(**data)


def scenario_from_dict(data: Dict[str, Any]) -> ScenarioSpec:
    """A ScenarioSpec from plain data (the keys are the dataclass fields)."""
    data = dict(data)
    processes = []
    for raw in data.pop("processes", []):
        raw = dict(raw)
        threads = [_build(ThreadSpec, dict(t)) for t in raw.pop("threads", [])]
        processes.append(_build(ProcessSpec, dict(raw, threads=threads)))
    return _build(ScenarioSpec, dict(data, processes=processes))


def scenario_to_dict(spec: ScenarioSpec) -> Dict[str, Any]:
    return asdict(spec)


def load_scenario(path: str) -> ScenarioSpec:
    """Read a scenario from .json, or .yaml/.yml (PyYAML)."""
    with open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("%s: a scenario is a mapping" % path)
    return scenario_from_dict(data)


# --- the standard scenario -----------------------------------------------------------------------

def _at(boot: int, seconds: float) -> int:
    """A FILETIME `seconds` after boot, rounded to whole microseconds."""
    return boot + int(round(seconds * 1_000_000)) * TICKS_PER_US


#: Where forged user-mode images and ntdll sit (only addresses; nothing is mapped there).
USER_IMAGE_BASE = 0x00007FF6_4A3B0000
NTDLL_THREAD_START = 0x00007FFD_1C2A2640      # "RtlUserThreadStart" of a forged ntdll
WOW64_THREAD_START = 0x00000000_77A11230       # 32-bit ntdll's thread start


#: PIDs of the standard scenario (thread ids are drawn around them: one CID table holds both).
STANDARD_PIDS = frozenset((4, 56, 92, 348, 460, 544, 620, 628, 636, 768, 812, 1040, 1888, 2104,
                           2208, 3340, 5012, 6148, 6660, 7260, 8800))


def _client_ids(first: int, taken: Iterable[int]) -> Iterator[int]:
    """Client ids (multiples of 4) from `first`, skipping `taken` and multiples of 1024 (the
    first entry of each handle-table page is never handed out)."""
    skip = set(taken)
    value = first
    while True:
        if value % 1024 and value not in skip:
            yield value
        value += 4


def _user_thread(tid: int, proc_index: int, n: int, **kw: Any) -> ThreadSpec:
    base: Dict[str, Any] = dict(start_address=NTDLL_THREAD_START,
                win32_start_address=USER_IMAGE_BASE + proc_index * 0x100000 + 0x1F30 + n * 0x40,
                teb=0x000000A2_1E3F0000 + proc_index * 0x100000 + n * 0x2000,
                context_switches=100 + tid, kernel_time=3 + n, user_time=7 + n,
                wait_tick=5000 + tid)
    base.update(kw)
    return ThreadSpec(tid=tid, **base)


#: KeMaximumIncrement (standard and scheduling scenarios): the 15.625 ms clock tick in 100 ns
CLOCK_TICK_100NS = 156250


#: explorer.exe's address space in the standard scenario (forge.vads): its exe (`"image"`: at
#: the base the forge gives it), ntdll/kernel32/KernelBase/shell32 at their loader-list bases
#: (forge.user_objects), a DLL image no loader list names (inject.dll, the rootkit's), a mapped
#: font file, a private read-write heap and executable private memory (the `malfind` question).
#: `protection` is the MM index (1 PAGE_READONLY, 4 PAGE_READWRITE, 6 PAGE_EXECUTE_READWRITE,
#: 7 PAGE_EXECUTE_WRITECOPY).
EXPLORER_VADS: List[Dict[str, Any]] = [
    {"start": 0x10000, "size": 0x10000, "protection": 4, "private": True, "commit": 16},
    {"start": 0x2A0000, "size": 0x1000, "protection": 6, "private": True, "commit": 1},
    {"start": 0x1E0000, "size": 0x100000, "protection": 1, "private": False, "commit": 0,
     "file": "\\Windows\\Fonts\\segoeui.ttf"},
    {"start": "image", "size": 0x4A000, "protection": 7, "private": False, "commit": 2,
     "image": True, "vad_type": 2, "file": "\\Windows\\explorer.exe"},
    {"start": 0x7FFD10000000, "size": 0x12000, "protection": 7, "private": False, "commit": 3,
     "image": True, "vad_type": 2, "file": "\\ProgramData\\rk\\inject.dll"},
    {"start": 0x7FFD19C60000, "size": 0x2A3000, "protection": 7, "private": False, "commit": 5,
     "image": True, "vad_type": 2, "file": "\\Windows\\System32\\KernelBase.dll"},
    {"start": 0x7FFD1A0F0000, "size": 0x745000, "protection": 7, "private": False, "commit": 7,
     "image": True, "vad_type": 2, "file": "\\Windows\\System32\\shell32.dll"},
    {"start": 0x7FFD1B0E0000, "size": 0xBD000, "protection": 7, "private": False, "commit": 4,
     "image": True, "vad_type": 2, "file": "\\Windows\\System32\\kernel32.dll"},
    {"start": 0x7FFD1C200000, "size": 0x1F5000, "protection": 7, "private": False, "commit": 9,
     "image": True, "vad_type": 2, "file": "\\Windows\\System32\\ntdll.dll"},
]


def standard_scenario(many_threads: int = 0, name: str = "standard") -> ScenarioSpec:
    """The scenario tests and samples share (`samples/README.md` lists it): System with kernel
    threads in every scheduler state, Secure System, Registry and MemCompression (minimal),
    smss/csrss/wininit/services (PPL WinTcb), lsass (PPL Lsa), LsaIso (trustlet), svchosts (one
    in a job), a WSL1 pico process, winlogon and explorer in session 1, a deep-frozen app, a
    WoW64 process, an exited-but-referenced process, a DKOM-unlinked process, and one RUNNING
    thread per processor (4) plus a Standby one; two Ready threads on their processors' ready
    queues, the 15.625 ms clock tick (KeMaximumIncrement), a fiber thread in explorer.exe and
    explorer's VAD tree (`EXPLORER_VADS`, with an injected DLL and executable private memory).

    `many_threads`: if > 0, one more process ("stress.exe", PID 8800) with that many threads.
    """
    boot = DEFAULT_BOOT_TIME
    procs: List[ProcessSpec] = []
    tid = _client_ids(8, STANDARD_PIDS)

    def t() -> int:
        return next(tid)

    system_threads = [
        ThreadSpec(tid=t(), system=True, state="Running", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="KeBalanceSetManager", priority=16,
                   base_priority=16, running_on=0, context_switches=90210, kernel_time=1200),
        ThreadSpec(tid=t(), system=True, state="Waiting", wait_reason="WrQueue",
                   wait_mode="KernelMode", wait_objects=["QueueObject"],
                   start_symbol="ExpWorkerThread", priority=13, base_priority=13,
                   context_switches=5512, kernel_time=40, wait_tick=359990),
        ThreadSpec(tid=t(), system=True, state="Waiting", wait_reason="Executive",
                   wait_mode="KernelMode",
                   wait_objects=["EventSynchronizationObject", "TimerNotificationObject"],
                   start_symbol="KeSwapProcessOrStack", priority=23, base_priority=23,
                   context_switches=777, kernel_time=3, wait_tick=359000),
        ThreadSpec(tid=t(), system=True, state="Ready", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread", priority=12,
                   base_priority=12, ideal_processor=1, ready_on=1,
                   context_switches=42),
        ThreadSpec(tid=t(), system=True, state="Standby", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread", priority=13,
                   base_priority=12, standby_on=1, context_switches=43),
        ThreadSpec(tid=t(), system=True, state="DeferredReady", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread", priority=12,
                   base_priority=12, ideal_processor=2),
        ThreadSpec(tid=t(), system=True, state="Initialized", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="PspSystemThreadStartup"),
        ThreadSpec(tid=t(), system=True, state="Transition", wait_reason="WrPageIn",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread"),
        ThreadSpec(tid=t(), system=True, state="Terminated", wait_reason="Executive",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread",
                   exit_time=_at(boot, 600.25), exit_status=0),
        ThreadSpec(tid=t(), system=True, state="GateWaitObsolete", wait_reason="WrFreePage",
                   wait_mode="KernelMode", start_symbol="ExpWorkerThread"),
        ThreadSpec(tid=t(), system=True, state="WaitingForProcessInSwap",
                   wait_reason="WrKernel", wait_mode="KernelMode",
                   start_symbol="ExpWorkerThread"),
        ThreadSpec(tid=t(), system=True, state="Waiting", wait_reason="WrFreePage",
                   wait_mode="KernelMode", wait_objects=["SemaphoreObject"],
                   start_symbol="PspSystemThreadStartup", priority=17, base_priority=16),
    ]
    procs.append(ProcessSpec("System", 4, 0, threads=system_threads, system=True,
                             user_mode=False, handles=2510, base_priority=8,
                             protection="PP-WinSystem"))
    procs.append(ProcessSpec("Secure System", 56, 4, system=False, minimal=True, secure=True,
                             user_mode=False, create_time=_at(boot, 0.512345),
                             image_path=None, base_priority=8))
    procs.append(ProcessSpec(
        "Registry", 92, 4, minimal=True, user_mode=False, create_time=_at(boot, 0.601001),
        threads=[ThreadSpec(tid=t(), system=True, state="Waiting", wait_reason="WrQueue",
                            wait_mode="KernelMode", wait_objects=["QueueObject"],
                            start_symbol="ExpWorkerThread", priority=13, base_priority=13)]))
    procs.append(ProcessSpec(
        "smss.exe", 348, 4, image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\smss.exe",
        command_line="\\SystemRoot\\System32\\smss.exe", create_time=_at(boot, 0.9),
        base_priority=11, handles=53, protection="PPL-WinTcb", signature_level=0x3E,
        section_signature_level=0x0C,
        threads=[_user_thread(t(), 3, 0, wait_reason="UserRequest",
                              wait_objects=["Process:460"])]))
    # csrss: PPL WinTcb-Light, waits on smss-created objects; explorer's session 1 has its own
    procs.append(ProcessSpec(
        "csrss.exe", 460, 348, session=0,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\csrss.exe",
        command_line="%SystemRoot%\\system32\\csrss.exe ObjectDirectory=\\Windows",
        create_time=_at(boot, 2.125001), base_priority=13, handles=412,
        protection="PPL-WinTcb", signature_level=0x3E, section_signature_level=0x0C,
        threads=[_user_thread(t(), 4, 0, wait_reason="WrLpcReceive", wait_mode="KernelMode",
                              wait_objects=["SemaphoreObject"], priority=15, base_priority=13),
                 _user_thread(t(), 4, 1, wait_reason="UserRequest", alertable=True,
                              wait_objects=["EventNotificationObject", "MutantObject"],
                              wait_all=True)]))
    procs.append(ProcessSpec(
        "wininit.exe", 544, 348, session=0,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\wininit.exe",
        command_line="wininit.exe", create_time=_at(boot, 2.5), base_priority=13, handles=160,
        protection="PPL-WinTcb", signature_level=0x3E,
        threads=[_user_thread(t(), 5, 0, wait_objects=["EventSynchronizationObject"])]))
    procs.append(ProcessSpec(
        "services.exe", 620, 544, session=0,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\services.exe",
        command_line="C:\\Windows\\system32\\services.exe", create_time=_at(boot, 2.75),
        base_priority=9, handles=620, protection="PPL-WinTcb", signature_level=0x3E,
        threads=[_user_thread(t(), 6, 0, wait_reason="WrAlertByThreadId"),
                 _user_thread(t(), 6, 1, state="Ready", wait_reason="WrQueue",
                              ideal_processor=3, ready_on=3)]))
    procs.append(ProcessSpec(
        "lsass.exe", 636, 544, session=0,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\lsass.exe",
        command_line="C:\\Windows\\system32\\lsass.exe", create_time=_at(boot, 2.812503),
        base_priority=9, handles=1290, protection="PPL-Lsa", signature_level=0x08,
        section_signature_level=0x08,
        threads=[_user_thread(t(), 7, 0, wait_reason="WrLpcReceive",
                              wait_objects=["EventNotificationObject"]),
                 _user_thread(t(), 7, 1, state="Running", running_on=2,
                              wait_reason="UserRequest", priority=10, base_priority=9),
                 _user_thread(t(), 7, 2, wait_reason="WrQueue", alertable=True,
                              wait_objects=["QueueObject"], impersonating=True)]))
    procs.append(ProcessSpec(
        "LsaIso.exe", 628, 544, session=0, secure=True,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\LsaIso.exe",
        command_line="\\??\\C:\\Windows\\system32\\lsaiso.exe", create_time=_at(boot, 2.8),
        handles=12, threads=[_user_thread(t(), 8, 0, wait_reason="WrAlertByThreadId")]))
    svchost_pids = (768, 812, 1040)
    for n, pid in enumerate(svchost_pids):
        procs.append(ProcessSpec(
            "svchost.exe", pid, 620, session=0, job=(n == 2),
            image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\svchost.exe",
            command_line="C:\\Windows\\system32\\svchost.exe -k %s -p"
            % ("DcomLaunch", "RPCSS", "netsvcs")[n],
            create_time=_at(boot, 3.0 + n * 0.25 + 0.000007 * n), handles=300 + 40 * n,
            threads=[_user_thread(t(), 9 + n, k, wait_reason=("WrQueue", "UserRequest",
                                                             "DelayExecution")[k % 3],
                                  wait_objects=(["QueueObject"] if k % 3 == 0 else
                                                ["EventNotificationObject"] if k % 3 == 1
                                                else ["TimerSynchronizationObject"]))
                     for k in range(3 + n)]))
    procs.append(ProcessSpec(
        "MemCompression", 1888, 4, minimal=True, user_mode=False,
        create_time=_at(boot, 9.0), threads=[
            ThreadSpec(tid=t(), system=True, state="Waiting", wait_reason="WrFreePage",
                       wait_mode="KernelMode", wait_objects=["EventNotificationObject"],
                       start_symbol="PspSystemThreadStartup", priority=7, base_priority=7)]))
    procs.append(ProcessSpec(
        "init", 2104, 4, pico=True, minimal=True, user_mode=False, session=0,
        image_path=None, create_time=_at(boot, 30.5), handles=4,
        threads=[_user_thread(t(), 13, 0, wait_reason="WrAlertByThreadId", start_address=0,
                              win32_start_address=0, teb=0)]))
    procs.append(ProcessSpec(
        "winlogon.exe", 2208, 348, session=1,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\winlogon.exe",
        command_line="winlogon.exe", create_time=_at(boot, 12.0), base_priority=13,
        handles=280, threads=[_user_thread(t(), 14, 0, wait_objects=["EventNotificationObject"])]))
    procs.append(ProcessSpec(
        "explorer.exe", 3340, 3288, session=1,
        image_path="\\Device\\HarddiskVolume3\\Windows\\explorer.exe",
        command_line="C:\\Windows\\Explorer.EXE", create_time=_at(boot, 41.000123),
        handles=2350, vads=EXPLORER_VADS, threads=[
            _user_thread(t(), 15, 0, state="Running", running_on=1, wait_reason="WrUserRequest",
                         priority=10),
            _user_thread(t(), 15, 1, wait_reason="WrUserRequest", alertable=True,
                         wait_objects=["EventSynchronizationObject"], fiber=True),
            _user_thread(t(), 15, 2, wait_reason="WrQueue", wait_objects=["QueueObject"]),
            _user_thread(t(), 15, 3, wait_reason="Suspended", wait_mode="KernelMode",
                         wait_objects=["SemaphoreObject"])]))
    procs.append(ProcessSpec(
        "SearchApp.exe", 5012, 768, session=1, frozen=True, deep_frozen=True,
        image_path="\\Device\\HarddiskVolume3\\Windows\\SystemApps\\Search\\SearchApp.exe",
        command_line="\"C:\\Windows\\SystemApps\\Search\\SearchApp.exe\" -ServerName:Cortana",
        create_time=_at(boot, 60.5), handles=900,
        threads=[_user_thread(t(), 16, k, wait_reason="Suspended", wait_mode="KernelMode",
                              wait_objects=["SemaphoreObject"]) for k in range(2)]))
    procs.append(ProcessSpec(
        "OneDriveSetup.exe", 6148, 3340, session=1, wow64=True,
        image_path="\\Device\\HarddiskVolume3\\Users\\user\\AppData\\Local\\Microsoft\\"
                   "OneDrive\\OneDriveSetup.exe",
        command_line="\"C:\\Users\\user\\AppData\\Local\\Microsoft\\OneDrive\\"
                     "OneDriveSetup.exe\" /silent",
        create_time=_at(boot, 95.25), handles=210,
        threads=[_user_thread(t(), 17, k, start_address=WOW64_THREAD_START,
                              win32_start_address=0x00401000 + 0x10 * k, teb=0x00FB2000 - 0x3000 * k)
                 for k in range(2)]))
    procs.append(ProcessSpec(
        "notepad.exe", 7260, 3340, session=1,
        image_path="\\Device\\HarddiskVolume3\\Windows\\System32\\notepad.exe",
        command_line="\"C:\\Windows\\system32\\notepad.exe\"",
        create_time=_at(boot, 300.0), exit_time=_at(boot, 1800.654321), exit_status=0,
        handles=0))
    procs.append(ProcessSpec(
        "rootkit.exe", 6660, 3340, session=1, unlinked=True,
        image_path="\\Device\\HarddiskVolume3\\ProgramData\\rk\\rootkit.exe",
        command_line="C:\\ProgramData\\rk\\rootkit.exe -q",
        create_time=_at(boot, 1200.000001), handles=17,
        threads=[_user_thread(t(), 19, 0, state="Running", running_on=3,
                              wait_reason="UserRequest"),
                 _user_thread(t(), 19, 1, wait_reason="DelayExecution", alertable=True,
                              wait_objects=["TimerNotificationObject"])]))
    if many_threads > 0:
        procs.append(ProcessSpec(
            "stress.exe", 8800, 3340, session=1,
            image_path="\\Device\\HarddiskVolume3\\Tools\\stress.exe",
            command_line="stress.exe --threads %d" % many_threads,
            create_time=_at(boot, 2000.0), handles=many_threads + 30,
            threads=[_user_thread(t(), 20, k % 50, wait_reason="WrQueue",
                                  wait_objects=["QueueObject"])
                     for k in range(many_threads)]))
    return ScenarioSpec(name=name, processes=procs, clock_increment=CLOCK_TICK_100NS)


#: Where a bulk scenario's TEBs go: above every PEB the builder places (`kernel_objects.PEB_BASE`
#: + index * `PEB_STRIDE`, up to 65,536 processes), one `BULK_TEB_STRIDE` slot per process.
BULK_TEB_BASE = 0x000000C0_00000000
BULK_TEB_STRIDE = 0x100000
#: TEB spacing: a TEB (0x1838 bytes on x64 Windows 10) takes two pages.
TEB_SPACING = 0x2000


def bulk_scenario(processes: int, threads_per_process: int, name: str = "bulk",
                  total_threads: Optional[int] = None,
                  handles_per_process: Optional[int] = None) -> ScenarioSpec:
    """Many ordinary processes (for benchmarks): System + `processes` worker processes with
    `threads_per_process` threads each — or, with `total_threads`, that many threads in all
    (System's one included), spread as evenly as possible.

    `handles_per_process`: every worker's handle count; None keeps the historical 50 + the
    worker's number (which grows the total quadratically: 18 million handles at 6,000 workers).
    Each worker's TEBs sit in its own `BULK_TEB_STRIDE` slot from `BULK_TEB_BASE`, apart from
    the PEB, parameters and loader data the builder places, at any scale.
    """
    boot = DEFAULT_BOOT_TIME
    pid_source = _client_ids(1000, ())
    pids = [next(pid_source) for _ in range(processes)]
    tids = _client_ids(max(pids + [0]) + 4 if pids else 8, (4,))
    counts = [threads_per_process] * processes
    if total_threads is not None and processes:
        share, extra = divmod(max(total_threads - 1, 0), processes)
        counts = [share + (1 if n < extra else 0) for n in range(processes)]
    stride = -(-max(counts + [1]) * TEB_SPACING // BULK_TEB_STRIDE) * BULK_TEB_STRIDE
    procs = [ProcessSpec("System", 4, 0, system=True, user_mode=False, threads=[
        ThreadSpec(tid=next(tids), system=True, state="Running", running_on=0,
                   wait_mode="KernelMode", wait_reason="Executive",
                   start_symbol="KeBalanceSetManager")])]
    for n, pid in enumerate(pids):
        procs.append(ProcessSpec(
            "worker%03d.exe" % n, pid, 4 if n == 0 else pids[0], session=n % 3,
            image_path="\\Device\\HarddiskVolume3\\Bench\\worker%03d.exe" % n,
            command_line="worker%03d.exe" % n, create_time=_at(boot, 10.0 + n * 0.5),
            handles=50 + n if handles_per_process is None else handles_per_process,
            threads=[_user_thread(next(tids), n % 50, k % 50,
                                  wait_objects=["EventNotificationObject"],
                                  teb=BULK_TEB_BASE + n * stride + k * TEB_SPACING)
                     for k in range(counts[n])]))
    return ScenarioSpec(name=name, processes=procs, processors=2)




#: app.exe's address space in the scheduling scenario (forge.vads): two image views above 4 GiB
#: VPNs (StartingVpnHigh: app.exe and ntdll.dll, at their loader-list bases), an image view no
#: loader list names (inject.dll), a mapped data file, private read-write memory, and executable
#: private memory (the `malfind` question). `protection` is the MM index (4 = PAGE_READWRITE, 6 =
#: PAGE_EXECUTE_READWRITE, 7 = PAGE_EXECUTE_WRITECOPY, 1 = PAGE_READONLY).
SCHEDULING_VADS: List[Dict[str, Any]] = [
    {"start": 0x10000, "size": 0x10000, "protection": 4, "private": True, "commit": 16},
    {"start": 0x20000, "size": 0x1000, "protection": 6, "private": True, "commit": 1},
    {"start": 0x1E0000, "size": 0x100000, "protection": 1, "private": False, "commit": 0,
     "file": "\\Windows\\Fonts\\arial.ttf"},
    {"start": 0x180000000, "size": 0x18000, "protection": 7, "private": False, "commit": 3,
     "image": True, "vad_type": 2, "file": "\\Users\\user\\AppData\\Local\\Temp\\inject.dll"},
    {"start": 0x7FF64A4B0000, "size": 0x20000, "protection": 7, "private": False, "commit": 2,
     "image": True, "vad_type": 2, "file": "\\Apps\\app.exe"},
    {"start": 0x7FFD1C200000, "size": 0x1F5000, "protection": 7, "private": False, "commit": 9,
     "image": True, "vad_type": 2, "file": "\\Windows\\System32\\ntdll.dll"},
]


def scheduling_scenario(name: str = "scheduling") -> ScenarioSpec:
    """H10 (issue 17): the scheduler seen by `ready`/`running` and the per-thread facts.

    4 processors; System's thread runs on 0 and app.exe's on 1 (2 and 3 run their idle threads);
    ready threads at several priorities on several processors (two at priority 12 on processor
    0, in that order; 8 on 1; 15 on 2; a boosted 10-over-8 on 3), one on the shared ready queue
    (builds that have one), a Standby thread (processor 1's NextThread), quantum/cycle values,
    the process's QuantumReset, KeMaximumIncrement, fiber-running threads (64-bit and WoW64),
    and app.exe's VAD tree (`SCHEDULING_VADS`).
    """
    boot = DEFAULT_BOOT_TIME
    kernel: Dict[str, Any] = dict(system=True, wait_mode="KernelMode", wait_reason="Executive",
                                  start_symbol="ExpWorkerThread")
    system = ProcessSpec("System", 4, 0, system=True, user_mode=False, base_priority=8, threads=[
        ThreadSpec(tid=8, state="Running", running_on=0, priority=16, base_priority=16,
                   quantum_target=0x3B9ACA0, cycle_time=0x12345678, **kernel),
        ThreadSpec(tid=12, state="Ready", ready_on=0, priority=12, base_priority=12,
                   wait_tick=229000, **kernel),
        ThreadSpec(tid=16, state="Ready", ready_on=0, priority=12, base_priority=12,
                   wait_tick=229100, **kernel),
        ThreadSpec(tid=20, state="Ready", ready_on=1, priority=8, base_priority=8, **kernel),
        ThreadSpec(tid=24, state="Ready", ready_on=2, priority=15, base_priority=13, **kernel),
        ThreadSpec(tid=28, state="Waiting", wait_objects=["EventNotificationObject"],
                   priority=13, base_priority=13, wait_tick=200000, **kernel),
    ])
    app = ProcessSpec(
        "app.exe", 1000, 4, session=1, image_path="\\Device\\HarddiskVolume3\\Apps\\app.exe",
        command_line="app.exe", create_time=_at(boot, 100.0), base_priority=8, quantum_reset=6,
        handles=20, vads=SCHEDULING_VADS, threads=[
            _user_thread(1004, 1, 0, state="Running", running_on=1, priority=9, base_priority=8,
                         quantum_target=0x2FAF080, cycle_time=0x9ABCDEF0),
            _user_thread(1008, 1, 1, state="Standby", standby_on=1, priority=11, base_priority=8),
            _user_thread(1012, 1, 2, state="Ready", ready_on=3, priority=10, base_priority=8,
                         ideal_processor=3, affinity=0b1010, wait_tick=230000),
            _user_thread(1016, 1, 3, state="Ready", ready_shared=True, priority=9,
                         base_priority=8),
            _user_thread(1020, 1, 4, wait_objects=["EventSynchronizationObject"], fiber=True,
                         quantum_target=0x1000, cycle_time=0x7777, wait_tick=220000),
        ])
    wow = ProcessSpec(
        "wow.exe", 2000, 1000, session=1, wow64=True,
        image_path="\\Device\\HarddiskVolume3\\Apps\\wow.exe", command_line="wow.exe",
        create_time=_at(boot, 200.0), handles=10, threads=[
            _user_thread(2004 + 4 * k, 2, k, wait_objects=["EventNotificationObject"], fiber=k == 0,
                         start_address=WOW64_THREAD_START, win32_start_address=0x00401000 + 0x10 * k,
                         teb=0x00FB2000 - 0x3000 * k)        # WoW64 TEBs below 4 GiB
            for k in range(2)
        ])
    return ScenarioSpec(name=name, processes=[system, app, wow], clock_increment=CLOCK_TICK_100NS)


__all__ = ["CLOCK_TICK_100NS", "DEFAULT_BOOT_TIME", "ProcessSpec", "STATUS_PENDING", "ScenarioSpec",
           "ThreadSpec", "TICKS_PER_SECOND", "bulk_scenario", "load_scenario", "scenario_from_dict",
           "scenario_to_dict", "scheduling_scenario", "standard_scenario"]
