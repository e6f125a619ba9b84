"""`pykd_ext.open(path)`: the toolkit as a Python library, over the same objects the CLI renders.

Why a facade and not a second model: the commands already find processes and threads (list
walks, the CID table, cross views, name/PID/address lookup) and decode them (`Process`, `Thread`,
`Token`, `Job`, PEB, handles). A notebook user wants those objects without building a `Session`,
a `KernelContext` and a `Finder` by hand, so `Dump` holds them and hands out the kernel objects
themselves, wrapped only where a method name would clash (`Process.token` is the token's address
in the kernel model; here `process.token()` decodes it). Every value is what `--format json`
shows for the same field: ints, strings, lists, or a `Fault` where the dump lacks the memory.
"""
from typing import Any, Dict, Iterator, List, Optional

from pykd_ext.api.typed import TypedStruct
from pykd_ext.errors import NotFoundError, PykdExtError
from pykd_ext.session import Session

#: what `Dump.info` drops from the target's description (bulk lists have their own methods)
_INFO_BULK_KEYS = ("drivers", "modules")


class Process:
    """A kernel process (`_EPROCESS`): the kernel model's `Process` plus the things hanging off it.

    Attributes of the kernel object pass through (`pid`, `ppid`, `name`, `address`, `kind`,
    `protection`, `create_time_raw`, `handle_count`, `record()`, ...); `create_time` is ISO text.
    """

    def __init__(self, dump: "Dump", kernel_process: Any) -> None:
        self._dump = dump
        self.kernel = kernel_process

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)

    def __repr__(self) -> str:
        return "Process(0x%x, pid=%r, %r)" % (self.kernel.address, self.kernel.pid, self.kernel.name)

    @property
    def create_time(self) -> Any:
        """`CreateTime` as ISO-8601 UTC text (the record's `create_time`)."""
        return self.kernel.record(with_threads=False)["create_time"]

    def record(self) -> Dict[str, Any]:
        """The `ps`/`eproc` JSON record of this process."""
        return self.kernel.record()

    def threads(self) -> List["Thread"]:
        """Threads from both thread lists (`!process <p> 2`)."""
        return [Thread(self._dump, t) for t in self.kernel.threads()]

    def token(self) -> Any:
        """The primary token, decoded (`!token`); None when the process has none."""
        from pykd_ext.kernel.token import Token
        address = self.kernel.token
        if not isinstance(address, int) or not address:
            return None
        return Token(self._dump.context, address)

    def handles(self) -> List[Dict[str, Any]]:
        """The process's handles as `handles` records (type, name, access, object)."""
        from pykd_ext.kernel.handles import HandleDecoder, scan_handle_table
        table = self.kernel.field("ObjectTable")
        if not isinstance(table, int) or not table:
            return []
        ctx = self._dump.context
        decoder = HandleDecoder(ctx)
        owner = {"pid": self.kernel.pid, "process": self.kernel.name}
        scan = scan_handle_table(ctx, table, details=True)
        return [decoder.record(entry, owner=owner) for entry in scan.raw]

    def job(self) -> Any:
        """The `Job` the process belongs to, or None."""
        from pykd_ext.kernel.job import Job
        address = self.kernel.job
        if not isinstance(address, int) or not address:
            return None
        return Job(self._dump.context, address)

    def vads(self) -> List[Dict[str, Any]]:
        """The process's VADs in address order (`!vad`; `kernel.vad.walk_vads`, docs/scheduling.md)."""
        from pykd_ext.kernel.vad import walk_vads
        return walk_vads(self._dump.context, self.kernel.address, self.kernel.name).vads

    def peb(self) -> Dict[str, Any]:
        """The PEB record (`!peb`): image path, command line, environment, loader state."""
        return self._user_decoding(with_modules=False).record

    def modules(self) -> List[Dict[str, Any]]:
        """User-mode modules from the PEB loader lists (64-bit, then the WoW64 32-bit ones)."""
        decoding = self._user_decoding(with_modules=True)
        return [dict(m) for listing in decoding.listings() for m in listing.modules]

    def _user_decoding(self, with_modules: bool) -> Any:
        from pykd_ext.kernel.peb import decode_user_process
        from pykd_ext.kernel.userspace import from_kernel_process
        user = from_kernel_process(self._dump.context, self.kernel)
        return decode_user_process(user, with_modules=with_modules)


class Thread:
    """A kernel thread (`_ETHREAD`): the kernel model's `Thread`, with its process one call away."""

    def __init__(self, dump: "Dump", kernel_thread: Any) -> None:
        self._dump = dump
        self.kernel = kernel_thread

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)

    def __repr__(self) -> str:
        return "Thread(0x%x, tid=%r)" % (self.kernel.address, self.kernel.tid)

    def record(self) -> Dict[str, Any]:
        """The `threads`/`ethread` JSON record of this thread."""
        return self.kernel.record()

    def scheduling(self) -> Dict[str, Any]:
        """Priorities and boost, quantum, cycles, ideal/next processor, affinity (groups) and
        `Ticks:` since the last state change (`kernel.scheduling.thread_scheduling`; docs/scheduling.md)."""
        from pykd_ext.kernel.scheduling import thread_scheduling
        return thread_scheduling(self._dump.context, self.kernel)

    def teb(self) -> Dict[str, Any]:
        """The TEB record (`!teb`), with `fiber` (whether the thread runs fibers, the current
        fiber, FlsData: `kernel.fibers`) and, for WoW64 threads, `teb32`."""
        from pykd_ext.kernel.teb import kernel_thread_tebs
        (_, _, decoding), = kernel_thread_tebs(self._dump.context, [self.kernel])
        return decoding.record

    def owner(self) -> Optional[Process]:
        """The process this thread belongs to (`_KTHREAD.Process`)."""
        address = self.kernel.process
        if not isinstance(address, int) or not address:
            return None
        from pykd_ext.kernel.process import Process as KernelProcess
        return Process(self._dump, KernelProcess(self._dump.context, address))


