"""A `Target` over pykd: DbgEng (inside WinDbg, or standalone on Windows) does the reading.

Why a target rather than pykd calls in the commands: every command then runs unchanged inside
WinDbg. Walkers keep reading whole structures with one request (`loadBytes`), never per-field
`typedVar` (one engine round trip per field access), and unreadable memory keeps its typed
`Fault`: pykd raises `MemoryException` with the address only in its message, so the reason is
re-derived here: when the engine can read physical memory, the failing address is translated
through the page tables with our own x64 walker (the same code the dump readers use), giving
"paged out" / "demand zero" / "not in dump" exactly like the offline readers; otherwise the
reason is "not in dump" for dumps and "unavailable" for live targets.

This is the only module that imports `pykd`, and only when a pykd target is opened
(`open_pykd_target`), so `import pykd_ext` works anywhere. pykd facts used (see
`/work/shared/reference/pykd.md`): 0.3.x raises `MemoryException` (subclass of `DbgException`),
0.2.x's base exception is `BaseException`; `loadBytes(va, n, phyAddr)`; `getOffset("nt!X")`;
`module("nt").begin()/.symfile()`; `getSystemVersion().buildNumber`; `is64bitSystem()` (the real
CPU, unlike `ptrSize()`); `getCurrentProcess()` / `getImplicitThread()`; `reg("cr3")`;
`bugCheckData()`; `loadDump(path)` / `closeDump(id)` for standalone batch use.
"""
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from pykd_ext.errors import MemoryReadError, PykdExtError, TargetError, UnsupportedDumpError
from pykd_ext.memory.faults import INVALID, NO_PHYSICAL, NOT_IN_DUMP, UNAVAILABLE, Fault
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_modes import PagingMode
from pykd_ext.memory.space import PAGE_SHIFT, PAGE_SIZE, AddressSpace, PhysicalSource
from pykd_ext.targets.arch import arch_for_pointer_size
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo

#: Every pykd name the adapter (this module, `layouts.from_typeinfo`, `windbg/`) uses, as the
#: pykd 0.3.4.15 wheel names them (`Class.member`; `numVariant.__int__` is `int(typeInfo)` of an
#: enum constant, typeInfo's base class). `tests/pykd/test_pykd_names.py` checks this list
#: against the wheel's export list and the sources against this list.
PYKD_NAMES_USED = (
    "DbgException", "MemoryException", "loadBytes", "getOffset", "module", "typeInfo", "expr",
    "getSystemVersion", "is64bitSystem", "isKernelDebugging", "isDumpAnalyzing", "getCurrentProcess",
    "getImplicitThread", "reg", "bugCheckData", "dbgCommand", "currentTime", "getModulesList",
    "loadDump", "closeDump", "isWindbgExt", "dprintln",
    "module.begin", "module.end", "module.size", "module.image", "module.name", "module.symfile",
    "module.getVersion",
    "systemVersion.buildNumber", "systemVersion.win32Major", "systemVersion.win32Minor",
    "systemVersion.buildString",
    "typeInfo.name", "typeInfo.size", "typeInfo.fields", "typeInfo.fieldOffset", "typeInfo.isBitField",
    "typeInfo.bitOffset", "typeInfo.bitWidth", "typeInfo.isPointer", "typeInfo.isArray", "typeInfo.deref",
    "typeInfo.__len__", "typeInfo.isEnum", "typeInfo.isUserDefined", "typeInfo.isFunction",
    "typeInfo.isVoid", "typeInfo.fieldName", "typeInfo.field", "numVariant.__int__",
)
#: pykd 0.2.x names used only where 0.3.x lacks them (0.2.x's exception base class)
PYKD_02_NAMES_USED = ("BaseException",)

#: bound on the kernel modules taken from the debugger's module list
MAX_MODULES = 4096
#: Pages kept per space before the cache resets (bounded memory; live targets drop per command).
PAGE_CACHE_LIMIT = 1 << 14

#: seconds from 1601-01-01 (FILETIME epoch) to 1970-01-01 (`currentTime()` epoch)
UNIX_EPOCH_AS_FILETIME_SECONDS = 11_644_473_600

