"""Generate the readable construct definitions in `structs/` from Volatility ISF symbol tables.

    python -m pykd_ext.layouts.generate [--isf ../shared/isf] [--derived DIR] [--out structs]

Why generated code rather than loading JSON at run time: the construct objects are what a reader
(and `dt`) sees, one member per line with its offset; they are the single source the runtime
compiles its offset tables from; and a Python module imports in milliseconds, where a 0.5 MB xz
ISF takes ~70 ms to decode.

Layout of the output (deterministic, byte-for-byte reproducible):
- one module per kernel build number and architecture (`nt_10_0_19041.py`): every distinct
  variant of every kept type is defined once, named `<TYPE>_<n>` in order of first appearance
  (builds sorted by version), followed by a `BUILDS` table mapping each build id to its variants
  and global RVAs; builds with identical variant sets share one table;
- `index.json`: every build's identity (version, products, PDB GUID/age, arch, source, module);
- `LICENSE-JPCERTCC`: the licence of the symbol tables the layouts come from.
Importing one build imports one module (see `benchmarks/bench_layouts.py`).

Derived types-only ISFs (`--derived`, default ../shared/isf-derived) go into the same tree, each
annotated from its `metadata.source` by `layouts/derived.py` (types-only source line, partial and
absent types, licence, and a revision range read from the shipped kphdyn table, so regenerate
`structs/kphdyn` first when it changes); `NOTICE-derived` lists their provenance.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Iterable, List, Optional, Tuple

from pykd_ext.errors import LayoutError
from pykd_ext.layouts.isf import (BuildMeta, EnumDefn, RecordDef, ReducedBuild, TypeDesc,
                                  isf_files_in, load_isf, meta_from_isf, read_index_tsv,
                                  reduce_isf, sort_key)
from pykd_ext.targets.arch import DEFAULT_ARCH

GENERATOR_VERSION = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_ISF = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "isf"))
#: H10: the derived types-only ISFs are part of the shipped tree (issue 7)
DEFAULT_DERIVED = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "isf-derived"))
#: job marker: a derived file, annotated from its metadata.source (layouts/derived.py)
DERIVED_JOB = "<derived>"
DERIVED_NOTICE = "NOTICE-derived"
DEFAULT_OUT = os.path.join(REPO_ROOT, "structs")

JPCERTCC_SOURCE = "isf:JPCERTCC Windows-Symbol-Tables"
ATTRIBUTION = (
    "Layouts derived from Volatility ISF symbol tables of Microsoft's public kernel PDBs,\n"
    "published by JPCERTCC/Windows-Symbol-Tables (BSD-3-Clause; see LICENSE-JPCERTCC beside this file).")
DERIVED_ATTRIBUTION = (
    "Types-only layouts converted from public C headers generated from Microsoft's public PDBs\n"
    "(see NOTICE-derived beside this file and index.json `source` for the header set and licence).")


# ---------------------------------------------------------------- reading (worker processes)

def _reduce_file(job: Tuple[str, Optional[str], List[str], Optional[str]]) -> ReducedBuild:
    path, version, products, source = job
    doc = load_isf(path)
    derived = source == DERIVED_JOB
    meta = meta_from_isf(doc, version=version, products=products, source=None if derived else source,
                         path=path)
    if derived:
        from pykd_ext.layouts.derived import annotate
        annotate(meta, doc)
    return reduce_isf(doc, meta, path)


def collect_jobs(isf_dir: Optional[str], derived_dir: Optional[str]) -> List[Tuple[str, Optional[str], List[str], Optional[str]]]:
    jobs: List[Tuple[str, Optional[str], List[str], Optional[str]]] = []
    if isf_dir:
        index = read_index_tsv(os.path.join(isf_dir, "INDEX.tsv"))
        for path in isf_files_in(os.path.join(isf_dir, "windows")):
            name = os.path.basename(path)
            if name not in index:
                raise SystemExit("generate: %s is not listed in INDEX.tsv" % path)
            version, products = index[name]
            jobs.append((path, version, sorted(products), JPCERTCC_SOURCE))
    if derived_dir:
        for path in isf_files_in(derived_dir):
            jobs.append((path, None, [], DERIVED_JOB))
    return jobs


def reduce_all(jobs: List[Tuple[str, Optional[str], List[str], Optional[str]]], workers: int) -> List[ReducedBuild]:
    if workers <= 1 or len(jobs) < 4:
        builds = [_reduce_file(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            builds = list(pool.map(_reduce_file, jobs, chunksize=4))
    seen: Dict[str, str] = {}
    for b in builds:
        if b.meta.build_id in seen:
            raise SystemExit("generate: build %s comes from two files" % b.meta.build_id)
        seen[b.meta.build_id] = b.meta.build_id
    return sorted(builds, key=lambda b: sort_key(b.meta))


# ---------------------------------------------------------------- emitting one module

def group_name(meta: BuildMeta) -> str:
    parts = meta.version.split(".")[:3]
    name = "nt_" + "_".join(parts)
    # the default architecture's modules carry no suffix, as its build ids (`arch.layout_build_id`)
    return name if meta.arch == DEFAULT_ARCH.name else name + "_" + meta.arch


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


class ModuleWriter:
    """Emits one group module: base types, enum variants, record variants, the BUILDS table."""

    def __init__(self, name: str, builds: List[ReducedBuild], attribution: str) -> None:
        self.name = name
        self.builds = builds
        self.attribution = attribution
        self.records: Dict[str, RecordDef] = {}
        self.enums: Dict[str, EnumDefn] = {}
        for b in builds:
            self.records.update(b.records)
            self.enums.update(b.enums)
        self.var_name: Dict[str, str] = {}        # digest -> python name
        self.base_name: Dict[TypeDesc, str] = {}
        self._name_variants()

    def _name_variants(self) -> None:
        counters: Dict[str, int] = {}
        used = set()

        def assign(digest: str, pdb_name: str) -> None:
            if digest in self.var_name:
                return
            stem = "_" + _ident(pdb_name.strip("<>").split("-")[0]) if pdb_name.startswith("<") else _ident(pdb_name)
            counters[stem] = counters.get(stem, 0) + 1
            name = "%s_%d" % (stem, counters[stem])
            while name in used:                       # e.g. a type literally named X_1
                counters[stem] += 1
                name = "%s_%d" % (stem, counters[stem])
            used.add(name)
            self.var_name[digest] = name

        for b in self.builds:                         # sorted by version: first appearance
            for ename in sorted(b.enum_names):
                assign(b.enum_names[ename], ename)
            for digest in self._record_order(b):
                assign(digest, self.records[digest].name)

    def _record_order(self, b: ReducedBuild) -> List[str]:
        """Record digests of one build, dependencies first, deterministic."""
        out: List[str] = []
        done = set()
        for root in sorted(b.type_names):
            stack = [(b.type_names[root], False)]
            while stack:                              # iterative post-order DFS
                digest, expanded = stack.pop()
                if digest in done:
                    continue
                if expanded:
                    done.add(digest)
                    out.append(digest)
                    continue
                stack.append((digest, True))
                deps = sorted({d for d in _record_deps(self.records[digest])}, reverse=True)
                for dep in deps:
                    if dep not in done:
                        stack.append((dep, False))
        return out

    # -- expressions
    def _base(self, desc: TypeDesc) -> str:
        if desc not in self.base_name:
            stem = "T_" + _ident(desc[1])
            name = stem
            n = 1
            while name in self.base_name.values():
                n += 1
                name = "%s_%d" % (stem, n)
            self.base_name[desc] = name
        return self.base_name[desc]

    def expr(self, desc: TypeDesc) -> str:
        kind = desc[0]
        if kind == "base":
            return self._base(desc)
        if kind == "ptr":
            _, target, tkind, depth, size = desc
            args = [json.dumps(target)]
            if size != 8 or tkind != "struct" or depth:
                args += [str(size), json.dumps(tkind)]
            if depth:
                args.append(str(depth))
            return "Ptr(%s)" % ", ".join(args)
        if kind in ("struct", "union", "enum"):
            return self.var_name[desc[1]]
        if kind == "array":
            return "Array(%d, %s)" % (desc[1], self.expr(desc[2]))
        if kind == "bits":
            return "Bits(%d, %d, %s)" % (desc[1], desc[2], self.expr(desc[3]))
        if kind == "func":
            return "FuncType()"
        raise ValueError(desc)

    def render(self) -> str:
        builds = self.builds
        versions = [b.meta.build_id for b in builds]
        order: List[str] = []
        seen = set()
        for b in builds:
            for digest in self._record_order(b):
                if digest not in seen:
                    seen.add(digest)
                    order.append(digest)
        enum_order: List[str] = []
        for b in builds:
            for ename in sorted(b.enum_names):
                d = b.enum_names[ename]
                if d not in enum_order:
                    enum_order.append(d)
        # bodies first (they register base types), header last
        rec_lines: List[str] = []
        for digest in order:
            rec_lines.extend(self._record_lines(digest))
        enum_lines: List[str] = []
        for digest in enum_order:
            enum_lines.extend(self._enum_lines(digest))
        table_lines = self._table_lines()
        base_lines = ["%s = Base(%s, %d, %s, %s)" % (name, json.dumps(desc[1]), desc[2], desc[3], json.dumps(desc[4]))
                      for desc, name in sorted(self.base_name.items(), key=lambda kv: kv[1])]
        arch = builds[0].meta.arch
        head = [
            '"""Kernel structure layouts of Windows %s (%s): %d build(s), %d type variant(s), %d enum variant(s).'
            % (".".join(builds[0].meta.version.split(".")[:3]), arch, len(builds), len(order), len(enum_order)),
            "",
            "GENERATED by `python -m pykd_ext.layouts.generate` - do not edit; regenerate instead.",
            self.attribution,
            "",
            "Each variant is one layout of a type, shared by every build listed in BUILDS that uses it.",
            "Members are `\"Name\" / At(offset, type)` in offset order, inside `lambda: (...)` so that they are",
            "built when a command first uses the type; see pykd_ext/layouts/cons.py.",
            "Builds: %s" % ", ".join(versions) if len(versions) <= 6 else
            "Builds: %s ... %s (%d)" % (versions[0], versions[-1], len(versions)),
            '"""',
            "from pykd_ext.layouts.cons import Array, At, Base, Bits, EnumDef, FuncType, Ptr, Record",
            "",
            "# ---- base types",
        ]
        out = head + base_lines + ["", "# ---- enums"] + enum_lines + ["# ---- types"] + rec_lines + table_lines
        return "\n".join(out) + "\n"

    def _enum_lines(self, digest: str) -> List[str]:
        e = self.enums[digest]
        lines = ["%s = EnumDef(%s, %s, {" % (self.var_name[digest], json.dumps(e.name), self.expr(e.storage))]
        for cname, value in e.constants:
            lines.append("    %s: %d," % (json.dumps(cname), value))
        lines.append("})")
        lines.append("")
        return lines

    def _record_lines(self, digest: str) -> List[str]:
        r = self.records[digest]
        width = max([3] + [len("%x" % m[1]) for m in r.fields])
        # members inside `lambda: (...)`: built on first use (see cons.Record.fields)
        lines = ["%s = Record(%s, 0x%x, %s, lambda: (" % (self.var_name[digest], json.dumps(r.name), r.size,
                                                           json.dumps(r.kind))]
        for mname, offset, desc in r.fields:
            off = "0x%0*x" % (width, offset)
            lines.append("    %s / At(%s, %s),  # +%s" % (json.dumps(mname), off, self.expr(desc), off))
        lines.append("), variant=%s, digest=%s)" % (json.dumps(self.var_name[digest]), json.dumps(digest)))
        lines.append("")
        return lines

    def _table_lines(self) -> List[str]:
        lines = ["", "# ---- per-build tables: PDB name -> variant"]
        tables: Dict[Tuple[Tuple[str, str], ...], str] = {}
        build_table: Dict[str, str] = {}
        for b in self.builds:
            key = tuple(sorted(b.type_names.items())) + tuple(("enum:" + k, v) for k, v in sorted(b.enum_names.items()))
            if key not in tables:
                tname = "_TABLE_%d" % (len(tables) + 1)
                tables[key] = tname
                lines.append("%s = {" % tname)
                for pdb, digest in sorted(b.type_names.items()):
                    lines.append("    %s: %s," % (json.dumps(pdb), self.var_name[digest]))
                for ename, digest in sorted(b.enum_names.items()):
                    lines.append("    %s: %s," % (json.dumps(ename), self.var_name[digest]))
                lines.append("}")
                lines.append("")
            build_table[b.meta.build_id] = tables[key]
        lines.append("# build id -> (types and enums by name, global RVAs from the image base)")
        lines.append("BUILDS = {")
        for b in self.builds:
            lines.append("    %s: (%s, {" % (json.dumps(b.meta.build_id), build_table[b.meta.build_id]))
            for sym in sorted(b.symbols):
                lines.append("        %s: 0x%x," % (json.dumps(sym), b.symbols[sym]))
            lines.append("    }),")
        lines.append("}")
        return lines


