"""Real QEMU on loopback: guests started paused (`-S`, TCG) on forged memory, stopped by PID.

Debian's `qemu-system-x86` must be installed (.ci/run installs it); without it these tests fail,
they do not skip. Every QEMU started here is stopped by its PID in the fixture's teardown.
"""
import json
import os
import subprocess
import time
from typing import Iterator, List

import pytest

from livehelp import GIB, counting_bios, qemu_binary  # noqa: I100 (tests/live on sys.path)
from pykd_ext.live.labvm import LabVm, start_lab_vm, stop_lab_vm


@pytest.fixture(scope="session")
def lab_vm(tmp_path_factory) -> Iterator[LabVm]:
    """The forge's standard scenario in a paused 5 GiB q35 guest (a sparse RAM file: RAM above
    4 GiB exists, TCG paused costs no host memory)."""
    qemu_binary()
    vm = start_lab_vm("standard", memory=5 * GIB, folder=str(tmp_path_factory.mktemp("lab") / "vm"))
    try:
        yield vm
    finally:
        stop_lab_vm(vm=vm)


@pytest.fixture(scope="session")
def lab_facts(lab_vm) -> dict:
    with open(os.path.join(lab_vm.folder, "facts.json"), encoding="utf-8") as handle:
        return json.load(handle)


class RunningGuest:
    def __init__(self, process: subprocess.Popen, socket: str, ram: str) -> None:
        self.process, self.socket, self.ram = process, socket, ram


@pytest.fixture
def running_guest(tmp_path) -> Iterator[RunningGuest]:
    """A q35 guest that runs the counting firmware on a 64 MiB shared RAM file."""
    ram, sock, log = tmp_path / "guest.ram", str(tmp_path / "qmp.sock"), tmp_path / "qemu.log"
    with open(ram, "wb") as handle:
        handle.truncate(64 << 20)
    command: List[str] = [
        qemu_binary(), "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none",
        "-bios", counting_bios(tmp_path / "count.bin"),
        "-machine", "q35,memory-backend=qemu-ram",
        "-object", "memory-backend-file,id=qemu-ram,size=64M,mem-path=%s,share=on" % ram,
        "-m", "64M", "-qmp", "unix:%s,server=on,wait=off" % sock]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "QEMU did not open its QMP socket"
            time.sleep(0.02)
        yield RunningGuest(process, sock, str(ram))
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
