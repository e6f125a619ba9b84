"""`--target qemu:SOCKET` on a real QEMU (loopback Unix socket), guests paused or running.

Independent sources: QEMU's own reads of guest-physical memory (HMP `xp`, which translates through
QEMU's memory map, not ours), the forge's planted facts (processes, PIDs, physical addresses), and
a guest whose firmware really runs and writes RAM.
"""
import io
import json
import os
import random
import subprocess
import sys
import time

import pytest

from livehelp import COUNTER, GIB, xp_bytes  # noqa: I100 (tests/live on sys.path)
from pykd_ext.cli import run_command
from pykd_ext.errors import MemoryReadError, TargetError
from pykd_ext.live.mtree import parse_flat_view, ram_ranges
from pykd_ext.live.qemu import open_qemu_target
from pykd_ext.live.qmp import QmpClient
from pykd_ext.targets.opener import open_description, open_target


def _file_offset(segments, address):
    for start, offset, size in segments:
        if start <= address < start + size:
            return offset + address - start
    raise AssertionError("0x%x is not guest RAM" % address)


def test_mtree_of_the_lab_guest_is_q35_with_5g(lab_vm):
    # q35 with >= 0xB0000000 bytes keeps 2 GiB low and puts the rest at 4 GiB (hw/i386/pc_q35.c)
    with QmpClient(lab_vm.socket) as qmp:
        ram = ram_ranges(parse_flat_view(qmp.hmp("info mtree -f")), "qemu-ram")
    assert [(r.start, r.size, r.offset) for r in ram] == [
        (0, 0xC0000, 0), (0x100000, 0x7FF00000, 0x100000), (4 * GIB, 3 * GIB, 0x80000000)]
    assert lab_vm.segments == [(r.start, r.offset, r.size) for r in ram]


def test_reads_equal_qemus_own_xp(lab_vm, lab_facts):
    rng = random.Random(14)
    high = [4 * GIB + rng.randrange(3 * GIB >> 12) * 4096 + rng.randrange(0, 4080, 8)
            for _ in range(12)]
    planted = [p["physical"] for p in lab_facts["processes"]][:10]
    low = [rng.randrange(0x100000, 0x10000000, 8) for _ in range(8)]
    # test set-up writes random bytes above 4 GiB (and restores zeros after)
    with open(lab_vm.ram, "r+b") as ram:
        for address in high:
            ram.seek(_file_offset(lab_vm.segments, address))
            ram.write(rng.randbytes(16) if hasattr(rng, "randbytes") else os.urandom(16))
        ram.flush()
        try:
            with open_qemu_target(lab_vm.socket) as target, QmpClient(lab_vm.socket) as qmp:
                for address in high + planted + low:
                    assert target.physical.read(address, 16) == xp_bytes(qmp, address, 2), hex(address)
                assert any(target.physical.read(a, 16) != bytes(16) for a in high)
                assert any(target.physical.read(a, 16) != bytes(16) for a in planted)
                # ROM shadow (QEMU reads pc.rom there) and the hole below 4 GiB: not RAM for us
                for address in (0xC0000, 0xF0000, 0x80000000, 0xFEC00000):
                    with pytest.raises(MemoryReadError):
                        target.physical.read(address, 8)
        finally:
            for address in high:
                ram.seek(_file_offset(lab_vm.segments, address))
                ram.write(bytes(16))


def test_ps_through_the_cli_lists_the_forged_processes(lab_vm, lab_facts):
    out = io.StringIO()
    assert run_command(["ps", "--target", lab_vm.target, "-f", "jsonl", "-q"], out) == 0
    seen = [(r["pid"], r["name"], int(r["address"], 16))
            for r in map(json.loads, out.getvalue().splitlines())]
    linked = [(p["pid"], p["name"], p["address"]) for p in lab_facts["processes"] if p["linked"]]
    assert seen == linked
    assert 6660 not in [pid for pid, _, _ in seen]         # the DKOM-unlinked rootkit.exe


def test_info_names_the_ram_file_and_vcpus(lab_vm):
    with open_target(lab_vm.target) as target:
        info = target.info()
        assert info.container == "qemu" and info.extra["ram_file"] == lab_vm.ram
        assert info.extra["backend_mem_path"] == lab_vm.ram and info.extra["backend_share"] is True
        from pykd_ext.forge.make_dump import scenario_named
        processors = scenario_named("standard").processors        # -smp of the lab VM
        assert info.processors == len(info.extra["vcpus"]) == processors
        assert info.extra["paging_source"] == "x64 processor start block"
        assert target.live and target.describe().kind == "qemu"
        with open_description(target.describe()) as again:
            assert again.info().extra["ram_segments"] == info.extra["ram_segments"]
        # a memory map that changed since open (firmware remapping, a DIMM hot-plugged) is
        # taken on refresh: the source is rebuilt, the kernel read through the new map
        kernel_base = info.kernel_base
        target._segments = [(0, 0, 0x1000)]
        target.refresh()
        assert target.physical.ranges() == [(0, 0xC0000), (0x100000, 0x7FF00000),
                                            (4 * GIB, 3 * GIB)]
        assert target.info().kernel_base == kernel_base
        assert target.kernel.read(kernel_base, 2) == b"MZ"


