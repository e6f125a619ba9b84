"""A TEST DOUBLE for pykd - not pykd. It lets the WinDbg entry points run on Linux in tests.

What it is: a module named `pykd` implementing only the pykd names pykd-ext's adapter
(`pykd_ext/targets/pykd_target.py`, `pykd_ext/layouts/from_typeinfo.py`, `pykd_ext/windbg/`)
uses, over pykd-ext's own dump reader (`open_target`) plus the Volatility ISF symbol table of the
dump's build (standing in for the PDB DbgEng would load). It copies pykd's observable behaviour
where the adapter depends on it:
- failed reads raise `MemoryException` ("Memory exception at 0x... target virtual address"),
  a subclass of `DbgException`; nothing returns None;
- `loadBytes(va, n, phyAddr=False)` returns a list of ints;
- `typeInfo("nt!_EPROCESS")` answers like kdlib: kdlib base type names (`UInt4B`, `Int8B`,
  `Char`, ...; the PDB's long/ulong come out as Int4B/UInt4B), `fieldOffset("Pcb.DirectoryTableBase")`
  with dotted paths, `fields()` as (name, typeInfo) pairs, bitfields with `bitOffset`/`bitWidth`,
  `deref()` for pointers and arrays, `len()` of an array, enum constants as fields with `int()`;
  every UDT is "class/struct" (kdlib does not tell unions apart);
- `dprintln(text, dml=False)`; `isWindbgExt()` is true only when `sys.stdout` has `writedml`
  (set `PYKD_STANDIN_WINDBG=1`, or call `_standin_configure(windbg=True)`, to get such a stdout).
It never writes to the dump and never imports real pykd.

Configuration (test-only, not pykd API): environment variables read at first use -
`PYKD_STANDIN_DUMP` (dump path; `loadDump(path)` also sets it), `PYKD_STANDIN_ISF` (ISF file; when
unset, the ISF whose PDB GUID the dump's kernel image names is looked up in `PYKD_STANDIN_ISF_DIR`,
default `isf/windows/ntkrnlmp.pdb` of `$PYKD_EXT_SHARED` or `../shared` beside the checkout), `PYKD_STANDIN_WINDBG=1`,
`PYKD_STANDIN_VERSION` (nt file version `10.0.19041.1288`; default from the ISF's INDEX.tsv) -
or `_standin_configure(...)`; `_standin_reset()` forgets everything.
"""
import json
import lzma
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

__version__ = "0.3.4.15-standin"

_HERE = os.path.dirname(os.path.abspath(__file__))
_SHARED = os.environ.get("PYKD_EXT_SHARED") or os.path.join(_HERE, "..", "..", "..", "shared")
_DEFAULT_ISF_DIR = os.path.normpath(os.path.join(_SHARED, "isf", "windows", "ntkrnlmp.pdb"))

#: ISF base type name -> kdlib base type name (kdlib maps DIA's Long/ULong to Int4B/UInt4B)
_KDLIB_BASE = {
    "char": "Char", "signed char": "Int1B", "unsigned char": "UInt1B", "wchar": "WChar",
    "short": "Int2B", "unsigned short": "UInt2B", "int": "Int4B", "unsigned int": "UInt4B",
    "long": "Int4B", "unsigned long": "UInt4B", "long long": "Int8B", "unsigned long long": "UInt8B",
    "float": "Float", "double": "Double", "bool": "Bool", "void": "Void", "HRESULT": "Hresult",
}


class DbgException(Exception):
    """pykd 0.3.x base exception."""


class MemoryException(DbgException):
    """pykd: a failed or partial memory read."""


class TypeException(DbgException):
    """pykd: an unknown type or field."""


class SymbolException(DbgException):
    """pykd: an unknown symbol."""


# ------------------------------------------------------------------------------- state

#: decoded ISF files by path (read-only data; kept across `_standin_reset` to keep tests fast)
_ISF_CACHE: Dict[str, Dict[str, Any]] = {}


