"""`Thread`: one `_ETHREAD` (with its embedded `_KTHREAD`), read once, decoded field by field.

Why here and not in a table: state and wait reason names come from the build's own enums
(`_KTHREAD_STATE`, `_KWAIT_REASON`), the alertable bit moves between `MiscFlags` positions from
build to build, the affinity is an embedded `_GROUP_AFFINITY` on most builds and a pointer to a
`_KAFFINITY_EX` on Windows 11 — every such difference is answered by the layout, not by code.
Values are int/str/bool, None (no such field in this build) or a `Fault` (not in the dump).
"""
from typing import Any, Dict, List, Optional, Union, cast

from pykd_ext.kernel.view import field_plan, read_plan
from pykd_ext.kernel.times import filetime_to_iso
from pykd_ext.kernel.kobject import KernelObject, Value
from pykd_ext.kernel.view import StructView
from pykd_ext.memory.faults import Fault


#: wait blocks followed per thread (THREAD_WAIT_OBJECTS is 3 and MAXIMUM_WAIT_OBJECTS 64)
MAX_WAIT_BLOCKS = 64

#: (flag name, `_ETHREAD` field path): a flag is set when the build has the field and it is non-zero
THREAD_FLAG_FIELDS = (
    ("system", "Tcb.SystemThread"),
    ("minimal", "Tcb.Header.Minimal"),
    ("pico", "PicoContext"),
    ("gui", "Tcb.GuiThread"),
    ("secure", "SecureContext"),
    ("terminated", "Terminated"),
    ("hidden-from-debugger", "HideFromDebugger"),
)

#: (record key, `_ETHREAD` path) decoded in one pass by `Thread.record`
RECORD_FIELDS = (
    ("tid", "Cid.UniqueThread"), ("pid", "Cid.UniqueProcess"), ("process", "Tcb.Process"),
    ("apc_process", "Tcb.ApcState.Process"), ("state", "Tcb.State"), ("wait_reason", "Tcb.WaitReason"),
    ("wait_mode", "Tcb.WaitMode"), ("alertable", "Tcb.Alertable"), ("priority", "Tcb.Priority"),
    ("base_priority", "Tcb.BasePriority"), ("io_priority", "ThreadIoPriority"),
    ("page_priority", "ThreadPagePriority"), ("ideal_processor", "Tcb.IdealProcessor"),
    ("affinity", "Tcb.Affinity.Mask"), ("context_switches", "Tcb.ContextSwitches"),
    ("kernel_time", "Tcb.KernelTime"), ("user_time", "Tcb.UserTime"),
    ("wait_start_tick", "Tcb.WaitTime"), ("teb", "Tcb.Teb"), ("start_address", "StartAddress"),
    ("win32_start_address", "Win32StartAddress"), ("stack_init", "Tcb.InitialStack"),
    ("stack_base", "Tcb.StackBase"), ("stack_limit", "Tcb.StackLimit"),
    ("stack_current", "Tcb.KernelStack"), ("create_time_raw", "CreateTime.QuadPart"),
    ("exit_time_raw", "ExitTime.QuadPart"), ("impersonating", "ActiveImpersonationInfo"),
) + tuple(("flag:" + flag, path) for flag, path in THREAD_FLAG_FIELDS)

#: the contract's thread record keys, in output order
RECORD_KEYS = ("address", "tid", "pid", "process", "state", "wait_reason", "wait_mode", "alertable",
               "wait_objects", "priority", "base_priority", "io_priority", "page_priority",
               "ideal_processor", "affinity", "context_switches", "kernel_time", "user_time",
               "wait_start_tick", "teb", "start_address", "win32_start_address", "start_module",
               "stack_init", "stack_base", "stack_limit", "stack_current", "create_time",
               "create_time_raw", "exit_time", "thread_flags", "running_on", "impersonating", "layout")


