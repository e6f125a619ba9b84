"""Finding the process or thread a user named: by image name, by PID/TID, or by structure address.

Why one place: every command (`eproc`, `threads`, `ethread`, `ps NAME`) takes the same kinds of
names, and the rules must not differ between them:
- a bare decimal number is a PID/TID; `0x...`, a backticked WinDbg value (`ffffcf05\u201814782180`) or
  a hex string with letters is hexadecimal; a value above 0xFFFFFFFF is a structure address;
- anything else is an image name, matched case-insensitively against `ImageFileName` (which the
  kernel truncates to 14 characters) and the last component of the full image path.
The active process list is searched first; when it does not have the answer (an unlinked process,
a triage dump) the cross-view sources are searched too. An address nobody lists is accepted only
when the structure there looks like a process/thread of this build (its dispatcher type byte is
the one a known process/thread has, or its Cid/name are self-consistent).
"""
import re
from typing import Any, List, Optional, Tuple, Union

from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import ProcessCensus, all_processes, triage_thread
from pykd_ext.kernel.thread import Thread

#: PIDs/TIDs are 32-bit handle values; larger numbers are addresses.
MAX_ID = 0xFFFFFFFF
#: H10: on 32-bit kernels every structure lives at or above 0x80000000 (the kernel half, even
#: with /3GB at 0xC0000000) and no PID/TID (a handle value, below 2^26) gets there
X86_KERNEL_START = 0x80000000
_HEX = re.compile(r"^(0x)?[0-9a-f]+$", re.IGNORECASE)
_NAME_CHARS = 14   # ImageFileName is [15] UChar: 14 characters and a NUL


def parse_spec(spec: str) -> Tuple[str, Union[int, str]]:
    """("id", n) | ("address", n) | ("name", text) for one user argument."""
    text = spec.strip().replace("`", "")
    lowered = text.lower()
    if lowered.isdigit():
        value = int(lowered, 10)
    elif _HEX.match(lowered) and (lowered.startswith("0x") or any(c in "abcdef" for c in lowered)):
        value = int(lowered, 16)
    else:
        return "name", spec.strip()
    return ("address", value) if value > MAX_ID else ("id", value)


def name_matches(process: Process, wanted: str) -> bool:
    name = process.name
    want = wanted.lower()
    if isinstance(name, str) and name:
        low = name.lower()
        if low == want or (len(low) >= _NAME_CHARS and want.startswith(low)):
            return True
    path = process.image_path
    if isinstance(path, str) and path:
        return path.replace("/", "\\").rsplit("\\", 1)[-1].lower() == want
    return False