def _record_deps(r: RecordDef) -> Iterable[str]:
    for _name, _off, desc in r.fields:
        yield from _desc_deps(desc)


def _desc_deps(desc: TypeDesc) -> Iterable[str]:
    while True:
        kind = desc[0]
        if kind in ("struct", "union"):
            yield desc[1]
            return
        if kind == "array":
            desc = desc[2]
        elif kind == "bits":
            desc = desc[3]
        else:
            return


def render_module(name: str, builds: List[ReducedBuild], attribution: str = ATTRIBUTION) -> str:
    """Source text of one module holding `builds` (all of one group, or one imported build)."""
    return ModuleWriter(name, builds, attribution).render()


# ---------------------------------------------------------------- the whole tree

INIT_TEXT = '''"""Generated kernel structure layouts (construct definitions), one module per build group.

GENERATED by `python -m pykd_ext.layouts.generate`; `index.json` lists every build and its module.
Use them through `pykd_ext.layouts.registry` (`load_layouts("10.0.19041.1288")`).
"""
'''


def generate_tree(builds: List[ReducedBuild], out_dir: str, isf_dir: Optional[str]) -> Dict[str, int]:
    groups: Dict[str, List[ReducedBuild]] = {}
    for b in builds:
        b.meta.module = group_name(b.meta)
        groups.setdefault(b.meta.module, []).append(b)
    os.makedirs(out_dir, exist_ok=True)
    written: Dict[str, int] = {}
    for name in sorted(groups):
        members = groups[name]
        derived = any(m.meta.types_only and not m.meta.source.startswith("isf") for m in members)
        text = render_module(name, members, DERIVED_ATTRIBUTION if derived else ATTRIBUTION)
        _write(os.path.join(out_dir, name + ".py"), text, written)
    index = {"generator": GENERATOR_VERSION,
             "about": "pykd-ext kernel layouts; regenerate with python -m pykd_ext.layouts.generate",
             "builds": [b.meta.to_dict() for b in builds]}
    _write(os.path.join(out_dir, "index.json"), json.dumps(index, indent=1, sort_keys=True) + "\n", written)
    _write(os.path.join(out_dir, "__init__.py"), INIT_TEXT, written)
    derived_builds = [b.meta for b in builds if b.meta.source.startswith("derived")]
    if derived_builds:
        from pykd_ext.layouts.derived import notice_text
        _write(os.path.join(out_dir, DERIVED_NOTICE), notice_text(derived_builds), written)
    if isf_dir and os.path.exists(os.path.join(isf_dir, "LICENSE")):
        with open(os.path.join(isf_dir, "LICENSE"), "r", encoding="utf-8") as fh:
            _write(os.path.join(out_dir, "LICENSE-JPCERTCC"), fh.read(), written)
    return written


def _write(path: str, text: str, written: Dict[str, int]) -> None:
    data = text.encode("utf-8")
    with open(path, "wb") as fh:
        fh.write(data)
    written[os.path.basename(path)] = len(data)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pykd_ext.layouts.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--isf", default=DEFAULT_ISF, help="JPCERTCC ISF folder (INDEX.tsv + windows/)")
    parser.add_argument("--derived", default=DEFAULT_DERIVED if os.path.isdir(DEFAULT_DERIVED) else None,
                        help="folder of derived types-only ISFs (default ../shared/isf-derived; '' for none)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: the repo's structs/)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        builds = reduce_all(collect_jobs(args.isf, args.derived), args.jobs)
    except LayoutError as err:
        sys.stderr.write("generate: %s\n" % err.one_line())
        return 2
    t1 = time.perf_counter()
    written = generate_tree(builds, args.out, args.isf)
    t2 = time.perf_counter()
    total = sum(written.values())
    sys.stderr.write("generate: %d builds, %d files, %.1f MB; read %.1f s, wrote %.1f s\n"
                     % (len(builds), len(written), total / 1e6, t1 - t0, t2 - t1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
