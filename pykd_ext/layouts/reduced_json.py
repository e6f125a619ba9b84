"""A reduced build (`isf.ReducedBuild`) as canonical JSON data: the form layouts are stored in.

Why: the per-user store (`structs import`) and the typeInfo cache keep layouts between runs. They
hold data, never code: the checked reduced build, written as sorted, ASCII-only JSON, read back
with the same limits as a symbol file (`bounded_read`) and checked again by the same builder
(`from_reduced`) before use, so a store edited after the import is refused, never executed.

The file: `{"format": FORMAT, "format_version": 1, "meta": {...BuildMeta...},
"records": {digest: {"name", "kind", "size", "fields": [[name, offset, desc], ...]}},
"enums": {digest: {"name", "storage": desc, "constants": [[name, value], ...]}},
"type_names": {name: digest}, "enum_names": {name: digest}, "symbols": {name: rva}}`, where a desc
is the reduction's nested tuple as a JSON list (`["ptr", "_EPROCESS", "struct", 0, 8]`).
"""
import json
from typing import Any, Dict, List, NoReturn, Tuple

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.bounded_read import read_bounded
from pykd_ext.layouts.isf import BuildMeta, EnumDefn, RecordDef, ReducedBuild
from pykd_ext.layouts.isf_check import MAX_NESTING, shown

FORMAT = "pykd-ext reduced kernel layouts"
FORMAT_VERSION = 1
#: a stored build is ~0.2 MB (200 types); far below the ISF limits it came from
MAX_STORED_BYTES = 8 << 20
#: BuildMeta fields and their JSON types (an index entry / the `meta` of a stored build)
META_FIELDS: Dict[str, Tuple[type, ...]] = {
    "build_id": (str,), "version": (str,), "build": (int,), "revision": (int, type(None)),
    "guid": (str, type(None)), "age": (int, type(None)), "arch": (str,), "pointer_size": (int,),
    "products": (list,), "source": (str,), "types_only": (bool,), "pdb": (str,), "module": (str,),
}


def dumps_reduced(rb: ReducedBuild) -> bytes:
    """The canonical JSON bytes of a reduced build (sorted keys, ASCII)."""
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "meta": rb.meta.to_dict(),
        "records": {d: {"name": r.name, "kind": r.kind, "size": r.size,
                        "fields": [[n, o, desc] for n, o, desc in r.fields]} for d, r in rb.records.items()},
        "enums": {d: {"name": e.name, "storage": e.storage, "constants": [[n, v] for n, v in e.constants]}
                  for d, e in rb.enums.items()},
        "type_names": dict(rb.type_names), "enum_names": dict(rb.enum_names), "symbols": dict(rb.symbols),
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def _fail(path: str, what: str) -> NoReturn:
    raise LayoutError("stored layout is damaged: %s" % what, path=path or None)


def _obj(value: Any, where: str, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, "%s must be a JSON object" % where)
    return value


def _list(value: Any, where: str, path: str) -> List[Any]:
    if not isinstance(value, list):
        _fail(path, "%s must be a JSON list" % where)
    return value


def _desc(value: Any, where: str, path: str) -> Tuple[Any, ...]:
    """A desc list as the reduction's tuple; arrays/bitfields nest (iteratively, bounded). Leaves
    must be JSON scalars; their values are checked by the builder."""
    # collect the chain of nested lists, then rebuild tuples from the innermost out
    chain: List[List[Any]] = []
    for _ in range(MAX_NESTING + 2):
        items = _list(value, where, path)
        if not items:
            _fail(path, "%s: empty type" % where)
        chain.append(items)
        if items[0] == "array" and len(items) == 3:
            value = items[2]
        elif items[0] == "bits" and len(items) == 4:
            value = items[3]
        else:
            break
    else:
        _fail(path, "%s: type nested more than %d levels" % (where, MAX_NESTING))
    inner: Any = None
    for items in reversed(chain):
        if inner is not None:
            items = items[:-1] + [inner]
        for leaf in items:
            if not (leaf is None or isinstance(leaf, (str, int, bool, tuple))):
                _fail(path, "%s: %s is not a type part" % (where, shown(leaf)))
        inner = tuple(items)
    return inner