#: `module("nt").symfile()` is a symbol-store path `...\ntkrnlmp.pdb\<GUID><AGE hex>\ntkrnlmp.pdb`
#: (the SymSrv two-tier layout); the GUID and age of the loaded PDB are in the folder name.
_SYMSTORE_DIR = re.compile(r"^([0-9A-Fa-f]{32})([0-9A-Fa-f]{1,8})$")


def import_pykd() -> Any:
    """The pykd module, or TargetError saying how to get it (no pykd on Linux at all)."""
    try:
        import pykd
    except ImportError as err:
        raise TargetError("pykd is not importable (%s): the pykd engine needs Windows with "
                          "`pip install pykd` (Python 3.9 or older for the PyPI wheels)" % err) from None
    return pykd


class PykdApi:
    """The pykd calls the adapter makes, with the 0.2.x/0.3.x differences resolved once."""

    def __init__(self, module: Any) -> None:
        self.mod = module
        base = getattr(module, "DbgException", None) or getattr(module, "BaseException", None)
        mem = getattr(module, "MemoryException", None) or base
        #: what a failed read raises (MemoryException; its DbgException base on odd builds)
        self.memory_errors: Tuple[Type[BaseException], ...] = tuple(
            dict.fromkeys(t for t in (mem, base) if isinstance(t, type))) or (Exception,)
        #: any engine error
        self.engine_errors: Tuple[Type[BaseException], ...] = tuple(t for t in (base,) if isinstance(t, type)) or (Exception,)
        self.load_bytes: Callable[..., Any] = module.loadBytes

    def read(self, address: int, size: int, physical: bool = False) -> bytes:
        """Bytes from the engine (raises one of `memory_errors`)."""
        if physical:
            return bytes(self.load_bytes(address, size, True))
        return bytes(self.load_bytes(address, size))

    def call(self, name: str, *args: Any) -> Any:
        """A pykd function by name, None when this pykd lacks it or the engine refuses."""
        func = getattr(self.mod, name, None)
        if func is None:
            return None
        try:
            return func(*args)
        except self.engine_errors:
            return None

    def offset(self, symbol: str) -> Optional[int]:
        """`getOffset("nt!Symbol")`, None when the symbol is unknown."""
        value = self.call("getOffset", symbol)
        return int(value) if value is not None else None


class PykdPhysicalMemory(PhysicalSource):
    """Physical pages through `loadBytes(..., phyAddr=True)`, cached per page (a physical source
    that is not a file: DbgEng serves it, from a dump or a live kernel)."""

    def __init__(self, api: PykdApi) -> None:
        self.api = api
        self._pages: Dict[int, Optional[memoryview]] = {}

    def page(self, pfn: int) -> Optional[memoryview]:
        if pfn in self._pages:
            return self._pages[pfn]
        try:
            data: Optional[memoryview] = memoryview(self.api.read(pfn << PAGE_SHIFT, PAGE_SIZE, True))
        except self.api.memory_errors:
            data = None
        if len(self._pages) >= PAGE_CACHE_LIMIT:
            self._pages.clear()
        self._pages[pfn] = data
        return data

    def runs(self) -> List[Tuple[int, int]]:
        """Unknown through pykd (DbgEng does not list physical runs): empty."""
        return []

    def drop_caches(self) -> None:
        self._pages.clear()


