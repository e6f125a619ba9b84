"""Live-VM pieces that need no QEMU: the parsers of QEMU's HMP text (pinned on output captured
from QEMU 7.2, Debian 12), target strings, a QMP socket that misbehaves, page placement, and a
`live:` file that changes size.

Expected values come from QEMU's documented machine layouts, not from our parser:
- q35 (hw/i386/pc_q35.c): with 0xB0000000 bytes of RAM or more, 2 GiB (0x80000000) stay below
  the PCI hole and the rest starts at 4 GiB; the region 0xC0000-0xFFFFF is ROM (pc.rom, pc.bios);
- pc/i440fx (hw/i386/pc_piix.c): with 0xE0000000 bytes or more, 3 GiB (0xC0000000) stay low;
  0xA0000-0xBFFFF is the VGA window;
- a memory-backend's region is named after the backend's id, offsets are file offsets;
- x86 reset state (Intel SDM vol. 3, 9.1.1 "Processor State After Reset"): CR0 = 0x60000010,
  CR3 = 0, EIP = 0xFFF0, no paging.
"""
import os

import pytest

from pykd_ext.errors import TargetError
from pykd_ext.live.locator import parse_size, split_locator, with_pause
from pykd_ext.live.mtree import parse_flat_view, ram_ranges, ram_regions
from pykd_ext.live.qemu import kernel_vcpu
from pykd_ext.live.registers import parse_registers

from livehelp import DATA, GIB


def _triples(ranges):
    return [(r.start, r.size, r.offset) for r in ranges]


def test_q35_5g_sample_ram_layout():
    view = parse_flat_view((DATA / "mtree-q35-5G-qemu7.2.txt").read_text())
    assert ram_regions(view) == ["qemu-ram"]
    ram = ram_ranges(view)
    assert _triples(ram) == [(0, 0xC0000, 0),
                             (0x100000, 0x80000000 - 0x100000, 0x100000),
                             (4 * GIB, 3 * GIB, 0x80000000)]
    assert sum(r.size for r in ram) + 0x40000 == 5 * GIB          # all but the ROM shadows
    roms = [(r.start, r.end) for r in view if r.kind == "rom" and r.start < 0x100000]
    assert roms == [(0xC0000, 0xE0000), (0xE0000, 0x100000)]


def test_pc_4g_vga_sample_uses_the_cpu_view_not_smm():
    text = (DATA / "mtree-pc-4G-vga-qemu7.2.txt").read_text()
    ram = ram_ranges(parse_flat_view(text), "pc.ram")
    assert _triples(ram) == [(0, 0xA0000, 0),
                             (0x100000, 0xC0000000 - 0x100000, 0x100000),
                             (4 * GIB, 1 * GIB, 0xC0000000)]
    # the views of the SMM address spaces come first in this output; altering them changes nothing
    first_view, rest = text.split("FlatView #2", 1)
    altered = first_view.replace("pc.ram @0000000000100000", "pc.ram @0000000000200000")
    assert _triples(ram_ranges(parse_flat_view(altered + "FlatView #2" + rest))) == _triples(ram)


def test_older_heading_form():
    text = ("address-space (flat view): memory\n"
            "  0000000000000000-000000000009ffff (prio 0, ram): pc.ram\n"
            "  0000000000100000-0000000007ffffff (prio 0, ram): pc.ram @0000000000100000\n"
            "\naddress-space (flat view): I/O\n"
            "  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan\n")
    assert _triples(ram_ranges(parse_flat_view(text))) == [(0, 0xA0000, 0),
                                                           (0x100000, 0x7F00000, 0x100000)]


@pytest.mark.parametrize("text, what", [
    ("FlatView #0\n AS \"I/O\", root: io\n  0000000000000000-0000000000000007 (prio 0, i/o): dma\n",
     "no flat view"),
    ("FlatView #0\n AS \"memory\", root: system\n"
     "  0000000000000000-000000000009ffff (prio 0, ram): node0\n"
     "  0000000000100000-0000000007ffffff (prio 0, ram): node1\n", "several regions"),
    ("FlatView #0\n AS \"memory\", root: system\n"
     "  0000000000000000-00000000000007ff (prio 0, ram): qemu-ram\n", "not page-aligned"),
    ("FlatView #0\n AS \"memory\", root: system\n"
     "  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic\n", "no RAM"),
])
def test_mtree_refuses_what_it_cannot_map(text, what):
    with pytest.raises(TargetError, match=what):
        ram_ranges(parse_flat_view(text))


