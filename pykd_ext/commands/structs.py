"""`structs list|diff|history|import`: the layout collection as a teaching and research tool.

- `list`: every known build (shipped + user-imported) with product names and PDB GUIDs.
- `diff BUILD_A BUILD_B TYPE [-r]`: members added, removed, moved, resized, retyped; "inner" when
  an embedded structure's own layout changed (`-r` lists its members too).
- `history TYPE.FIELD`: where a member sits (offset, type) in every build we have.
- `import FILE.json.xz [--version V]`: add a user's ISF to the per-user layout store
  ($PYKD_EXT_HOME/layouts, default ~/.pykd-ext/layouts): the whole file is checked, reduced like
  the shipped tree and stored as data (JSON), never as code.
"""
import argparse
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import LayoutError, MissingLayoutError
from pykd_ext.layouts.model import FieldLayout, TypeLayout, compile_record
from pykd_ext.commands import TARGET_OPTIONS
from pykd_ext.render.grid import Column, Result

HELP = "kernel structure layouts: list builds, diff two builds, a field's history, import an ISF"
#: global options this command does not read (left out of its --help: pykd_ext/cli.py)
UNUSED_GLOBALS = TARGET_OPTIONS
#: `--help` examples (issue 12), one list per action; EXAMPLES is what `structs --help` shows
EXAMPLES_BY_ACTION = {
    "list": ["structs list", "structs list -f csv"],
    "diff": ["structs diff 1809 22H2 _EPROCESS", "structs diff 10.0.19041.1288 24H2 _KTHREAD -r"],
    "history": ["structs history _EPROCESS.Token", "structs history _EPROCESS.UniqueProcessId 1607 1809 19041"],
    "import": ["structs import ntkrnlmp.pdb/CA8E2F01B822EDE6357898BFBF862997-1.json.xz"],
}
EXAMPLES = [EXAMPLES_BY_ACTION["list"][0], EXAMPLES_BY_ACTION["diff"][0], EXAMPLES_BY_ACTION["history"][0]]


def _examples(lines: List[str]) -> str:
    return "examples:\n" + "\n".join("  pykd-ext %s" % line for line in lines)

MAX_DEPTH = 9


def _late_common() -> argparse.ArgumentParser:
    """The CLI's common options (--format, --quiet, ...) again, so they may follow the action.

    Their defaults are suppressed so an option given before the action is not reset.
    """
    from pykd_ext.cli import _common_options
    common = _common_options()
    for action in common._actions:
        action.default = argparse.SUPPRESS
    return common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    common = [_late_common()]
    raw = argparse.RawDescriptionHelpFormatter
    sub.add_parser("list", help="builds known, with product names and PDB GUIDs", parents=common,
                   formatter_class=raw, epilog=_examples(EXAMPLES_BY_ACTION["list"]),
                   description="Every kernel build whose layouts we have: shipped (JPCERTCC ISFs, derived "
                               "types-only layouts) and imported into the per-user store, with product "
                               "names, architecture, PDB GUID/age and the revisions a layout covers.")
    p = sub.add_parser("diff", help="how TYPE changed from BUILD_A to BUILD_B", parents=common,
                       formatter_class=raw, epilog=_examples(EXAMPLES_BY_ACTION["diff"]),
                       description="Members of TYPE added, removed, moved, resized or retyped between two "
                                   "builds; \"inner\" when an embedded structure's own layout changed (-r "
                                   "lists its members). A build is named as --build takes it: 19041, "
                                   "10.0.19041.1288, a release name (1809, 22H2, 24H2) or a PDB GUID.")
    p.add_argument("build_a", metavar="BUILD_A")
    p.add_argument("build_b", metavar="BUILD_B")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("-r", dest="recurse", action="store_true",
                   help="also compare members of embedded structures (dotted paths)")
    p = sub.add_parser("history", help="a member's offset and type across every build", parents=common,
                       formatter_class=raw, epilog=_examples(EXAMPLES_BY_ACTION["history"]),
                       description="Where TYPE.FIELD sits (offset, type, sizeof TYPE) in every build we "
                                   "have, or only in the BUILDs named (as --build takes them).")
    p.add_argument("member", metavar="TYPE.FIELD")
    p.add_argument("builds", nargs="*", metavar="BUILD",
                   help="only these builds (19041, 1809, 22H2, 10.0.26100.2000, a PDB GUID)")
    p.add_argument("--arch", default=None, help="only builds of this architecture (x64, x86)")
    p = sub.add_parser("import", help="add an ISF symbol table (.json/.json.xz/.json.gz) to the user store",
                       parents=common, formatter_class=raw, epilog=_examples(EXAMPLES_BY_ACTION["import"]),
                       description="Check a Volatility 3 ISF symbol table whole and store its layouts as "
                                   "data in the per-user store ($PYKD_EXT_HOME/layouts, default "
                                   "~/.pykd-ext/layouts); dumps of that kernel then decode with them, and "
                                   "--build names it. Nothing is stored when any check fails.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--version", default=None,
                   help="Windows version the ISF describes (e.g. 10.0.19041.1288), when the file does not say")


    p = sub.add_parser("export", help="write a build's layouts as a Volatility 3 ISF symbol table",
                       parents=common,
                       description="Write BUILD's layouts (shipped, imported from an ISF/PDB) as a Volatility 3 "
                                   "ISF. --isf DIR writes DIR/windows/<pdb>/<GUID>-<AGE>.json.xz, where "
                                   "`vol -s DIR` finds it; --isf FILE.json[.xz] writes that file.")
    p.add_argument("build", metavar="BUILD")
    p.add_argument("--isf", required=True, metavar="FILE|DIR",
                   help="output: a .json/.json.xz file, or a symbol directory for Volatility 3")