class PykdAddressSpace(AddressSpace):
    """Virtual memory of the debugger's current process context through `loadBytes`.

    Whole pages are fetched and cached (a walker touches the same list pages many times); a page
    the engine refuses is retried as the exact range asked for (triage dumps hold sub-page blocks),
    and a range it still refuses goes to `rescue(va, size, readable)`: the target's own page walk,
    which returns the bytes or raises MemoryReadError with the typed Fault.
    """

    def __init__(self, api: PykdApi, pointer_size: int, rescue: Callable[[int, int, int], bytes]) -> None:
        self.api = api
        self.pointer_size = pointer_size
        self._rescue = rescue
        self._pages: Dict[int, bytes] = {}
        self._limit = 1 << (8 * pointer_size)

    def read(self, address: int, size: int) -> bytes:
        if size < 0:
            raise ValueError("negative read size %d" % size)
        if address < 0 or address + size > self._limit:
            raise MemoryReadError(Fault(INVALID, address), 0)
        offset = address & (PAGE_SIZE - 1)
        if offset + size <= PAGE_SIZE:
            page = self._pages.get(address >> PAGE_SHIFT)
            if page is not None:
                return page[offset:offset + size]
        out = bytearray()
        va, remaining = address, size
        while remaining > 0:
            offset = va & (PAGE_SIZE - 1)
            chunk = min(remaining, PAGE_SIZE - offset)
            out += self._chunk(va, chunk, len(out))
            va += chunk
            remaining -= chunk
        return bytes(out)

    def _chunk(self, va: int, size: int, readable: int) -> bytes:
        pfn = va >> PAGE_SHIFT
        page = self._pages.get(pfn)
        if page is None:
            try:
                page = self.api.read(pfn << PAGE_SHIFT, PAGE_SIZE)
            except self.api.memory_errors:
                page = None
            if page is not None and len(page) == PAGE_SIZE:
                if len(self._pages) >= PAGE_CACHE_LIMIT:
                    self._pages.clear()
                self._pages[pfn] = page
        if page is not None:
            offset = va & (PAGE_SIZE - 1)
            return page[offset:offset + size]
        try:
            data = self.api.read(va, size)
        except self.api.memory_errors:
            return self._rescue(va, size, readable)
        if len(data) != size:
            return data + self._rescue(va + len(data), size - len(data), readable + len(data))
        return data

    def translate(self, address: int) -> int:
        raise MemoryReadError(Fault(NO_PHYSICAL, address))

    def drop_caches(self) -> None:
        super().drop_caches()
        self._pages.clear()