def test_registers_sample_is_the_reset_state():
    cpus = parse_registers((DATA / "registers-a-2cpu-reset-qemu7.2.txt").read_text())
    assert [cpu.index for cpu in cpus] == [0, 1]
    for cpu in cpus:
        assert cpu.values["CR0"] == 0x60000010 and cpu.cr3 == 0 and cpu.pc == 0xFFF0
        assert not cpu.paging and not cpu.long_mode
    assert kernel_vcpu(cpus) is None          # nothing there names page tables


def test_registers_sample_of_a_vcpu_put_in_long_mode():
    # captured from QEMU 7.2 after the gdbstub wrote CR4.PAE, CR3=0x100000, EFER.LME, CR0.PG|PE
    # (tests/live/test_qemu_target.py does the same live): QEMU sets EFER.LMA (bit 10) itself
    cpus = parse_registers((DATA / "registers-a-longmode-cr3-0x100000-qemu7.2.txt").read_text())
    first = cpus[0]
    assert (first.cr3, first.values["CR0"], first.values["CR4"]) == (0x100000, 0x80000011, 0x20)
    assert first.values["EFER"] & 0x500 == 0x500 and first.paging and first.long_mode
    assert kernel_vcpu(cpus) is first


def test_registers_long_mode_lines():
    # The shape of x86_cpu_dump_state in long mode (target/i386/cpu-dump.c): 16-digit values,
    # RIP, CPL on the flags line, CR0..CR4 on one line, EFER alone.
    text = ("CPU#0\nRAX=0000000000000000 RBX=0000000000000000\n"
            "RIP=fffff8047bdfa7a0 RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0\n"
            "CR0=80050033 CR2=0000000000000000 CR3=0000000012345002 CR4=00350ef8\n"
            "EFER=0000000000000d01\n"
            "CPU#1\nRIP=fffff8047bdfa7a0 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n"
            "CR0=80050033 CR2=0000000000000000 CR3=00000000001ad000 CR4=00350ef8\n"
            "EFER=0000000000000d01\n")
    cpus = parse_registers(text)
    assert [(c.index, c.cr3, c.pc, c.values["CPL"]) for c in cpus] == [
        (0, 0x12345002, 0xFFFFF8047BDFA7A0, 3), (1, 0x1AD000, 0xFFFFF8047BDFA7A0, 0)]
    assert all(c.paging and c.long_mode and not c.five_level for c in cpus)
    assert kernel_vcpu(cpus).index == 1        # kernel mode first (user CR3 may be KVA shadow)


def test_locator_options():
    assert split_locator("/run/vm.qmp?ram=/dev/shm/x&pause", ("ram", "pause")) == (
        "/run/vm.qmp", {"ram": "/dev/shm/x", "pause": ""})
    assert split_locator("/odd?name/file", ("ram",)) == ("/odd?name/file", {})
    with pytest.raises(TargetError, match="unknown option 'bogus'"):
        split_locator("/run/vm.qmp?bogus=1", ("ram",))
    assert parse_size("2G", "x") == 2 * GIB and parse_size("0x80000000", "x") == 2 * GIB
    assert with_pause("qemu:/run/vm.qmp") == "qemu:/run/vm.qmp?pause"
    assert with_pause("qemu:/run/vm.qmp?ram=/x") == "qemu:/run/vm.qmp?ram=/x&pause"
    assert with_pause("qemu:/run/vm.qmp?pause") == "qemu:/run/vm.qmp?pause"
    assert with_pause("MEMORY.DMP") == "MEMORY.DMP"


