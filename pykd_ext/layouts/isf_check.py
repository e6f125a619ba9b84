"""Validating a whole ISF document before any of it is used or stored.

Why: an ISF file is data from a stranger. Every value the reduction and the layout builder read
must have the JSON type and range the format promises, or the file is refused with one line that
names the type and field at fault (`LayoutError`, CLI exit 2): never a traceback, a MemoryError,
or a layout that breaks later commands. Checked here, over the whole file (not only the types we
keep), so a file is either good or refused:

- `user_types`, `enums`, `base_types`, `symbols`, `metadata` are JSON objects; each type has
  `kind` struct|union, an integer `size` and a `fields` object; each field an integer `offset`
  within its type's size and a type descriptor of a known kind, nested at most MAX_NESTING levels,
  whose by-value base types, enums and structs exist;
- integers are JSON integers (not booleans, floats, strings) within the ranges below; bitfields
  fit their storage unit; base types have sizes the `struct` module reads (0 only for void);
  pointers are 4 or 8 bytes; enum constants fit their size; symbol addresses are 32-bit RVAs;
- names are strings of 1..MAX_NAME characters without C0/DEL/C1 controls, bidi overrides,
  isolates or marks, line/paragraph separators or lone surrogates (they would forge or reorder
  terminal lines);
- `metadata.source.arch` names an architecture pykd-ext decodes (`targets/arch.py`), the PDB
  GUID is 32 hex digits, a version is digits and dots.

JSON nesting outside the known keys is bounded by the json module itself (it raises
RecursionError at the interpreter's recursion limit, turned into LayoutError by the reader); the
walks here are iterative.
"""
import re
import reprlib
from itertools import repeat
from typing import Any, Dict, List, NoReturn, Optional, Tuple

from pykd_ext.errors import LayoutError
from pykd_ext.targets.arch import decodable_arches

#: longest name accepted: MSVC cuts decorated names at 4,096 characters (the longest in the real
#: tables is a 395-character symbol name; C++ template names in other PDBs run longer)
MAX_NAME = 4096
#: longest free-text metadata string (a derived file's annotated version is ~120 characters)
MAX_TEXT = 4096
#: type descriptor nesting (pointer/array levels; real files nest at most ~6)
MAX_NESTING = 32
#: struct/union size and array count in the whole file (PDB sizes are 32-bit; the largest
#: real type is 264 MiB, a 2^28-element array outside the kept types)
MAX_TYPE_SIZE = (1 << 32) - 1
MAX_COUNT = (1 << 32) - 1
#: symbol addresses are RVAs from the image base; a PE image is smaller than 4 GiB
MAX_RVA = (1 << 32) - 1
MAX_U32 = (1 << 32) - 1

#: the architectures whose symbol tables are built into layouts: those pykd-ext decodes
#: (`targets/arch.py`: an `Arch` with a CONTEXT layout and a paging mode)
ARCHES: Tuple[str, ...] = tuple(arch.name for arch in decodable_arches())
#: PE machine types (IMAGE_FILE_MACHINE_*) as ISF `machine_type` -> architecture name
MACHINE_ARCH: Dict[int, str] = {machine: arch.name for arch in decodable_arches()
                                for machine in arch.machine_types}
POINTER_SIZES = (4, 8)
#: base type kind -> sizes the struct module can read (0 = void)
BASE_SIZES = {"int": (1, 2, 4, 8), "char": (1, 2, 4, 8), "bool": (1, 2, 4, 8), "float": (4, 8),
              "void": (0,)}
#: base kinds an enum or a bitfield may be stored in
INTEGER_KINDS = ("int", "char", "bool")
RECORD_KINDS = ("struct", "union")
MEMBER_KINDS = ("base", "pointer", "struct", "union", "enum", "array", "bitfield", "function")
#: pointee kinds that carry a name (a pointer's target is named, never laid out)
_NAMED_POINTEES = ("struct", "union", "base", "enum")

GUID_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
#: major.minor.build[.revision], each part at most 10 digits
VERSION_RE = re.compile(r"^[0-9]{1,10}(?:\.[0-9]{1,10}){2,3}$")
#: the leading version of a derived file's annotated `source.version`
VERSION_PREFIX_RE = re.compile(r"\s*([0-9]{1,10}(?:\.[0-9]{1,10}){2,3})(?![0-9.])")
#: characters that must not reach a terminal line from a name: C0, DEL, C1, ALM, LRM/RLM,
#: line/paragraph separators, bidi embeddings/overrides (U+202A-E) and isolates (U+2066-9),
#: lone surrogates (unencodable)
FORBIDDEN_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