def meta_from_dict(d: Any, path: str, where: str = "meta") -> BuildMeta:
    """A BuildMeta of a JSON object whose fields have the right JSON types (values: check_meta)."""
    d = _obj(d, where, path)
    for key, types in META_FIELDS.items():
        if key not in d or not isinstance(d[key], types) or (types == (int,) and isinstance(d[key], bool)):
            _fail(path, "%s.%s is missing or of the wrong JSON type" % (where, key))
    extra = d.get("extra", {})
    if not isinstance(extra, dict):
        _fail(path, "%s.extra must be a JSON object" % where)
    return BuildMeta(build_id=d["build_id"], version=d["version"], build=d["build"], revision=d["revision"],
                     guid=d["guid"], age=d["age"], arch=d["arch"], pointer_size=d["pointer_size"],
                     products=list(d["products"]), source=d["source"], types_only=d["types_only"],
                     pdb=d["pdb"], module=d["module"], extra=dict(extra))


def loads_reduced(data: Any, path: str) -> ReducedBuild:
    """The ReducedBuild of stored bytes (JSON shapes checked here; values by `from_reduced`)."""
    try:
        doc = json.loads(data)
    except RecursionError:
        _fail(path, "JSON nested too deeply")
    except ValueError as err:
        _fail(path, "not JSON (%s)" % shown(str(err)))
    doc = _obj(doc, "the file", path)
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        _fail(path, "not a %s file of version %d" % (FORMAT, FORMAT_VERSION))
    meta = meta_from_dict(doc.get("meta"), path)
    records: Dict[str, RecordDef] = {}
    for digest, r in _obj(doc.get("records"), "records", path).items():
        r = _obj(r, "records.%s" % shown(digest), path)
        fields = []
        for item in _list(r.get("fields"), "records.%s.fields" % shown(digest), path):
            item = _list(item, "a member of %s" % shown(r.get("name")), path)
            if len(item) != 3:
                _fail(path, "a member of %s is not [name, offset, type]" % shown(r.get("name")))
            fields.append((item[0], item[1], _desc(item[2], "%s.%s" % (shown(r.get("name")), shown(item[0])), path)))
        # values as found (types and ranges are the builder's to check)
        name: Any = r.get("name")
        kind: Any = r.get("kind")
        size: Any = r.get("size")
        records[digest] = RecordDef(name, kind, size, fields, digest)
    enums: Dict[str, EnumDefn] = {}
    for digest, e in _obj(doc.get("enums"), "enums", path).items():
        e = _obj(e, "enums.%s" % shown(digest), path)
        constants = []
        for item in _list(e.get("constants"), "constants of %s" % shown(e.get("name")), path):
            item = _list(item, "a constant of %s" % shown(e.get("name")), path)
            if len(item) != 2:
                _fail(path, "a constant of %s is not [name, value]" % shown(e.get("name")))
            constants.append((item[0], item[1]))
        ename: Any = e.get("name")
        enums[digest] = EnumDefn(ename, _desc(e.get("storage"), "storage of %s" % shown(e.get("name")), path),
                                 constants, digest)
    names = {}
    for key in ("type_names", "enum_names", "symbols"):
        names[key] = dict(_obj(doc.get(key), key, path))
    return ReducedBuild(meta=meta, records=records, enums=enums, type_names=names["type_names"],
                        enum_names=names["enum_names"], symbols=names["symbols"])


def read_reduced(path: str) -> ReducedBuild:
    """A stored reduced build from disk: bounded read, JSON shapes checked (values: the builder)."""
    data = read_bounded(path, "stored layout", max_json=MAX_STORED_BYTES, max_compressed=MAX_STORED_BYTES)
    return loads_reduced(data, path)


def write_atomic(path: str, data: bytes) -> None:
    """Write a file whole or not at all (temp file + rename)."""
    import os
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
