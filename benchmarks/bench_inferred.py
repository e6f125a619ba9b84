"""How much an inferred layout recovers, per build (issue 15), and how long inference takes.

    python benchmarks/bench_inferred.py [--all] [--repeat N] [--sources]

For a sample of shipped x64 builds (every shipped x64 revision with an ISF with `--all`) a small
dump is forged (System + 3 processes, 2 threads each; the forge writes the KDBG block and the
kernel getters' code from the build's ISF), then inferred with `--layout inferred`'s code. Then
the real triage dumps of ../shared/real/kernel-triage (x64 and ARM64). Per row it prints:
- wanted: the fields `layouts.inferred.shapes.WANTED` names that this kernel generation has;
- proven: how many of them were proven; all: every proven offset/size (kphdyn's ALPC, ETW, ...
  included); per source family (kdbg, self-consistency, disasm, kphdyn, triage-header);
- isf: proven offsets equal to the build's ISF JSON / compared (forged rows: the exact ISF);
- globals: globals the kernel's code names (`disasm:ObGetObjectType`, ...), and how many equal
  kernel base + the ISF's RVA;
- ms: median inference time.
Nothing is asserted; tests/layouts/inferred checks agreement.
"""
import argparse
import json
import lzma
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared")))
SAMPLE = ("6.1.7601.24540", "6.3.9600.19913", "10.0.14393.4583", "10.0.17763.437", "10.0.18362.30",
          "10.0.19041.1288", "10.0.20348.288", "10.0.22000.318")
FAMILIES = ("kdbg", "self-consistency", "disasm", "kphdyn", "triage-header")


def isf_for(version: str) -> Optional[Dict[str, Any]]:
    index = SHARED / "isf" / "INDEX.tsv"
    for line in index.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if cols[0] == version:
            with lzma.open(SHARED / "isf" / "windows" / "ntkrnlmp.pdb" / cols[4]) as fh:
                return json.load(fh)
    return None


def isf_value(isf: Dict[str, Any], type_name: str, path: str, kind: str) -> Optional[int]:
    types = isf["user_types"]
    if type_name not in types:
        return None
    if kind == "size":
        return int(types[type_name]["size"])
    current, total, member = type_name, 0, {}
    for i, part in enumerate(path.split(".")):
        fields = types.get(current, {}).get("fields", {})
        if part not in fields:
            return None
        member = fields[part]
        total += int(member["offset"])
        current = member["type"].get("name", "")
    return member["type"].get("bit_position") if kind == "bit_position" else total


def row(label: str, path: str, isf: Optional[Dict[str, Any]], repeat: int) -> Dict[str, Any]:
    from pykd_ext.layouts.inferred import infer_layouts
    from pykd_ext.targets.opener import open_target
    times = []
    layouts = None
    base = None
    for _ in range(repeat):
        target = open_target(path)
        try:
            start = time.perf_counter()
            layouts = infer_layouts(target)
            times.append(time.perf_counter() - start)
            info = target.info()
            base = info.kernel_base or (info.kdbg or {}).get("KernBase")
        finally:
            target.close()
    assert layouts is not None
    proven = [f for f in layouts.provenance() if f["value"] is not None]
    families = {name: sum(1 for f in proven if any(s.startswith(name + ":") for s in f["sources"]))
                for name in FAMILIES}
    agree = compared = 0
    if isf is not None:
        for f in proven:
            expected = isf_value(isf, f["type"], f["path"], f["kind"])
            if expected is not None:
                compared += 1
                agree += expected == f["value"]
    # H12: globals the kernel's code names (ObHeaderCookie, ObTypeIndexTable, PspCidTable)
    code = layouts.choice.get("globals") or []
    code_agree = sum(1 for g in code if isf is not None and base
                     and (isf.get("symbols") or {}).get(g["name"], {}).get("address") == g["address"] - base)
    return {"label": label, "wanted": len(layouts.wanted()), "proven": len(layouts.recovered()),
            "all": len(proven), "families": families, "isf": "%d/%d" % (agree, compared) if isf else "-",
            "globals": "%d (%s)" % (len(code), "%d=isf" % code_agree if isf else "-"),
            "ms": 1000 * statistics.median(times), "unknown": layouts.unknown_wanted(),
            "fields": layouts.provenance(), "code": code}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every shipped x64 revision with an ISF")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", action="store_true", help="list every inferred field and its sources")
    args = parser.parse_args(argv)
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    from pykd_ext.layouts.registry import shipped_builds
    versions = list(SAMPLE)
    if args.all:
        versions = [e.version for e in shipped_builds() if e.arch == "x64" and not e.types_only and e.guid]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for version in versions:
            path = os.path.join(tmp, version + ".dmp")
            write_scenario_dump(path, bulk_scenario(3, 2, handles_per_process=1), version, overwrite=True)
            rows.append(row("forged " + version, path, isf_for(version), args.repeat))
            os.unlink(path)
    triage = SHARED / "real" / "kernel-triage"
    for name, isf_version in (("win10-19041-x64-triage.dmp", "10.0.19041.1288"),
                              ("win10-17763-x64-triage.dmp", "10.0.17763.437"),
                              ("win11-22000-arm64-triage.dmp", None),
                              ("win10-17134-arm32-triage.dmp", None)):
        if (triage / name).is_file():
            rows.append(row("real " + name, str(triage / name),
                            isf_for(isf_version) if isf_version else None, args.repeat))
    head = "%-40s %6s %6s %4s %s %10s %9s %7s" % ("dump", "wanted", "proven", "all",
                                                    " ".join("%5s" % f[:5] for f in FAMILIES), "isf",
                                                    "globals", "ms")
    print(head)
    print("-" * len(head))
    for r in rows:
        print("%-40s %6d %6d %4d %s %10s %9s %7.1f" % (r["label"], r["wanted"], r["proven"], r["all"],
                                                       " ".join("%5d" % r["families"][f] for f in FAMILIES),
                                                       r["isf"], r["globals"], r["ms"]))
    print()
    for r in rows:
        if r["unknown"]:
            print("%s lacks: %s" % (r["label"], ", ".join(r["unknown"])))
    if args.sources:
        _print_sources(rows)
    return 0


def _print_sources(rows: List[Dict[str, Any]]) -> None:
    """Every inferred field and the source families that proved it, over all rows (the issue's
    closing note), then the globals named by code."""
    seen: Dict[str, set] = {}
    for r in rows:
        for f in r["fields"]:
            if f["value"] is None:
                continue
            name = "%s.%s" % (f["type"], f["path"]) if f["path"] else "sizeof(%s)" % f["type"]
            seen.setdefault(name, set()).update(f["sources"])
        for g in r["code"]:
            seen.setdefault("global " + g["name"], set()).update(g["sources"])
    print()
    print("%-48s %s" % ("inferred field", "sources (any dump above)"))
    for name in sorted(seen):
        print("%-48s %s" % (name, ", ".join(sorted(seen[name]))))


if __name__ == "__main__":
    sys.exit(main())
