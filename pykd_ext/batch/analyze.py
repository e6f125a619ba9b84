"""One dump in, its crash record out: the rows `pykd-ext batch` stores for that dump.

Why a function of plain data: the same call runs in a local worker process or on a Dask worker,
and its result crosses a process boundary; so it takes a path and returns dicts of ints, text
and datetimes (`CrashRecord`), never live objects. It reads the dump only through the project's
object model (`pykd_ext.open`: `info`, `drivers`, `processes`, `threads`, `thread`, `struct`) and
the target's own statements (`target.info()`: the triage driver list, the saved stack, the
crashing thread), so real and forged dumps take the same path.

What is unknown or unreadable is data: a field the dump lacks is None (and counted in
`unreadable`), a step that cannot run adds a note; only a file that cannot be opened at all
raises (a `PykdExtError`, which the runner turns into an error row with its one-line reason).
"""
import datetime
from typing import Any, Dict, List, Optional, Sequence

from pykd_ext.batch import bugcodes
from pykd_ext.batch.blame import blame, bucket_names
from pykd_ext.batch.modules import ModuleMap
from pykd_ext.batch.stackscan import frame, scan_stack
from pykd_ext.disasm.listing import faulting_instruction
from pykd_ext.errors import PykdExtError
from pykd_ext.targets.arch import DEFAULT_ARCH, arch_named

#: Bounds per dump (a full dump can list thousands of threads; rows stay bounded).
MAX_PROCESSES = 4096
MAX_THREADS = 32768
MAX_HANDLES = 65536
FAULT_BYTES = 16
#: What `--with` may add to the default tables.
OPTIONAL_TABLES = ("handles",)

_FILETIME_EPOCH = datetime.datetime(1601, 1, 1)