def test_a_second_process_edits_ram_and_refresh_shows_it(lab_vm, lab_facts):
    import pykd_ext as pk
    notepad = next(p for p in lab_facts["processes"] if p["name"] == "notepad.exe")
    offset = _file_offset(lab_vm.segments, notepad["physical"])
    with open(lab_vm.ram, "rb") as ram:
        ram.seek(offset)
        body = ram.read(0x1000)
    name_at = offset + body.index(b"notepad.exe\0")
    edit = ("import sys\nwith open(sys.argv[1], 'r+b') as f:\n"
            "    f.seek(int(sys.argv[2])); f.write(sys.argv[3].encode())\n")
    dump = pk.open(lab_vm.target)
    try:
        before = dump.process(notepad["pid"])
        assert before.name == "notepad.exe"
        subprocess.run([sys.executable, "-c", edit, lab_vm.ram, str(name_at), "wordpad.exe"],
                       check=True)
        dump.session.target.refresh()
        fresh = pk.open(lab_vm.target)          # an independent reader agrees
        try:
            assert fresh.process(notepad["pid"]).name == "wordpad.exe"
        finally:
            fresh.close()
        # the same target after refresh(): the kernel VA of the name reads the new bytes
        # (decoded objects of the old context stay as decoded: `watch` builds a new context)
        va = notepad["address"] + name_at - offset
        assert dump.session.target.kernel.read(va, 12) == b"wordpad.exe\0"
    finally:
        subprocess.run([sys.executable, "-c", edit, lab_vm.ram, str(name_at), "notepad.exe"],
                       check=True)
        dump.close()


def test_live_file_with_the_q35_split(lab_vm, lab_facts):
    # the same RAM file without QMP: lowmem=2G says where q35 split it
    with open_target("live:%s?lowmem=2G" % lab_vm.ram) as target, \
            QmpClient(lab_vm.socket) as qmp:
        address = 5 * GIB + 0x1238
        with open(lab_vm.ram, "r+b") as ram:
            ram.seek(_file_offset(lab_vm.segments, address))
            ram.write(b"live-file-marker")
            ram.flush()
            try:
                target.refresh()
                assert target.physical.read(address, 16) == xp_bytes(qmp, address, 2) \
                    == b"live-file-marker"
            finally:
                ram.seek(_file_offset(lab_vm.segments, address))
                ram.write(bytes(16))
                ram.flush()
        target.refresh()
        assert target.physical.read(address, 16) == bytes(16)
        assert target.info().extra["paging_source"] == "x64 processor start block"
        # a batch worker re-opens it from its description, split included
        with open_description(target.describe()) as again:
            assert again.physical.ranges() == target.physical.ranges() == [
                (0, 2 * GIB), (4 * GIB, 3 * GIB)]
    out = io.StringIO()
    assert run_command(["ps", "--target", "live:%s?lowmem=2G" % lab_vm.ram, "-f", "jsonl"], out) == 0
    assert [json.loads(line)["pid"] for line in out.getvalue().splitlines()] == \
        [p["pid"] for p in lab_facts["processes"] if p["linked"]]


def _counter(target):
    return int.from_bytes(target.physical.read(COUNTER, 2), "little")


def test_a_running_guest_writes_are_seen_and_pause_freezes_them(running_guest):
    target = open_target("qemu:%s" % running_guest.socket)
    try:
        seen = {_counter(target)}
        for _ in range(20):
            time.sleep(0.01)
            target.refresh()
            seen.add(_counter(target))
        assert len(seen) > 3                     # the firmware's loop keeps writing
        # vCPU registers as of the last refresh: inside the loop (the inc at 0xFFF4, the jmp at
        # 0xFFF8 of the reset code), no paging, so no DTB
        vcpu = target.info().extra["vcpus"][0]
        assert vcpu["eip"] in (0xFFF4, 0xFFF8) and vcpu["cr3"] == 0 and target.dtb is None
        with QmpClient(running_guest.socket) as qmp:
            assert qmp.running()
    finally:
        target.close()
    paused = open_target("qemu:%s?pause" % running_guest.socket)
    try:
        with QmpClient(running_guest.socket) as qmp:      # (one QMP client at a time)
            assert not qmp.running()
        frozen = _counter(paused)
        time.sleep(0.05)
        paused.refresh()
        with QmpClient(running_guest.socket) as qmp:
            assert _counter(paused) == frozen == int.from_bytes(xp_bytes(qmp, COUNTER, 1)[:2], "little")
    finally:
        paused.close()
    with QmpClient(running_guest.socket) as qmp:
        assert qmp.running()                     # let go when the command ended


