"""Exact ntoskrnl file version from the kernel image's TimeDateStamp and SizeOfImage.

Why: a kernel triage minidump or a raw memory image carries no PDB GUID, but it does carry the
kernel's PE `TimeDateStamp` and `SizeOfImage` (triage driver list, the image's own PE header).
System Informer's `kphdyn.xml` (winsiderss/systeminformer, `kphlib/kphdyn.xml`, MIT) maps that pair
(and the file's SHA-256) to the exact file version, e.g. `10.0.19041.804`, for thousands of
Windows 10/11 kernels.  `pykd_ext.layouts.gen_kphdyn` turns the XML into the compact table shipped
in `pykd_ext.structs.kphdyn` (`kernels.tsv`, `fields.json`); this module answers look-ups on it.

Each row also names a System Informer "fields" set: offsets its driver uses (`EpObjectTable`,
`KtInitialStack`, `ObDecodeShift`, ...).  They are a second source, independent of the ISF symbol
tables, for a few structure offsets; `KPHDYN_FIELD_SOURCES` says which PDB member each one is and
`check_layout_fields` compares them with a chosen layout.

Ambiguity: the upstream data lists one file (same SHA-256) under two versions (10.0.22621.1483 and
.1485).  Look-ups never hide that: `lookup_kernel` returns the lowest version with
`ambiguous_with` naming the others, `lookup_kernel_candidates` returns all of them.

Entry points: `lookup_kernel(timestamp, size_of_image, arch)`, `lookup_kernel_from_drivers(
info.extra["drivers"], kernel_base)` for a target's driver list, `versions_for_build(build)`,
`lookup_sha256(hash)`, and `check_layout_fields(kernel, layouts)`.

The table is loaded once per process (about 3,700 rows, ~20 ms) into a dict keyed by
(arch, timestamp, size), so each look-up is O(1); rows become objects only when returned. A
process's first few pair look-ups (a `!py` command asks for one kernel) search the table's text
instead (~2 ms, `_quick_candidates`) and load nothing else.
"""
import importlib.util
import json
import os
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import (Any, Dict, FrozenSet, Iterable, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

from pykd_ext.errors import LayoutError
from pykd_ext.targets.arch import DEFAULT_ARCH

TSV_NAME = "kernels.tsv"
FIELDS_NAME = "fields.json"
TSV_COLUMNS = ("arch", "version", "file", "timestamp", "size", "sha256", "fields")

# Architecture names as the XML spells them ("amd64", "arm64") and the aliases callers use.
_ARCH_ALIASES: Dict[str, str] = {
    "amd64": "amd64",
    "x64": "amd64",
    "x86_64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}

_U32_MAX = 0xFFFFFFFF


class FieldSource(NamedTuple):
    """Which PDB member a kphdyn field is: `type`, dotted member `path`, and what the value is."""

    type_name: str
    path: str
    kind: str  # "offset": byte offset of the member in the type; "bit_position": bitfield's shift


# What each kphdyn field measures, from the comments of System Informer's own declaration
# (winsiderss/systeminformer `kphlib/include/kphdyn.h`, "dt nt!_TYPE Member" per field).
# Names only: every value comes from the XML.  Fields not listed (LxPico*, from lxcore.sys
# disassembly) have no PDB member.
KPHDYN_FIELD_SOURCES: Mapping[str, FieldSource] = MappingProxyType({
    "EgeGuid": FieldSource("_ETW_GUID_ENTRY", "Guid", "offset"),
    "EpObjectTable": FieldSource("_EPROCESS", "ObjectTable", "offset"),
    "EpSectionObject": FieldSource("_EPROCESS", "SectionObject", "offset"),
    "EreGuidEntry": FieldSource("_ETW_REG_ENTRY", "GuidEntry", "offset"),
    "HtHandleContentionEvent": FieldSource("_HANDLE_TABLE", "HandleContentionEvent", "offset"),
    "OtName": FieldSource("_OBJECT_TYPE", "Name", "offset"),
    "OtIndex": FieldSource("_OBJECT_TYPE", "Index", "offset"),
    "ObDecodeShift": FieldSource("_HANDLE_TABLE_ENTRY", "ObjectPointerBits", "bit_position"),
    "ObAttributesShift": FieldSource("_HANDLE_TABLE_ENTRY", "Attributes", "bit_position"),
    "AlpcCommunicationInfo": FieldSource("_ALPC_PORT", "CommunicationInfo", "offset"),
    "AlpcOwnerProcess": FieldSource("_ALPC_PORT", "OwnerProcess", "offset"),
    "AlpcConnectionPort": FieldSource("_ALPC_COMMUNICATION_INFO", "ConnectionPort", "offset"),
    "AlpcServerCommunicationPort": FieldSource(
        "_ALPC_COMMUNICATION_INFO", "ServerCommunicationPort", "offset"),
    "AlpcClientCommunicationPort": FieldSource(
        "_ALPC_COMMUNICATION_INFO", "ClientCommunicationPort", "offset"),
    "AlpcHandleTable": FieldSource("_ALPC_COMMUNICATION_INFO", "HandleTable", "offset"),
    "AlpcHandleTableLock": FieldSource("_ALPC_HANDLE_TABLE", "Lock", "offset"),
    "AlpcAttributes": FieldSource("_ALPC_PORT", "PortAttributes", "offset"),
    "AlpcAttributesFlags": FieldSource("_ALPC_PORT_ATTRIBUTES", "Flags", "offset"),
    "AlpcPortContext": FieldSource("_ALPC_PORT", "PortContext", "offset"),
    "AlpcPortObjectLock": FieldSource("_ALPC_PORT", "PortObjectLock", "offset"),
    "AlpcSequenceNo": FieldSource("_ALPC_PORT", "SequenceNo", "offset"),
    "AlpcState": FieldSource("_ALPC_PORT", "u1.State", "offset"),
    "KtInitialStack": FieldSource("_KTHREAD", "InitialStack", "offset"),
    "KtStackLimit": FieldSource("_KTHREAD", "StackLimit", "offset"),
    "KtStackBase": FieldSource("_KTHREAD", "StackBase", "offset"),
    "KtKernelStack": FieldSource("_KTHREAD", "KernelStack", "offset"),
    "KtReadOperationCount": FieldSource("_KTHREAD", "ReadOperationCount", "offset"),
    "KtWriteOperationCount": FieldSource("_KTHREAD", "WriteOperationCount", "offset"),
    "KtOtherOperationCount": FieldSource("_KTHREAD", "OtherOperationCount", "offset"),
    "KtReadTransferCount": FieldSource("_KTHREAD", "ReadTransferCount", "offset"),
    "KtWriteTransferCount": FieldSource("_KTHREAD", "WriteTransferCount", "offset"),
    "KtOtherTransferCount": FieldSource("_KTHREAD", "OtherTransferCount", "offset"),
    "MmSectionControlArea": FieldSource("_SECTION", "u1.ControlArea", "offset"),
    "MmControlAreaListHead": FieldSource("_CONTROL_AREA", "ListHead", "offset"),
    "MmControlAreaLock": FieldSource("_CONTROL_AREA", "ControlAreaLock", "offset"),
})


def normalize_arch(arch: str) -> str:
    """"x64"/"AMD64" -> "amd64", "aarch64" -> "arm64"; other names are returned lower-cased."""
    key = arch.strip().lower()
    return _ARCH_ALIASES.get(key, key)


#: The architectures kphdyn lists kernels of, in its own spelling (the aliases' targets; the
#: shipped table's `arch` column, `KernelVersionTable.arches()`, names the same ones).
KPHDYN_ARCHES: FrozenSet[str] = frozenset(_ARCH_ALIASES.values())


def kphdyn_arch(arch: Optional[str]) -> Optional[str]:
    """kphdyn's name of a `TargetInfo.arch` ("x64" -> "amd64"; the default architecture when
    not stated), or None when kphdyn has no kernels of it (x86, 32-bit ARM)."""
    name = normalize_arch(arch or DEFAULT_ARCH.name)
    return name if name in KPHDYN_ARCHES else None


def parse_version(version: str) -> Tuple[int, int, int, int]:
    """"10.0.19041.804" -> (10, 0, 19041, 804); ValueError unless four decimal parts."""
    parts = version.split(".")
    if len(parts) != 4 or not "".join(parts).isdigit() or not all(parts):
        raise ValueError("not a major.minor.build.revision version: %r" % (version,))
    major, minor, build, revision = map(int, parts)
    return major, minor, build, revision


@dataclass(frozen=True)
class KernelVersion:
    """One kernel image file known to kphdyn (one row of `kernels.tsv`)."""

    arch: str                 # "amd64" / "arm64" (the XML's names)
    version: str              # "10.0.19041.804"
    file: str                 # "ntoskrnl.exe" or "ntkrla57.exe" (the LA57 kernel)
    timestamp: int            # PE FileHeader.TimeDateStamp
    size_of_image: int        # PE OptionalHeader.SizeOfImage
    sha256: str               # of the whole file, lower-case hex
    fields_id: str            # System Informer's <fields id>
    fields: Mapping[str, int] = field(compare=False, hash=False, repr=False)
    # Other versions the same (arch, timestamp, size_of_image) is listed under, if any.
    ambiguous_with: Tuple[str, ...] = field(default=(), compare=False, hash=False)
    # parse_version(version), computed once (ValueError for a malformed version).
    version_tuple: Tuple[int, int, int, int] = field(init=False, compare=False, hash=False,
                                                     repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version_tuple", parse_version(self.version))

    @property
    def major(self) -> int:
        return self.version_tuple[0]

    @property
    def minor(self) -> int:
        return self.version_tuple[1]

    @property
    def build(self) -> int:
        return self.version_tuple[2]

    @property
    def revision(self) -> int:
        return self.version_tuple[3]

    @property
    def ambiguous(self) -> bool:
        return bool(self.ambiguous_with)

    def describe(self) -> str:
        """One line for `info`/warnings, e.g. "10.0.19041.804 (amd64 ntoskrnl.exe, kphdyn)"."""
        text = "%s (%s %s, kphdyn)" % (self.version, self.arch, self.file)
        if self.ambiguous_with:
            text += "; the same TimeDateStamp/SizeOfImage is also listed as %s" % (
                ", ".join(self.ambiguous_with))
        return text

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready record (for `info()` extras and `--format json`)."""
        return {
            "arch": self.arch,
            "version": self.version,
            "build": self.build,
            "revision": self.revision,
            "file": self.file,
            "timestamp": self.timestamp,
            "size_of_image": self.size_of_image,
            "sha256": self.sha256,
            "fields_id": self.fields_id,
            "ambiguous_with": list(self.ambiguous_with),
        }


# One table row as parsed from kernels.tsv: arch, version, file, timestamp, size, sha256, fields id.
RawRow = Tuple[str, str, str, int, int, str, str]


class KernelVersionTable:
    """The loaded table: O(1) look-ups by (arch, TimeDateStamp, SizeOfImage) and by SHA-256.

    Rows stay plain tuples until a look-up returns them (a `!py` command starts a fresh
    interpreter and usually needs one row); the SHA-256 and build indexes are built on first use.
    """

    def __init__(self, rows: Iterable[RawRow], fields: Mapping[str, Mapping[str, int]],
                 path: Optional[str] = None) -> None:
        self._raw: List[RawRow] = list(rows)
        self._fields = fields
        self._path = path
        self._made: Dict[int, KernelVersion] = {}
        self._by_key: Dict[Tuple[str, int, int], List[int]] = {}
        for index, row in enumerate(self._raw):
            if row[6] not in fields:
                raise LayoutError("kphdyn kernel table: row %s %s names unknown fields set %r"
                                  % (row[1], row[2], row[6]), path)
            self._by_key.setdefault((row[0], row[3], row[4]), []).append(index)
        self._by_sha: Optional[Dict[str, List[int]]] = None
        self._by_build: Optional[Dict[Tuple[str, int], List[int]]] = None

    @classmethod
    def from_files(cls, tsv_path: str, fields_path: str) -> "KernelVersionTable":
        """Load `kernels.tsv` + `fields.json`; `LayoutError` if either is missing or malformed."""
        return cls(_load_rows(tsv_path), _load_fields(fields_path), tsv_path)

    def __len__(self) -> int:
        return len(self._raw)

    def arches(self) -> FrozenSet[str]:
        """The architectures the table lists kernels of (kphdyn's names: "amd64", "arm64")."""
        return frozenset(row[0] for row in self._raw)

    def __iter__(self) -> Iterator[KernelVersion]:
        return (self._row(index) for index in range(len(self._raw)))

    def _row(self, index: int) -> KernelVersion:
        made = self._made.get(index)
        if made is None:
            arch, version, file, timestamp, size, sha256, fields_id = self._raw[index]
            others = tuple(self._raw[other][1] for other in self._by_key[(arch, timestamp, size)]
                           if self._raw[other][1] != version)
            try:
                made = KernelVersion(arch, version, file, timestamp, size, sha256, fields_id,
                                     self._fields[fields_id],
                                     tuple(sorted(set(others), key=parse_version)))
            except ValueError as exc:
                raise LayoutError("kphdyn kernel table: %s" % (exc,), self._path) from None
            self._made[index] = made
        return made

    def _rows(self, indexes: Iterable[int]) -> List[KernelVersion]:
        rows = [self._row(index) for index in indexes]
        rows.sort(key=lambda r: (r.version_tuple, r.file, r.timestamp, r.size_of_image, r.sha256))
        return rows

    def candidates(self, timestamp: int, size_of_image: int,
                   arch: str = "amd64") -> List[KernelVersion]:
        """Every row with this TimeDateStamp and SizeOfImage (usually zero or one)."""
        if not (0 <= timestamp <= _U32_MAX and 0 <= size_of_image <= _U32_MAX):
            return []
        return self._rows(self._by_key.get((normalize_arch(arch), timestamp, size_of_image), ()))

    def lookup(self, timestamp: int, size_of_image: int,
               arch: str = "amd64") -> Optional[KernelVersion]:
        """The lowest-version row for the pair (its `ambiguous_with` names any others), or None."""
        rows = self.candidates(timestamp, size_of_image, arch)
        return rows[0] if rows else None

    def by_sha256(self, sha256: str) -> List[KernelVersion]:
        """Rows of the file with this SHA-256 (hex, any case)."""
        if self._by_sha is None:
            by_sha: Dict[str, List[int]] = {}
            for index, row in enumerate(self._raw):
                by_sha.setdefault(row[5], []).append(index)
            self._by_sha = by_sha
        return self._rows(self._by_sha.get(sha256.strip().lower(), ()))

    def versions_for_build(self, build: int, arch: str = "amd64",
                           file: Optional[str] = "ntoskrnl.exe") -> List[KernelVersion]:
        """Rows of one build number, by ascending revision; `file=None` keeps every kernel file."""
        if self._by_build is None:
            by_build: Dict[Tuple[str, int], List[int]] = {}
            for index, row in enumerate(self._raw):
                parts = row[1].split(".")
                if len(parts) == 4 and parts[2].isdigit():
                    by_build.setdefault((row[0], int(parts[2])), []).append(index)
            self._by_build = by_build
        indexes = self._by_build.get((normalize_arch(arch), build), [])
        if file is not None:
            wanted = file.lower()
            indexes = [index for index in indexes if self._raw[index][2] == wanted]
        return self._rows(indexes)


def _load_fields(path: str) -> Dict[str, Mapping[str, int]]:
    try:
        with open(path, "rb") as handle:
            raw = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise LayoutError("cannot read the kphdyn fields table: %s" % (exc,), path) from None
    if not isinstance(raw, dict):
        raise LayoutError("kphdyn fields table is not a JSON object", path)
    fields: Dict[str, Mapping[str, int]] = {}
    for fields_id, values in raw.items():
        if not isinstance(values, dict) or not all(
                isinstance(name, str) and isinstance(value, int) and not isinstance(value, bool)
                for name, value in values.items()):
            raise LayoutError("kphdyn fields set %r is not {name: integer}" % (fields_id,), path)
        fields[fields_id] = MappingProxyType(dict(values))
    return fields


def _load_rows(path: str) -> List[RawRow]:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LayoutError("cannot read the kphdyn kernel table: %s" % (exc,), path) from None
    rows: List[RawRow] = []
    header_seen = False
    width = len(TSV_COLUMNS)
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        cells = line.split("\t")
        if not header_seen:
            if tuple(cells) != TSV_COLUMNS:
                raise LayoutError("kphdyn kernel table: unexpected header %r" % (line,), path)
            header_seen = True
            continue
        if len(cells) != width:
            raise LayoutError("kphdyn kernel table line %d: %d columns, expected %d"
                              % (number, len(cells), width), path)
        try:
            timestamp = int(cells[3], 16)
            size = int(cells[4], 16)
        except ValueError:
            raise LayoutError("kphdyn kernel table line %d: timestamp/size not hexadecimal"
                              % (number,), path) from None
        rows.append((cells[0], cells[1], cells[2], timestamp, size, cells[5], cells[6]))
    if not header_seen:
        raise LayoutError("kphdyn kernel table has no header line", path)
    return rows


def data_dir() -> str:
    """Folder of the shipped table (`pykd_ext/structs/kphdyn`), found without importing it."""
    spec = importlib.util.find_spec("pykd_ext.structs")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LayoutError("package pykd_ext.structs (the shipped layout data) is not installed")
    return os.path.join(locations[0], "kphdyn")


_TABLE: Optional[KernelVersionTable] = None
_TABLE_LOCK = threading.Lock()


def load_table() -> KernelVersionTable:
    """The shipped table, loaded on first use and kept for the life of the process."""
    global _TABLE
    table = _TABLE
    if table is None:
        with _TABLE_LOCK:
            if _TABLE is None:
                folder = data_dir()
                _TABLE = KernelVersionTable.from_files(os.path.join(folder, TSV_NAME),
                                                       os.path.join(folder, FIELDS_NAME))
            table = _TABLE
    return table


#: distinct pairs searched in the text before the table is loaded whole (a caller asking for many
#: kernels is better served by the index)
QUICK_LOOKUPS = 8
#: answers of `_quick_candidates` by (arch, timestamp, size), for the life of the process
_QUICK: Dict[Tuple[str, int, int], List[KernelVersion]] = {}


def _quick_candidates(timestamp: int, size_of_image: int, arch: str) -> Optional[List[KernelVersion]]:
    """The rows for one pair found by searching the table's text, without loading the table.

    Why: a `!py` command starts a fresh interpreter and asks for one kernel; parsing all ~3,700
    rows and indexing them costs ~20 ms of a ~100 ms command. The rows whose timestamp and size
    cells spell the pair (hexadecimal, any case, any leading zeros, as `_load_rows` reads them)
    are parsed exactly like `_load_rows` does and built like `KernelVersionTable` builds them.
    [] when no row has the pair (checked to be complete: every row writes its pair as `0x...`);
    None (the caller loads the whole table) when the table is written otherwise, so an oddly
    written table gets the full table's answer and its errors.
    """
    if not (0 <= timestamp <= _U32_MAX and 0 <= size_of_image <= _U32_MAX):
        return []
    import re
    folder = data_dir()
    path = os.path.join(folder, TSV_NAME)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    key = re.compile(r"\t0x0*%x\t0x0*%x\t" % (timestamp, size_of_image), re.IGNORECASE)
    wanted = normalize_arch(arch)
    rows: List[RawRow] = []
    for match in key.finditer(text):
        first = text.rfind("\n", 0, match.start()) + 1
        last = text.find("\n", match.end())
        cells = text[first:len(text) if last < 0 else last].rstrip("\r").split("\t")
        if len(cells) == len(TSV_COLUMNS) and cells[0] == wanted and not cells[0].startswith("#"):
            rows.append((cells[0], cells[1], cells[2], timestamp, size_of_image, cells[5], cells[6]))
    header = re.search(r"^[^#\n][^\n]*$", text, re.MULTILINE)
    if header is None or header.group(0).rstrip("\r") != "\t".join(TSV_COLUMNS):
        return None                     # the full load reports a missing or unexpected header
    if not rows:
        # a miss is the answer only when every data row writes its pair as 0x... (as
        # gen_kphdyn does), so that the search above could not have passed over a row. Counted
        # after the header line: a comment, a blank line or an "0X" there makes the counts
        # disagree and the whole table is loaded instead (slower, never wrong)
        start = header.end()
        data_rows = text.count("\n", start) - text.endswith("\n")
        return [] if text.count("\t0x", start) == 2 * data_rows else None
    fields = _load_fields(os.path.join(folder, FIELDS_NAME))
    if any(row[6] not in fields for row in rows):
        return None                     # the full load reports the unknown fields set
    return KernelVersionTable(rows, fields, path).candidates(timestamp, size_of_image, wanted)


def lookup_kernel(timestamp: int, size_of_image: int,
                  arch: str = "amd64") -> Optional[KernelVersion]:
    """Exact kernel version for the image's TimeDateStamp and SizeOfImage, or None if unknown.

    When kphdyn lists the pair under several versions the lowest is returned and
    `result.ambiguous_with` names the others (see `lookup_kernel_candidates`).
    """
    rows = lookup_kernel_candidates(timestamp, size_of_image, arch)
    return rows[0] if rows else None


def lookup_kernel_candidates(timestamp: int, size_of_image: int,
                             arch: str = "amd64") -> List[KernelVersion]:
    """All rows for the pair, lowest version first (empty when unknown).

    Before the table is loaded, the pair is first searched in the table's text
    (`_quick_candidates`); the whole table is loaded only when that finds nothing."""
    if _TABLE is None and len(_QUICK) < QUICK_LOOKUPS:
        key = (normalize_arch(arch), timestamp, size_of_image)
        quick = _QUICK.get(key)
        if quick is None:
            quick = _quick_candidates(timestamp, size_of_image, arch)
            if quick is not None:
                _QUICK[key] = quick
        if quick is not None:
            return list(quick)
    return load_table().candidates(timestamp, size_of_image, arch)


def lookup_sha256(sha256: str) -> List[KernelVersion]:
    """Rows of the kernel file with this SHA-256 (e.g. a `ntoskrnl.exe` found on disk)."""
    return load_table().by_sha256(sha256)


def versions_for_build(build: int, arch: str = "amd64",
                       file: Optional[str] = "ntoskrnl.exe") -> List[KernelVersion]:
    """Known revisions of one build number, ascending (`file=None`: ntkrla57.exe rows too)."""
    return load_table().versions_for_build(build, arch, file)


# Names the kernel image has in a loaded-module / triage driver list (the LA57 kernel keeps its
# own file name on disk but is usually listed as ntoskrnl.exe).
KERNEL_IMAGE_NAMES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrla57.exe", "ntkrnlpa.exe",
                      "ntkrpamp.exe")


def find_kernel_entry(drivers: Sequence[Mapping[str, Any]],
                      kernel_base: Optional[int] = None) -> Optional[Mapping[str, Any]]:
    """The kernel's entry in a driver list (dicts with name/base/size/timestamp).

    With `kernel_base` (e.g. KDBG `KernBase`) the entry loaded there is chosen, which is exact;
    without it, the first entry named like a kernel image.
    """
    if kernel_base is not None:
        for entry in drivers:
            if entry.get("base") == kernel_base:
                return entry
        return None
    for entry in drivers:
        name = str(entry.get("name") or "").replace("/", "\\").rsplit("\\", 1)[-1].lower()
        if name in KERNEL_IMAGE_NAMES:
            return entry
    return None


def lookup_kernel_from_drivers(drivers: Sequence[Mapping[str, Any]],
                               kernel_base: Optional[int] = None,
                               arch: str = "amd64") -> Optional[KernelVersion]:
    """Exact kernel version from a driver list (`TargetInfo.extra["drivers"]`), or None."""
    entry = find_kernel_entry(drivers, kernel_base)
    if entry is None:
        return None
    timestamp, size = entry.get("timestamp"), entry.get("size")
    if not isinstance(timestamp, int) or not isinstance(size, int):
        return None
    return lookup_kernel(timestamp, size, arch)


@dataclass
class FieldCheck:
    """Result of `check_layout_fields`: kphdyn values vs one layout."""

    compared: int = 0
    agreed: List[str] = field(default_factory=list)
    # (kphdyn name, kphdyn value, layout value)
    mismatches: List[Tuple[str, int, int]] = field(default_factory=list)
    # kphdyn names the layout has no type/member for (or no PDB meaning is known)
    unavailable: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def check_layout_fields(kernel: KernelVersion, layouts: Any) -> FieldCheck:
    """Compare the kphdyn offsets of `kernel` with a layout set (`pykd_ext.layouts` API).

    `layouts` needs `has_type(name)` and `type(name)` returning an object with `has_field(path)`
    and `field(path)` (`.offset` absolute within the type, `.bit_position`).  A layout chosen for
    the kernel should agree on every compared field; a mismatch means the wrong layout (or build).
    """
    result = FieldCheck()
    for name in sorted(kernel.fields):
        source = KPHDYN_FIELD_SOURCES.get(name)
        if source is None or not layouts.has_type(source.type_name):
            result.unavailable.append(name)
            continue
        type_layout = layouts.type(source.type_name)
        if not type_layout.has_field(source.path):
            result.unavailable.append(name)
            continue
        member = type_layout.field(source.path)
        actual = member.bit_position if source.kind == "bit_position" else member.offset
        if actual is None:
            result.unavailable.append(name)
            continue
        result.compared += 1
        expected = kernel.fields[name]
        if actual == expected:
            result.agreed.append(name)
        else:
            result.mismatches.append((name, expected, int(actual)))
    return result