def run(session: Any, args: argparse.Namespace) -> Result:
    action = args.action
    if action == "list":
        return run_list()
    if action == "diff":
        return run_diff(args.build_a, args.build_b, args.type, bool(args.recurse))
    if action == "history":
        return run_history(args.member, args.arch, list(getattr(args, "builds", None) or []))
    if action == "import":
        return run_import(args.file, args.version)
    if action == "export":
        return run_export(args.build, args.isf)
    raise LayoutError("unknown structs action %r" % action)


# ------------------------------------------------------------------ list

def _revisions_text(e: Any) -> str:
    """H10: "22621.1-22621.7517" for a derived layout's revision range, "" otherwise."""
    rr = (getattr(e, "extra", None) or {}).get("revision_range")
    if not isinstance(rr, dict) or rr.get("first") is None:
        return ""
    kb = rr.get("kernel_build", e.build)
    if rr.get("first") == rr.get("last"):
        return "%s.%s only" % (kb, rr["first"])
    return "%s.%s-%s.%s" % (kb, rr["first"], kb, rr["last"])


def run_list() -> Result:
    from pykd_ext.layouts.registry import list_builds
    records = []
    for e in list_builds():
        records.append({"build_id": e.build_id, "version": e.version, "build": e.build,
                        "products": ",".join(e.products), "arch": e.arch, "guid": e.guid, "age": e.age,
                        "source": e.source, "types_only": e.types_only, "module": e.module,
                        "store": e.store or "shipped",
                        # H10: derived layouts state the revisions they are taken to cover
                        "revisions": _revisions_text(e)})
    columns = [Column("build_id", "Build"), Column("products", "Products"), Column("arch", "Arch"),
               Column("guid", "PDB GUID"), Column("age", "Age"), Column("revisions", "Revisions"),
               Column("source", "Source")]
    return Result(command="structs list", columns=columns, records=records,
                  meta={"count": len(records)})


# ------------------------------------------------------------------ diff

def flatten(t: TypeLayout, recurse: bool) -> Dict[str, FieldLayout]:
    """Members by dotted path (offsets absolute within t); embedded structs expanded when recurse."""
    out: Dict[str, FieldLayout] = {}
    stack: List[Tuple[str, int, TypeLayout, int]] = [("", 0, t, 0)]
    while stack:
        prefix, base, cur, depth = stack.pop()
        for fl in cur.fields.values():
            path = prefix + fl.name
            out[path] = fl.moved(base + fl.offset)
            if recurse and fl.record is not None and depth < MAX_DEPTH:
                stack.append((path + ".", base + fl.offset, compile_record(fl.record), depth + 1))
    return dict(sorted(out.items(), key=lambda kv: (kv[1].offset, kv[1].bit_position or 0, kv[0])))


