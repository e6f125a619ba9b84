"""The kphdyn generator: reproducible output, committed files current, bad input refused.

Regenerating from `../shared/kphdyn/kphdyn.xml` must give the committed `structs/kphdyn/` files
byte for byte (otherwise someone edited them by hand or forgot to regenerate).
"""
import random
import shutil
from pathlib import Path
from typing import Dict
import xml.etree.ElementTree as ElementTree

import pytest

from pykd_ext.layouts import gen_kphdyn
from pykd_ext.layouts.gen_kphdyn import KphdynFormatError, generate, main

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "structs" / "kphdyn"
GENERATED_NAMES = {"kernels.tsv", "fields.json", "LICENSE-kphdyn", "README.md"}


@pytest.fixture(scope="module")
def kphdyn_dir(shared_dir: Path) -> Path:
    return shared_dir / "kphdyn"


def test_regeneration_reproduces_the_committed_files(kphdyn_dir: Path, tmp_path: Path,
                                                     capsys) -> None:
    out = tmp_path / "kphdyn"
    assert main(["--xml", str(kphdyn_dir / "kphdyn.xml"), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == GENERATED_NAMES
    for name in sorted(GENERATED_NAMES):
        assert (out / name).read_bytes() == (COMMITTED / name).read_bytes(), name
    # The shipped folder holds the generated files and the package marker, nothing stale.
    assert {p.name for p in COMMITTED.iterdir() if p.name != "__pycache__"} == (
        GENERATED_NAMES | {"__init__.py"})
    assert main(["--xml", str(kphdyn_dir / "kphdyn.xml"), "--out", str(COMMITTED),
                 "--check"]) == 0


def test_check_mode_reports_a_stale_file(kphdyn_dir: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(str(COMMITTED), str(copy))
    with open(str(copy / "kernels.tsv"), "ab") as handle:
        handle.write(b"amd64\t10.0.1.1\tntoskrnl.exe\t0x1\t0x1\t" + b"0" * 64 + b"\t1\n")
    assert main(["--xml", str(kphdyn_dir / "kphdyn.xml"), "--out", str(copy), "--check"]) == 1
    assert "kernels.tsv" in capsys.readouterr().err


def test_licence_is_copied_verbatim(kphdyn_dir: Path) -> None:
    assert (COMMITTED / "LICENSE-kphdyn").read_bytes() == (kphdyn_dir / "LICENSE").read_bytes()
    readme = (COMMITTED / "README.md").read_text(encoding="utf-8")
    assert "winsiderss/systeminformer" in readme and "MIT" in readme
    # The notice also travels inside the table itself (package data may ship without LICENSE-*).
    header = [line[2:] for line in
              (COMMITTED / "kernels.tsv").read_text(encoding="utf-8").splitlines()
              if line.startswith("# ")]
    for line in (kphdyn_dir / "LICENSE").read_text(encoding="utf-8").splitlines():
        if line.strip():
            assert line.rstrip() in header


def _data_lines(outputs: Dict[str, bytes]) -> bytes:
    return b"\n".join(line for line in outputs["kernels.tsv"].splitlines()
                      if not line.startswith(b"#"))


def test_output_does_not_depend_on_the_xml_row_order(kphdyn_dir: Path, tmp_path: Path) -> None:
    tree = ElementTree.parse(str(kphdyn_dir / "kphdyn.xml"))
    root = tree.getroot()
    children = list(root)
    random.Random(7).shuffle(children)
    for child in list(root):
        root.remove(child)
    root.extend(children)
    shuffled = tmp_path / "kphdyn.xml"
    tree.write(str(shuffled), encoding="utf-8", xml_declaration=True)
    original = generate(str(kphdyn_dir / "kphdyn.xml"))
    reordered = generate(str(shuffled), str(kphdyn_dir / "LICENSE"))
    assert _data_lines(reordered) == _data_lines(original)
    assert reordered["fields.json"] == original["fields.json"]


def test_kept_files_and_row_order(kphdyn_dir: Path) -> None:
    rows = [line.split("\t") for line in
            (COMMITTED / "kernels.tsv").read_text(encoding="utf-8").splitlines()
            if not line.startswith("#")][1:]
    assert {row[2] for row in rows} == {"ntoskrnl.exe", "ntkrla57.exe"}
    keys = [(row[0], tuple(int(p) for p in row[1].split(".")), row[2], int(row[3], 16),
             int(row[4], 16)) for row in rows]
    assert keys == sorted(keys)


SAMPLE_LICENSE = "MIT License\n\nCopyright (c) test\n"
ROW = ('<data arch="amd64" version="10.0.1.2" file="ntoskrnl.exe" hash="%s" timestamp="0x10" '
       'size="0x2000">1</data>' % ("a" * 64))
FIELDS = '<fields id="1"><field value="0x0418" name="EpObjectTable"/></fields>'
TWICE = '<field value="0x1" name="EpObjectTable"/></fields>'


def _write_xml(folder: Path, body: str, license_text: str = SAMPLE_LICENSE) -> Path:
    (folder / "LICENSE").write_text(license_text, encoding="utf-8")
    path = folder / "kphdyn.xml"
    path.write_text(body, encoding="utf-8")
    return path


def test_a_minimal_xml_generates(tmp_path: Path) -> None:
    outputs = generate(str(_write_xml(tmp_path, "<dyn>%s%s</dyn>" % (ROW, FIELDS))))
    lines = outputs["kernels.tsv"].decode().splitlines()
    assert lines[-1] == "amd64\t10.0.1.2\tntoskrnl.exe\t0x00000010\t0x00002000\t%s\t1" % ("a" * 64)
    assert outputs["fields.json"] == b'{\n"1": {"EpObjectTable":1048}\n}\n'


@pytest.mark.parametrize("body", [
    "not xml at all",
    "<other>%s%s</other>" % (ROW, FIELDS),                              # wrong root
    "<dyn>%s</dyn>" % ROW,                                              # fields id 1 undefined
    "<dyn>%s%s%s</dyn>" % (ROW, FIELDS, FIELDS),                        # fields id defined twice
    "<dyn>%s%s</dyn>" % (ROW.replace('timestamp="0x10"', 'timestamp="16"'), FIELDS),
    "<dyn>%s%s</dyn>" % (ROW.replace('size="0x2000"', 'size="0x123456789"'), FIELDS),
    "<dyn>%s%s</dyn>" % (ROW.replace('version="10.0.1.2"', 'version="10.0.1"'), FIELDS),
    "<dyn>%s%s</dyn>" % (ROW.replace("a" * 64, "a" * 63), FIELDS),
    "<dyn>%s%s</dyn>" % (ROW.replace('file="ntoskrnl.exe"', 'file="a\tb"'), FIELDS),
    "<dyn>%s%s</dyn>" % (ROW, FIELDS.replace("0x0418", "0x10000")),     # not a USHORT
    "<dyn>%s%s</dyn>" % (ROW, FIELDS.replace("</fields>", TWICE)),      # field listed twice
    "<dyn>%s%s<extra/></dyn>" % (ROW, FIELDS),
    "<dyn>%s%s</dyn>" % (ROW.replace("ntoskrnl.exe", "lxcore.sys"), FIELDS),  # no kernel rows
])
def test_bad_xml_is_refused_with_a_typed_error(tmp_path: Path, body: str) -> None:
    with pytest.raises(KphdynFormatError):
        generate(str(_write_xml(tmp_path, body)))


def test_missing_or_wrong_licence_is_refused(tmp_path: Path) -> None:
    xml = _write_xml(tmp_path, "<dyn>%s%s</dyn>" % (ROW, FIELDS), "All rights reserved\n")
    with pytest.raises(KphdynFormatError):
        generate(str(xml))
    with pytest.raises(KphdynFormatError):
        generate(str(xml), str(tmp_path / "no-such-licence"))


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys) -> None:
    xml = _write_xml(tmp_path, "<dyn>%s</dyn>" % ROW)
    assert main(["--xml", str(xml), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gen_kphdyn: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_oversized_input_is_refused(tmp_path: Path, monkeypatch) -> None:
    xml = _write_xml(tmp_path, "<dyn>%s%s</dyn>" % (ROW, FIELDS))
    monkeypatch.setattr(gen_kphdyn, "MAX_XML_BYTES", 100)
    with pytest.raises(KphdynFormatError):
        generate(str(xml))