class _State:
    def __init__(self) -> None:
        self.dump: Optional[str] = None
        self.isf_path: Optional[str] = None
        self.windbg = False
        self.version: Optional[str] = None
        self.target: Any = None
        self.isf: Optional[Dict[str, Any]] = None
        self.output: List[Tuple[str, bool]] = []
        self.calls: Dict[str, int] = {}
        self.saved_stdout: Any = None

    def ensure(self) -> None:
        if self.dump is None:
            self.dump = os.environ.get("PYKD_STANDIN_DUMP")
        if self.isf_path is None:
            self.isf_path = os.environ.get("PYKD_STANDIN_ISF")
        if self.version is None:
            self.version = os.environ.get("PYKD_STANDIN_VERSION")
        if not self.windbg and os.environ.get("PYKD_STANDIN_WINDBG") == "1":
            _install_dbgout(self)
        if self.target is None:
            if not self.dump:
                raise DbgException("stand-in pykd: no dump (set PYKD_STANDIN_DUMP or call loadDump)")
            from pykd_ext.targets.opener import open_target
            self.target = open_target(self.dump)

    def load_isf(self) -> Dict[str, Any]:
        self.ensure()
        if self.isf is None:
            path = self.isf_path or _isf_for_dump(self.target)
            if path is None:
                raise DbgException("stand-in pykd: no symbols for this dump (set PYKD_STANDIN_ISF)")
            self.isf_path = path
            self.isf = _ISF_CACHE.get(path)
            if self.isf is None:
                opener = lzma.open if path.endswith(".xz") else open
                with opener(path, "rb") as fh:
                    self.isf = json.loads(fh.read())
                _ISF_CACHE[path] = self.isf
        return self.isf


_state = _State()


class _DbgOut:
    """Like WinDbg's stdout under pykd: `write` plus `writedml`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        return self._inner.write(text)

    def writedml(self, text: str) -> int:
        _state.output.append((text, True))
        return self._inner.write(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


def _install_dbgout(state: _State) -> None:
    state.windbg = True
    if not hasattr(sys.stdout, "writedml"):
        state.saved_stdout = sys.stdout
        sys.stdout = _DbgOut(sys.stdout)


def _standin_configure(dump: Optional[str] = None, isf: Optional[str] = None, windbg: bool = False,
                       version: Optional[str] = None) -> None:
    """Test helper (not pykd API): choose the dump, the ISF and whether stdout has writedml."""
    _standin_reset()
    _state.dump, _state.isf_path, _state.version = dump, isf, version
    if windbg:
        _install_dbgout(_state)


def _standin_reset() -> None:
    """Test helper (not pykd API): close the dump, restore stdout, forget configuration."""
    if _state.target is not None:
        _state.target.close()
    if _state.saved_stdout is not None:
        sys.stdout = _state.saved_stdout
    _state.__init__()  # type: ignore[misc]


def _standin_calls() -> Dict[str, int]:
    """Test helper: how often each pykd function was called."""
    return dict(_state.calls)


def _count(name: str) -> None:
    _state.calls[name] = _state.calls.get(name, 0) + 1


def _isf_for_dump(target: Any) -> Optional[str]:
    """The ISF file of the PDB GUID named by the dump's kernel image (CodeView record)."""
    info = target.info()
    base = info.kernel_base or (info.kdbg or {}).get("KernBase")
    if not base:
        return None
    from pykd_ext.targets.pe import read_pe_info
    from pykd_ext.errors import PykdExtError
    try:
        cv = read_pe_info(target.kernel, base).debug_codeview
    except PykdExtError:
        return None
    if cv is None:
        return None
    folder = os.environ.get("PYKD_STANDIN_ISF_DIR", _DEFAULT_ISF_DIR)
    path = os.path.join(folder, "%s-%d.json.xz" % (cv.guid.replace("-", "").upper(), cv.age))
    return path if os.path.exists(path) else None


def _isf_version(path: str) -> Optional[str]:
    index = os.path.join(os.path.dirname(path), "..", "..", "INDEX.tsv")
    name = os.path.basename(path)
    try:
        with open(index, "r", encoding="utf-8") as fh:
            for line in fh:
                cells = line.rstrip("\n").split("\t")
                if cells and cells[-1] == name:
                    return cells[0]
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------- session

