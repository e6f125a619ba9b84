"""Finding the process or thread a user named: by image name, by PID/TID, or by structure address.

Why one place: every command (`eproc`, `threads`, `ethread`, `ps NAME`) takes the same kinds of
names, and the rules must not differ between them:
- numbers follow WinDbg's default radix 16 (`parse_number`): a bare number is hexadecimal
  (`60` is 0x60), `0n636` decimal, `0x60` hex, `0y1010` binary, and 64-bit values may carry
  WinDbg's backtick (`ffffcf05\u201814782180`); `--radix 10` makes bare numbers decimal again
  (`using_radix`). A value above 0xFFFFFFFF is a structure address, a smaller one a PID/TID;
- anything else is an image name, matched case-insensitively against `ImageFileName` (which the
  kernel truncates to 14 characters) and the last component of the full image path. A token that
  is both a number and a name (`add`, `cafe`) is a number first, like WinDbg; a process of that
  name is found when the number finds nothing, and `Finder.notes` says when both exist.
The active process list is searched first; when it does not have the answer (an unlinked process,
a triage dump) the cross-view sources are searched too. An address nobody lists is accepted only
when the structure there looks like a process/thread of this build (its dispatcher type byte is
the one a known process/thread has, or its Cid/name are self-consistent).
"""
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

from pykd_ext.kernel.numbers import RADIXES, default_radix, parse_number, using_radix
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.processes import ProcessCensus, all_processes, triage_thread
from pykd_ext.kernel.thread import Thread
from pykd_ext.targets.arch import arch_or_pointer_size

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: PIDs/TIDs are 32-bit handle values; larger numbers are addresses.
MAX_ID = 0xFFFFFFFF
_NAME_CHARS = 14   # ImageFileName is [15] UChar: 14 characters and a NUL

def parse_spec(spec: str) -> Tuple[str, Union[int, str]]:
    """("id", n) | ("address", n) | ("name", text) for one user argument (see the module doc)."""
    text = spec.strip()
    value = parse_number(text)
    if value is None or value < 0:
        return "name", text
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

    def __init__(self, ctx: "KernelContext") -> None:
        self.ctx = ctx
        self._active: Optional[ProcessCensus] = None
        self._cross: Optional[ProcessCensus] = None
        self._cid: Any = None
        #: what the lookups want the user to know (a number that is also a process name)
        self.notes: List[str] = []

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
        """parse_spec, pointer-size aware (H10): a 32-bit kernel's addresses fit in 32 bits. Every
        structure lives in the kernel half (`Arch.kernel_start`: 0x80000000 on x86, even with /3GB
        at 0xC0000000) and no PID/TID (a handle value, below 2^26) gets there."""
        kind, value = parse_spec(spec)
        if kind == "id" and isinstance(value, int):
            arch = arch_or_pointer_size(getattr(getattr(self.ctx, "info", None), "arch", None),
                                        int(getattr(self.ctx, "pointer_size", 8) or 8))
            if arch.is_kernel_address(value):
                return "address", value
        return kind, value

    def processes(self, spec: str) -> List[Process]:
        """Every process the argument names (several for a name shared by many processes)."""
        kind, value = self._parse(spec)
        for census in (self.active(), None):
            census = census or self.cross()
            found = self._match(census.ordered(), kind, value)
            if found:
                self._note_name_too(spec, kind, value)
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

    def _note_name_too(self, spec: str, kind: str, value: Any) -> None:
        """A bare token read as a number (`add`) that also names a process: say so."""
        text = spec.strip()
        if kind == "name" or not any(c.isalpha() for c in text) or text.lower().startswith(("0x", "0n", "0y", "0t")):
            return
        if self._match(self.active().ordered(), "name", text):
            note = ("%r was read as the number 0x%x (WinDbg's radix 16); a process named %r also "
                    "exists: name it by its PID or address" % (text, value, text))
            self.notes.append(note)
            shown = getattr(self.ctx, "notes", None)      # the command prints the context's notes
            if isinstance(shown, list) and note not in shown:
                shown.append(note)

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


def find_processes(ctx: "KernelContext", spec: str) -> List[Process]:
    return Finder(ctx).processes(spec)


def find_threads(ctx: "KernelContext", spec: str) -> List[Thread]:
    return Finder(ctx).threads(spec)


__all__ = ["RADIXES", "Finder", "default_radix", "find_processes", "find_threads", "name_matches", "parse_number",
           "parse_spec", "using_radix"]
