"""The crash context of a dump: the thread (and its process) WinDbg shows after opening it.

Why: after `windbg -z MEMORY.DMP`, `!thread`, `!process -1 0`, `!token`, `!peb`, `!teb` and
`!job` with no argument all mean "the current thread/process", which a crash dump defines as the
bugcheck processor's current thread. `eproc`, `ethread`, `job`, `token`, `peb` and `teb` without
an argument default to the same thing, found here once so the six commands cannot disagree.

How the thread is found, best proof first (`CrashContext.source` says which was used):
- a triage dump names its own thread and process (TRIAGE_DUMP64 `ThreadOffset`/`ProcessOffset`);
  its processor is the PRCB's `Number`;
- otherwise the bugcheck processor is the one whose current thread's kernel stack
  (`Tcb.StackLimit` .. `Tcb.InitialStack`) holds the stack pointer of the dump header's CONTEXT
  record (the context KeBugCheckEx saved), and its `KPRCB.CurrentThread` is the thread;
- failing that, the processor whose `KPRCB.ProcessorState.ContextFrame` is that same context;
- failing that, processor 0's current thread, with a note that the dump does not say which
  processor crashed.
"""
from typing import Any, Dict, List, Optional, Tuple, cast

from pykd_ext.kernel.thread_lists import BY_PROCESSOR, BY_TRIAGE
from pykd_ext.kernel.view import read_field
from pykd_ext.memory.faults import Fault
from pykd_ext.targets.arch import arch_named

#: sources, as the note and the JSON meta name them
SOURCE_TRIAGE = "triage dump's thread"
SOURCE_STACK = "bugcheck context's stack pointer"
SOURCE_PROCESSOR_STATE = "PRCB ProcessorState context"
SOURCE_DEFAULT = "processor 0 (the dump does not say which processor crashed)"
#: "not looked up yet" for the per-context cache (None is a valid answer: no crash context)
_UNSET = object()


class CrashContext:
    """The crash context: `thread` (_ETHREAD), `process` (_EPROCESS), `processor`, and how found."""

    __slots__ = ("thread", "process", "processor", "source")

    def __init__(self, thread: int, process: Optional[int], processor: Optional[int], source: str) -> None:
        self.thread = thread
        self.process = process
        self.processor = processor
        self.source = source

    @property
    def note(self) -> str:
        """`crash context: thread 0x... on processor N (how)`, the line the commands print."""
        where = " on processor %d" % self.processor if isinstance(self.processor, int) else ""
        owner = ", process 0x%x" % self.process if self.process else ""
        return "crash context: thread 0x%x%s%s (%s)" % (self.thread, where, owner, self.source)

    @property
    def found_by(self) -> str:
        """The `found_by` method name of the records (`TriageBlock`, `ProcessorCurrentThread`)."""
        return BY_TRIAGE if self.source == SOURCE_TRIAGE else BY_PROCESSOR

    def to_dict(self) -> Dict[str, Any]:
        return {"thread": self.thread, "process": self.process, "processor": self.processor,
                "source": self.source, "found_by": self.found_by}


def header_context(ctx: Any) -> Optional[Tuple[int, int]]:
    """(instruction pointer, stack pointer) of the dump's CONTEXT record, when it states one: a
    triage dump's decoded context, else the kernel dump header's `ContextRecord`. Which members
    those are is the architecture's fact (`Arch.context_registers`: Rip/Rsp, Eip/Esp, Pc/Sp)."""
    arch = arch_named(str(ctx.info.arch or ""))
    if arch is None:
        return None
    context = (ctx.info.extra or {}).get("context")
    if not isinstance(context, dict):
        raw = getattr(getattr(ctx.target, "header", None), "context_bytes", None)
        if not isinstance(raw, (bytes, bytearray)) or arch.context is None:
            return None
        context = arch.context.decode(bytes(raw))
    registers = arch.context_registers(context)
    if registers is None or not registers[1]:
        return None
    return registers