def isWindbgExt() -> bool:
    _count("isWindbgExt")
    return hasattr(sys.stdout, "writedml")


def isKernelDebugging() -> bool:
    _count("isKernelDebugging")
    _state.ensure()
    return _state.target.info().container in ("PAGEDU64", "PAGEDUMP", "raw")


def isDumpAnalyzing() -> bool:
    _count("isDumpAnalyzing")
    return True


def is64bitSystem() -> bool:
    _count("is64bitSystem")
    _state.ensure()
    return _state.target.info().arch == "x64"


def loadDump(path: str) -> int:
    """Standalone use: open a dump (the stand-in's reader), return its id."""
    _count("loadDump")
    if not os.path.exists(path):
        raise DbgException("failed to open dump %s" % path)
    isf, windbg, version, calls = _state.isf_path, _state.windbg, _state.version, dict(_state.calls)
    _standin_reset()
    _state.dump, _state.isf_path, _state.version, _state.windbg = path, isf, version, windbg
    _state.calls = calls
    try:
        _state.ensure()
    except Exception as err:  # any reader failure is an engine failure for the caller
        raise DbgException("failed to open dump %s: %s" % (path, err)) from None
    return 0


def closeDump(id: int = 0) -> None:
    _count("closeDump")
    if _state.target is not None:
        _state.target.close()
        _state.target = None


class _SystemVersion:
    def __init__(self, build: int) -> None:
        self.buildNumber = build
        self.win32Major, self.win32Minor = (10, 0) if build >= 10000 else ((6, 3) if build >= 9600 else
                                                                          ((6, 2) if build >= 9200 else (6, 1)))
        self.buildString = "%d.standin" % build


def getSystemVersion() -> _SystemVersion:
    _count("getSystemVersion")
    _state.ensure()
    return _SystemVersion(int(_state.target.info().build or 0))


def dbgCommand(command: str, suppressOutput: bool = True) -> Optional[str]:
    _count("dbgCommand")
    _state.ensure()
    if command.strip() == "||":
        kind = _state.target.info().dump_type or "full"
        label = {"triage": "Kernel Triage dump", "full": "Full kernel dump",
                 "kernel summary": "Kernel Summary dump", "bitmap": "Kernel Bitmap dump"}.get(kind, "Kernel dump")
        return ".  0 %s: %s\n" % (label, _state.dump)
    return None


def expr(expression: str, cplusplus: bool = False) -> int:
    """Only the DbgEng pseudo-register `@$prcb` is modelled (the triage dump's PRCB, else processor 0's)."""
    _count("expr")
    _state.ensure()
    if expression.strip().lower() == "@$prcb":
        extra = _state.target.info().extra or {}
        if extra.get("prcb"):
            return int(extra["prcb"])
        return _read_pointer(getOffset("nt!KiProcessorBlock"))
    raise DbgException("stand-in pykd: cannot evaluate %r" % expression)


def currentTime() -> int:
    """Seconds since 1970 of the dump (DbgEng: the target's time, whole seconds)."""
    _count("currentTime")
    _state.ensure()
    filetime = _state.target.info().system_time
    if not filetime:
        raise DbgException("no target time")
    return filetime // 10_000_000 - 11_644_473_600


def reg(name: str) -> int:
    _count("reg")
    _state.ensure()
    if name.lower() == "cr3":
        value = _state.target.info().directory_table_base
        if value is None:
            raise DbgException("register cr3 is not available")
        return int(value)
    # the dump's own crash context (a triage dump's CONTEXT record), as DbgEng serves it
    context = (_state.target.info().extra or {}).get("context")
    if isinstance(context, dict) and isinstance(context.get(name.lower()), int):
        return int(context[name.lower()])
    raise DbgException("stand-in pykd: register %s is not modelled" % name)


def bugCheckData() -> Tuple[int, ...]:
    _count("bugCheckData")
    _state.ensure()
    info = _state.target.info()
    return tuple([int(info.bugcheck_code or 0)] + [int(p) for p in (info.bugcheck_parameters or [0] * 4)])


# ------------------------------------------------------------------------------- memory

