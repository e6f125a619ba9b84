"""The opener registry: openers are objects that say how they recognise a file.

Expected values: the files the test writes (their first bytes and names) and the openers it
registers itself; the built-in readers are identified by the container each file states.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "memory"))
import dumpbuild as b  # noqa: E402

from pykd_ext.errors import DumpFormatError, TargetError  # noqa: E402
from pykd_ext.memory.filephysical import FlatPhysicalMemory  # noqa: E402
from pykd_ext.targets import opener as registry  # noqa: E402
from pykd_ext.targets.base import TargetDescription  # noqa: E402
from pykd_ext.targets.opener import (OPENERS, Opener, open_description, open_target,  # noqa: E402
                                     opener_for, register_opener, unregister_opener)
from pykd_ext.targets.paged import PagedTarget  # noqa: E402
from pykd_ext.targets.rawimage import RawImageTarget  # noqa: E402


def test_recognition_needs_every_declared_criterion() -> None:
    both = Opener("both", open_target, magic=(b"ABCD",), extensions=(".vm",))
    assert both.recognises(b"ABCDxxxx", "/a/b.VM")
    assert not both.recognises(b"ABCDxxxx", "/a/b.raw")
    assert not both.recognises(b"ABCExxxx", "/a/b.vm")
    probe = Opener("probe", open_target, probe=lambda head, path: head[4:6] == b"OK")
    assert probe.recognises(b"....OK..", "x") and not probe.recognises(b"....NO..", "x")
    assert not Opener("nothing", open_target).recognises(b"ABCD", "x.raw")


def test_built_in_openers_claim_their_files(tmp_path: Path) -> None:
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    phys.add(0x500, b"MZ")
    pt.map_4k(0xFFFFF80000000000, 0x500 << 12)
    files = {
        "kernel crash dump": ("full.raw", b.full_dump_bytes(phys, pt.dtb)),   # magic beats name
        "raw physical image (flat or LiME)": ("mem.vmem", b.raw_image_bytes(phys, 0x600)),
        "user-mode minidump": ("user.dmp", b"MDMP" + bytes(60)),
        "legacy user-mode dump": ("user2.dmp", b"USERDU64" + bytes(60)),
    }
    for name, (file_name, data) in files.items():
        path = tmp_path / file_name
        path.write_bytes(data)
        found = opener_for(data[:registry.HEAD_SIZE], str(path))
        assert found is not None and found.name == name
    with open_target(str(tmp_path / "full.raw")) as target:
        assert target.info().container == "PAGEDU64"
    with open_target(str(tmp_path / "mem.vmem")) as target:
        assert target.info().container == "raw"
    unknown = tmp_path / "mystery.dat"
    unknown.write_bytes(b"NOTADUMP" + bytes(0x2000))
    with pytest.raises(DumpFormatError) as err:
        open_target(str(unknown))
    assert "not a Windows dump" in str(err.value)
    assert all(ext in str(err.value) for ext in registry.RAW_EXTENSIONS)
    assert err.value.path == str(unknown)


def test_a_registered_opener_comes_first_and_can_leave(tmp_path: Path) -> None:
    """A format the package does not know (here: a VM's RAM file behind an 8-byte magic) plugs
    in as an object; its target is an ordinary paged target over a buffer."""
    magic = b"VMRAM001"
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    phys.add(0x500, b"MZ-planted")
    pt.map_4k(0xFFFFF80000001000, 0x500 << 12)
    phys.add(0x10, b.low_stub_page(pt.dtb, 0xFFFFF80000001000))
    path = tmp_path / "guest.raw"                        # a raw-image name: ours must win
    path.write_bytes(magic + bytes(0x1000 - len(magic)) + b.raw_image_bytes(phys, 0x600))
    opened = []

    def open_vm_ram(file_name: str) -> RawImageTarget:
        data = memoryview(bytearray(Path(file_name).read_bytes()))
        opened.append(file_name)
        return RawImageTarget(FlatPhysicalMemory(data, data_offset=0x1000),
                              TargetDescription("vmram", file_name), file_name, "vmram")

    vm = Opener("VM RAM file", open_vm_ram, magic=(magic,))
    register_opener(vm)
    try:
        assert OPENERS[0] is vm
        with open_target(str(path)) as target:
            assert isinstance(target, PagedTarget) and opened == [str(path)]
            assert target.info().directory_table_base == pt.dtb
            assert target.kernel.read(0xFFFFF80000001000, 10) == b"MZ-planted"
            assert target.describe() == TargetDescription("vmram", str(path))
        with pytest.raises(TargetError):
            open_description(TargetDescription("vmram", str(path)))
    finally:
        unregister_opener(vm)
    assert vm not in OPENERS
    with open_target(str(path)) as target:                # back to the raw-image reader
        assert target.info().container == "raw" and opened == [str(path)]


def test_errors_of_an_opener_carry_the_path(tmp_path: Path) -> None:
    def refuse(file_name: str) -> PagedTarget:
        raise TargetError("refused")

    picky = Opener("picky", refuse, extensions=(".picky",))
    register_opener(picky, first=False)
    try:
        path = tmp_path / "x.picky"
        path.write_bytes(b"anything")
        with pytest.raises(TargetError) as err:
            open_target(str(path))
        assert err.value.path == str(path) and "refused" in str(err.value)
    finally:
        unregister_opener(picky)
    with pytest.raises(TargetError) as err:
        open_target(str(tmp_path / "missing.dmp"))
    assert "no such file" in str(err.value)
