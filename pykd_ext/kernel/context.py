"""What every kernel walker needs to know about one target: memory, layouts, globals, processors.

Why: processes, threads, the CID table and the processor blocks are all found from a handful of
kernel globals (`PsActiveProcessHead`, `PspCidTable`, `KiProcessorBlock`, ...). Their addresses are
`kernel base + the build's RVA` when the layout has symbols and the base is known; otherwise the
dump header and the KDBG block state them (`target.info()`). When both exist and disagree, the
dump wins and a note says so: a layout chosen by build number alone (triage dumps carry no PDB
GUID) may be another revision of the build, whose RVAs differ. `KernelContext` resolves each
global once, remembers *how* (so output can say so), and caches the per-target facts walkers
share (processors, loaded modules, object type indexes, the clock increment).
"""
import bisect
from typing import Any, Dict, List, Optional, Tuple, Union, cast

from pykd_ext.errors import MemoryReadError, MissingLayoutError
from pykd_ext.kernel.budget import Budget, budget_for
from pykd_ext.kernel.view import (  # noqa: F401  (field_plan/read_plan/Plan re-exported)
    Plan, StructView, fast_ref_mask, field_plan, read_plan, read_unicode_string, read_utf16)
from pykd_ext.kernel.walk import WalkEnd, walk_list
from pykd_ext.layouts.model import KernelLayouts
from pykd_ext.memory.faults import Fault
from pykd_ext.targets.base import Target

#: KiProcessorBlock holds at most this many processors (MAXIMUM_PROCESSORS on x64 is 640 today;
#: the bound only keeps a corrupt count from running away).
MAX_PROCESSORS = 2048
#: Loaded-module walks stop here (a real system has a few hundred drivers).
MAX_MODULES = 4096
#: Documented values of the kernel's `_MODE` enum (wdm.h `MODE`: KernelMode, UserMode), used only
#: when the layout does not carry the enum; `tests/kernel/test_process_decoders.py` checks them
#: against the ISF of every shipped build number.
_MODE_FALLBACK = {0: "KernelMode", 1: "UserMode"}

#: Enums a build's symbols may lack although its kernel uses the same values as its neighbours'
#: (`_KTHREAD_STATE`: Windows 7 x64's PDB lacks it; its values are identical in all 192 other shipped
#: x64 builds, and match the WRK's `ke.h` for the NT 6 family).
BORROWABLE_ENUMS = ("_KTHREAD_STATE",)


def _version_tuple(version: str) -> Tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts + [0] * (4 - len(parts)))[:4]


def _version_distance(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:
    """Nearest first: same major.minor.build before others, then by revision distance."""
    return tuple(abs(x - y) for x, y in zip(a, b))


class Processor:
    """One processor's PRCB as the walkers use it."""

    __slots__ = ("number", "prcb", "current_thread", "next_thread", "idle_thread", "fault")

    def __init__(self, number: int, prcb: int) -> None:
        self.number = number
        self.prcb = prcb
        self.current_thread: Union[int, Fault, None] = None
        self.next_thread: Union[int, Fault, None] = None
        self.idle_thread: Union[int, Fault, None] = None
        self.fault: Optional[Fault] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"number": self.number, "prcb": self.prcb, "current_thread": self.current_thread,
                "next_thread": self.next_thread, "idle_thread": self.idle_thread}