def test_pause_keeps_a_guest_stopped_by_someone_else_stopped(running_guest):
    with QmpClient(running_guest.socket) as qmp:
        qmp.execute("stop")
    with open_qemu_target(running_guest.socket, pause=True):
        pass
    with QmpClient(running_guest.socket) as qmp:
        assert not qmp.running()


def test_lab_vm_command_starts_and_stops_by_pid(tmp_path):
    folder = str(tmp_path / "cli-lab")
    out = io.StringIO()
    assert run_command(["lab", "vm", "standard", "--dir", folder, "-f", "json"], out) == 0
    record = json.loads(out.getvalue())["records"][0]
    try:
        assert record["action"] == "started" and record["target"].startswith("qemu:")
        with open("/proc/%d/cmdline" % record["pid"], "rb") as handle:
            assert b"qemu-system-x86_64" in handle.read()
        again = io.StringIO()
        assert run_command(["ps", "--target", record["target"], "-f", "jsonl"], again) == 0
        assert json.loads(again.getvalue().splitlines()[0])["name"] == "System"
    finally:
        stopped = io.StringIO()
        assert run_command(["lab", "vm", "--stop", "--dir", folder, "-f", "json"], stopped) == 0
    assert json.loads(stopped.getvalue())["records"][0]["pid"] == record["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(record["pid"], 0)
    assert not os.path.exists(folder)


@pytest.mark.parametrize("target, what", [
    ("qemu:/nonexistent/vm.qmp", "cannot talk to QMP"),
    ("qemu:/nonexistent/vm.qmp?bogus=1", "unknown option"),
    ("live:/nonexistent/guest.ram", "cannot open"),
])
def test_bad_live_targets_are_one_line(target, what, capsys):
    assert run_command(["ps", "--target", target]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err, err


def test_qmp_socket_without_a_file_backend(tmp_path):
    with pytest.raises(TargetError):
        open_qemu_target(str(tmp_path / "absent.sock"), timeout=1)


def test_kernel_dtb_from_a_vcpu_cr3_when_low_memory_has_no_start_block(tmp_path):
    """A guest whose processor start block is gone: the DTB comes from vCPU 0's CR3, which the
    test puts in 64-bit mode through QEMU's gdbstub (CR4.PAE, CR3, EFER.LME, CR0.PG|PE: Intel
    SDM vol. 3, 10.8.5 "Initializing IA-32e Mode"); QEMU itself sets EFER.LMA."""
    from livehelp import GdbStub
    from pykd_ext.live.labvm import start_lab_vm, stop_lab_vm
    from pykd_ext.live.registers import parse_registers
    vm = start_lab_vm("standard", folder=str(tmp_path / "vm"))
    try:
        with open(os.path.join(vm.folder, "facts.json"), encoding="utf-8") as handle:
            facts = json.load(handle)
        with QmpClient(vm.socket) as qmp:
            stub = GdbStub(qmp)
            try:
                for name, value in (("cr4", 0x20), ("cr3", facts["dtb"]), ("efer", 0x100),
                                    ("cr0", 0x80000011)):
                    stub.set_register(name, value)
            finally:
                stub.close()
            cpus = parse_registers(qmp.hmp("info registers -a"))      # real long-mode output
        assert cpus[0].cr3 == facts["dtb"] and cpus[0].long_mode and cpus[0].paging
        assert cpus[0].values["EFER"] & 0x400                          # LMA, set by QEMU
        with open(vm.ram, "r+b") as ram:                                # no start block below 1 MiB
            for page in range(1, 0x100):
                ram.seek(page << 12)
                if ram.read(8)[:1] == b"\xE9":
                    ram.seek(page << 12)
                    ram.write(bytes(0x1000))
        with open_target(vm.target) as target:
            info = target.info()
            assert target.dtb == facts["dtb"] and info.extra["paging_source_vcpu"] == 0
            assert "low_stub" not in info.extra
        out = io.StringIO()
        assert run_command(["ps", "--target", vm.target, "-f", "jsonl"], out) == 0
        assert [json.loads(line)["pid"] for line in out.getvalue().splitlines()] == \
            [p["pid"] for p in facts["processes"] if p["linked"]]
    finally:
        stop_lab_vm(vm=vm)
