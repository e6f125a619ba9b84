"""`pykd-ext lab vm`: a QEMU guest paused on a forged scenario's memory, for a class with no
Windows licence.

What it does, in order:
1. forges the scenario (`forge.make_dump.scenario_named`: `standard`, `bulk:P`, a YAML file);
2. creates the guest's RAM file, sparse (a 5 GiB guest costs the pages the forge wrote);
3. starts Debian's `qemu-system-x86_64` on it: TCG, `-S` (paused before the first instruction),
   q35 with `memory-backend-file,id=qemu-ram,share=on` (the backend name LeechCore/MemProcFS
   expect), QMP on a Unix socket, no display;
4. asks QEMU where guest-physical RAM sits in that file (`info mtree -f`: q35 keeps 2 GiB below
   the PCI hole and puts the rest at 4 GiB) and writes each forged page at its file offset, so
   reading guest-physical address A through QEMU gives the forge's byte at A;
5. records the VM (PID, socket, RAM file, scenario facts) in `lab.json` in its folder, so
   `lab vm --stop` stops that PID (after checking it is still that QEMU) and removes the folder.
The paused guest never runs, so memory stays as forged until someone edits the RAM file.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from pykd_ext.errors import TargetError
from pykd_ext.live.mtree import parse_flat_view, ram_ranges
from pykd_ext.live.qmp import QmpClient
from pykd_ext.live.ramfile import Segment

QEMU = "qemu-system-x86_64"
BACKEND = "qemu-ram"
STATE = "lab.json"
MIB = 1 << 20
#: smallest guest we start (the forge's standard machine spans 256 MiB)
MIN_MEMORY = 256 * MIB
#: seconds QEMU gets to open its QMP socket / to exit when asked
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


@dataclass
class LabVm:
    """A started lab VM; `target` is the `--target` string that reads it."""

    pid: int
    folder: str
    socket: str
    ram: str
    memory: int
    scenario: str
    build: str
    processes: int = 0
    pages_written: int = 0
    segments: List[Segment] = field(default_factory=list)
    process: Optional[subprocess.Popen] = None     # set when this interpreter started it

    @property
    def target(self) -> str:
        return "qemu:%s" % self.socket

    def record(self) -> Dict[str, Any]:
        return {"pid": self.pid, "folder": self.folder, "socket": self.socket, "ram": self.ram,
                "memory": self.memory, "scenario": self.scenario, "build": self.build,
                "processes": self.processes, "pages_written": self.pages_written,
                "target": self.target, "stop": "kill %d" % self.pid,
                "segments": [list(s) for s in self.segments]}


def default_folder() -> str:
    """One lab VM per user by default: /dev/shm (RAM-backed, so the guest's RAM file is too)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()
    return os.path.join(base, "pykd-ext-lab-%d" % getattr(os, "getuid", lambda: 0)())


def _escape(value: str) -> str:
    """A value inside a QEMU `-object k=v,...` option: commas doubled."""
    return value.replace(",", ",,")


def qemu_command(qemu: str, ram: str, memory: int, sock: str, cpus: int) -> List[str]:
    """The QEMU command line of a lab VM (the one docs/live-vm.md shows a teacher)."""
    return [qemu, "-S", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "q35,memory-backend=%s" % BACKEND,
            "-object", "memory-backend-file,id=%s,size=%d,mem-path=%s,share=on"
            % (BACKEND, memory, _escape(ram)),
            "-m", "%dM" % (memory // MIB), "-smp", str(max(1, cpus)),
            "-qmp", "unix:%s,server=on,wait=off" % _escape(sock)]


def place_pages(ram_fd: int, phys: Any, segments: Sequence[Segment]) -> int:
    """Write every page the forge wrote at the RAM-file offset of its guest-physical address;
    the count written. A forged page outside the guest's RAM is an error (the guest is too
    small, or the page falls in the PCI hole)."""
    ordered = sorted(segments)
    starts = [s[0] for s in ordered]
    written = 0
    for first, count in phys.runs():
        for pfn in range(first, first + count):
            address = pfn << 12
            i = bisect_right(starts, address) - 1
            if i < 0 or address >= ordered[i][0] + ordered[i][2]:
                raise TargetError("forged page at physical 0x%x is not guest RAM (give the lab "
                                  "VM more memory)" % address)
            page = phys.page(pfn)
            if page is None:
                continue
            os.pwrite(ram_fd, bytes(page), ordered[i][1] + address - ordered[i][0])
            written += 1
    return written


def _connect(process: subprocess.Popen, sock: str, log: str) -> QmpClient:
    """A QMP connection to the QEMU just started. The socket file appears at bind(), before
    QEMU listens: a refused connection is retried until QEMU exits or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            with open(log, "r", errors="replace") as handle:
                why = " ".join(handle.read().split())[-300:]
            raise TargetError("QEMU exited at start (status %s): %s" % (process.returncode, why))
        if os.path.exists(sock):
            try:
                return QmpClient(sock)
            except TargetError:
                if time.monotonic() >= deadline:
                    raise
        elif time.monotonic() >= deadline:
            raise TargetError("QEMU did not open its QMP socket within %.0f s" % START_TIMEOUT,
                              sock)
        time.sleep(0.02)


def start_lab_vm(scenario: str = "standard", build: str = "win10", memory: Optional[int] = None,
                 folder: Optional[str] = None, qemu: str = QEMU) -> LabVm:
    """Forge `scenario`, start QEMU paused on it, place the forged pages; see the docstring."""
    from pykd_ext.forge.kernel_objects import build_scenario
    from pykd_ext.forge.make_dump import scenario_named
    try:
        spec = scenario_named(scenario)
    except (OSError, ValueError, KeyError) as err:
        raise TargetError("scenario %r: %s" % (scenario, err)) from None
    machine, planted = build_scenario(spec, build)
    span = machine.phys.span_pages() << 12
    size = max(MIN_MEMORY, -(-span // MIB) * MIB) if memory is None else memory
    if size % MIB or size < MIN_MEMORY:
        raise TargetError("lab VM memory must be a whole number of MiB, at least %d MiB"
                          % (MIN_MEMORY // MIB))
    folder = os.path.abspath(folder or default_folder())
    state = _read_state(folder)
    if state is not None and _is_our_qemu(state):
        raise TargetError("a lab VM already runs from this folder (PID %s): `pykd-ext lab vm "
                          "--stop` first" % state.get("pid"), folder)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    ram, sock, log = (os.path.join(folder, name) for name in ("guest.ram", "qmp.sock", "qemu.log"))
    for stale in (ram, sock, os.path.join(folder, STATE)):
        if os.path.lexists(stale):
            os.unlink(stale)
    fd = os.open(ram, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    process = None
    try:
        os.ftruncate(fd, size)                                   # sparse
        with open(log, "wb") as log_file:
            try:
                process = subprocess.Popen(qemu_command(qemu, ram, size, sock, spec.processors),
                                           stdin=subprocess.DEVNULL, stdout=log_file,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as err:
                raise TargetError("cannot start QEMU: %s (Debian: apt-get install "
                                  "qemu-system-x86)" % (err.strerror or err), qemu) from None
        with _connect(process, sock, log) as qmp:
            ranges = ram_ranges(parse_flat_view(qmp.hmp("info mtree -f")), BACKEND)
        segments = [(r.start, r.offset, r.size) for r in ranges]
        written = place_pages(fd, machine.phys, segments)
    except BaseException:
        if process is not None:
            _terminate(process.pid, process)
        os.close(fd)
        _remove_files(folder)
        raise
    os.close(fd)
    vm = LabVm(process.pid, folder, sock, ram, size, scenario, str(planted.build),
               len(planted.processes), written, segments, process)
    with open(os.path.join(folder, "facts.json"), "w", encoding="utf-8") as handle:
        json.dump(planted.__dict__, handle, indent=1, sort_keys=True, default=str)
    with open(os.path.join(folder, STATE), "w", encoding="utf-8") as handle:
        json.dump(vm.record(), handle, indent=1)
    return vm


def _read_state(folder: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(folder, STATE), "r", encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("pid"), int) else None


def _is_our_qemu(state: Dict[str, Any]) -> bool:
    """Whether the recorded PID is still the QEMU we started (its command line names our
    socket): a PID reused by another program is never signalled."""
    try:
        with open("/proc/%d/cmdline" % state["pid"], "rb") as handle:
            cmdline = handle.read().decode("utf-8", "replace")
    except OSError:
        return False
    return str(state.get("socket", "\0")) in cmdline


def _terminate(pid: int, process: Optional[subprocess.Popen] = None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; reaped when it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if process is not None:
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _gone(pid: int) -> bool:
    """Whether a process has exited (reaped here when it is our child, e.g. started by
    `start_lab_vm` in this interpreter; a zombie of another parent counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            zombie = handle.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
    if not zombie:
        return False
    # A zombie leader may still have threads tearing down (QEMU is multi-threaded): ours is
    # gone once reaped; another parent's is gone for us (its parent reaps it).
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def stop_lab_vm(folder: Optional[str] = None, vm: Optional[LabVm] = None) -> Optional[int]:
    """Stop the lab VM of `folder` (or `vm`) by its PID and remove its files; its PID, or None
    when none ran."""
    folder = os.path.abspath(vm.folder if vm is not None else (folder or default_folder()))
    state = vm.record() if vm is not None else _read_state(folder)
    pid = None
    if state is not None:
        if (vm is not None and vm.process is not None) or _is_our_qemu(state):
            pid = int(state["pid"])
            _terminate(pid, vm.process if vm is not None else None)
    _remove_files(folder)
    return pid


def _remove_files(folder: str) -> None:
    """The lab VM's files, then its folder when nothing else is in it."""
    for name in (STATE, "facts.json", "guest.ram", "qmp.sock", "qemu.log"):
        path = os.path.join(folder, name)
        if os.path.lexists(path):
            os.unlink(path)
    try:
        os.rmdir(folder)
    except OSError:
        pass