def loadBytes(offset: int, count: int, phyAddr: bool = False) -> List[int]:
    _count("loadBytes")
    _state.ensure()
    from pykd_ext.errors import MemoryReadError
    try:
        if phyAddr:
            physical = _state.target.physical
            if physical is None:
                raise MemoryException("Memory exception at 0x%x target physical address" % offset)
            data = physical.read(offset, count)
        else:
            data = _state.target.kernel.read(offset, count)
    except MemoryReadError:
        raise MemoryException("Memory exception at 0x%x target %s address"
                              % (offset, "physical" if phyAddr else "virtual")) from None
    except (ValueError, OverflowError):
        raise MemoryException("Memory exception at 0x%x target virtual address" % offset) from None
    return list(data)


# ------------------------------------------------------------------------------- symbols

def _kernel_base() -> int:
    _state.ensure()
    info = _state.target.info()
    base = info.kernel_base or (info.kdbg or {}).get("KernBase")
    if not base:
        raise DbgException("stand-in pykd: kernel base unknown")
    return int(base)


def _split(name: str) -> str:
    module_name, _, symbol = name.rpartition("!")
    if module_name and module_name.lower() not in ("nt", "ntoskrnl", "ntkrnlmp"):
        raise SymbolException("'%s' - module not found" % module_name)
    return symbol


def getOffset(name: str) -> int:
    _count("getOffset")
    symbol = _split(name)
    entry = (_state.load_isf().get("symbols") or {}).get(symbol)
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), int):
        raise SymbolException("'%s' - symbol not found" % name)
    return _kernel_base() + entry["address"]


def getCurrentProcess() -> int:
    """Current EPROCESS: the implicit thread's ApcState.Process."""
    _count("getCurrentProcess")
    _state.ensure()
    extra = _state.target.info().extra or {}
    if extra.get("process"):
        return int(extra["process"])
    thread = getImplicitThread()
    if not thread:
        return 0
    offset = typeInfo(_desc=_lookup("_KTHREAD")).fieldOffset("ApcState.Process")
    return _read_pointer(thread + offset)


def getImplicitThread() -> int:
    """Implicit ETHREAD: processor 0's PRCB CurrentThread (the triage dump's thread when it has one)."""
    _count("getImplicitThread")
    _state.ensure()
    extra = _state.target.info().extra or {}
    if extra.get("thread"):
        return int(extra["thread"])
    try:
        blocks = getOffset("nt!KiProcessorBlock")
        prcb = _read_pointer(blocks)
        return _read_pointer(prcb + typeInfo(_desc=_lookup("_KPRCB")).fieldOffset("CurrentThread"))
    except DbgException:
        return 0


def _read_pointer(va: int) -> int:
    size = 8 if is64bitSystem() else 4
    return int.from_bytes(bytes(loadBytes(va, size)), "little")


def getModulesList() -> List["module"]:
    """Kernel modules as DbgEng lists them: the dump's own driver list when it has one
    (triage dumps), else just nt."""
    _count("getModulesList")
    _state.ensure()
    drivers = (_state.target.info().extra or {}).get("drivers")
    if isinstance(drivers, list) and drivers:
        return [module(_driver=d) for d in drivers if isinstance(d, dict) and d.get("base")]
    return [module("nt")]


class module:
    """pykd.module: the kernel module by name ("nt"); other modules only via getModulesList()."""

    def __init__(self, name: str = "", _driver: Optional[Dict[str, Any]] = None) -> None:
        if _driver is not None:
            self._base, self._size, self._image = int(_driver["base"]), int(_driver.get("size") or 0), \
                str(_driver.get("name") or "")
            return
        _count("module")
        if name.lower() not in ("nt", "ntoskrnl", "ntkrnlmp"):
            raise SymbolException("module %s not found" % name)
        self._base = _kernel_base()
        self._size, self._image = 0, "ntoskrnl.exe"

    def size(self) -> int:
        return self._size or (self.end() - self._base)

    def image(self) -> str:
        return self._image

    def begin(self) -> int:
        return self._base

    def end(self) -> int:
        from pykd_ext.targets.pe import read_pe_info
        from pykd_ext.errors import PykdExtError
        try:
            return self._base + read_pe_info(_state.target.kernel, self._base).size_of_image
        except PykdExtError:
            return self._base

    def name(self) -> str:
        return "nt"

    def symfile(self) -> str:
        pdb = ((_state.load_isf().get("metadata") or {}).get("windows") or {}).get("pdb") or {}
        return "c:\\symbols\\ntkrnlmp.pdb\\%s%X\\ntkrnlmp.pdb" % (pdb.get("GUID", ""), int(pdb.get("age", 1)))

    def getVersion(self) -> Tuple[int, ...]:
        _state.load_isf()
        version = _state.version or (_isf_version(_state.isf_path) if _state.isf_path else None)
        if not version:
            raise DbgException("no version resource")
        return tuple(int(p) for p in version.split("."))

    def type(self, name: str) -> "typeInfo":
        return typeInfo("nt!" + name)