def _where(fl: FieldLayout) -> str:
    if fl.kind == "bitfield":
        assert fl.bit_position is not None     # set for every bitfield member
        return "+0x%03x.%d" % (fl.offset, fl.bit_position)
    return "+0x%03x" % fl.offset


def diff_types(a: TypeLayout, b: TypeLayout, recurse: bool) -> List[Dict[str, Any]]:
    fa, fb = flatten(a, recurse), flatten(b, recurse)
    rows: List[Dict[str, Any]] = []
    for path, x in fa.items():
        y = fb.get(path)
        if y is None:
            rows.append({"change": "removed", "member": path, "a_offset": x.offset, "b_offset": None,
                         "a_type": x.windbg_type(), "b_type": None, "a_size": x.size, "b_size": None})
            continue
        changes = []
        if (x.offset, x.bit_position) != (y.offset, y.bit_position):
            changes.append("moved")
        if x.size != y.size or x.bit_length != y.bit_length or x.count != y.count:
            changes.append("resized")
        tx, ty = _type_identity(x), _type_identity(y)
        if tx != ty:
            changes.append("retyped")
        elif not recurse and x.record is not None and y.record is not None and x.record.digest != y.record.digest:
            changes.append("inner")           # the embedded type's own layout changed (see -r)
        if changes:
            rows.append({"change": ",".join(changes), "member": path, "a_offset": x.offset,
                         "b_offset": y.offset, "a_type": x.windbg_type(), "b_type": y.windbg_type(),
                         "a_size": x.size, "b_size": y.size})
    for path, y in fb.items():
        if path not in fa:
            rows.append({"change": "added", "member": path, "a_offset": None, "b_offset": y.offset,
                         "a_type": None, "b_type": y.windbg_type(), "a_size": None, "b_size": y.size})
    return rows


def _type_identity(fl: FieldLayout) -> Tuple[Any, ...]:
    # kind and named type; for bitfields the storage type; size changes are "resized", not "retyped"
    if fl.kind == "array":
        assert fl.element is not None          # set for every array member
        return ("array",) + _type_identity(fl.element)
    return (fl.kind, fl.type_name, fl.depth, fl.target_kind)


def run_diff(key_a: str, key_b: str, type_name: str, recurse: bool) -> Result:
    from pykd_ext.layouts.build_names import layouts_for_build_name
    la, lb = layouts_for_build_name(key_a), layouts_for_build_name(key_b)
    chosen = [n for lay in (la, lb) for n in lay.choice.get("warnings") or []]
    missing = [lay.label for lay in (la, lb) if not lay.has_type(type_name)]
    if missing:
        raise MissingLayoutError("%s not in layout(s) %s" % (type_name, ", ".join(missing)))
    a, b = la.type(type_name), lb.type(type_name)
    rows = diff_types(a, b, recurse)
    columns = [Column("change", "Change"), Column("member", "Member"), Column("a_offset", "Offset A", "hex"),
               Column("b_offset", "Offset B", "hex"), Column("a_type", "Type A"), Column("b_type", "Type B")]
    notes = list(chosen)            # which layout each build name resolved to
    if a.size != b.size:
        notes.append("sizeof(%s): 0x%x in %s, 0x%x in %s" % (type_name, a.size, la.build_id, b.size, lb.build_id))
    if a.record is b.record or a.digest == b.digest:
        notes.append("%s has the same layout in both builds (%s)" % (type_name, a.variant))
    meta = {"type": type_name, "a": la.ident(), "b": lb.ident(), "a_size": a.size, "b_size": b.size,
            "a_variant": a.variant, "b_variant": b.variant, "recursive": recurse}
    return Result(command="structs diff", columns=columns, records=rows, meta=meta, notes=notes)


# ------------------------------------------------------------------ history