class Thread(KernelObject):
    """A thread at `address` (an `_ETHREAD`), found by the methods in `found_by`."""

    TYPE_NAME = "_ETHREAD"

    def __repr__(self) -> str:
        return "Thread(0x%x, tid=%r)" % (self.address, self.tid)

    # ---- identity
    @property
    def tid(self) -> Value:
        return self.view["Cid.UniqueThread"]

    @property
    def pid(self) -> Value:
        return self.view["Cid.UniqueProcess"]

    @property
    def process(self) -> Value:
        """The owning `_EPROCESS` (`Tcb.Process`; `Tcb.ApcState.Process` on builds without it)."""
        if self.view.has("Tcb.Process"):
            return self.view["Tcb.Process"]
        return self.field("Tcb.ApcState.Process")

    # ---- scheduling state
    @property
    def state_value(self) -> Value:
        return self.view["Tcb.State"]

    @property
    def state(self) -> Value:
        """`_KTHREAD_STATE` name (`Waiting`), or the number when the build has no such enum."""
        value = self.state_value
        name = self.ctx.enum_name("_KTHREAD_STATE", value)
        return name if name is not None else value

    @property
    def wait_reason(self) -> Value:
        value = self.field("Tcb.WaitReason")
        name = self.ctx.enum_name("_KWAIT_REASON", value)
        return name if name is not None else value

    @property
    def wait_mode(self) -> Value:
        return self.ctx.mode_name(self.field("Tcb.WaitMode"))

    @property
    def alertable(self) -> Union[bool, Fault, None]:
        value = self.field("Tcb.Alertable")
        return bool(value) if isinstance(value, int) else cast(Optional[Fault], value)

    @property
    def is_waiting(self) -> Optional[bool]:
        """True/False from the build's `_KTHREAD_STATE`; None when the build does not name its
        states (Windows 7's symbols have no such enum)."""
        state = self.state
        if isinstance(state, str):
            return state == "Waiting"
        return None if isinstance(state, int) else False

    def wait_objects(self) -> List[Dict[str, Any]]:
        """[{address, type}] of the objects a waiting thread waits on (empty when not waiting).

        On builds that do not name thread states the wait blocks are listed whenever the thread
        has any (the state cannot be told from the symbols)."""
        if "wait_objects" not in self._cache:
            self._cache["wait_objects"] = self._wait_objects() if self.is_waiting is not False else []
        return self._cache["wait_objects"]

    def _wait_blocks(self) -> List[int]:
        first = self.field("Tcb.WaitBlockList")
        if not isinstance(first, int) or not first:
            return []
        block_type = self.ctx.layouts.type("_KWAIT_BLOCK")
        budget = getattr(self.ctx, "budget", None)
        if self.ctx.has("_KWAIT_BLOCK", "NextWaitBlock"):   # Windows 7: a circular chain
            blocks: List[int] = []
            current = first
            while current and current not in blocks and len(blocks) < MAX_WAIT_BLOCKS:
                if budget is not None and not budget.take_entry():
                    break
                blocks.append(current)
                view = StructView(self.ctx.space, block_type, current)
                nxt = view["NextWaitBlock"]
                if not isinstance(nxt, int) or nxt == first:
                    break
                current = nxt
            return blocks
        count = self.field("Tcb.WaitBlockCount")             # 8.1+: an array of WaitBlockCount
        if not isinstance(count, int) or count <= 0:
            count = 1
        if count > MAX_WAIT_BLOCKS:
            notes = getattr(self.ctx, "notes", None)
            text = ("thread 0x%x: WaitBlockCount %d is implausible (a wait names at most %d objects, "
                    "MAXIMUM_WAIT_OBJECTS); showing the first %d" % (self.address, count,
                                                                     MAX_WAIT_BLOCKS, MAX_WAIT_BLOCKS))
            if isinstance(notes, list) and text not in notes:
                notes.append(text)
        count = min(count, MAX_WAIT_BLOCKS)
        if budget is not None:
            count = budget.take_entries(count)
        return [first + i * block_type.size for i in range(count)]

    def _wait_objects(self) -> List[Dict[str, Any]]:
        out: List[Dict[str, Any]] = []
        layouts = self.ctx.layouts
        block_type = layouts.type("_KWAIT_BLOCK")
        header = layouts.type("_DISPATCHER_HEADER")
        for block in self._wait_blocks():
            view = StructView(self.ctx.space, block_type, block)
            obj = view["Object"]
            if isinstance(obj, Fault):
                out.append({"address": obj, "type": None})
                continue
            if not obj:
                continue
            hview = StructView(self.ctx.space, header, cast(int, obj), header.size)
            type_value = hview["Type"]
            name = self.ctx.enum_name("_KOBJECTS", type_value)
            out.append({"address": obj, "type": name if name is not None else type_value})
        return out

    @property
    def priority(self) -> Value:
        return self.field("Tcb.Priority")

    @property
    def base_priority(self) -> Value:
        return self.field("Tcb.BasePriority")

    @property
    def io_priority(self) -> Value:
        return self.field("ThreadIoPriority")

    @property
    def page_priority(self) -> Value:
        return self.field("ThreadPagePriority")

    @property
    def ideal_processor(self) -> Value:
        return self.field("Tcb.IdealProcessor")

    @property
    def next_processor(self) -> Value:
        if self.view.has("Tcb.NextProcessorNumber"):
            return self.view["Tcb.NextProcessorNumber"]
        return self.field("Tcb.NextProcessor")

    @property
    def affinity(self) -> Value:
        """Processor mask of the thread's group (`_GROUP_AFFINITY.Mask`, or the first word of the
        `_KAFFINITY_EX` that Windows 11 points to)."""
        if self.view.has("Tcb.Affinity.Mask"):
            return self.view["Tcb.Affinity.Mask"]
        pointer = self.field("Tcb.Affinity")
        if not isinstance(pointer, int) or not pointer or not self.ctx.has("_KAFFINITY_EX", "Bitmap[0]"):
            return pointer if isinstance(pointer, Fault) else None
        return StructView(self.ctx.space, self.ctx.layouts.type("_KAFFINITY_EX"), pointer)["Bitmap[0]"]

    @property
    def running_on(self) -> Optional[int]:
        return self.ctx.running_on(self.address)

    # ---- addresses
    @property
    def start_address(self) -> Value:
        return self.field("StartAddress")

    @property
    def win32_start_address(self) -> Value:
        return self.field("Win32StartAddress")

    @property
    def start_module(self) -> Optional[str]:
        """The loaded kernel module holding the start address (or the Win32 start address)."""
        for address in (self.start_address, self.win32_start_address):
            name = self.ctx.module_for(address)
            if name:
                return name
        return None

    @property
    def thread_flags(self) -> List[str]:
        return [flag for flag, path in THREAD_FLAG_FIELDS if self._set(path)]

    @property
    def impersonating(self) -> Union[bool, Fault, None]:
        value = self.field("ActiveImpersonationInfo")
        return bool(value) if isinstance(value, int) else cast(Optional[Fault], value)

    def display_more(self, owner_name: Any = None) -> Dict[str, Any]:
        """Display-only values for the WinDbg-shaped text (`render.windbg`): not part of the record."""
        more: Dict[str, Any] = {"win32_thread": self.field("Tcb.Win32Thread"),
                                "next_processor": self.next_processor,
                                "pointer_width": 2 * self.ctx.pointer_size,
                                "time_increment": self.ctx.time_increment(),
                                "layout_label": getattr(self.ctx.layouts, "label", self.ctx.layout_id),
                                "process_name": owner_name}
        index = self.field("Tcb.ApcStateIndex")
        if isinstance(index, int) and index:
            more["attached_process"] = self.field("Tcb.ApcState.Process")
        if self.view.has("Tcb.CallbackStack"):
            more["callback_stack"] = self.view["Tcb.CallbackStack"]
        return more

    def record(self) -> Dict[str, Any]:
        """The contract's thread record (JSON keys of `threads`/`ethread`).

        Plain fields are decoded in one pass with a precompiled plan (`RECORD_FIELDS`); the
        same values are available one by one through the properties above.
        """
        ctx = self.ctx
        raw = read_plan(self.view, field_plan(self.view.type, RECORD_FIELDS))
        process = raw.pop("process")
        apc_process = raw.pop("apc_process")
        state_value = raw.pop("state")
        state = ctx.enum_name("_KTHREAD_STATE", state_value)
        reason = raw.pop("wait_reason")
        reason_name = ctx.enum_name("_KWAIT_REASON", reason)
        create_raw, exit_raw = raw.pop("create_time_raw"), raw.pop("exit_time_raw")
        alertable, impersonating = raw.pop("alertable"), raw.pop("impersonating")
        flags = [flag for flag, _ in THREAD_FLAG_FIELDS if isinstance(raw.get("flag:" + flag), int)
                 and raw.get("flag:" + flag)]
        for flag, _ in THREAD_FLAG_FIELDS:
            raw.pop("flag:" + flag, None)
        affinity = raw.pop("affinity")
        if affinity is None:
            affinity = self.affinity
        start, win32_start = raw["start_address"], raw["win32_start_address"]
        module = ctx.module_for(start) or ctx.module_for(win32_start)
        rec = {
            "address": self.address, "tid": raw.pop("tid"), "pid": raw.pop("pid"),
            "process": process if process is not None else apc_process,
            "state": state if state is not None else state_value,
            "wait_reason": reason_name if reason_name is not None else reason,
            "wait_mode": ctx.mode_name(raw.pop("wait_mode")),
            "alertable": bool(alertable) if isinstance(alertable, int) else alertable,
            "wait_objects": self.wait_objects(),
        }
        rec.update(raw)
        rec.update({
            "affinity": affinity, "start_module": module,
            "create_time": filetime_to_iso(create_raw) if not isinstance(create_raw, Fault) else create_raw,
            "create_time_raw": create_raw,
            "exit_time": filetime_to_iso(exit_raw) if not isinstance(exit_raw, Fault) else exit_raw,
            "thread_flags": flags, "running_on": self.running_on,
            "impersonating": bool(impersonating) if isinstance(impersonating, int) else impersonating,
            "layout": ctx.layout_id,
        })
        return {key: rec[key] for key in RECORD_KEYS}