class Finder:
    """Lookups over one KernelContext; the cross-view census is built only when needed."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._active: Optional[ProcessCensus] = None
        self._cross: Optional[ProcessCensus] = None
        self._cid: Any = None

    def active(self) -> ProcessCensus:
        if self._active is None:
            self._active = all_processes(self.ctx, cross_view=False)
        return self._active

    def cross(self) -> ProcessCensus:
        if self._cross is None:
            self._cross = all_processes(self.ctx, cross_view=True)
            self._cid = self._cross.cid
        return self._cross

    # ---- processes
    def _parse(self, spec: str) -> Tuple[str, Union[int, str]]:
        """parse_spec, pointer-size aware (H10): a 32-bit kernel's addresses fit in 32 bits."""
        kind, value = parse_spec(spec)
        if kind == "id" and int(getattr(self.ctx, "pointer_size", 8) or 8) == 4 \
                and isinstance(value, int) and value >= X86_KERNEL_START:
            return "address", value
        return kind, value

    def processes(self, spec: str) -> List[Process]:
        """Every process the argument names (several for a name shared by many processes)."""
        kind, value = self._parse(spec)
        for census in (self.active(), None):
            census = census or self.cross()
            found = self._match(census.ordered(), kind, value)
            if found:
                return found
        if kind == "address":
            candidate = Process(self.ctx, int(value))
            if self.looks_like_process(candidate):
                return [candidate]
        if kind != "name":      # "cafe" or "1234" may also be an image name
            for census in (self.active(), self.cross()):
                found = self._match(census.ordered(), "name", spec.strip())
                if found:
                    return found
        return []

    @staticmethod
    def _match(processes: List[Process], kind: str, value: Any) -> List[Process]:
        if kind == "address":
            return [p for p in processes if p.address == value]
        if kind == "id":
            return [p for p in processes if p.pid == value]
        return [p for p in processes if name_matches(p, str(value))]

    def _reference_type(self, type_name: str) -> Optional[int]:
        """The dispatcher `Header.Type` byte a known-good object of this kind has in this dump."""
        if type_name == "_EPROCESS":
            known: List[int] = [p.address for p in self.active().ordered()]
            path = "Pcb.Header.Type"
        else:
            known = [t for t in (triage_thread(self.ctx),) if t]
            known += [p.current_thread for p in self.ctx.processors() if isinstance(p.current_thread, int)]
            path = "Tcb.Header.Type"
        for address in known[:8]:
            value = self.ctx.view(type_name, address, self.ctx.layouts.type(type_name).offset(path) + 1)[path]
            if isinstance(value, int):
                return value
        return None

    def looks_like_process(self, process: Process) -> bool:
        """Dispatcher type like a known process's, a plausible PID and a printable name."""
        pid, name = process.pid, process.name
        if not isinstance(pid, int) or not isinstance(name, str):
            return False
        if pid % 4 or not name or not name.isprintable():
            return False
        reference = self._reference_type("_EPROCESS")
        return reference is None or process.field("Pcb.Header.Type") == reference

    # ---- threads
    def threads(self, spec: str) -> List[Thread]:
        kind, value = self._parse(spec)
        if kind == "name":
            return []
        if kind == "address":
            for thread in self._known_threads(deep=False):
                if thread.address == value:
                    return [thread]
            candidate = Thread(self.ctx, int(value))
            return [candidate] if self.looks_like_thread(candidate) else []
        for thread in self._known_threads(deep=False):
            if thread.tid == value:
                return [thread]
        self.cross()
        address = self._cid.threads.get(value) if self._cid is not None else None
        if address is not None:
            return [Thread(self.ctx, address, ["PspCidTable"])]
        for thread in self._known_threads(deep=True):
            if thread.tid == value:
                return [thread]
        return []

    def _known_threads(self, deep: bool) -> List[Thread]:
        """The triage thread and processors' current threads; with `deep`, every listed thread."""
        found: List[Thread] = []
        t = triage_thread(self.ctx)
        if t:
            found.append(Thread(self.ctx, t, ["TriageBlock"]))
        for proc in self.ctx.processors():
            if isinstance(proc.current_thread, int) and proc.current_thread:
                found.append(Thread(self.ctx, proc.current_thread, ["ProcessorCurrentThread"]))
        if deep:
            for process in self.cross().ordered():
                found.extend(process.threads())
        return found

    def looks_like_thread(self, thread: Thread) -> bool:
        """Dispatcher type like a known thread's, a plausible TID, and an owning process whose
        PID is the thread's Cid.UniqueProcess."""
        tid, pid, owner = thread.tid, thread.pid, thread.process
        if not (isinstance(tid, int) and isinstance(pid, int) and isinstance(owner, int)):
            return False
        if tid <= 0 or tid % 4 or pid % 4 or not owner:
            return False
        reference = self._reference_type("_ETHREAD")
        if reference is not None and thread.field("Tcb.Header.Type") != reference:
            return False
        return Process(self.ctx, owner).pid == pid


def find_processes(ctx: Any, spec: str) -> List[Process]:
    return Finder(ctx).processes(spec)


def find_threads(ctx: Any, spec: str) -> List[Thread]:
    return Finder(ctx).threads(spec)


__all__ = ["Finder", "find_processes", "find_threads", "name_matches", "parse_spec"]