class Dump:
    """One opened target (dump file, raw image, or the debugger's session inside WinDbg)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._finder: Any = None

    # ---- lifetime
    def close(self) -> None:
        """Release the target (file maps, the debugger's dump); the objects handed out go stale."""
        self.session.close()

    def __enter__(self) -> "Dump":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Dump(%r)" % (self.session.target_path or "<debugger>")

    # ---- what it is
    @property
    def info(self) -> Dict[str, Any]:
        """What `pykd-ext info` shows: container, dump type, arch, build, bugcheck, DTB, KDBG, ..."""
        from pykd_ext.layouts.version_choice import annotate_info
        target_info = self.session.target.info()
        annotate_info(target_info)
        info = target_info.to_dict()
        extra = dict(info.get("extra") or {})
        for key in _INFO_BULK_KEYS:
            extra.pop(key, None)
        info["extra"] = extra
        return info

    @property
    def layouts(self) -> Any:
        """The kernel layouts chosen for this target (`layouts.choice` says how)."""
        return self.session.layouts

    @property
    def context(self) -> Any:
        """The kernel context every decoder of this target shares (globals, processors, caches)."""
        from pykd_ext.kernel.context import context_for
        return context_for(self.session)

    def _lookup(self) -> Any:
        if self._finder is None:
            from pykd_ext.kernel.lookup import Finder
            self._finder = Finder(self.context)
        return self._finder

    # ---- processes and threads
    def processes(self, spec: Optional[str] = None, cross_view: bool = False) -> Iterator[Process]:
        """Processes on the active list (with `cross_view`, also those only other sources know);
        with `spec` (image name, PID, `_EPROCESS` address), every process it names."""
        if spec is not None:
            found = self._lookup().processes(_spec_text(spec))
        else:
            finder = self._lookup()
            found = (finder.cross() if cross_view else finder.active()).ordered()
        for process in found:
            yield Process(self, process)

    def process(self, spec: Any) -> Process:
        """The one process `spec` names; NotFoundError when none, or when several share a name
        (then `processes(spec)` lists them)."""
        found = list(self.processes(_spec_text(spec)))
        if not found:
            raise NotFoundError("no process matches %r" % (spec,))
        if len(found) > 1:
            raise NotFoundError("%d processes match %r (PIDs %s); use processes(%r)"
                                % (len(found), spec, ", ".join(str(p.pid) for p in found), spec))
        return found[0]

    def threads(self) -> Iterator[Thread]:
        """Every thread of every process on the active list, process by process."""
        for process in self._lookup().active().ordered():
            for thread in process.threads():
                yield Thread(self, thread)

    def thread(self, spec: Any) -> Thread:
        """The thread a TID or `_ETHREAD` address names."""
        found = self._lookup().threads(_spec_text(spec))
        if not found:
            raise NotFoundError("no thread matches %r" % (spec,))
        return Thread(self, found[0])

    def ready(self) -> List[Dict[str, Any]]:
        """The ready queues (`!ready`): each processor's and each shared queue's summary and
        ready threads, highest priority first (`kernel.scheduling.ready_queues`)."""
        from pykd_ext.kernel.scheduling import ready_queues
        out = []
        for queue in ready_queues(self.context):
            record = queue.to_dict()
            record["threads"] = [{"priority": p, "thread": t} for p, t in queue.threads]
            out.append(record)
        return out

    def running(self) -> List[Dict[str, Any]]:
        """Each processor's PRCB with its current, next (standby) and idle thread (`!running`)."""
        return [proc.to_dict() for proc in self.context.processors()]

    def drivers(self) -> List[Dict[str, Any]]:
        """Loaded kernel modules (`PsLoadedModuleList`, or a triage dump's driver list)."""
        return [{"base": base, "end": base + size, "size": size, "name": name}
                for base, size, name in self.context.modules()]

    # ---- raw structures
    def struct(self, type_name: str, address: int) -> TypedStruct:
        """`dt`-style typed access to any structure of the target's layouts at `address`."""
        layout = self.session.layouts.type(type_name)
        return TypedStruct(self.session.target.kernel, layout, int(address))


def _spec_text(spec: Any) -> str:
    """API arguments may be ints (a PID or an address) or text as the CLI takes it."""
    if isinstance(spec, bool):
        raise PykdExtError("a process or thread is named by image name, id or address, not %r" % spec)
    if isinstance(spec, int):
        return "0x%x" % spec        # hex with its prefix reads the same under any default radix
    return str(spec)


def open(path: Optional[str] = None, symbols: Optional[str] = None, build: Optional[str] = None,
         engine: str = "file") -> Dump:
    """Open a dump, raw image or (with no path, inside WinDbg) the debugger's current session."""
    if path is None or engine == "pykd":
        from pykd_ext.windbg.session import PykdSession
        return Dump(PykdSession(dump_path=path, symbols=symbols, build=build))
    session = Session(target_path=str(path), symbols=symbols, build=build, quiet=True)
    session.target  # open now: a wrong path fails here, with the typed error   # noqa: B018
    return Dump(session)