# ------------------------------------------------------------------------------- typeInfo

class typeInfo:
    """kdlib-like type information over the ISF of the dump's build."""

    def __init__(self, name: Any = None, _desc: Optional[Dict[str, Any]] = None) -> None:
        if _desc is None:
            _count("typeInfo")
            _desc = _lookup(_split(str(name)))
        self._d = _desc
        self._isf = _state.load_isf()

    # -- classification
    def _kind(self) -> str:
        return self._d.get("kind", "")

    def isBitField(self) -> bool:
        return self._kind() == "bitfield"

    def isPointer(self) -> bool:
        return self._kind() == "pointer"

    def isArray(self) -> bool:
        return self._kind() == "array"

    def isEnum(self) -> bool:
        kind = self._kind()
        return kind == "enum" or (kind == "bitfield" and (self._d.get("type") or {}).get("kind") == "enum")

    def isUserDefined(self) -> bool:
        return self._kind() in ("struct", "union", "class")

    def isFunction(self) -> bool:
        return self._kind() == "function"

    def isVoid(self) -> bool:
        return self._kind() == "base" and self._d.get("name") == "void"

    def isBase(self) -> bool:
        return self._kind() == "base"

    # -- identity
    def name(self) -> str:
        kind = self._kind()
        if kind == "base":
            return _KDLIB_BASE.get(self._d.get("name", ""), self._d.get("name", ""))
        if kind in ("struct", "union", "class", "enum"):
            name = self._d.get("name", "")
            return "<unnamed-tag>" if name.startswith("__unnamed") or name.startswith("__anonymous") else name
        if kind == "bitfield":
            return "%s:%d" % (typeInfo(_desc=self._d.get("type") or {}).name(), self._d.get("bit_length", 0))
        if kind == "pointer":
            return typeInfo(_desc=self._d.get("subtype") or {}).name() + "*"
        if kind == "array":
            return "%s[%d]" % (typeInfo(_desc=self._d.get("subtype") or {}).name(), self._d.get("count", 0))
        return "Function"

    def size(self) -> int:
        kind = self._kind()
        if kind == "base":
            if self._d.get("name") == "void":
                raise TypeException("Void: This type has no size")
            return int(self._isf["base_types"][self._d["name"]]["size"])
        if kind == "pointer":
            return int(self._isf["base_types"]["pointer"]["size"])
        if kind == "array":
            return int(self._d.get("count", 0)) * typeInfo(_desc=self._d.get("subtype") or {}).size()
        if kind == "bitfield":
            return typeInfo(_desc=self._d.get("type") or {}).size()
        if kind == "enum":
            return int(self._isf["enums"][self._d["name"]].get("size", 4))
        if kind in ("struct", "union", "class"):
            return int(self._udt()["size"])
        raise TypeException("%s: This type has no size" % self.name())

    def __str__(self) -> str:
        if self.isUserDefined():
            return "class/struct : %s Size: 0x%x (%d)\n" % (self.name(), self.size(), self.size())
        return self.name()

    # -- members
    def _udt(self) -> Dict[str, Any]:
        found = (self._isf.get("user_types") or {}).get(self._d.get("name", ""))
        if not isinstance(found, dict):
            raise TypeException("%s - type not found" % self._d.get("name"))
        return found

    def fields(self) -> List[Tuple[str, "typeInfo"]]:
        if self._kind() == "enum":
            consts = self._isf["enums"][self._d["name"]]["constants"]
            return [(n, _Constant(v)) for n, v in sorted(consts.items(), key=lambda kv: kv[1])]  # type: ignore[misc]
        if not self.isUserDefined():
            raise TypeException("%s: type has no fields" % self.name())
        members = self._udt().get("fields") or {}
        ordered = sorted(members.items(), key=lambda kv: kv[1].get("offset", 0))
        return [(n, typeInfo(_desc=m.get("type") or {})) for n, m in ordered]

    def getNumberFields(self) -> int:
        return len(self.fields())

    def fieldName(self, index: int) -> str:
        return self.fields()[index][0]

    def __len__(self) -> int:
        if self.isArray():
            return int(self._d.get("count", 0))
        return len(self.fields())

    def field(self, name: Any) -> Any:
        if isinstance(name, int):
            return self.fields()[name][1]
        if self._kind() == "enum":
            consts = self._isf["enums"][self._d["name"]]["constants"]
            if name not in consts:
                raise TypeException("%s has no field %s" % (self.name(), name))
            return _Constant(consts[name])
        current: "typeInfo" = self
        for part in str(name).split("."):
            member = (current._udt().get("fields") or {}).get(part) if current.isUserDefined() else None
            if member is None:
                raise TypeException("%s has no field %s" % (current.name(), part))
            current = typeInfo(_desc=member.get("type") or {})
        return current

    def hasField(self, name: str) -> bool:
        try:
            self.field(name)
            return True
        except TypeException:
            return False

    def fieldOffset(self, name: Any) -> int:
        if isinstance(name, int):
            name = self.fields()[name][0]
        offset = 0
        current: "typeInfo" = self
        for part in str(name).split("."):
            member = (current._udt().get("fields") or {}).get(part) if current.isUserDefined() else None
            if member is None:
                raise TypeException("%s has no field %s" % (current.name(), part))
            offset += int(member.get("offset", 0))
            current = typeInfo(_desc=member.get("type") or {})
        return offset

    def bitOffset(self) -> int:
        if not self.isBitField():
            raise TypeException("%s is not a bit field" % self.name())
        return int(self._d["bit_position"])

    def bitWidth(self) -> int:
        if not self.isBitField():
            raise TypeException("%s is not a bit field" % self.name())
        return int(self._d["bit_length"])

    def deref(self) -> "typeInfo":
        if self._kind() not in ("pointer", "array"):
            raise TypeException("%s is not a pointer" % self.name())
        return typeInfo(_desc=self._d.get("subtype") or {})