class PykdTarget(Target):
    """The debugger's current target (live kernel, kernel dump) as a pykd-ext `Target`."""

    def __init__(self, module: Any, dump_path: Optional[str] = None, dump_id: Any = None) -> None:
        self.api = PykdApi(module)
        self.dump_path = dump_path
        self._dump_id = dump_id
        self._closed = False
        self._time_types: Optional[Tuple[Any, Any]] = None     # (_KUSER_SHARED_DATA, _KSYSTEM_TIME) typeInfo
        self.is_dump = bool(self.api.call("isDumpAnalyzing"))
        self.is_kernel = bool(self.api.call("isKernelDebugging"))
        self.is64 = bool(self.api.call("is64bitSystem")) if hasattr(module, "is64bitSystem") else True
        self.arch = arch_for_pointer_size(8 if self.is64 else 4)
        # Our own walks need the paging mode; DbgEng does not say it, so only an architecture
        # with a single mode (x64) is walked here (x86 would need CR4.PAE).
        self.mode: Optional[PagingMode] = (self.arch.paging_modes[0]
                                           if len(self.arch.paging_modes) == 1 else None)
        self._info: Optional[TargetInfo] = None
        self._software_pte: Any = None
        self._spaces: Dict[int, AddressSpace] = {}
        self._kernel = PykdAddressSpace(self.api, self.arch.pointer_size, self._rescue)
        self._physical: Optional[PykdPhysicalMemory] = None
        self._kernel_dtb = self._read_cr3()
        physical = PykdPhysicalMemory(self.api)
        if self._kernel_dtb is not None and physical.page(self._kernel_dtb >> PAGE_SHIFT) is not None:
            self._physical = physical

    # -- Target interface ---------------------------------------------------------------------

    @property
    def live(self) -> bool:  # type: ignore[override]
        """Live sessions change between commands: caches drop per command."""
        return not self.is_dump

    @property
    def kernel(self) -> AddressSpace:
        return self._kernel

    @property
    def physical(self) -> Optional[PhysicalSource]:
        return self._physical

    def process_space(self, directory_table_base: int) -> AddressSpace:
        """Another process's memory via its page tables read from physical memory.

        pykd reads virtual memory in the debugger's current process context only; translating
        with the process's DTB ourselves avoids changing the debugger's state (`.process`).
        """
        if self._physical is None or self.mode is None or not directory_table_base:
            return self._kernel
        key = self.mode.root(directory_table_base)
        space = self._spaces.get(key)
        if space is None:
            space = PagedAddressSpace(self._physical, key, self.mode, self._software_pte)
            self._spaces[key] = space
        return space

    def set_software_pte(self, software_pte: Any) -> None:
        """The not-present PTE layout of the chosen kernel layouts (for fault diagnosis)."""
        self._software_pte = software_pte
        self._spaces.clear()

    def debugger_symbol(self, name: str) -> Optional[int]:
        """`getOffset("nt!NAME")`: DbgEng's symbols state every kernel global the layout may lack."""
        if not name.isidentifier():
            return None
        return self.api.offset("nt!" + name)

    def info(self) -> TargetInfo:
        if self._info is None:
            self._info = self._collect_info()
        return self._info

    def describe(self) -> TargetDescription:
        return TargetDescription("pykd", self.dump_path or "", (("dump", "1" if self.is_dump else "0"),))

    def drop_caches(self) -> None:
        self._kernel.drop_caches()
        if self._physical is not None:
            self._physical.drop_caches()
        for space in self._spaces.values():
            space.drop_caches()
        if self.live:
            self._info = None

    def close(self) -> None:
        """Release a dump this target opened itself (`--engine pykd`); never the debugger's own."""
        if self._closed:
            return
        self._closed = True
        if self._dump_id is not None and hasattr(self.api.mod, "closeDump"):
            try:
                self.api.mod.closeDump(self._dump_id)
            except self.api.engine_errors:
                pass

    # -- debugger state -----------------------------------------------------------------------

    def current_process(self) -> Optional[int]:
        """EPROCESS of the debugger's current process (`.process`), None when unknown."""
        value = self.api.call("getCurrentProcess")
        return int(value) if value else None

    def implicit_thread(self) -> Optional[int]:
        """ETHREAD of the debugger's implicit thread (`.thread`), None when unknown."""
        value = self.api.call("getImplicitThread")
        return int(value) if value else None

    def kernel_version(self) -> Optional[str]:
        """`major.minor.build[.revision]` of nt: its version resource (`module.getVersion()`),
        else `getSystemVersion()` (no revision)."""
        nt = self._kernel_module()
        if nt is not None:
            try:
                parts = tuple(int(p) for p in nt.getVersion())
                if len(parts) >= 3 and parts[0]:
                    return ".".join(str(p) for p in parts[:4])
            except self.api.engine_errors + (TypeError, ValueError, AttributeError):
                pass
        system = self.info().extra.get("system_version")
        return system if system and "None" not in system else None

    # -- internals ----------------------------------------------------------------------------

    def _read_cr3(self) -> Optional[int]:
        value = self.api.call("reg", "cr3")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _rescue(self, va: int, size: int, readable: int) -> bytes:
        """The engine refused [va, va+size): walk the page tables ourselves over the physical
        memory the engine serves. That either finds the bytes (e.g. a transition page DbgEng
        does not resolve) or says why not, with the same typed Fault the offline readers give."""
        if self._physical is not None and self.mode is not None and self._kernel_dtb is not None:
            space = self.process_space(self._kernel_dtb)
            try:
                return space.read(va, size)
            except MemoryReadError as err:
                raise MemoryReadError(err.fault, readable + err.readable) from None
            except ValueError:
                raise MemoryReadError(Fault(INVALID, va), readable) from None
        raise MemoryReadError(Fault(NOT_IN_DUMP if self.is_dump else UNAVAILABLE, va), readable)

    def _kernel_module(self) -> Any:
        mod = getattr(self.api.mod, "module", None)
        if mod is None:
            return None
        try:
            return mod("nt")
        except self.api.engine_errors:
            return None

    def _dump_kind(self) -> Tuple[Optional[str], Optional[str]]:
        """(kind, path) of the debuggee from `||`, DbgEng's one-line description of it
        (`.  0 Kernel Triage dump: C:\\x\\MEMORY.DMP`): "triage", "full", "kernel summary", ..."""
        if not self.is_dump:
            return "live", None
        text = self.api.call("dbgCommand", "||")
        if not isinstance(text, str):
            return "dump", None
        line = text.strip().splitlines()[0] if text.strip() else ""
        path = line.split(": ", 1)[1].strip() if ": " in line else None
        low = line.lower()
        for key, kind in (("triage", "triage"), ("summary", "kernel summary"), ("bitmap", "bitmap"),
                          ("full", "full"), ("mini", "minidump")):
            if key in low:
                return kind, path
        return "dump", path

    def _collect_info(self) -> TargetInfo:
        info = TargetInfo(path=self.dump_path, container="pykd", arch=self.arch.name)
        info.dump_type, path = self._dump_kind()
        info.path = info.path or path
        version = self.api.call("getSystemVersion")
        if version is not None:
            info.build = _int_attr(version, "buildNumber")
            info.extra["system_version"] = "%s.%s.%s" % (_int_attr(version, "win32Major"),
                                                         _int_attr(version, "win32Minor"), info.build)
            build_string = getattr(version, "buildString", None)
            if build_string:
                info.extra["build_string"] = str(build_string)
        nt = self._kernel_module()
        if nt is not None:
            try:
                info.kernel_base = int(nt.begin())
                info.extra["kernel_end"] = int(nt.end())
            except self.api.engine_errors:
                pass
            try:
                symfile = nt.symfile()
            except self.api.engine_errors:
                symfile = None
            if symfile:
                info.extra["symfile"] = str(symfile)
        info.directory_table_base = self._kernel_dtb
        info.ps_active_process_head = self.api.offset("nt!PsActiveProcessHead")
        info.ps_loaded_module_list = self.api.offset("nt!PsLoadedModuleList")
        info.kd_debugger_data_block = self.api.offset("nt!KdDebuggerDataBlock")
        info.processors = self._processors()
        if self.is_dump:
            data = self.api.call("bugCheckData")
            if data is not None:
                fields = _bugcheck_fields(data)
                if fields:
                    info.bugcheck_code, info.bugcheck_parameters = fields[0], fields[1:]
        guid, age, how = self._pdb_identity(info)
        if guid:
            info.extra["pdb_guid"], info.extra["pdb_age"], info.extra["pdb_source"] = guid, age, how
        current = self.current_process()
        thread = self.implicit_thread()
        info.extra["current_process"] = current
        info.extra["implicit_thread"] = thread
        if info.dump_type == "triage":
            # what a triage dump holds, under the keys the offline triage reader uses
            info.extra["process"], info.extra["thread"] = current, thread
            prcb = self._pseudo_register("$prcb")
            if prcb:
                info.extra["prcb"] = prcb
            drivers = self._drivers()
            if drivers:
                info.extra["drivers"] = drivers
            # H4 (issue 12): the crash thread's registers, as the triage reader's `context`
            # (frame 0 and the start of the stack scan, `kernel.stack`)
            # (the architecture's program counter and stack pointer: rip/rsp, eip/esp)
            names = (self.arch.instruction_pointer, self.arch.stack_pointer)
            context = {name.lower(): self.api.call("reg", name.lower()) for name in names if name}
            if len(context) == 2 and all(isinstance(v, int) and v for v in context.values()):
                info.extra["context"] = context
        info.system_time = self._system_time(info)
        # the time since boot, as a dump header's SystemUpTime states it (`!thread`'s Ticks)
        info.system_uptime = self._shared_time("InterruptTime")
        if self._physical is None:
            info.notes.append("the engine does not serve physical memory here: process memory is read "
                              "in the debugger's current process context")
        return info

    def _drivers(self) -> List[Dict[str, Any]]:
        """DbgEng's kernel module list (`getModulesList()`), as the offline triage reader's
        `extra["drivers"]`: a triage dump's only module list (PsLoadedModuleList is not in it)."""
        modules = self.api.call("getModulesList")
        found: List[Dict[str, Any]] = []
        for kmod in list(modules or [])[:MAX_MODULES]:
            try:
                base, size = int(kmod.begin()), int(kmod.size())
                name = str(kmod.image() or kmod.name())
            except self.api.engine_errors + (AttributeError, TypeError, ValueError):
                continue
            found.append({"base": base, "size": size, "name": name})
        return found

    def _pseudo_register(self, name: str) -> Optional[int]:
        """A DbgEng pseudo-register (`$prcb`, `$thread`, `$proc`) through `expr("@$...")`."""
        value = self.api.call("expr", "@" + name)
        try:
            return int(value) if value else None
        except (TypeError, ValueError):
            return None

    def _shared_time(self, member: str) -> Optional[int]:
        """A `_KSYSTEM_TIME` member of KUSER_SHARED_DATA (100 ns units: `SystemTime`, a FILETIME;
        `InterruptTime`, the time since boot), field offsets from the PDB through typeInfo; None
        when the debugger has no such type or the page is not readable."""
        mod = self.api.mod
        shared = self.arch.kuser_shared_data
        try:
            if shared is None:
                raise AttributeError("no KUSER_SHARED_DATA address for %s" % self.arch.name)
            if self._time_types is None:          # looked up once per session (two typeInfo calls)
                self._time_types = (mod.typeInfo("nt!_KUSER_SHARED_DATA"), mod.typeInfo("nt!_KSYSTEM_TIME"))
            shared_type, ksystem = self._time_types
            where = shared + int(shared_type.fieldOffset(member))
            low = int.from_bytes(self._kernel.read(where + int(ksystem.fieldOffset("LowPart")), 4), "little")
            high = int.from_bytes(self._kernel.read(where + int(ksystem.fieldOffset("High1Time")), 4), "little")
        except self.api.engine_errors + (MemoryReadError, AttributeError):
            return None
        return (high << 32) | low if (high or low) else None

    def _system_time(self, info: TargetInfo) -> Optional[int]:
        """The target's time as a FILETIME: KUSER_SHARED_DATA.SystemTime; else DbgEng's
        `currentTime()` (whole seconds)."""
        found = self._shared_time("SystemTime")
        if found is not None:
            return found
        seconds = self.api.call("currentTime")
        if isinstance(seconds, int) and seconds > 0:
            info.notes.append("the target's time comes from DbgEng in whole seconds "
                              "(KUSER_SHARED_DATA is not readable)")
            return (seconds + UNIX_EPOCH_AS_FILETIME_SECONDS) * 10_000_000
        return None

    def _processors(self) -> Optional[int]:
        where = self.api.offset("nt!KeNumberProcessors")
        if not where:
            return None
        try:
            return int.from_bytes(self._kernel.read(where, 4), "little")
        except MemoryReadError:
            return None

    def _pdb_identity(self, info: TargetInfo) -> Tuple[Optional[str], Optional[int], str]:
        """(GUID, age, how) of the kernel's PDB: the image's CodeView record, else the symbol path."""
        if info.kernel_base:
            try:
                cv = self.pe_image(info.kernel_base).debug_codeview
                if cv is not None and cv.guid:
                    return cv.guid.replace("-", "").strip("{}").upper(), int(cv.age), "CodeView record of nt"
            except (PykdExtError, ValueError):
                pass
        symfile = info.extra.get("symfile")
        if symfile:
            folder = os.path.basename(os.path.dirname(str(symfile).replace("\\", "/")))
            match = _SYMSTORE_DIR.match(folder)
            if match:
                return match.group(1).upper(), int(match.group(2), 16), "symbol file path"
        return None, None, ""


