"""Reading Volatility ISF symbol tables and reducing them to what pykd-ext decodes.

Why a separate module: the generator (all shipped builds), `structs import` (one user file) and
`--symbols` (one file, in memory) all start from the same reduction, and the tests compare the
generated layouts against the same ISF reading. Files are read with limits (`bounded_read`) and
checked whole before anything is reduced (`isf_check`), so the reduction works on values whose
JSON types and ranges are known. An ISF file is large (~900 types, ~19,000 symbols);
we keep the by-value closure of the root types, the enums they use, and a short list of globals.

The reduction is canonical: every struct/union/enum gets a content digest that includes the
digests of the types it embeds by value, so identical layouts in different builds are recognised
and shared. Volatility's `__unnamed_<hex>` names are PDB-assigned and differ between builds, so
they are not part of a digest: such types are shown as `<unnamed-tag>` (WinDbg's spelling), and
Volatility's `__anonymous_<hex>` as `<anonymous-tag>`.
"""
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import LayoutError
# imported with this module, not on first use: loading a symbol file must run no new code
# (tests/layouts/test_from_reduced.py forbids exec/compile while layouts load)
from pykd_ext.layouts.pdb import is_pdb_file, pdb_to_isf
from pykd_ext.layouts.isf_check import (MACHINE_ARCH, MAX_NESTING, check_isf_doc, check_isf_head, leading_version,
                                        printable, version_problem)
from pykd_ext.targets.arch import DEFAULT_ARCH, arch_for_pointer_size, arch_named, layout_build_id

#: Types the walkers use; their by-value closure is kept (issue 3).
ROOT_TYPES: Tuple[str, ...] = (
    "_EPROCESS", "_KPROCESS", "_ETHREAD", "_KTHREAD", "_PEB", "_PEB_LDR_DATA",
    "_LDR_DATA_TABLE_ENTRY", "_RTL_USER_PROCESS_PARAMETERS", "_TEB", "_NT_TIB", "_CLIENT_ID",
    "_LIST_ENTRY", "_UNICODE_STRING", "_EX_FAST_REF", "_TOKEN", "_SEP_TOKEN_PRIVILEGES",
    "_SID_AND_ATTRIBUTES", "_SID", "_HANDLE_TABLE", "_HANDLE_TABLE_ENTRY", "_OBJECT_HEADER",
    "_OBJECT_HEADER_NAME_INFO", "_OBJECT_TYPE", "_EJOB", "_PS_PROTECTION", "_KAPC_STATE",
    "_DISPATCHER_HEADER", "_KWAIT_BLOCK", "_KPRCB", "_KPCR", "_MM_SESSION_SPACE", "_FILE_OBJECT",
    # beyond the list: what the walkers reach through pointers of the types above
    # (WoW64 PEB/TEB, the kernel module list, the optional object headers in front of
    # _OBJECT_HEADER_NAME_INFO, the object directory)
    "_EWOW64PROCESS", "_PEB32", "_TEB32", "_KLDR_DATA_TABLE_ENTRY",
    "_OBJECT_HEADER_CREATOR_INFO", "_OBJECT_HEADER_HANDLE_INFO", "_OBJECT_HEADER_QUOTA_INFO",
    "_OBJECT_HEADER_PROCESS_INFO", "_OBJECT_HEADER_AUDIT_INFO", "_OBJECT_DIRECTORY",
    "_OBJECT_DIRECTORY_ENTRY", "_OBJECT_NAME_INFORMATION",
    # registry key handles (key path pieces), device objects, server silos
    "_CM_KEY_BODY", "_CM_KEY_CONTROL_BLOCK", "_CM_NAME_CONTROL_BLOCK", "_DEVICE_OBJECT",
    "_ESERVERSILO_GLOBALS",
    # not-present PTE formats (pagefile offsets, transition pages) for the paging code
    "_MMPTE_SOFTWARE", "_MMPTE_TRANSITION", "_MMPTE_PROTOTYPE",
    # H10 (issue 17): the VAD tree (AVL on Windows 7, RTL balanced nodes later), its flags, and
    # the section objects behind mapped views (subsection -> control area -> file object)
    "_MMVAD", "_MMVAD_SHORT", "_MMVAD_FLAGS", "_MMVAD_FLAGS1", "_MMVAD_FLAGS2",
    "_MM_AVL_TABLE", "_MMADDRESS_NODE", "_RTL_AVL_TREE", "_RTL_BALANCED_NODE",
    "_SUBSECTION", "_CONTROL_AREA", "_SEGMENT",
)
#: Enums kept where the build has them (plus every enum a kept type uses by value).
ROOT_ENUMS: Tuple[str, ...] = (
    "_KTHREAD_STATE", "_KWAIT_REASON", "_PS_PROTECTED_TYPE", "_PS_PROTECTED_SIGNER",
    "_TOKEN_TYPE", "_SECURITY_IMPERSONATION_LEVEL", "_KPROCESS_STATE", "_MODE",
    "_KOBJECTS", "_KWAIT_BLOCK_STATE",
)
#: Kernel globals (RVA from the image base) the walkers and the KDBG decoder need.
GLOBAL_SYMBOLS: Tuple[str, ...] = (
    "PsActiveProcessHead", "PspCidTable", "ObTypeIndexTable", "ObHeaderCookie",
    "PsInitialSystemProcess", "KiProcessorBlock", "PsLoadedModuleList", "KdDebuggerDataBlock",
    "NtBuildNumber", "NtBuildLab", "MmPfnDatabase", "KiWaitNever", "KiWaitAlways",
    "KdpDataBlockEncoded", "KeNumberProcessors", "KiKvaShadow", "PsIdleProcess",
    "PsProcessType", "PsThreadType", "PsJobType", "SeTokenObjectType", "IoFileObjectType",
    "ObpRootDirectoryObject", "ObpTypeObjectType", "ObpKernelHandleTable", "MmSystemRangeStart",
    "MmUserProbeAddress", "MmHighestUserAddress", "KdVersionBlock", "PsNtosImageBase",
    "MiState", "MmSessionSpace", "KiInitialThread", "KeActiveProcessors", "PoolBigPageTable",
    "KeMaximumIncrement", "ObpInfoMaskToOffset",
    "MmProtectToValue",                 # H10 (issue 17): VAD protection index -> PAGE_* value
)

