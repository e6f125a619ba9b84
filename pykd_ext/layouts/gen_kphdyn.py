"""Generate `structs/kphdyn/` (kernel version table) from System Informer's `kphdyn.xml`.

Why: dumps without a PDB GUID still show the kernel image's TimeDateStamp and SizeOfImage; the
XML (winsiderss/systeminformer, `kphlib/kphdyn.xml`, MIT) maps them to the exact file version.
The XML is ~1 MB with attributes the toolkit does not need; the package ships a compact,
deterministic extract instead, read by `pykd_ext.layouts.kernel_versions`:

- `kernels.tsv`: arch, version, file, timestamp, size, sha256, fields (the `<fields>` id) for the
  kernel image files (`ntoskrnl.exe`, and `ntkrla57.exe`, the 5-level-paging kernel; `lxcore.sys`
  rows are dropped: they identify the WSL driver, not the kernel);
- `fields.json`: fields id -> {name: value} for the sets those rows use;
- `LICENSE-kphdyn` (the MIT text, copied verbatim) and `README.md` (source and attribution).

Run: `python -m pykd_ext.layouts.gen_kphdyn --xml ../shared/kphdyn/kphdyn.xml --out structs/kphdyn`
(defaults as shown, relative to the repository root).  The output depends only on the input
files, so regenerating reproduces the committed files byte for byte (a test checks it).

The XML is parsed with the standard library (expat); it is pinned reference data, not
user input, and its size is capped.
"""
import argparse
import hashlib
import json
import os
import re
import sys
import xml.etree.ElementTree as ElementTree
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.layouts.kernel_versions import (
    FIELDS_NAME,
    KPHDYN_FIELD_SOURCES,
    TSV_COLUMNS,
    TSV_NAME,
    parse_version,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_XML = os.path.join(os.path.dirname(REPO), "shared", "kphdyn", "kphdyn.xml")
DEFAULT_OUT = os.path.join(REPO, "structs", "kphdyn")
DEFAULT_FILES = ("ntoskrnl.exe", "ntkrla57.exe")
LICENSE_NAME = "LICENSE-kphdyn"
README_NAME = "README.md"

MAX_XML_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{1,8}$")
_HEX16 = re.compile(r"^0x[0-9a-fA-F]{1,4}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_.\-]+$")


class KphdynFormatError(PykdExtError):
    """The XML (or its licence file) is not what the generator understands."""


Row = Tuple[str, str, str, int, int, str, str]  # arch, version, file, timestamp, size, sha, id


def _token(value: Optional[str], what: str, where: str) -> str:
    if value is None or not _TOKEN.match(value):
        raise KphdynFormatError("%s: bad or missing %s %r" % (where, what, value))
    return value


def _hex(value: Optional[str], pattern: "re.Pattern[str]", what: str, where: str) -> int:
    if value is None or not pattern.match(value.strip()):
        raise KphdynFormatError("%s: bad or missing %s %r" % (where, what, value))
    return int(value.strip(), 16)


def parse_kphdyn(xml_bytes: bytes, path: str = "kphdyn.xml"
                 ) -> Tuple[List[Row], Dict[str, Dict[str, int]]]:
    """All `<data>` rows and all `<fields>` sets of the XML, validated."""
    try:
        root = ElementTree.fromstring(xml_bytes)
    except ElementTree.ParseError as exc:
        raise KphdynFormatError("not well-formed XML: %s" % (exc,), path) from None
    if root.tag != "dyn":
        raise KphdynFormatError("root element is <%s>, expected <dyn>" % (root.tag,), path)
    rows: List[Row] = []
    sets: Dict[str, Dict[str, int]] = {}
    for index, element in enumerate(root):
        where = "%s: <%s> #%d" % (path, element.tag, index + 1)
        if index >= MAX_ROWS:
            raise KphdynFormatError("more than %d elements" % MAX_ROWS, path)
        if element.tag == "data":
            attrs = element.attrib
            arch = _token(attrs.get("arch"), "arch", where).lower()
            version = _token(attrs.get("version"), "version", where)
            try:
                parse_version(version)
            except ValueError as exc:
                raise KphdynFormatError("%s: %s" % (where, exc)) from None
            file = _token(attrs.get("file"), "file", where).lower()
            sha = attrs.get("hash")
            if sha is None or not _SHA256.match(sha):
                raise KphdynFormatError("%s: bad or missing hash %r" % (where, sha))
            timestamp = _hex(attrs.get("timestamp"), _HEX32, "timestamp", where)
            size = _hex(attrs.get("size"), _HEX32, "size", where)
            fields_id = _token((element.text or "").strip(), "fields id", where)
            rows.append((arch, version, file, timestamp, size, sha.lower(), fields_id))
        elif element.tag == "fields":
            fields_id = _token(element.get("id"), "id", where)
            if fields_id in sets:
                raise KphdynFormatError("%s: fields id %s defined twice" % (where, fields_id))
            values: Dict[str, int] = {}
            for child in element:
                if child.tag != "field":
                    raise KphdynFormatError("%s: unexpected <%s>" % (where, child.tag))
                name = _token(child.get("name"), "field name", where)
                if name in values:
                    raise KphdynFormatError("%s: field %s listed twice" % (where, name))
                values[name] = _hex(child.get("value"), _HEX16, "value of " + name, where)
            sets[fields_id] = values
        else:
            raise KphdynFormatError("%s: unexpected element" % (where,))
    for row in rows:
        if row[6] not in sets:
            raise KphdynFormatError("row %s %s %s names fields id %s, which is not defined"
                                    % (row[0], row[2], row[1], row[6]), path)
    return rows, sets


def _row_sort_key(row: Row) -> Tuple[object, ...]:
    arch, version, file, timestamp, size, sha, fields_id = row
    return arch, parse_version(version), file, timestamp, size, sha, fields_id


def select_rows(rows: Iterable[Row], files: Sequence[str]) -> List[Row]:
    """Rows of the wanted files, exact duplicates collapsed, in a stable order."""
    wanted = {name.lower() for name in files}
    return sorted({row for row in rows if row[2] in wanted}, key=_row_sort_key)


def render_tsv(rows: Sequence[Row], source_sha256: str, license_text: str) -> str:
    """The table; its comment header carries the source's licence notice, so the attribution
    travels with the data even where `LICENSE-kphdyn` is not installed beside it."""
    lines = [
        "# Kernel image versions from System Informer's kphlib/kphdyn.xml "
        "(winsiderss/systeminformer), MIT licence:",
    ]
    lines.extend(("# " + line).rstrip() for line in license_text.strip().splitlines())
    lines += [
        "# Generated by `python -m pykd_ext.layouts.gen_kphdyn`; do not edit. "
        "Source sha256 %s." % source_sha256,
        "# timestamp/size: PE TimeDateStamp/SizeOfImage; sha256: of the file; "
        "fields: id in fields.json.",
        "\t".join(TSV_COLUMNS),
    ]
    for arch, version, file, timestamp, size, sha, fields_id in rows:
        lines.append("\t".join((arch, version, file, "0x%08x" % timestamp, "0x%08x" % size,
                                sha, fields_id)))
    return "\n".join(lines) + "\n"


def _id_key(fields_id: str) -> Tuple[int, str]:
    return (int(fields_id), "") if fields_id.isdigit() else (1 << 62, fields_id)


def render_fields(sets: Dict[str, Dict[str, int]], used: Iterable[str]) -> str:
    """One JSON line per fields set, ids in numeric order, names sorted."""
    ids = sorted(set(used), key=_id_key)
    body = ",\n".join(
        "%s: %s" % (json.dumps(fields_id),
                    json.dumps(sets[fields_id], sort_keys=True, separators=(",", ":")))
        for fields_id in ids)
    return "{\n" + body + "\n}\n"


def render_readme(rows: Sequence[Row], sets_used: int, source_sha256: str,
                  files: Sequence[str]) -> str:
    counts: Dict[Tuple[str, str], int] = {}
    for row in rows:
        counts[(row[0], row[2])] = counts.get((row[0], row[2]), 0) + 1
    builds = sorted({parse_version(row[1])[2] for row in rows})
    lines = [
        "# kphdyn: exact kernel version from TimeDateStamp + SizeOfImage",
        "",
        "Source: System Informer (winsiderss/systeminformer), `kphlib/kphdyn.xml`, "
        "MIT licence (`LICENSE-kphdyn`,",
        "Copyright (c) 2022 Winsider Seminars & Solutions, Inc.). "
        "Input sha256 `%s`." % source_sha256,
        "",
        "Generated by `python -m pykd_ext.layouts.gen_kphdyn --xml ../shared/kphdyn/kphdyn.xml "
        "--out structs/kphdyn`;",
        "do not edit. Read through `pykd_ext.layouts.kernel_versions` "
        "(`lookup_kernel(timestamp, size_of_image, arch)`).",
        "",
        "- `%s`: one row per kernel file: %s. Files kept: %s."
        % (TSV_NAME, ", ".join(TSV_COLUMNS), ", ".join(files)),
        "- `%s`: fields id -> {name: value}, offsets (or bit positions) System Informer's "
        "driver uses." % FIELDS_NAME,
        "",
        "`ntkrla57.exe` is the kernel Windows boots on CPUs with 5-level paging; its fields can "
        "differ from",
        "`ntoskrnl.exe` of the same version (e.g. `ObDecodeShift`, `ObAttributesShift`).",
        "",
        "Rows: %s; %d fields sets; build numbers %d to %d."
        % ("; ".join("%s %s %d" % (arch, file, count)
                     for (arch, file), count in sorted(counts.items())),
           sets_used, builds[0] if builds else 0, builds[-1] if builds else 0),
        "",
        "What each field is (from the comments of `kphlib/include/kphdyn.h`):",
        "",
        "| kphdyn name | PDB member | value |",
        "|---|---|---|",
    ]
    for name in sorted(KPHDYN_FIELD_SOURCES):
        source = KPHDYN_FIELD_SOURCES[name]
        lines.append("| %s | `%s.%s` | %s |" % (
            name, source.type_name, source.path,
            "bit position" if source.kind == "bit_position" else "byte offset"))
    return "\n".join(lines) + "\n"


def _read_capped(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_XML_BYTES + 1)
    except OSError as exc:
        raise KphdynFormatError("cannot read: %s" % (exc.strerror or exc,), path) from None
    if len(data) > MAX_XML_BYTES:
        raise KphdynFormatError("larger than %d bytes" % MAX_XML_BYTES, path)
    return data


def generate(xml_path: str, license_path: Optional[str] = None,
             files: Sequence[str] = DEFAULT_FILES) -> Dict[str, bytes]:
    """File name -> content of the generated folder (nothing is written)."""
    xml_bytes = _read_capped(xml_path)
    if license_path is None:
        license_path = os.path.join(os.path.dirname(os.path.abspath(xml_path)), "LICENSE")
    license_bytes = _read_capped(license_path)
    try:
        license_text = license_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise KphdynFormatError("licence text is not UTF-8", license_path) from None
    if "MIT License" not in license_text:
        raise KphdynFormatError("not the MIT licence text of the XML", license_path)
    source_sha256 = hashlib.sha256(xml_bytes).hexdigest()
    rows, sets = parse_kphdyn(xml_bytes, xml_path)
    kept = select_rows(rows, files)
    if not kept:
        raise KphdynFormatError("no rows for files %s" % ", ".join(files), xml_path)
    used = {row[6] for row in kept}
    return {
        TSV_NAME: render_tsv(kept, source_sha256, license_text).encode("utf-8"),
        FIELDS_NAME: render_fields(sets, used).encode("utf-8"),
        LICENSE_NAME: license_bytes,
        README_NAME: render_readme(kept, len(used), source_sha256, files).encode("utf-8"),
    }


def write_outputs(outputs: Dict[str, bytes], out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(outputs):
        target = os.path.join(out_dir, name)
        temp = target + ".tmp"
        with open(temp, "wb") as handle:
            handle.write(outputs[name])
        os.replace(temp, target)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pykd_ext.layouts.gen_kphdyn",
        description="Extract the kernel version table from System Informer's kphdyn.xml.")
    parser.add_argument("--xml", default=DEFAULT_XML, help="kphdyn.xml (default: %(default)s)")
    parser.add_argument("--license", default=None,
                        help="its MIT licence text (default: LICENSE beside the XML)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--files", default=",".join(DEFAULT_FILES),
                        help="comma-separated image names to keep (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the folder instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    files = [name.strip() for name in args.files.split(",") if name.strip()]
    try:
        outputs = generate(args.xml, args.license, files)
    except PykdExtError as exc:
        print("gen_kphdyn: %s" % exc.one_line(), file=sys.stderr)
        return 2
    if args.check:
        stale = []
        for name in sorted(outputs):
            try:
                with open(os.path.join(args.out, name), "rb") as handle:
                    current: Optional[bytes] = handle.read()
            except OSError:
                current = None
            if current != outputs[name]:
                stale.append(name)
        if stale:
            print("gen_kphdyn: out of date in %s: %s" % (args.out, ", ".join(stale)),
                  file=sys.stderr)
            return 1
        return 0
    write_outputs(outputs, args.out)
    print("gen_kphdyn: wrote %s (%s)" % (args.out, ", ".join(sorted(outputs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