class _Constant(typeInfo):
    """An enum constant's type: `int()` gives its value (kdlib's TypeInfo with a constant)."""

    def __init__(self, value: int) -> None:  # noqa: D401 - mirrors kdlib
        self._value = int(value)
        self._d = {"kind": "base", "name": "int"}
        self._isf = _state.load_isf()

    def __int__(self) -> int:
        return self._value

    def __index__(self) -> int:
        return self._value


def _lookup(name: str) -> Dict[str, Any]:
    isf = _state.load_isf()
    if name in (isf.get("user_types") or {}):
        return {"kind": (isf["user_types"][name].get("kind") or "struct"), "name": name}
    if name in (isf.get("enums") or {}):
        return {"kind": "enum", "name": name}
    for isf_name, kdlib in _KDLIB_BASE.items():
        if kdlib == name and isf_name in (isf.get("base_types") or {}):
            return {"kind": "base", "name": isf_name}
    raise SymbolException("'%s' - symbol not found" % name)


# ------------------------------------------------------------------------------- output

def dprint(str: str, dml: bool = False) -> None:  # noqa: A002 - pykd's parameter name
    _count("dprint")
    _state.output.append((str, bool(dml)))
    sys.stdout.write(str)


def dprintln(str: str, dml: bool = False) -> None:  # noqa: A002 - pykd's parameter name
    _count("dprintln")
    _state.output.append((str, bool(dml)))
    sys.stdout.write(str + "\n")