def test_qmp_socket_that_never_greets_or_talks_nonsense(tmp_path):
    import socket
    import threading

    from pykd_ext.cli import run_command
    path = str(tmp_path / "fake.qmp")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    try:
        # held by someone else (never accepted): bounded by the timeout, one line, exit 2
        assert run_command(["ps", "--target", "qemu:%s?timeout=0.3" % path]) == 2
    finally:
        server.close()
    os.unlink(path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    try:
        def nonsense() -> None:
            peer, _ = server.accept()
            peer.sendall(b"this is not QMP\n")
            peer.close()
        helper = threading.Thread(target=nonsense)
        helper.start()
        with pytest.raises(TargetError, match="not JSON"):
            from pykd_ext.live.qmp import QmpClient
            QmpClient(path, timeout=2)
        helper.join()
    finally:
        server.close()


def test_forged_pages_are_placed_by_the_memory_map(tmp_path):
    """`lab vm` writes page P at the file offset of its segment; a page in the PCI hole of q35
    (2-4 GiB with 5 GiB of RAM) cannot be placed."""
    from pykd_ext.forge.physmem import PhysicalImage
    from pykd_ext.live.labvm import place_pages
    segments = [(0, 0, 0xC0000), (0x100000, 0x100000, 0x7FF00000), (4 * GIB, 0x80000000, 3 * GIB)]
    phys = PhysicalImage()
    phys.write(0x5000, b"low")
    phys.write(4 * GIB + 0x3000, b"high")
    path = tmp_path / "guest.ram"
    with open(path, "wb") as handle:
        handle.truncate(5 * GIB)
    fd = os.open(str(path), os.O_RDWR)
    try:
        assert place_pages(fd, phys, segments) == 2
        assert os.pread(fd, 3, 0x5000) == b"low" and os.pread(fd, 4, 0x80003000) == b"high"
        hole = PhysicalImage()
        hole.write(0x80000000, b"x")
        with pytest.raises(TargetError, match="not guest RAM"):
            place_pages(fd, hole, segments)
    finally:
        os.close(fd)


def test_live_file_that_grows_and_shrinks_under_us(tmp_path):
    """`live:` reads with pread: a file truncated under us gives typed faults (never SIGBUS),
    and `refresh()` follows the new size."""
    from pykd_ext.errors import MemoryReadError
    from pykd_ext.targets.opener import open_target
    path = tmp_path / "guest.vmem"
    path.write_bytes(b"\x11" * 0x4000)
    with open_target("live:%s" % path) as target:
        assert target.physical.ranges() == [(0, 0x4000)]
        with open(path, "ab") as handle:
            handle.write(b"\x22" * 0x2000)
        target.refresh()
        assert target.physical.ranges() == [(0, 0x6000)]
        assert target.physical.read(0x5FF0, 0x10) == b"\x22" * 0x10
        os.truncate(str(path), 0x1800)                     # shrinks before any refresh
        with pytest.raises(MemoryReadError) as err:
            target.physical.read(0x1000, 0x2000)
        assert err.value.readable == 0x800                 # the bytes that are still there
        assert target.physical.page(3) is None
        target.refresh()
        assert target.physical.ranges() == [(0, 0x1000)]   # whole pages only


def test_lab_vm_without_qemu_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from pykd_ext.cli import run_command
    folder = tmp_path / "lab"
    assert run_command(["lab", "vm", "--qemu", str(tmp_path / "no-qemu"), "--dir", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot start QEMU" in err, err
    assert not folder.exists()


def test_global_pause_option_reaches_the_qemu_target(monkeypatch):
    """`--pause` (global) opens `qemu:SOCK` as `qemu:SOCK?pause`; other targets are unchanged."""
    import io as _io
    from pykd_ext.cli import run_command
    from pykd_ext.errors import TargetError
    from pykd_ext.targets import opener
    opened = []

    def fake_open(path):
        opened.append(path)
        raise TargetError("stop here")

    monkeypatch.setattr(opener, "open_target", fake_open)
    assert run_command(["info", "--pause", "--target", "qemu:/run/vm.qmp"], out=_io.StringIO()) == 2
    assert run_command(["info", "--target", "live:/tmp/x.raw", "--pause"], out=_io.StringIO()) == 2
    assert opened == ["qemu:/run/vm.qmp?pause", "live:/tmp/x.raw"]
