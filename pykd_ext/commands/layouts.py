"""`layouts [show]` / `layouts export FILE`: which kernel layouts decode the target, and taking
the debugger's exact layouts home.

`show` names the layout, where it came from (shipped, imported, the debugger's PDB through
typeInfo, `--symbols`) and how it was chosen. `export FILE` (inside WinDbg: `!py layouts export
C:\\lab\\nt.json`) writes the kernel types, enums and globals read from the debugger's PDB
through pykd `typeInfo` as an ISF file; offline, `pykd-ext structs import FILE` checks it and
stores it as data in the user store, so the VM's exact build decodes on any machine.
"""
import argparse
import os
from typing import Any, Dict, Iterable, List

from pykd_ext.errors import TargetError
from pykd_ext.render.grid import Column, Result

HELP = "show the kernel layouts in use; `export FILE` writes the debugger's (typeInfo) layouts as ISF"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'layouts -t crash.dmp',
    'layouts export nt.json -t crash.dmp',
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("show", "export"), default="show",
                        help="show (default) or export")
    parser.add_argument("file", nargs="?", help="export: the ISF file to write (.json)")


def _show(session: Any) -> Result:
    lay = session.layouts
    choice = dict(lay.choice or {})
    record: Dict[str, Any] = {"layout": lay.build_id, "label": lay.label, "version": lay.version,
                              "guid": lay.guid, "age": lay.age, "arch": lay.arch, "source": lay.source,
                              "method": choice.get("method"), "reason": choice.get("reason"),
                              "warnings": list(choice.get("warnings") or [])}
    record.update(_provenance(session, lay, choice))

    def text(result: Result) -> Iterable[str]:
        rec = result.records[0]
        yield "%-10s %s" % ("Layout:", rec["label"])
        yield "%-10s %s" % ("Source:", rec["source"] or "-")
        yield "%-10s %s%s" % ("Chosen by:", rec["method"] or "-", " (%s)" % rec["reason"] if rec["reason"] else "")
        for warning in rec["warnings"]:
            yield "%-10s %s" % ("Warning:", warning)
        yield from _provenance_lines(rec)

    columns = [Column("layout"), Column("source"), Column("method"), Column("guid"), Column("age", fmt="int")]
    return Result("layouts", columns, [record], text=text, meta={"layout": lay.build_id})


def _provenance(session: Any, lay: Any, choice: Dict[str, Any]) -> Dict[str, Any]:
    """H12 (issue 15): an inferred layout's fields (field, offset, sources; disputed ones with
    every claim), the wanted fields nobody proved, and the globals the kernel's code names
    (inferred and types-only layouts)."""
    out: Dict[str, Any] = {}
    provenance = getattr(lay, "provenance", None)
    if callable(provenance):
        fields = []
        for f in provenance():
            name = "%s.%s" % (f["type"], f["path"]) if f["path"] else "sizeof(%s)" % f["type"]
            fields.append({"field": name, "kind": f["kind"], "offset": f["value"], "sources": f["sources"],
                           "conflict": f["conflict"],
                           "unplaced": (getattr(lay, "unplaced", None) or {}).get(name)})
        out["fields"] = fields
        out["unknown"] = list(lay.unknown_wanted()) if callable(getattr(lay, "unknown_wanted", None)) else []
    globals_ = choice.get("globals")
    if globals_ is None and getattr(lay, "types_only", False):
        from pykd_ext.layouts.inferred.code_globals import find_code_globals
        info = session.target.info()
        base = info.kernel_base or (info.kdbg or {}).get("KernBase")
        found = find_code_globals(session.target.kernel, base if isinstance(base, int) else None,
                                  info.arch or "x64")
        globals_ = [dict(v, name=k) for k, v in sorted(found.items())]
    if globals_ is not None:
        out["globals"] = [{"name": g["name"], "address": g["address"], "sources": list(g["sources"])}
                          for g in globals_]
    return out


def _provenance_lines(rec: Dict[str, Any]) -> Iterable[str]:
    fields = rec.get("fields")
    if fields is not None:
        proven = [f for f in fields if f["offset"] is not None]
        yield ""
        yield "Inferred fields (%d proven, %d disputed):" % (len(proven), len(fields) - len(proven))
        width = max([len(f["field"]) for f in fields] + [5])
        yield "  %-*s %8s  %s" % (width, "field", "offset", "source")
        for f in fields:
            value = "%#x" % f["offset"] if f["offset"] is not None else "?"
            if f["kind"] == "bit_position" and f["offset"] is not None:
                value = "bit %d" % f["offset"]
            source = " + ".join(f["sources"])
            if f["conflict"]:
                source = "disputed: " + ", ".join("%s=%#x" % (s, v) for s, v in f["conflict"])
            elif f["unplaced"]:
                source += " (not used: %s)" % f["unplaced"]
            yield "  %-*s %8s  %s" % (width, f["field"], value, source)
        if rec.get("unknown"):
            yield "Unknown (nobody proved them): %s" % ", ".join(rec["unknown"])
    if rec.get("globals"):
        yield ""
        yield "Globals named by the kernel's code:"
        for g in rec["globals"]:
            yield "  %-18s %#x  %s" % (g["name"], g["address"], " + ".join(g["sources"]))


def _export(session: Any, path: str) -> Result:
    from pykd_ext.targets.pykd_target import PykdTarget
    target = session.target
    if not isinstance(target, PykdTarget):
        raise TargetError("`layouts export` reads the debugger's PDB through pykd typeInfo: run it inside "
                          "WinDbg (`!py layouts export FILE`) or with `--engine pykd`; offline layouts "
                          "already come from ISF files (`pykd-ext structs list`)")
    from pykd_ext.layouts.from_typeinfo import export_typeinfo_layouts
    doc = export_typeinfo_layouts(target, path)
    pdb = ((doc.get("metadata") or {}).get("windows") or {}).get("pdb") or {}
    record = {"file": os.path.abspath(path), "types": len(doc.get("user_types") or {}),
              "enums": len(doc.get("enums") or {}), "symbols": len(doc.get("symbols") or {}),
              "guid": pdb.get("GUID"), "age": pdb.get("age"),
              "version": ((doc.get("metadata") or {}).get("source") or {}).get("version")}

    def text(result: Result) -> Iterable[str]:
        rec = result.records[0]
        lines: List[str] = [
            "Wrote %s" % rec["file"],
            "  %d types, %d enums, %d globals from the debugger's PDB%s" % (
                rec["types"], rec["enums"], rec["symbols"],
                " %s-%s" % (rec["guid"], rec["age"]) if rec["guid"] else ""),
            "Offline: pykd-ext structs import %s" % os.path.basename(rec["file"]),
        ]
        return lines

    columns = [Column("file"), Column("types", fmt="int"), Column("enums", fmt="int"),
               Column("symbols", fmt="int"), Column("guid"), Column("age", fmt="int"), Column("version")]
    return Result("layouts", columns, [record], text=text)


def run(session: Any, args: argparse.Namespace) -> Result:
    if args.action == "export":
        if not args.file:
            raise TargetError("layouts export needs a FILE to write")
        return _export(session, args.file)
    return _show(session)