UNNAMED = "<unnamed-tag>"
ANONYMOUS = "<anonymous-tag>"


def shown_name(isf_name: str) -> str:
    """The PDB-facing name of a type: Volatility's `__unnamed_<hex>`/`__anonymous_<hex>` are
    numbered per PDB, so they become WinDbg's `<unnamed-tag>`/`<anonymous-tag>`."""
    if isf_name.startswith("__unnamed"):
        return UNNAMED
    if isf_name.startswith("__anonymous"):
        return ANONYMOUS
    return isf_name
#: sanity bound of the kept types: elements of one array member (MAX_NESTING: isf_check)
MAX_ARRAY_COUNT = 1 << 24

#: A canonical member type, as nested tuples (JSON-able, hashable):
#:   ("base", name, size, signed, kind) | ("ptr", target, target_kind, depth, size)
#:   ("struct"|"union", digest) | ("enum", digest) | ("array", count, elem)
#:   ("bits", position, length, storage) | ("func",)
TypeDesc = Tuple[Any, ...]


@dataclass
class RecordDef:
    """One struct/union variant, canonical: members sorted by (offset, bitfields last, bit, name)."""

    name: str                         # PDB name, or UNNAMED
    kind: str
    size: int
    fields: List[Tuple[str, int, TypeDesc]]
    digest: str = ""


@dataclass
class EnumDefn:
    """One enum of a symbol table as data: its storage type and its constants, identified by a content
    digest."""

    name: str
    storage: TypeDesc                 # a ("base", ...) desc
    constants: List[Tuple[str, int]]  # sorted by (value, name)
    digest: str = ""


@dataclass
class BuildMeta:
    """Identity of one kernel build's layouts (an `index.json` entry)."""

    build_id: str
    version: str
    build: int
    revision: Optional[int]
    guid: Optional[str]
    age: Optional[int]
    arch: str
    pointer_size: int
    products: List[str]
    source: str
    types_only: bool
    pdb: str = "ntkrnlmp.pdb"
    module: str = ""
    #: H10 (derived layouts): partial/absent types, revision range, licence (layouts/derived.py);
    #: written to index.json only when set, so PDB-generated entries are unchanged
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        out = {"build_id": self.build_id, "version": self.version, "build": self.build,
               "revision": self.revision, "guid": self.guid, "age": self.age, "arch": self.arch,
               "pointer_size": self.pointer_size, "products": list(self.products),
               "source": self.source, "types_only": self.types_only, "pdb": self.pdb,
               "module": self.module}
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass
class ReducedBuild:
    """What the generator needs of one ISF: the kept types/enums by digest, names, globals."""

    meta: BuildMeta
    records: Dict[str, RecordDef] = field(default_factory=dict)     # digest -> def
    enums: Dict[str, EnumDefn] = field(default_factory=dict)        # digest -> def
    type_names: Dict[str, str] = field(default_factory=dict)        # PDB name -> digest
    enum_names: Dict[str, str] = field(default_factory=dict)        # enum name -> digest
    symbols: Dict[str, int] = field(default_factory=dict)