#: the ASCII characters a name may hold (space to tilde)
_PRINTABLE_ASCII = bytes(range(0x20, 0x7f))


def printable(text: Any, limit: int = 80) -> str:
    """`text` safe on one terminal line: forbidden characters escaped (`\\x1b`, `\\u202e`), cut
    to `limit` characters. For error messages and labels made from file content or file names."""
    text = str(text)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if FORBIDDEN_RE.search(text) or "\\" in text:
        text = "".join(("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c))
                       if FORBIDDEN_RE.match(c) else c for c in text)
    return text + ("..." if cut else "")


def text_is_clean(text: str) -> bool:
    """No forbidden character in `text` (fast path for ASCII: one `bytes.translate`)."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return FORBIDDEN_RE.search(text) is None


def name_problem(name: Any, limit: int = MAX_NAME) -> Optional[str]:
    """Why `name` is not an acceptable name, or None."""
    if not isinstance(name, str):
        return "is %s, not a string" % _json_type(name)
    if not name:
        return "is empty"
    if len(name) > limit:
        return "is %d characters long (limit %d)" % (len(name), limit)
    found = FORBIDDEN_RE.search(name)
    if found:
        return "contains the control/bidi character U+%04X" % ord(found.group(0))
    return None


def _json_type(value: Any) -> str:
    """What a JSON value is, for an error message ("a string", "an object", "a number inf")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number %r" % value
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a %s" % type(value).__name__


#: repr of file values in messages: bounded depth and length (a list nested 900 levels deep, a
#: 4,000-digit integer)
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 40, 4, 4
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_<>\-. ]{1,80}$")


def shown(value: Any) -> str:
    """A value inside an error message: names as is when harmless, else escaped and cut."""
    if isinstance(value, str) and _PLAIN_RE.match(value):
        return value
    if isinstance(value, str):      # repr escapes every non-printable character (C0, C1, bidi, ...)
        return repr(value[:60]) + ("..." if len(value) > 60 else "")
    return printable(_REPR.repr(value), 80)


class Where:
    """Where a problem is, formatted only when there is one (`type _EPROCESS, field Pcb: offset`):
    the checks run per member, the message is made once."""

    __slots__ = ("type_name", "field", "suffix")

    def __init__(self, type_name: Any, field: Any = None, suffix: str = "") -> None:
        self.type_name = type_name
        self.field = field
        self.suffix = suffix

    def __add__(self, suffix: str) -> "Where":
        return Where(self.type_name, self.field, self.suffix + suffix)

    def __str__(self) -> str:
        text = "type %s" % shown(self.type_name)
        if self.field is not None:
            text += ", field %s" % shown(self.field)
        return text + self.suffix


def int_problem(value: Any, low: int, high: int) -> Optional[str]:
    """Why `value` is not a JSON integer in [low, high], or None."""
    if type(value) is not int:
        return "must be an integer, not %s" % _json_type(value)
    if value < low or value > high:
        return "%s is out of range (%d..%d)" % (shown(value), low, high)
    return None


def version_problem(version: Any) -> Optional[str]:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        return "bad Windows version %s (want major.minor.build[.revision], digits and dots)" % shown(version)
    return None


class CheckSteps:
    """What the ISF pass (`_Checker`) and the data builder (`from_reduced`) both check, with one
    wording: a subclass says how it fails."""

    def fail(self, where: Any, what: str) -> NoReturn:
        raise NotImplementedError

    def integer(self, value: Any, low: int, high: int, where: Any) -> int:
        problem = int_problem(value, low, high)
        if problem:
            self.fail(where, problem)
        return value


