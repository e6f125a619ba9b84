"""WinDbg-shaped text for processes and threads (`!process`, `!thread` layouts).

Why: a student holds our output next to a WinDbg session; the known lines must have the same
shape (see `/work/shared/reference/windbg-output.md`: `PROCESS` blocks, `%04x` Cids,
`HandleCount: %4d.`, `SessionId: none`, `THREAD ... WAIT: (Reason) Mode Alertable`, `!thread`'s
label columns). What we decode beyond WinDbg (protection, kind, layout, how a process was found)
goes on extra lines *after* the known ones. The formatters take the JSON records (plus an optional
`more` dict of display-only values such as ObjectTable or Win32Thread) and never read memory, so
any command can reuse them.
"""
from typing import Any, Dict, List, Optional

from pykd_ext.kernel.times import duration_100ns, filetime_to_windbg, ticks_text
from pykd_ext.memory.faults import Fault

ACTIVE_PROCESS_BANNER = "**** NT ACTIVE PROCESS DUMP ****"
#: `!process <p> 1` labels are left-justified to column 38 (4 indent + 34)
DETAIL_LABEL = 34
#: `!thread` labels are padded to column 26; second fields start at 41 (49 after a 16-hex value)
THREAD_LABEL = 26
THREAD_SECOND = 41
THREAD_SECOND_AFTER_POINTER = 49
IMAGE_VALUE_GAP = 15

#: `_KTHREAD_STATE` names -> WinDbg's words (states WinDbg does not name are upper-cased)
STATE_WORDS = {"Waiting": "WAIT", "Running": "RUNNING", "Ready": "READY", "Standby": "STANDBY",
               "Terminated": "TERMINATED", "Transition": "TRANSITION",
               "DeferredReady": "DEFERREDREADY", "Initialized": "INITIALIZED"}
#: `_KOBJECTS` names -> how `!thread` names a wait object's dispatcher type
DISPATCHER_WORDS = {"EventNotificationObject": "NotificationEvent",
                    "EventSynchronizationObject": "SynchronizationEvent",
                    "MutantObject": "Mutant", "SemaphoreObject": "Semaphore",
                    "TimerNotificationObject": "NotificationTimer",
                    "TimerSynchronizationObject": "SynchronizationTimer"}


def hx(value: Any, width: int = 0) -> str:
    """Hex without 0x, zero-padded to `width`; a Fault's marker; `?` for unknown."""
    if isinstance(value, Fault):
        return value.marker
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        return "?" if value is None else str(value)
    return "%0*x" % (width, value)


def hx0x(value: Any, width: int = 0) -> str:
    """`hx` with WinDbg's `0x` prefix on numbers only: a Fault is its bare `<not in dump>` marker."""
    text = hx(value, width)
    return "0x" + text if isinstance(value, int) and not isinstance(value, bool) else text