def load_isf(path: str) -> Dict[str, Any]:
    """The JSON object of an ISF file (JSON, xz- or gzip-compressed); LayoutError if unreadable.

    Bounded (layouts/bounded_read.py): regular files only, limited on disk and after
    decompression. The content is checked by `reduce_isf` (layouts/isf_check.py)."""
    from pykd_ext.layouts.bounded_read import read_bounded
    if is_pdb_file(path):        # a PDB (MSF 7.0, by content): converted, then checked like any ISF
        return pdb_to_isf(path)
    data = read_bounded(path)
    try:
        doc = json.loads(data)
    except RecursionError:
        raise LayoutError("cannot read ISF symbol table: JSON nested too deeply", path=path) from None
    except ValueError as err:
        raise LayoutError("cannot read ISF symbol table: %s" % printable(err, 200), path=path) from None
    finally:
        del data
    if not isinstance(doc, dict) or not isinstance(doc.get("user_types"), dict):
        raise LayoutError("not a Volatility ISF symbol table (no user_types)", path=path)
    return doc


def _digest(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def _version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def meta_from_isf(doc: Dict[str, Any], version: Optional[str] = None, products: Optional[List[str]] = None,
                  source: Optional[str] = None, path: str = "") -> BuildMeta:
    """Identity of an ISF: PDB GUID/age, arch, pointer size; version from INDEX.tsv or metadata.

    Reads only what `check_isf_head` has checked (metadata, base types); a version given by the
    caller (`--version`) must be digits and dots too."""
    check_isf_head(doc, path)
    meta = doc.get("metadata") or {}
    pdb = ((meta.get("windows") or {}).get("pdb")) or {}
    src = meta.get("source") or {}
    guid = pdb.get("GUID")
    age = pdb.get("age")
    pointer = (doc.get("base_types") or {}).get("pointer") or {}
    machine: Any = pdb.get("machine_type")
    size: Any = pointer.get("size")
    # the file's own statement of its architecture, else its machine type, else its pointer size
    arch = src.get("arch") or MACHINE_ARCH.get(machine) or \
        (arch_for_pointer_size(size) if size in (4, 8) else DEFAULT_ARCH).name
    described = arch_named(arch)
    arch_pointer = described.pointer_size if described is not None else DEFAULT_ARCH.pointer_size
    ptr = size or arch_pointer
    if ptr != arch_pointer:
        raise LayoutError("malformed ISF: base_types.pointer.size: %d-byte pointers do not fit arch %s"
                          % (ptr, arch), path=path or None)
    if not version and isinstance(src.get("version"), str):
        # derived files may annotate the version ("10.0.26100 (Windows 11 24H2, ...)")
        version = leading_version(src["version"])
    version = version or ""
    if version:
        problem = version_problem(version)
        if problem:
            raise LayoutError(problem, path=path or None)
    guid = guid.upper() if isinstance(guid, str) and guid else None
    age = age if isinstance(age, int) else None
    if version:
        parts = version.split(".")
        build, revision = int(parts[2]), (int(parts[3]) if len(parts) > 3 else None)
        build_id = layout_build_id(version, arch)
    elif guid:
        # a user's ISF (e.g. Volatility's cache) names only its PDB: keyed by GUID-age
        build, revision = 0, None
        build_id = "%s-%s" % (guid, age if age is not None else 1)
    else:
        raise LayoutError("the ISF names neither a Windows version nor a PDB GUID; "
                          "pass the version (e.g. --version 10.0.19041.1288)", path=path or None)
    types_only = not doc.get("symbols")
    if source is None:
        source = ("derived: types only (%s)" % src.get("name", "headers")) if src else "isf"
    return BuildMeta(build_id=build_id, version=version, build=build, revision=revision,
                     guid=guid, age=age, arch=arch,
                     pointer_size=int(ptr), products=list(products or []), source=source,
                     types_only=types_only, pdb=pdb.get("database") or "ntkrnlmp.pdb")


class _Reducer:
    """Canonicalises the by-value closure of ROOT_TYPES of one ISF document."""

    def __init__(self, doc: Dict[str, Any], path: str, pointer_size: int = 8) -> None:
        self.doc = doc
        self.path = path
        self.user_types: Dict[str, Any] = doc.get("user_types") or {}
        self.enums_src: Dict[str, Any] = doc.get("enums") or {}
        self.base_types: Dict[str, Any] = doc.get("base_types") or {}
        # the build's pointer size (meta_from_isf: the file's `pointer` base type, else its arch)
        self.ptr_size = pointer_size
        self.type_digest: Dict[str, str] = {}
        self.enum_digest: Dict[str, str] = {}
        self.records: Dict[str, RecordDef] = {}
        self.enums: Dict[str, EnumDefn] = {}

    def _bad(self, what: str) -> LayoutError:
        return LayoutError("malformed ISF: %s" % what, path=self.path)

    def base(self, name: str) -> TypeDesc:
        info = self.base_types.get(name)
        if not isinstance(info, dict):
            raise self._bad("unknown base type %r" % name)
        return ("base", name, int(info.get("size", 0)), bool(info.get("signed")), info.get("kind", "int"))

    def enum(self, name: str) -> TypeDesc:
        if name in self.enum_digest:
            return ("enum", self.enum_digest[name])
        src = self.enums_src.get(name)
        if not isinstance(src, dict):
            raise self._bad("unknown enum %r" % name)
        storage = self.base(src.get("base", "int"))
        consts = sorted(((str(k), int(v)) for k, v in (src.get("constants") or {}).items()),
                        key=lambda kv: (kv[1], kv[0]))
        defn = EnumDefn(name, storage, consts)
        defn.digest = _digest(["enum", name, list(storage), consts])
        self.enum_digest[name] = defn.digest
        self.enums[defn.digest] = defn
        return ("enum", defn.digest)

    def pointee(self, sub: Dict[str, Any]) -> Tuple[str, str, int]:
        depth = 0
        # bounded: ISF pointer chains are short; 16 levels is far beyond any C declaration
        while sub.get("kind") == "pointer" and depth < 16:
            depth += 1
            sub = sub.get("subtype") or {}
        kind = sub.get("kind", "base")
        if kind == "function":
            return "<function>", "function", depth
        if kind == "array":
            return "<array>", "array", depth
        return shown_name(sub.get("name", "void")), kind, depth

    def desc(self, t: Dict[str, Any], depth: int = 0) -> TypeDesc:
        """Canonical desc of a member type; struct/union members must already be digested."""
        if depth > MAX_NESTING:
            raise self._bad("member type nested more than %d levels" % MAX_NESTING)
        kind = t.get("kind")
        if kind == "base":
            return self.base(t.get("name", ""))
        if kind == "pointer":
            target, tkind, depth = self.pointee(t.get("subtype") or {})
            # Volatility's convention: a pointer of another width names its base ("pointer32")
            size = self.ptr_size
            base = t.get("base")
            if isinstance(base, str) and base != "pointer":
                info = self.base_types.get(base)
                if isinstance(info, dict) and info.get("size") in (4, 8):
                    size = int(info["size"])
            return ("ptr", target, tkind, depth, size)
        if kind in ("struct", "union"):
            return (kind, self.type_digest[t["name"]])
        if kind == "enum":
            return self.enum(t.get("name", ""))
        if kind == "array":
            count = int(t.get("count", 0))
            if not 0 <= count <= MAX_ARRAY_COUNT:
                raise self._bad("array count %d" % count)
            return ("array", count, self.desc(t.get("subtype") or {}, depth + 1))
        if kind == "bitfield":
            pos, length = int(t["bit_position"]), int(t["bit_length"])
            if not (0 <= pos < 64 and 0 < length <= 64):
                raise self._bad("bitfield position/length %d/%d" % (pos, length))
            return ("bits", pos, length, self.desc(t.get("type") or {}, depth + 1))
        if kind == "function":
            return ("func",)
        raise self._bad("unknown member kind %r" % kind)

    @staticmethod
    def _by_value(t: Dict[str, Any], out: List[str]) -> None:
        # arrays of arrays of structs: unwrap iteratively (bounded by nesting in the file)
        for _ in range(64):
            kind = t.get("kind")
            if kind in ("struct", "union"):
                out.append(t.get("name", ""))
                return
            if kind == "array":
                t = t.get("subtype") or {}
            elif kind == "bitfield":
                t = t.get("type") or {}
            else:
                return

    def run(self) -> Tuple[Dict[str, str], Dict[str, str]]:
        # 1. the closure, in post-order (dependencies first), iteratively
        order: List[str] = []
        state: Dict[str, int] = {}        # 1 = on stack, 2 = done
        # a kernel symbol table keeps what the walkers reach; any other program's types (a PDB or
        # ISF given to `dt --symbols`) are all kept: there is no walker to choose for
        kernel = any(name in self.user_types for name in ("_EPROCESS", "_KTHREAD"))
        roots = ROOT_TYPES if kernel else tuple(sorted(self.user_types))
        for root in roots:
            if root not in self.user_types or state.get(root) == 2:
                continue
            stack: List[Tuple[str, List[str]]] = []

            def push(name: str) -> None:
                if name not in self.user_types:
                    raise self._bad("type %r is used by value but not defined" % name)
                deps: List[str] = []
                for member in (self.user_types[name].get("fields") or {}).values():
                    self._by_value(member.get("type") or {}, deps)
                state[name] = 1
                stack.append((name, sorted(set(deps), reverse=True)))

            push(root)
            while stack:
                name, deps = stack[-1]
                if deps:
                    dep = deps.pop()
                    if state.get(dep) == 1:
                        raise self._bad("type %r contains itself by value" % dep)
                    if state.get(dep) != 2:
                        push(dep)
                    continue
                stack.pop()
                state[name] = 2
                order.append(name)
        # 2. digests, dependencies first
        for name in order:
            src = self.user_types[name]
            members: List[Tuple[str, int, TypeDesc]] = []
            for mname, member in (src.get("fields") or {}).items():
                members.append((mname, int(member["offset"]), self.desc(member.get("type") or {})))
            members.sort(key=lambda m: (m[1], m[2][0] == "bits", m[2][1] if m[2][0] == "bits" else 0, m[0]))
            shown = shown_name(name)
            defn = RecordDef(shown, src.get("kind", "struct"), int(src.get("size", 0)), members)
            defn.digest = _digest([shown, defn.kind, defn.size, [list(m[:2]) + [m[2]] for m in members]])
            self.type_digest[name] = defn.digest
            self.records[defn.digest] = defn
        for name in ROOT_ENUMS:
            if name in self.enums_src:
                self.enum(name)
        names = {n: d for n, d in self.type_digest.items() if shown_name(n) == n}
        return names, dict(self.enum_digest)


def reduce_isf(doc: Dict[str, Any], meta: BuildMeta, path: str = "") -> ReducedBuild:
    """Reduce one ISF document to the kept closure (see module docstring), after checking the
    whole document (`isf_check.check_isf_doc`: LayoutError naming the type/field at fault)."""
    check_isf_doc(doc, path)
    reducer = _Reducer(doc, path, meta.pointer_size)
    names, enum_names = reducer.run()
    symbols: Dict[str, int] = {}
    src_symbols = doc.get("symbols") or {}
    for sym in GLOBAL_SYMBOLS:
        entry = src_symbols.get(sym)
        if isinstance(entry, dict) and isinstance(entry.get("address"), int):
            symbols[sym] = entry["address"]
    return ReducedBuild(meta=meta, records=reducer.records, enums=reducer.enums,
                        type_names=names, enum_names=enum_names, symbols=symbols)


def read_index_tsv(path: str) -> Dict[str, Tuple[str, List[str]]]:
    """INDEX.tsv: file name -> (ntoskrnl version, [products])."""
    out: Dict[str, Tuple[str, List[str]]] = {}
    with open(path, "r", encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        col = {name: i for i, name in enumerate(header)}
        for line in fh:
            cells = line.rstrip("\n").split("\t")
            if len(cells) < len(header):
                continue
            fname = cells[col["file"]]
            version = cells[col["ntoskrnl_version"]]
            product = cells[col["product"]]
            prev = out.get(fname)
            if prev is None:
                out[fname] = (version, [product])
            elif product not in prev[1]:
                prev[1].append(product)
    return out


def sort_key(meta: BuildMeta) -> Tuple[Any, ...]:
    return (meta.arch, _version_key(meta.version), meta.build_id)


def isf_files_in(folder: str) -> List[str]:
    """The ISF files under a folder (recursively), sorted."""
    found: List[str] = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith((".json.xz", ".json.gz", ".json")) and not name.startswith("method-"):
                found.append(os.path.join(root, name))
    return sorted(found)