def _field(ctx: Any, type_name: str, address: int, path: str) -> Any:
    """One field of a structure (a small read at its offset, not the whole structure); None
    when the build lacks the field or its bytes are not in the dump."""
    if not ctx.has(type_name, path):
        return None
    value = read_field(ctx.space, ctx.layouts.type(type_name), address, path)
    return None if isinstance(value, Fault) else value


def _thread_field(ctx: Any, thread: int, path: str) -> Any:
    return _field(ctx, "_ETHREAD", thread, path)


def thread_process(ctx: Any, thread: int) -> Optional[int]:
    """`Tcb.Process` (older builds: `Tcb.ApcState.Process`) of a thread, when readable."""
    for path in ("Tcb.Process", "Tcb.ApcState.Process"):
        value = _thread_field(ctx, thread, path)
        if isinstance(value, int) and value:
            return value
    return None


def stack_holds(ctx: Any, thread: int, sp: int) -> bool:
    """Whether `sp` lies in the thread's kernel stack (StackLimit <= sp < InitialStack/StackBase)."""
    limit = _thread_field(ctx, thread, "Tcb.StackLimit")
    top = None
    for path in ("Tcb.StackBase", "Tcb.InitialStack"):
        value = _thread_field(ctx, thread, path)
        if isinstance(value, int) and value:
            top = value if top is None else max(top, value)
    return isinstance(limit, int) and isinstance(top, int) and limit <= sp < top


def _processor_state_sp(ctx: Any, prcb: int) -> Optional[int]:
    """`KPRCB.ProcessorState.ContextFrame`'s stack pointer (the context the bugcheck saved; the
    member is the architecture's: Rsp, Esp, Sp), when readable."""
    arch = arch_named(str(ctx.info.arch or ""))
    if arch is None or not arch.stack_pointer:
        return None
    path = "ProcessorState.ContextFrame." + arch.stack_pointer
    if not ctx.has("_KPRCB", path):
        return None
    value = _field(ctx, "_KPRCB", prcb, path)
    return value if isinstance(value, int) and value else None


def crash_context(ctx: Any) -> Optional[CrashContext]:
    """The dump's crash context (see the module docstring), or None when no source names a
    thread (a raw memory image with no PRCB found, a user-mode dump)."""
    cached = getattr(ctx, "_crash_context", _UNSET)
    if cached is not _UNSET:
        return cast(Optional[CrashContext], cached)
    found = _find(ctx)
    try:
        ctx._crash_context = found
    except AttributeError:     # a context object without a writable __dict__ (tests' stand-ins)
        pass
    return found


def _find(ctx: Any) -> Optional[CrashContext]:
    extra = ctx.info.extra or {}
    triage_thread = extra.get("thread")
    if isinstance(triage_thread, int) and triage_thread:
        process = extra.get("process")
        if not isinstance(process, int) or not process:
            process = thread_process(ctx, triage_thread)
        number = extra.get("processor")
        if not isinstance(number, int):
            number = next((p.number for p in ctx.processors() if p.current_thread == triage_thread), None)
        return CrashContext(triage_thread, process, number, SOURCE_TRIAGE)
    running: List[Any] = [p for p in ctx.processors()
                          if isinstance(p.current_thread, int) and p.current_thread]
    if not running:
        return None
    regs = header_context(ctx)
    if regs is not None:
        sp = regs[1]
        for proc in running:
            if stack_holds(ctx, proc.current_thread, sp):
                return _on(ctx, proc, SOURCE_STACK)
        for proc in running:
            if _processor_state_sp(ctx, proc.prcb) == sp:
                return _on(ctx, proc, SOURCE_PROCESSOR_STATE)
    first = next((p for p in running if p.number == 0), running[0])
    return _on(ctx, first, SOURCE_DEFAULT if first.number == 0 else
               "processor %d, the first listed (the dump does not say which processor crashed)" % first.number)


def _on(ctx: Any, proc: Any, source: str) -> CrashContext:
    return CrashContext(proc.current_thread, thread_process(ctx, proc.current_thread), proc.number, source)


__all__ = ["SOURCE_DEFAULT", "SOURCE_PROCESSOR_STATE", "SOURCE_STACK", "SOURCE_TRIAGE", "CrashContext",
           "crash_context", "header_context", "stack_holds", "thread_process"]