def run_history(member: str, arch: Optional[str], builds: Optional[List[str]] = None) -> Result:
    from pykd_ext.layouts.registry import list_builds, usable_layouts
    type_name, dot, path = member.partition(".")
    if not dot or not path:
        raise MissingLayoutError("history wants TYPE.FIELD, e.g. _EPROCESS.Token")
    rows = []
    entries = list_builds()
    notes: List[str] = []
    if builds:                       # only the builds named, as --build resolves them
        from pykd_ext.layouts.build_names import resolve_build_name
        wanted = []
        for name in builds:
            found = resolve_build_name(name)
            if found.note:
                notes.append(found.note)
            if found.entry not in wanted:
                wanted.append(found.entry)
        entries = wanted
    for e in entries:
        if arch and e.arch != arch:
            continue
        lay = usable_layouts(e)
        if lay is None:                  # a damaged imported build: noted once, skipped
            continue
        rec: Dict[str, Any] = {"build_id": e.build_id, "version": e.version, "products": ",".join(e.products),
                               "guid": e.guid, "offset": None, "type": None, "size": None,
                               "bit_position": None, "bit_length": None, "type_size": None}
        if lay.has_type(type_name):
            t = lay.type(type_name)
            rec["type_size"] = t.size
            if t.has_field(path):
                fl = t.field(path)
                rec.update(offset=fl.offset, type=fl.windbg_type(), size=fl.size,
                           bit_position=fl.bit_position, bit_length=fl.bit_length)
        rows.append(rec)
    if not any(r["offset"] is not None for r in rows):
        raise MissingLayoutError("no build has %s" % member)
    columns = [Column("build_id", "Build"), Column("products", "Products"), Column("offset", "Offset", "hex"),
               Column("type", "Type"), Column("type_size", "Sizeof", "hex")]
    return Result(command="structs history", columns=columns, records=rows, meta={"member": member},
                  notes=notes)


# ------------------------------------------------------------------ import

def run_import(path: str, version: Optional[str]) -> Result:
    from pykd_ext.layouts.registry import import_isf, store_dir
    entry = import_isf(path, version=version)
    rec = entry.to_dict()
    rec["products"] = ",".join(entry.products)
    rec["store"] = store_dir()
    columns = [Column("build_id", "Build"), Column("version", "Version"), Column("guid", "PDB GUID"),
               Column("age", "Age"), Column("arch", "Arch"), Column("store", "Stored in")]
    notes = []
    if entry.types_only:
        notes.append("the ISF has no symbol addresses: walkers that need globals will not work with it")
    if not entry.version:
        notes.append("the ISF does not say its Windows version; it is used when a target's PDB GUID matches "
                     "(or with --build %s); pass --version to also match by build number" % entry.build_id)
    return Result(command="structs import", columns=columns, records=[rec], meta={"store": store_dir()},
                  notes=notes)


# ------------------------------------------------------------------ export

def run_export(key: str, where: str) -> Result:
    """`structs export BUILD --isf FILE|DIR` (layouts/isf_export.py says what is written)."""
    import os
    from pykd_ext.layouts.isf_export import isf_of_layouts, volatility_relative_path, write_isf_file
    from pykd_ext.layouts.build_names import layouts_for_build_name
    from pykd_ext.version import __version__
    layouts = layouts_for_build_name(key)          # 19041, 24H2, a GUID: as --build takes them
    doc = isf_of_layouts(layouts, __version__)
    path = where
    if os.path.isdir(where) or where.endswith(os.sep):
        relative = volatility_relative_path(doc)
        if relative is None:
            raise LayoutError("build %s has no PDB GUID: give a file name, not a symbol directory"
                              % layouts.build_id)
        path = os.path.join(where, relative)
    elif not where.endswith((".json", ".json.xz")):
        raise LayoutError("--isf %s: give a .json or .json.xz file, or an existing directory" % where)
    path, size = write_isf_file(doc, path)
    opaque = doc["metadata"]["pykd_ext"]["opaque_types"]
    rec = {"build_id": layouts.build_id, "version": layouts.version, "guid": layouts.guid, "age": layouts.age,
           "types": len(doc["user_types"]) - len(opaque), "opaque": len(opaque), "enums": len(doc["enums"]),
           "symbols": len(doc["symbols"]), "file": path, "bytes": size}
    columns = [Column("build_id", "Build"), Column("types", "Types"), Column("enums", "Enums"),
               Column("symbols", "Globals"), Column("file", "Written to")]
    notes = list(layouts.choice.get("warnings") or [])
    if opaque:
        notes.append("%d type(s) reached only through pointers (or bound by Volatility's kernel table) are "
                     "declared opaque (no members)" % len(opaque))
    return Result(command="structs export", columns=columns, records=[rec], notes=notes)