def dec(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    if value is None:
        return "?"
    return str(value)


def _ptr_width(more: Optional[Dict[str, Any]]) -> int:
    return int((more or {}).get("pointer_width", 16))


# ---- processes
def process_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """The four lines of one `!process 0 0` block (no trailing blank line)."""
    more = more or {}
    width = _ptr_width(more)
    lines = ["PROCESS %s" % hx(rec.get("address"), width)]
    if isinstance(rec.get("name"), Fault) and isinstance(rec.get("pid"), Fault):
        fault = rec["name"]
        lines.append("    <_EPROCESS not in this dump: %s>" % fault)
        return lines
    session = rec.get("session_id")
    session_text = "none" if session is None else dec(session)
    lines.append("    SessionId: %s  Cid: %s    Peb: %s  ParentCid: %s"
                 % (session_text, hx(rec.get("pid"), 4), hx(rec.get("peb"), 8), hx(rec.get("ppid"), 4)))
    handles = rec.get("handle_count")
    handle_text = "%4d." % handles if isinstance(handles, int) else "<Data Not Accessible>"
    lines.append("    DirBase: %s  ObjectTable: %s  HandleCount: %s"
                 % (hx(rec.get("dtb"), 8), hx(more.get("object_table"), width), handle_text))
    name = rec.get("name")
    lines.append("    Image: %s" % (name.marker if isinstance(name, Fault) else name))
    return lines


def _detail(label: str, value: str) -> str:
    return ("    %-*s%s" % (DETAIL_LABEL, label, value)).rstrip()


def process_detail_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """The lines `!process <p> 1` adds (those we can decode), labels to column 38."""
    more = more or {}
    width = _ptr_width(more)
    out: List[str] = []
    if "vad_root" in more:
        # WinDbg goes on with `Clone N Private N. Modified N. Locked N.`: left out (docs/windbg-text.md)
        vads = " Vads %s" % dec(more["vad_count"]) if more.get("vad_count") is not None else ""
        out.append("    VadRoot %s%s" % (hx(more.get("vad_root"), width), vads))
    if "device_map" in more:
        out.append("    DeviceMap %s" % hx(more.get("device_map"), width))
    out.append(_detail("Token", hx(rec.get("token"), width)))
    if more.get("elapsed") is not None:
        out.append(_detail("ElapsedTime", duration_100ns(more["elapsed"])))
    increment = more.get("time_increment")
    for label, key in (("UserTime", "user_ticks"), ("KernelTime", "kernel_ticks")):
        if key in more:
            out.append(_detail(label, ticks_text(more[key], increment)))
    for label, key in (("PeakWorkingSetSize", "peak_working_set"), ("PageFaultCount", "page_fault_count")):
        if key in more:
            out.append(_detail(label, dec(more[key])))
    for label, key in (("VirtualSize", "virtual_size"), ("PeakVirtualSize", "peak_virtual_size")):
        value = more.get(key)
        if isinstance(value, int):
            out.append(_detail(label, "%d Mb" % (value // (1024 * 1024))))
    if "base_priority" in more:
        out.append(_detail("BasePriority", dec(more["base_priority"])))
    if "commit_charge" in more:
        out.append(_detail("CommitCharge", dec(more["commit_charge"])))
    job = rec.get("job")
    if job:
        out.append(_detail("Job", hx(job, width)))
    return out


def protection_text(prot: Any) -> str:
    if prot is None:
        return "none"
    if isinstance(prot, Fault):
        return prot.marker
    return "%s (type %s, signer %s%s)" % (prot["text"], prot["type"], prot["signer"],
                                          ", audit" if prot.get("audit") else "")


def process_extra_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """Decoded extras, after the WinDbg lines: kind, protection, image path, threads, times, how found."""
    out = [_detail("Kind", "%s (flags: %s)" % (rec.get("kind"), ", ".join(rec.get("kind_flags") or [])))]
    prot = protection_text(rec.get("protection"))
    levels = ""
    if rec.get("signature_level") is not None:
        levels = "  SignatureLevel %s  SectionSignatureLevel %s" % (
            "0x" + hx(rec.get("signature_level"), 2), "0x" + hx(rec.get("section_signature_level"), 2))
    out.append(_detail("Protection", prot + levels))
    path = rec.get("image_path")
    out.append(_detail("ImagePath", path.marker if isinstance(path, Fault) else (path or "(none)")))
    out.append(_detail("Threads", "active %s, listed %s" % (dec(rec.get("threads_active")),
                                                           dec(rec.get("threads_listed")))))
    out.append(_detail("CreateTime", filetime_to_windbg(rec.get("create_time_raw"))))
    if rec.get("exit_time_raw"):
        out.append(_detail("ExitTime", "%s  ExitStatus %s" % (filetime_to_windbg(rec.get("exit_time_raw")),
                                                             hx0x(rec.get("exit_status"), 8))))
    if rec.get("user_dtb"):
        out.append(_detail("UserDirBase", hx(rec.get("user_dtb"), 8)))
    if rec.get("wow64"):
        out.append(_detail("Wow64", "yes  Peb32 %s" % hx(rec.get("peb32"), 8)))
    out.append(_detail("FoundBy", ", ".join(rec.get("found_by") or []) or "address given"))
    out.append(_detail("Layout", str((more or {}).get("layout_label") or rec.get("layout"))))
    return out


# ---- threads
def thread_state_text(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> str:
    """`WAIT: (WrLpcReceive) UserMode Non-Alertable`, `RUNNING on processor 0`, `READY on processor 2`..."""
    more = more or {}
    state = rec.get("state")
    if isinstance(state, Fault):
        return state.marker
    if state == "Waiting":
        reason = rec.get("wait_reason")
        mode = rec.get("wait_mode")
        alertable = rec.get("alertable")
        return "WAIT: (%s) %s %s" % (dec(reason), dec(mode),
                                     "Alertable" if alertable is True else "Non-Alertable")
    if isinstance(state, str):
        word = STATE_WORDS.get(state, state.upper())
        if state == "Running":
            cpu = rec.get("running_on")
            cpu = cpu if cpu is not None else more.get("next_processor")
            return "%s on processor %s" % (word, dec(cpu))
        if state == "Ready":
            return "%s on processor %s" % (word, dec(more.get("next_processor")))
        return word
    return "State %s" % dec(state)


def wait_object_lines(rec: Dict[str, Any], indent: int, more: Optional[Dict[str, Any]] = None) -> List[str]:
    width = _ptr_width(more)
    details = (more or {}).get("wait_details") or {}
    out = []
    for obj in rec.get("wait_objects") or []:
        kind = obj.get("type")
        word = DISPATCHER_WORDS.get(kind, kind[:-6] if isinstance(kind, str) and kind.endswith("Object")
                                    else ("DispatcherType %s" % dec(kind)))
        extra = details.get(obj.get("address"), "")
        out.append("%s%s  %s%s" % (" " * indent, hx(obj.get("address"), width), word,
                                   (" " + extra) if extra else ""))
    return out


def thread_line(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None, indent: int = 8) -> str:
    more = more or {}
    width = _ptr_width(more)
    if isinstance(rec.get("tid"), Fault) and isinstance(rec.get("state"), Fault):
        return "%sTHREAD %s  <_ETHREAD not in this dump: %s>" % (" " * indent, hx(rec.get("address"), width),
                                                               rec["tid"])
    return ("%sTHREAD %s  Cid %s.%s  Teb: %s Win32Thread: %s %s"
            % (" " * indent, hx(rec.get("address"), width), hx(rec.get("pid"), 4), hx(rec.get("tid"), 4),
               hx(rec.get("teb"), width), hx(more.get("win32_thread"), width), thread_state_text(rec, more)))


def thread_block_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """A thread inside `!process <p> 2`: THREAD line (indent 8), wait objects (indent 12)."""
    return [thread_line(rec, more, 8)] + wait_object_lines(rec, 12, more)


def _label(label: str, value: str, second: str = "", second_col: Optional[int] = None) -> str:
    text = "%-*s%s" % (THREAD_LABEL, label, value)
    if second:
        col = second_col if second_col is not None else THREAD_SECOND
        text = "%-*s%s" % (max(col, len(text) + 1), text, second)
    return text.rstrip()


def _image(name: Any) -> str:
    return "%-*s%s" % (IMAGE_VALUE_GAP, "Image:", name.marker if isinstance(name, Fault) else (name or "N/A"))


def thread_full_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """`!thread <ethread>` (without the call stack), then decoded extras."""
    more = more or {}
    width = _ptr_width(more)
    out = [thread_line(rec, more, 0)] + wait_object_lines(rec, 4, more)
    imp = rec.get("impersonating")
    out.append(more.get("impersonation_line") or (
        "Impersonating" if imp is True else ("Not impersonating" if imp is False else "Impersonation unknown")))
    if "device_map" in more:
        out.append(_label("DeviceMap", hx(more.get("device_map"), width)))
    owner = hx(rec.get("process"), width)
    out.append(_label("Owning Process", owner, _image(more.get("process_name")),
                      THREAD_SECOND_AFTER_POINTER if len(owner) >= 16 else THREAD_SECOND))
    attached = more.get("attached_process")
    if attached:
        out.append(_label("Attached Process", hx(attached, width), _image(more.get("attached_name")),
                          THREAD_SECOND_AFTER_POINTER))
    else:
        out.append(_label("Attached Process", "N/A", _image("N/A")))
    out.append(_label("Wait Start TickCount", dec(rec.get("wait_start_tick")), more.get("ticks_text") or ""))
    out.append(_label("Context Switch Count", dec(rec.get("context_switches")),
                      "IdealProcessor: %s" % dec(rec.get("ideal_processor"))))
    increment = more.get("time_increment")
    out.append(_label("UserTime", ticks_text(rec.get("user_time"), increment)))
    out.append(_label("KernelTime", ticks_text(rec.get("kernel_time"), increment)))
    out.append("Win32 Start Address %s" % hx0x(rec.get("win32_start_address"), 16))
    out.append("Stack Init %s Current %s" % (hx(rec.get("stack_init"), width), hx(rec.get("stack_current"), width)))
    out.append("Base %s Limit %s Call %s" % (hx(rec.get("stack_base"), width), hx(rec.get("stack_limit"), width),
                                            hx(more.get("callback_stack", 0), width)))
    out.append("Priority %s  BasePriority %s  IoPriority %s  PagePriority %s"
               % (dec(rec.get("priority")), dec(rec.get("base_priority")), dec(rec.get("io_priority")),
                  dec(rec.get("page_priority"))))
    out.extend(thread_extra_lines(rec, more))
    return out


def thread_extra_lines(rec: Dict[str, Any], more: Optional[Dict[str, Any]] = None) -> List[str]:
    """Decoded extras after `!thread`'s known lines."""
    more = more or {}
    start = hx0x(rec.get("start_address"), 16)
    if rec.get("start_module"):
        start += " (%s)" % rec["start_module"]
    out = [_label("Start Address", start),
           _label("State", "%s  WaitReason %s  WaitMode %s" % (dec(rec.get("state")), dec(rec.get("wait_reason")),
                                                              dec(rec.get("wait_mode"))))]
    running = rec.get("running_on")
    out.append(_label("Running On", "processor %d (PRCB CurrentThread)" % running if running is not None else "-"))
    out.append(_label("Affinity", hx0x(rec.get("affinity"))))
    out.append(_label("CreateTime", filetime_to_windbg(rec.get("create_time_raw"))))
    out.append(_label("Flags", ", ".join(rec.get("thread_flags") or []) or "-"))
    out.append(_label("Layout", str(more.get("layout_label") or rec.get("layout"))))
    return out