class KernelContext:
    """Kernel space + layouts + resolved globals of one target (see the module docstring).

    `budget` is the command's work budget (kernel/budget.py): every walker over this context
    charges it, and it writes its one note into `notes` when it runs out."""

    # Per-target caches other modules keep on the context, set on first use (absent until then;
    # read with getattr(ctx, name, None)): declared here so the seam stays typed.
    _object_reader: Any             # objects.reader_for: the shared ObjectReader
    _handle_entry_format: Any       # handle_table: the build's handle entry decoding
    _type_objects: Dict[int, Any]   # commands/handles: object type facts by type index
    _h10_type_table: Optional[int]  # typeindex_scan: ObTypeIndexTable found by its shape
    _h10_cookie: Optional[int]      # typeindex_scan: ObHeaderCookie derived from known objects
    _current_tick: Any              # scheduling.current_tick: (tick count, where it came from)
    _protect_values: Any            # vad.protect_values: MmProtectToValue[] from the dump, or None

    def __init__(self, target: Target, layouts: KernelLayouts, budget: Optional[Budget] = None) -> None:
        self.target = target
        self.layouts = layouts
        self.space = target.kernel
        self.info = target.info()
        self.pointer_size: int = int(getattr(layouts, "pointer_size", 8) or 8)
        self.pointer_mask = (1 << (8 * self.pointer_size)) - 1
        kdbg = self.info.kdbg or {}
        self.kdbg: Dict[str, Any] = kdbg
        base = self.info.kernel_base or kdbg.get("KernBase")
        self.kernel_base: Optional[int] = int(base) if isinstance(base, int) and base else None
        self.notes: List[str] = []
        inferred = getattr(layouts, "context_notes", None)    # H9: an inferred layout says what it lacks
        if callable(inferred):
            self.notes.extend(inferred(self.notes))
        self.budget = budget if budget is not None else Budget()
        if self.budget.notes is None:
            self.budget.notes = self.notes
        self._borrowed: Dict[str, Any] = {}
        #: enum name -> its value-to-name table (the build's, a borrowed one, or None): asked
        #: five times per thread by `threads`
        self._enum_names: Dict[str, Optional[Dict[int, str]]] = {}
        #: True once a symbol address disagreed with the dump's own statement of it
        self.rva_mismatch = False
        self._globals: Dict[str, Tuple[Optional[int], str]] = {}
        self._processors: Optional[List[Processor]] = None
        self._modules: Optional[List[Tuple[int, int, str]]] = None
        self._type_names: Dict[int, Union[str, None]] = {}
        self._time_increment: Any = False
        self._fast_ref_mask: Optional[int] = None
        self._system_process: Any = False
        self._has: Dict[Tuple[str, Optional[str]], bool] = {}
        self._running: Optional[Dict[int, int]] = None
        self._module_bases: Optional[List[int]] = None
        self.layout_id: str = str(getattr(layouts, "build_id", "") or "")

    # ---- globals
    def global_address(self, name: str) -> Optional[int]:
        """Virtual address of a kernel global, or None when neither symbols nor the dump state it."""
        return self.resolve_global(name)[0]

    def resolve_global(self, name: str) -> Tuple[Optional[int], str]:
        """(address, how): how is "symbol" (base + RVA), "header", "kdbg", "debugger" (its loaded symbols) or "unknown"."""
        found: Union[Tuple[Optional[int], str], int, None]    # the cached pair, then a scan's address
        found = self._globals.get(name)
        if found is not None:
            return found
        result: Tuple[Optional[int], str] = (None, "unknown")
        stated = self._stated(name)
        if self.kernel_base and self.layouts.has_symbol(name):
            address = (self.kernel_base + self.layouts.symbol_rva(name)) & self.pointer_mask
            result = (address, "symbol")
            if stated is not None and stated[0] != address:
                # the layout's revision is not the dump's (chosen by build number, no PDB GUID):
                # the running kernel's own statement wins
                self.notes.append("%s: the layout's RVA gives 0x%x but the dump's %s says 0x%x; using "
                                  "the dump's (the layout %s is another revision of this build)"
                                  % (name, address, stated[1], stated[0], self.layout_id))
                self.rva_mismatch = True
                result = stated
        elif stated is not None:
            result = stated
        elif getattr(self.layouts, "types_only", False):
            # H12: a types-only layout has no RVA: the kernel's exported code names some globals
            # (how = "disasm:ObGetObjectType"); H10: else find ObTypeIndexTable by its shape
            from pykd_ext.layouts.inferred.code_globals import code_global
            named = code_global(self.target, name)
            if named is not None:
                result = named
            elif name == "ObTypeIndexTable":
                from pykd_ext.kernel.typeindex_scan import find_type_index_table
                found = find_type_index_table(self)
                if found is not None:
                    result = (found, "scan")
        self._globals[name] = result
        return result

    def _stated(self, name: str) -> Optional[Tuple[int, str]]:
        """The address of a global as the dump itself states it (header, then KDBG), if it does."""
        if name == "PsActiveProcessHead" and self.info.ps_active_process_head:
            return int(self.info.ps_active_process_head), "header"
        if name == "PsLoadedModuleList" and self.info.ps_loaded_module_list:
            return int(self.info.ps_loaded_module_list), "header"
        value = self.kdbg.get(name)
        if isinstance(value, int) and value:
            return int(value), "kdbg"
        value = self.target.debugger_symbol(name)
        if isinstance(value, int) and value:
            return int(value), "debugger"
        return None

    def read_global_pointer(self, name: str) -> Union[int, Fault, None]:
        """The pointer-sized value stored in a global; None when its address is unknown."""
        address = self.global_address(name)
        if address is None:
            return None
        try:
            return self.space.read_pointer(address)
        except MemoryReadError as err:
            return err.fault

    def system_process(self) -> Optional[int]:
        """The `_EPROCESS` address `PsInitialSystemProcess` holds, when readable."""
        if self._system_process is False:
            value = self.read_global_pointer("PsInitialSystemProcess")
            self._system_process = value if isinstance(value, int) and value else None
        return self._system_process

    def read_global_u32(self, name: str) -> Union[int, Fault, None]:
        address = self.global_address(name)
        if address is None:
            return None
        try:
            return int.from_bytes(self.space.read(address, 4), "little")
        except MemoryReadError as err:
            return err.fault

    # ---- layouts
    def view(self, type_name: str, address: int, size: Optional[int] = None) -> StructView:
        return StructView(self.space, self.layouts.type(type_name), address, size)

    def has(self, type_name: str, path: Optional[str] = None) -> bool:
        """Whether the build has the type (and the field); answers are cached (hot paths ask often)."""
        key = (type_name, path)
        found = self._has.get(key)
        if found is None:
            found = self.layouts.has_type(type_name) and (
                path is None or self.layouts.type(type_name).has_field(path))
            self._has[key] = found
        return found

    def enum_name(self, enum: str, value: Any) -> Optional[str]:
        """The build's name for an enum value, or None (no such enum in the layout, or unnamed).

        A few enums are missing from some builds' symbols although the kernel uses the same
        values (Windows 7 x64's PDB has no `_KTHREAD_STATE`): those are taken from the nearest
        shipped build of the same architecture whose symbols have them, with a note.
        """
        if not isinstance(value, int):
            return None
        try:
            names = self._enum_names[enum]
        except KeyError:
            if self.layouts.has_enum(enum):
                names = self.layouts.enum(enum).names_by_value()
            else:
                borrowed = self._borrowed_enum(enum)
                names = borrowed.names_by_value() if borrowed is not None else None
            self._enum_names[enum] = names
        return names.get(value) if names is not None else None

    def _borrowed_enum(self, enum: str) -> Any:
        if enum not in BORROWABLE_ENUMS:
            return None
        if enum not in self._borrowed:
            self._borrowed[enum] = None
            from pykd_ext.layouts.registry import list_builds, load_layouts
            own = _version_tuple(getattr(self.layouts, "version", "") or "")
            arch = getattr(self.layouts, "arch", "x64")
            ranked = sorted((entry for entry in list_builds()
                             if entry.arch == arch and not entry.types_only),
                            key=lambda entry: _version_distance(own, _version_tuple(entry.version)))
            for entry in ranked[:40]:
                donor = load_layouts(entry.build_id)
                if donor.has_enum(enum):
                    self._borrowed[enum] = donor.enum(enum)
                    self.notes.append("this build's symbols have no %s; its names are taken from "
                                      "%s's symbols" % (enum, entry.version))
                    break
        return self._borrowed[enum]

    def mode_name(self, value: Any) -> Any:
        """`KernelMode`/`UserMode` (`_MODE` from the layout when present), else the number."""
        if not isinstance(value, int):
            return value
        name = self.enum_name("_MODE", value)
        if name is None and not self.layouts.has_enum("_MODE"):
            name = _MODE_FALLBACK.get(value)
        return name if name is not None else value

    @property
    def fast_ref_mask(self) -> int:
        if self._fast_ref_mask is None:
            try:
                self._fast_ref_mask = fast_ref_mask(self.layouts)
            except MissingLayoutError:
                self._fast_ref_mask = self.pointer_mask & ~0xF
        return self._fast_ref_mask

    def unicode_string_at(self, address: int, max_chars: int = 32768) -> Union[str, Fault]:
        """A `_UNICODE_STRING` stored at `address` (e.g. `_OBJECT_NAME_INFORMATION.Name`)."""
        view = self.view("_UNICODE_STRING", address)
        if view.fault is not None and not view.data:
            return view.fault
        # a view of _UNICODE_STRING itself: its members are at the top level
        length, buffer = view["Length"], view["Buffer"]
        if isinstance(length, Fault):
            return length
        if isinstance(buffer, Fault):
            return buffer
        return read_utf16(self.space, buffer, length, max_chars, self.budget)

    def read_unicode(self, view: StructView, path: str) -> Union[str, Fault]:
        return read_unicode_string(self.space, view, path, budget=self.budget)

    # ---- processors
    def processor_count(self) -> Optional[int]:
        count = self.info.processors
        if isinstance(count, int) and 0 < count <= MAX_PROCESSORS:
            return count
        value = self.read_global_u32("KeNumberProcessors")
        if isinstance(value, int) and 0 < value <= MAX_PROCESSORS:
            return value
        return None

    def processors(self) -> List[Processor]:
        """Each processor's PRCB from `KiProcessorBlock` (plus the triage dump's own PRCB)."""
        if self._processors is not None:
            return self._processors
        found: Dict[int, Processor] = {}
        block = self.global_address("KiProcessorBlock")
        count = self.processor_count()
        number: Union[int, bytes, Fault, None]     # a loop index, then the dump's or the PRCB's word
        prcb: Optional[int]                        # a KiProcessorBlock entry, then the dump's word
        if block is not None and count:
            for number in range(count):
                try:
                    prcb = self.space.read_pointer(block + number * self.pointer_size)
                except MemoryReadError as err:
                    if number == 0:
                        self.notes.append("KiProcessorBlock at 0x%x is not in the dump (%s)" % (block, err.fault))
                    continue
                if prcb:
                    found[number] = Processor(number, prcb)
        extra = self.info.extra or {}
        prcb = extra.get("prcb")
        if isinstance(prcb, int) and prcb and all(p.prcb != prcb for p in found.values()):
            number = extra.get("processor")
            if not isinstance(number, int) and self.has("_KPRCB", "Number"):
                number = self.view("_KPRCB", prcb, self._prcb_prefix())["Number"]
            number = number if isinstance(number, int) and number not in found else len(found)
            found[number] = Processor(number, prcb)
        if self.layouts.has_type("_KPRCB"):
            for proc in found.values():
                view = self.view("_KPRCB", proc.prcb, self._prcb_prefix())
                for attr, path in (("current_thread", "CurrentThread"), ("next_thread", "NextThread"),
                                   ("idle_thread", "IdleThread")):
                    if view.has(path):
                        setattr(proc, attr, view[path])
                if view.fault is not None and not view.data:
                    proc.fault = view.fault
        self._processors = [found[n] for n in sorted(found)]
        return self._processors

    def _prcb_prefix(self) -> int:
        """Bytes of `_KPRCB` worth reading: up to the furthest thread pointer, not the whole 40 KB."""
        prcb = self.layouts.type("_KPRCB")
        end = 0
        for path in ("CurrentThread", "NextThread", "IdleThread", "Number"):
            if prcb.has_field(path):
                f = prcb.field(path)
                end = max(end, f.offset + f.size)
        return end or prcb.size

    def running_on(self, thread: int) -> Optional[int]:
        """The processor whose PRCB names this thread as CurrentThread, or None."""
        if self._running is None:
            self._running = {}
            for proc in self.processors():
                if isinstance(proc.current_thread, int) and proc.current_thread:
                    self._running.setdefault(proc.current_thread, proc.number)
        return self._running.get(thread)

    # ---- clock
    def time_increment(self) -> Optional[int]:
        """Length of a clock tick in 100 ns (KeTimeIncrement / KeMaximumIncrement), when readable."""
        if self._time_increment is False:
            value: Optional[int] = None
            for name in ("KeMaximumIncrement", "KeTimeIncrement"):
                got = self.read_global_u32(name)
                if isinstance(got, int) and 0 < got < 10000000:
                    value = got
                    break
            self._time_increment = value
        return self._time_increment

    # ---- loaded modules (start address -> module)
    def modules(self) -> List[Tuple[int, int, str]]:
        """(base, size, name) of loaded kernel modules: the triage driver list or PsLoadedModuleList."""
        if self._modules is not None:
            return self._modules
        mods: List[Tuple[int, int, str]] = []
        drivers = (self.info.extra or {}).get("drivers")
        if isinstance(drivers, list) and drivers:
            for d in drivers[:MAX_MODULES]:
                if isinstance(d, dict) and isinstance(d.get("base"), int) and isinstance(d.get("size"), int):
                    mods.append((d["base"], d["size"], str(d.get("name") or "")))
        else:
            head = self.global_address("PsLoadedModuleList")
            if head is not None and self.layouts.has_type("_LDR_DATA_TABLE_ENTRY"):
                ldr = self.layouts.type("_LDR_DATA_TABLE_ENTRY")
                link = ldr.offset("InLoadOrderLinks")
                end = WalkEnd()
                for entry in walk_list(self.space, head, end, limit=MAX_MODULES, budget=self.budget):
                    view = self.view("_LDR_DATA_TABLE_ENTRY", entry - link)
                    base, size = view["DllBase"], view["SizeOfImage"]
                    if not isinstance(base, int) or not isinstance(size, int):
                        continue
                    name = self.read_unicode(view, "BaseDllName")
                    mods.append((base, size, name if isinstance(name, str) else "?"))
        mods.sort()
        self._modules = mods
        return mods

    def module_for(self, address: Any) -> Optional[str]:
        """Name of the loaded kernel module containing `address`, or None (a binary search)."""
        if not isinstance(address, int) or not address:
            return None
        modules = self.modules()
        if self._module_bases is None:
            self._module_bases = [base for base, _, _ in modules]
        index = bisect.bisect_right(self._module_bases, address) - 1
        if index >= 0:
            base, size, name = modules[index]
            if base <= address < base + size:
                return name
        return None

    # ---- object headers
    def object_type_name(self, body: int) -> Union[str, Fault, None]:
        """The object manager type name (`Process`, `Thread`, `Event`...) of an object body.

        `_OBJECT_HEADER` precedes the body; its TypeIndex indexes `ObTypeIndexTable`. Since
        Windows 10 the stored index is XORed with the second byte of the header address and the
        `ObHeaderCookie` byte (the build's symbols say whether the cookie exists).
        """
        if not self.layouts.has_type("_OBJECT_HEADER"):
            return None
        header_type = self.layouts.type("_OBJECT_HEADER")
        header = body - header_type.offset("Body")
        view = StructView(self.space, header_type, header)
        index = cast(Union[int, Fault], view["TypeIndex"])    # a UCHAR field: int or Fault
        if not isinstance(index, int):
            return index
        if self.layouts.has_symbol("ObHeaderCookie"):
            cookie_address = self.global_address("ObHeaderCookie")
            if cookie_address is None:
                return None
            try:
                cookie = self.space.read(cookie_address, 1)[0]
            except MemoryReadError as err:
                return err.fault
            index = index ^ cookie ^ ((header >> 8) & 0xFF)
        elif getattr(self.layouts, "types_only", False):
            # H10: no symbols: Windows 10+ cookie derived from known objects (None before 10)
            from pykd_ext.kernel.typeindex_scan import COOKIE_FIRST_BUILD, derive_header_cookie
            if int(getattr(self.layouts, "build", 0) or 0) >= COOKIE_FIRST_BUILD:
                derived = derive_header_cookie(self)
                if derived is None:
                    return None
                index = index ^ derived ^ ((header >> 8) & 0xFF)
        return self.type_name_of_index(index)

    def type_name_of_index(self, index: int) -> Union[str, Fault, None]:
        if index in self._type_names:
            return self._type_names[index]
        table = self.global_address("ObTypeIndexTable")
        if table is None or not self.layouts.has_type("_OBJECT_TYPE"):
            return None
        try:
            type_object = self.space.read_pointer(table + index * self.pointer_size)
        except MemoryReadError as err:
            return err.fault
        if not type_object:
            self._type_names[index] = None
            return None
        name = self.read_unicode(self.view("_OBJECT_TYPE", type_object), "Name")
        if isinstance(name, Fault):
            return name
        self._type_names[index] = name
        return name


def context_for(session: Any) -> KernelContext:
    """The session's KernelContext (built once per session), with the session's work budget
    (`budget.budget_for`: `session.budget`, or `session.max_entries` / `max_pages` / `max_bytes`)."""
    ctx = getattr(session, "_kernel_context", None)
    if ctx is None:
        ctx = KernelContext(session.target, session.layouts, budget_for(session))
        ctx.notes.extend(getattr(session, "notes", ()))   # what the session did (symbols fetched)
        session._kernel_context = ctx
    return ctx