def filetime(value: Any) -> Optional[datetime.datetime]:
    """A FILETIME as a naive UTC datetime (DuckDB TIMESTAMP), None when absent or absurd."""
    if not isinstance(value, int) or value <= 0:
        return None
    try:
        return _FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def _plain(value: Any) -> Any:
    """A decoded value as stored: Faults and other markers become None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None


def _u64(value: Any) -> Optional[int]:
    return value & 0xFFFFFFFFFFFFFFFF if isinstance(value, int) and not isinstance(value, bool) else None


#: {"dump": {...}, "drivers": [...], "processes": [...], "threads": [...], "stack_frames": [...],
#: "handles": [...]} for one dump: plain dicts and lists (picklable, any process can read it)
CrashRecord = Dict[str, Any]


def _record_reader(dump: Any, target: Any, arch_name: str) -> Any:
    """The blame rules' reader of records a parameter points at: code address or None.
    The records are the architecture's own (EXCEPTION_RECORD of its pointer width, `_CONTEXT`
    with its instruction pointer member, `Arch.instruction_pointer`)."""
    from pykd_ext.targets.dumpheader import exception_record
    arch = arch_named(arch_name)
    record = exception_record(8 * arch.pointer_size) if arch is not None else None

    def read(role: str, address: int) -> Optional[int]:
        if not isinstance(address, int) or not address or arch is None or record is None \
                or not arch.instruction_pointer:
            return None
        try:
            if role == "exception_record":
                raw = target.kernel.read(address, record.sizeof())
                return int(record.parse(bytes(raw)).ExceptionAddress) or None
            if role == "context_record":
                rip = getattr(dump.struct("_CONTEXT", address), arch.instruction_pointer)
                return rip if isinstance(rip, int) and rip else None
        except (PykdExtError, ValueError, AttributeError, KeyError):
            return None
        except Exception:                          # a construct parse of unreadable bytes
            return None
        return None                                 # trap frames: no _KTRAP_FRAME layout shipped
    return read


def _first_sentence(err: PykdExtError) -> str:
    """The reason without the advice that follows it (notes repeat on thousands of rows)."""
    text = " ".join(err.message.split())
    cut = text.find(". ")
    return text[:cut + 1] if cut > 0 else text


def _drivers(dump: Any, info_extra: Dict[str, Any], notes: List[str]) -> List[Dict[str, Any]]:
    listed = info_extra.get("drivers")
    if isinstance(listed, list):
        return [d for d in listed if isinstance(d, dict)]
    if info_extra.get("threads") is not None and info_extra.get("streams") is not None:
        return []                                   # a user-mode minidump has no kernel modules
    try:
        return [dict(d) for d in dump.drivers()]
    except PykdExtError as err:
        notes.append("kernel modules not listed: %s" % _first_sentence(err))
        return []


def _frames(target: Any, extra: Dict[str, Any], arch_name: str, modules: ModuleMap,
            notes: List[str]) -> List[Dict[str, Any]]:
    """The context frame, then the stack scan (see `stackscan`)."""
    out: List[Dict[str, Any]] = []
    arch = arch_named(arch_name) or DEFAULT_ARCH
    registers = arch.context_registers(extra.get("context"))
    rsp = None
    if registers is not None:
        rip, rsp = registers
        if rip:
            out.append(frame(0, "context", rsp if isinstance(rsp, int) else None, rip, modules))
    stack = extra.get("stack")
    if isinstance(stack, (list, tuple)) and len(stack) == 2 and len(modules):
        top, size = stack
        try:
            out.extend(scan_stack(target.kernel, int(top), int(size), modules,
                                  start=rsp if isinstance(rsp, int) else None,
                                  first_index=len(out),
                                  pointer_size=arch.pointer_size))
        except PykdExtError as err:
            notes.append("saved stack not readable: %s" % err.one_line())
    elif not isinstance(stack, (list, tuple)):
        notes.append("the dump holds no saved stack of the crashing thread")
    return out


def _crash_thread(dump: Any, address: Any, notes: List[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"thread_address": _u64(address), "tid": None, "pid": None,
                           "process_address": None, "process_name": None}
    if not isinstance(address, int) or not address:
        return out
    try:
        thread = dump.thread(address)
        out["tid"] = _plain(thread.tid)
        out["pid"] = _plain(thread.pid)
        owner = thread.owner()
        if owner is not None:
            out["process_address"] = _u64(owner.address)
            out["process_name"] = _plain(owner.name)
            if out["pid"] is None:
                out["pid"] = _plain(owner.pid)
    except PykdExtError as err:
        notes.append("crashing thread not decoded: %s" % _first_sentence(err))
    return out


def _processes(dump: Any, notes: List[str]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    try:
        for process in dump.processes(cross_view=True):
            if len(rows) >= MAX_PROCESSES:
                notes.append("more than %d processes: the rest are not stored" % MAX_PROCESSES)
                break
            kernel = process.kernel
            rows.append({"address": _u64(kernel.address), "pid": _plain(kernel.pid),
                         "ppid": _plain(kernel.ppid), "name": _plain(kernel.name),
                         "create_time": filetime(kernel.create_time_raw),
                         "found_by": ",".join(getattr(kernel, "found_by", None) or []) or None})
    except PykdExtError as err:
        notes.append("processes not listed: %s" % err.one_line())
    return rows


def _threads(dump: Any, crash_address: Any, notes: List[str]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    seen = set()

    def add(thread: Any) -> None:
        record = thread.record()
        address = _u64(record.get("address"))
        if address in seen:
            return
        seen.add(address)
        rows.append({"address": address, "tid": _plain(record.get("tid")),
                     "pid": _plain(record.get("pid")), "state": _plain(record.get("state")),
                     "wait_reason": _plain(record.get("wait_reason")),
                     "start_address": _u64(_plain(record.get("start_address"))),
                     "start_module": _plain(record.get("start_module")),
                     "crashing": address == crash_address})
    try:
        if isinstance(crash_address, int) and crash_address:
            add(dump.thread(crash_address))
        for thread in dump.threads():
            if len(rows) >= MAX_THREADS:
                notes.append("more than %d threads: the rest are not stored" % MAX_THREADS)
                break
            add(thread)
    except PykdExtError as err:
        notes.append("threads not listed: %s" % err.one_line())
    return rows


def _handles(dump: Any, notes: List[str]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    try:
        for process in dump.processes():
            for handle in process.handles():
                if len(rows) >= MAX_HANDLES:
                    notes.append("more than %d handles: the rest are not stored" % MAX_HANDLES)
                    return rows
                rows.append({"pid": _plain(process.pid), "handle": _plain(handle.get("handle")),
                             "type": _plain(handle.get("type")), "name": _plain(handle.get("name")),
                             "object": _u64(_plain(handle.get("object"))),
                             "access": _u64(_plain(handle.get("access")))})
    except PykdExtError as err:
        notes.append("handles not listed: %s" % err.one_line())
    return rows


def analyze_dump(path: str, with_tables: Sequence[str] = ()) -> CrashRecord:
    """The crash record of one dump (the `dumps` row without identity, and the child rows)."""
    import pykd_ext
    notes: List[str] = []
    dump = pykd_ext.open(path)
    try:
        target = dump.session.target
        target_info = target.info()
        info = dump.info
        extra_all = target_info.extra or {}
        arch = str(info.get("arch") or "")
        code = info.get("bugcheck_code")
        parameters = [int(p) for p in (info.get("bugcheck_parameters") or [])][:4]
        header_exception = extra_all.get("exception") if isinstance(extra_all.get("exception"), dict) else None
        if code is None and header_exception and isinstance(header_exception.get("code"), int):
            notes.append("user-mode dump: no bugcheck; bucketed by its exception code")

        drivers = _drivers(dump, extra_all, notes)
        modules = ModuleMap(((d.get("base"), d.get("size"), d.get("name")) for d in drivers),
                            kernel_base=info.get("kernel_base"))
        frames = _frames(target, extra_all, arch, modules, notes)
        verdict = blame(code, parameters, modules, frames, _record_reader(dump, target, arch),
                        header_exception)
        if verdict["blame_source"] == "stack scan":
            notes.append("blame from a stack scan (return-address candidates), not an unwind")

        fault_bytes = None
        fault_at = verdict["fault_address"]
        if fault_at is None and frames and frames[0]["source"] == "context":
            fault_at = frames[0]["address"]
        if isinstance(fault_at, int):
            try:
                fault_bytes = bytes(target.kernel.read(fault_at, FAULT_BYTES)).hex()
            except PykdExtError:
                fault_bytes = None
        # H8 (issue 15): the instruction at the fault, disassembled (None: code not in the dump)
        fault_instruction = faulting_instruction(target, fault_at)

        layout = None
        processes: List[Dict[str, Any]] = []
        threads: List[Dict[str, Any]] = []
        try:
            layout = str(dump.layouts.version or dump.layouts.build_id)   # inferred layouts: no version
        except PykdExtError as err:
            notes.append("no kernel layouts, so no process/thread decoding: %s" % _first_sentence(err))
        crash = {"thread_address": _u64(extra_all.get("thread")), "tid": None, "pid": None,
                 "process_address": None, "process_name": None}
        if layout is not None:
            crash = _crash_thread(dump, extra_all.get("thread"), notes)
            if code is not None:
                processes = _processes(dump, notes)
                threads = _threads(dump, crash["thread_address"], notes)
        handles = _handles(dump, notes) if "handles" in with_tables and layout is not None else []

        if code is not None:
            name: Optional[str] = bugcodes.name_of(code)
        elif header_exception and isinstance(header_exception.get("code"), int):
            name = "USER_EXCEPTION_0x%08X" % header_exception["code"]
        else:
            name = None
        coarse, fine = bucket_names(name, verdict["blamed_module"], verdict["blamed_offset"])
        meanings = bugcodes.meanings(code, parameters) if code is not None else ["", "", "", ""]
        params = parameters + [None] * (4 - len(parameters))
        extra = info.get("extra") or {}
        uptime = info.get("system_uptime")
        row: Dict[str, Any] = {
            "container": info.get("container"), "dump_type": info.get("dump_type"),
            "dump_type_code": info.get("dump_type_code"), "arch": arch or None,
            "build": info.get("build"), "kernel_version": extra.get("kernel_version"),
            "processors": info.get("processors"),
            "crash_time": filetime(info.get("system_time")),
            "uptime_seconds": uptime / 1e7 if isinstance(uptime, int) and uptime >= 0 else None,
            "bugcheck_code": _u64(code), "bugcheck_name": name,
            "param1": _u64(params[0]), "param2": _u64(params[1]), "param3": _u64(params[2]),
            "param4": _u64(params[3]),
            "param1_meaning": meanings[0] or None, "param2_meaning": meanings[1] or None,
            "param3_meaning": meanings[2] or None, "param4_meaning": meanings[3] or None,
            "exception_code": _u64((header_exception or {}).get("code")) if code is None else None,
            "processor": extra.get("processor"),
            "process_name": crash["process_name"], "pid": crash["pid"], "tid": crash["tid"],
            "thread_address": crash["thread_address"], "process_address": crash["process_address"],
            "fault_address": _u64(verdict["fault_address"]),
            "fault_location": verdict["fault_location"], "fault_bytes": fault_bytes,
            "fault_instruction": fault_instruction,
            "blamed_module": verdict["blamed_module"], "blamed_offset": verdict["blamed_offset"],
            "blamed_address": _u64(verdict["blamed_address"]),
            "blame_source": verdict["blame_source"], "bucket": coarse, "bucket_detail": fine,
            "frame_count": len(frames), "layout": layout,
            "notes": "; ".join(list(info.get("notes") or []) + notes) or None,
        }
        driver_rows = [{"idx": i, "name": d.get("name"), "base": _u64(d.get("base")),
                        "size": d.get("size"),
                        "end_address": _u64((d.get("base") or 0) + (d.get("size") or 0))
                        if isinstance(d.get("base"), int) and isinstance(d.get("size"), int) else None,
                        "timestamp": d.get("timestamp"), "checksum": d.get("checksum")}
                       for i, d in enumerate(drivers)]
        frame_rows = [{"frame": f["frame"], "source": f["source"],
                       "stack_address": _u64(f["stack_address"]), "address": _u64(f["address"]),
                       "module": f["module"], "module_offset": f["offset"]} for f in frames]
        return {"dump": row, "drivers": driver_rows, "processes": processes, "threads": threads,
                "stack_frames": frame_rows, "handles": handles}
    finally:
        dump.close()