def _int_attr(obj: Any, name: str) -> Optional[int]:
    value = getattr(obj, name, None)
    if callable(value):
        value = value()
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _bugcheck_fields(data: Any) -> List[int]:
    """`bugCheckData()` is a tuple (code, p1..p4) in 0.3.x; an object with .code/.parameters elsewhere."""
    if isinstance(data, (tuple, list)):
        return [int(v) for v in data]
    code = getattr(data, "code", None)
    params = getattr(data, "parameters", None) or []
    return [int(code)] + [int(v) for v in params] if code is not None else []


def open_pykd_target(dump_path: Optional[str] = None) -> PykdTarget:
    """The current pykd/DbgEng target; with `dump_path`, open that dump first (`loadDump`).

    Inside WinDbg the debugger's target is used as it is (never `initialize()`): pass no path.
    """
    pykd = import_pykd()
    dump_id = None
    if dump_path:
        if not os.path.exists(dump_path):
            raise TargetError("no such file", dump_path)
        base = getattr(pykd, "DbgException", None) or getattr(pykd, "BaseException", Exception)
        try:
            dump_id = pykd.loadDump(os.path.abspath(dump_path))
        except base as err:  # type: ignore[misc]
            raise TargetError("DbgEng cannot open the dump: %s" % err, dump_path) from None
        if dump_id is None:
            dump_id = 0
    target = PykdTarget(pykd, dump_path, dump_id)
    if not target.is_kernel:
        target.close()
        raise UnsupportedDumpError("not a kernel session: pykd-ext decodes kernel processes and threads "
                                   "(open a kernel dump or attach a kernel debugger)", dump_path)
    return target