class _Checker(CheckSteps):
    """One pass over an ISF document. Names are checked in one batch (one regex over all of them)
    unless `precise`, when each is checked where it stands: the batch finds that a file is bad,
    the precise pass (run only then) says where."""

    def __init__(self, doc: Any, path: str, precise: bool = False) -> None:
        self.doc = doc
        self.path = path
        self.precise = precise
        self.names: List[str] = []

    def fail(self, where: Any, what: str) -> NoReturn:
        raise LayoutError("malformed ISF: %s: %s" % (where, what), path=self.path or None)

    def name(self, value: Any, where: Any) -> None:
        if self.precise or not isinstance(value, str):
            problem = name_problem(value)
            if problem:
                self.fail(where, "name %s %s" % (shown(value), problem))
        else:
            self.names.append(value)

    def obj(self, value: Any, where: Any, required: bool = False) -> Dict[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(where, "must be a JSON object, not %s" % _json_type(value))
        return value


    # -------------------------------------------------------------------------------- parts

    def head(self) -> Dict[str, Tuple[int, str]]:
        """The top-level objects, `metadata` and `base_types` (what a build's identity needs)."""
        doc = self.doc
        if not isinstance(doc, dict) or not isinstance(doc.get("user_types"), dict):
            raise LayoutError("not a Volatility ISF symbol table (no user_types)", path=self.path or None)
        for key in ("enums", "symbols"):
            self.obj(doc.get(key), key)
        self.metadata(self.obj(doc.get("metadata"), "metadata"))
        return self.base_types(self.obj(doc.get("base_types"), "base_types"))

    def run(self) -> None:
        doc = self.doc
        base_types = self.head()
        enums = self.enums(self.obj(doc.get("enums"), "enums"), base_types)
        self.user_types(doc["user_types"], base_types, enums)
        self.symbols(self.obj(doc.get("symbols"), "symbols"))
        self.finish(full=True)

    def finish(self, full: bool) -> None:
        """The batched name check; on a failure, a precise pass names the culprit."""
        if self.precise or not self.names:
            return
        try:
            lengths = set(map(len, self.names))
            bad = max(lengths) > MAX_NAME or min(lengths) == 0 or not text_is_clean(" ".join(self.names))
        except TypeError:                     # a non-string key of a document built in memory
            bad = True
        if bad:
            again = _Checker(self.doc, self.path, precise=True)
            if full:
                again.run()
            else:
                again.head()
            raise LayoutError("malformed ISF: a name is invalid", path=self.path or None)  # not reached

    def metadata(self, meta: Dict[str, Any]) -> None:
        windows = self.obj(meta.get("windows"), "metadata.windows")
        pdb = self.obj(windows.get("pdb"), "metadata.windows.pdb")
        guid = pdb.get("GUID")
        if guid is not None and (not isinstance(guid, str) or not GUID_RE.match(guid)):
            self.fail("metadata.windows.pdb.GUID", "%s is not 32 hex digits" % shown(guid))
        if pdb.get("age") is not None:
            self.integer(pdb["age"], 0, MAX_U32, "metadata.windows.pdb.age")
        if pdb.get("machine_type") is not None:
            self.integer(pdb["machine_type"], 0, 0xFFFF, "metadata.windows.pdb.machine_type")
        if pdb.get("database") is not None:
            self.name(pdb["database"], "metadata.windows.pdb.database")
        source = self.obj(meta.get("source"), "metadata.source")
        arch = source.get("arch")
        if arch is not None and arch not in ARCHES:
            self.fail("metadata.source.arch", "%s is not one of %s" % (shown(arch), ", ".join(ARCHES)))
        for key in ("name", "version"):
            value = source.get(key)
            if value is not None:
                problem = name_problem(value, MAX_TEXT)
                if problem:
                    self.fail("metadata.source.%s" % key, "%s %s" % (shown(value), problem))
        version = source.get("version")
        if version is not None and not VERSION_PREFIX_RE.match(version):
            self.fail("metadata.source.version", version_problem(version) or "bad version")

    def base_types(self, base_types: Dict[str, Any]) -> Dict[str, Tuple[int, str]]:
        """name -> (size, kind) of every base type."""
        out: Dict[str, Tuple[int, str]] = {}
        self.keys(base_types, "base_types")
        for name, info in base_types.items():
            where = "base_types.%s" % shown(name)
            info = self.obj(info, where, required=True)
            kind = info.get("kind", "int")
            if not isinstance(kind, str) or kind not in BASE_SIZES:
                self.fail(where + ".kind", "%s is not one of %s" % (shown(kind), ", ".join(BASE_SIZES)))
            size = info.get("size")
            if type(size) is not int or size not in BASE_SIZES[kind]:
                self.fail(where + ".size", "%s is not a size a base type of kind %s may have (%s)"
                          % (shown(size), kind, ", ".join(str(s) for s in BASE_SIZES[kind])))
            if name == "pointer" and size not in POINTER_SIZES:
                self.fail(where + ".size", "a pointer is 4 or 8 bytes, not %d" % size)
            if "signed" in info and not isinstance(info["signed"], bool):
                self.fail(where + ".signed", "must be true or false, not %s" % _json_type(info["signed"]))
            if info.get("endian", "little") != "little":
                self.fail(where + ".endian", "%s: only little-endian layouts are read" % shown(info.get("endian")))
            out[name] = (size, kind)
        return out

    def enums(self, enums: Dict[str, Any], base_types: Dict[str, Tuple[int, str]]) -> Dict[str, int]:
        """name -> size of every enum."""
        out: Dict[str, int] = {}
        self.keys(enums, "enums")
        for name, info in enums.items():
            where = "enums.%s" % shown(name)
            info = self.obj(info, where, required=True)
            base = info.get("base", "int")
            if not isinstance(base, str) or base not in base_types:
                self.fail(where + ".base", "%s is not a base type of the file" % shown(base))
            size, kind = base_types[base]
            if kind not in INTEGER_KINDS:
                self.fail(where + ".base", "an enum is stored in an integer, not a %s" % kind)
            if "size" in info and self.integer(info["size"], 0, 8, where + ".size") != size:
                self.fail(where + ".size", "%d differs from the size of its base %s (%d)" % (info["size"], shown(base), size))
            low, high = -(1 << (8 * size - 1)), (1 << (8 * size)) - 1
            constants = self.obj(info.get("constants"), where + ".constants")
            self.keys(constants, where + ".constants")
            for cname, value in constants.items():
                problem = int_problem(value, low, high)
                if problem:
                    self.fail("%s.constants.%s" % (where, shown(cname)), problem)
            out[name] = size
        return out

    def user_types(self, user_types: Dict[str, Any], base_types: Dict[str, Tuple[int, str]],
                   enums: Dict[str, int]) -> None:
        # the hot loop of the check (~16,000 fields in a full kernel ISF): common member types are
        # accepted inline; everything else, and every failure, goes through `member_type`
        self.keys(user_types, "user_types")
        names = self.names
        units = {n: size for n, (size, kind) in base_types.items() if kind in INTEGER_KINDS}
        for tname, info in user_types.items():
            if type(info) is not dict:
                self.obj(info, "type %s" % shown(tname), required=True)
            kind = info.get("kind")
            if kind not in RECORD_KINDS:
                self.fail("type %s: kind" % shown(tname), "%s is not struct or union" % shown(kind))
            size = info.get("size")
            if type(size) is not int or not 0 <= size <= MAX_TYPE_SIZE:
                self.integer(size, 0, MAX_TYPE_SIZE, "type %s: size" % shown(tname))
            fields = info.get("fields")
            if type(fields) is not dict:
                self.obj(fields, "type %s: fields" % shown(tname), required=True)
            self.keys(fields, "type %s: field" % shown(tname) if self.precise else "")
            for fname, member in fields.items():
                if type(member) is not dict:
                    self.obj(member, self.field_where(tname, fname), required=True)
                offset = member.get("offset")
                if type(offset) is not int or not 0 <= offset <= size:
                    self.integer(offset, 0, size, self.field_where(tname, fname) + ": offset")
                t = member.get("type")
                if type(t) is dict:
                    k = t.get("kind")
                    if k == "base":
                        if type(t.get("name")) is str and t["name"] in base_types:
                            continue
                    elif k == "struct" or k == "union":
                        if type(t.get("name")) is str and t["name"] in user_types:
                            continue
                    elif k == "bitfield":
                        storage, pos, length = t.get("type"), t.get("bit_position"), t.get("bit_length")
                        if type(storage) is dict and type(pos) is int and type(length) is int \
                                and 0 <= pos and 0 < length and type(storage.get("name")) is str:
                            skind = storage.get("kind")
                            unit = units.get(storage["name"]) if skind == "base" else \
                                enums.get(storage["name"]) if skind == "enum" else None
                            if unit and pos + length <= 8 * unit:
                                continue
                    elif k == "pointer":
                        sub = t.get("subtype")
                        if type(sub) is dict and sub.get("kind") in _NAMED_POINTEES:
                            target = sub.get("name")
                            if type(target) is str and not self.precise:
                                names.append(target)
                                continue
                self.member_type(t, self.field_where(tname, fname), base_types, enums, user_types)

    @staticmethod
    def field_where(tname: str, fname: str) -> Where:
        return Where(tname, fname)

    def keys(self, obj: Dict[str, Any], where: str) -> None:
        """The names an object's keys are (JSON keys are strings: checked in the batch)."""
        if self.precise:
            for key in obj:
                self.name(key, where)
        else:
            self.names.extend(obj)

    def member_type(self, t: Any, where: Any, base_types: Dict[str, Tuple[int, str]],
                    enums: Dict[str, int], user_types: Dict[str, Any]) -> None:
        """One field's type descriptor, iteratively (pointer/array levels)."""
        by_value = True
        for level in range(MAX_NESTING + 1):
            if not isinstance(t, dict):
                self.fail(where, "type must be a JSON object, not %s" % _json_type(t))
            kind = t.get("kind")
            if kind not in MEMBER_KINDS:
                self.fail(where, "type kind %s is not one of %s" % (shown(kind), ", ".join(MEMBER_KINDS)))
            if kind == "function":
                return
            if kind == "pointer":
                by_value = False
                t = t.get("subtype")
                continue
            if kind == "array":
                self.integer(t.get("count"), 0, MAX_COUNT, where + ": array count")
                t = t.get("subtype")
                continue
            if kind == "bitfield":
                if level:
                    self.fail(where, "a bitfield inside an array or pointer")
                self.bitfield(t, where, base_types, enums)
                return
            name = t.get("name")
            self.name(name, where + ": type name")
            if by_value and name not in (base_types if kind == "base" else enums if kind == "enum" else user_types):
                what = {"base": "base type", "enum": "enum"}.get(kind, "type")
                self.fail(where, "%s %s is used by value but not defined" % (what, shown(name)))
            return
        self.fail(where, "type nested more than %d levels" % MAX_NESTING)

    def bitfield(self, t: Dict[str, Any], where: Any, base_types: Dict[str, Tuple[int, str]],
                 enums: Dict[str, int]) -> None:
        storage = self.obj(t.get("type"), where + ": bitfield storage", required=True)
        skind, sname = storage.get("kind"), storage.get("name")
        if skind == "base" and isinstance(sname, str) and sname in base_types \
                and base_types[sname][1] in INTEGER_KINDS:
            size = base_types[sname][0]
        elif skind == "enum" and isinstance(sname, str) and sname in enums:
            size = enums[sname]
        else:
            self.fail(where, "bitfield storage %s %s is not an integer base type or enum of the file"
                      % (shown(skind), shown(sname)))
        position = self.integer(t.get("bit_position"), 0, 63, where + ": bit_position")
        length = self.integer(t.get("bit_length"), 1, 64, where + ": bit_length")
        if position + length > 8 * size:
            self.fail(where, "bits %d..%d do not fit the %d-byte storage" % (position, position + length - 1, size))

    def symbols(self, symbols: Dict[str, Any]) -> None:
        # ~43,000 entries in a full kernel ISF: checked in bulk first, one by one only to say
        # which entry is wrong
        self.keys(symbols, "symbols")
        entries = list(symbols.values())
        if not self.precise and set(map(type, entries)) <= {dict}:
            addresses: List[Any] = list(map(dict.get, entries, repeat("address")))
            kinds = set(map(type, addresses))
            if type(None) in kinds:
                addresses = [a for a in addresses if a is not None]
                kinds.discard(type(None))
            names: List[Any] = [n for n in map(dict.get, entries, repeat("linkage_name")) if n is not None]
            if kinds <= {int} and (not addresses or (min(addresses) >= 0 and max(addresses) <= MAX_RVA)) \
                    and set(map(type, names)) <= {str} and (not names or max(map(len, names)) <= MAX_TEXT):
                return
        for name, entry in symbols.items():
            if not isinstance(entry, dict):
                self.fail("symbols.%s" % shown(name), "must be a JSON object, not %s" % _json_type(entry))
            address = entry.get("address")
            if address is not None and (type(address) is not int or not 0 <= address <= MAX_RVA):
                self.fail("symbols.%s.address" % shown(name), int_problem(address, 0, MAX_RVA) or "bad address")
            # linkage names are never shown or used (and real ones start with DEL: "\x7fNT_NULL_THUNK")
            linkage = entry.get("linkage_name")
            if linkage is not None and (not isinstance(linkage, str) or len(linkage) > MAX_TEXT):
                self.fail("symbols.%s.linkage_name" % shown(name), "must be a string of at most %d characters" % MAX_TEXT)


def check_isf_doc(doc: Any, path: str = "") -> None:
    """Refuse (LayoutError, one line naming the type/field) a document that is not a valid ISF."""
    _Checker(doc, path).run()


def check_isf_head(doc: Any, path: str = "") -> None:
    """The part of `check_isf_doc` a build's identity reads (top level, metadata, base types)."""
    checker = _Checker(doc, path)
    checker.head()
    checker.finish(full=False)


def leading_version(text: str) -> Optional[str]:
    """`10.0.26100` of `10.0.26100 (Windows 11 24H2, ...)`; None when the text has none."""
    found = VERSION_PREFIX_RE.match(text)
    return found.group(1) if found else None
