"""Helpers of the live-VM tests: QEMU's own reads (`xp`), the counting firmware, constants."""
import shutil
from pathlib import Path

from pykd_ext.live.qmp import QmpClient

QEMU = "qemu-system-x86_64"
GIB = 1 << 30
DATA = Path(__file__).resolve().parent / "data"


def qemu_binary() -> str:
    found = shutil.which(QEMU)
    assert found, "%s not found: install Debian's qemu-system-x86 (.ci/run does)" % QEMU
    return found


def xp_bytes(qmp: QmpClient, address: int, qwords: int) -> bytes:
    """Guest-physical bytes as QEMU itself reads them (HMP `xp /Ngx`: lines `ADDR: 0x.. 0x..`)."""
    out = bytearray()
    for line in qmp.hmp("xp /%dgx 0x%x" % (qwords, address)).splitlines():
        if ":" not in line:
            continue
        for word in line.split(":", 1)[1].split():
            out += int(word, 16).to_bytes(8, "little")
    assert len(out) == 8 * qwords, "unexpected xp answer"
    return bytes(out)


# A firmware of 64 KiB that really runs: real mode from the reset vector (CS base 0xFFFF0000,
# IP 0xFFF0: the last 16 bytes of the BIOS image, which QEMU maps below 4 GiB), counting forever
# in guest RAM at physical 0x7000.
RESET_VECTOR_CODE = bytes([
    0x31, 0xC0,                 # xor ax, ax
    0x8E, 0xD8,                 # mov ds, ax            ; DS = 0: [0x7000] is physical 0x7000
    0xFF, 0x06, 0x00, 0x70,     # inc word [0x7000]     ; <- loop
    0xEB, 0xFA,                 # jmp short loop        ; -6: back to the inc
])
COUNTER = 0x7000


def counting_bios(path: Path) -> str:
    image = bytearray(b"\xF4" * 0x10000)                 # hlt everywhere else
    image[0xFFF0:0xFFF0 + len(RESET_VECTOR_CODE)] = RESET_VECTOR_CODE
    path.write_bytes(bytes(image))
    return str(path)


class GdbStub:
    """The least of the GDB remote protocol (test set-up only: it stops the guest on attach):
    QEMU's gdbstub started over HMP (`gdbserver tcp:127.0.0.1:0`), registers read with `p` and
    written with `P`. The control registers are found by value, not by the XML's order (which
    differs from the stub's numbers in Debian's QEMU 7.2): the slot holding CR0's reset value
    0x60000010 (Intel SDM vol. 3, 9.1.1), then CR2, CR3, CR4, CR8, EFER (QEMU
    target/i386/gdbstub.c, IDX_CTL_*_REG)."""

    def __init__(self, qmp: QmpClient) -> None:
        import re
        import socket
        self._re = re
        qmp.hmp("gdbserver tcp:127.0.0.1:0")
        port = re.search(r"gdb: filename=disconnected:tcp:127\.0\.0\.1:(\d+)", qmp.hmp("info chardev"))
        assert port, "no gdbstub port"
        self.sock = socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=10)
        self.packet("qSupported:xmlRegisters=i386")
        offset = 0
        while True:          # QEMU answers `p` only to a client that read its target description
            part = self.packet("qXfer:features:read:i386-64bit.xml:%x,3e8" % offset)
            offset += len(part) - 1
            if part[:1] != "m":
                break
        cr0 = next(n for n in range(16, 80) if self.get_register(n) == 0x60000010)
        self.registers = {name: cr0 + i for i, name in
                          enumerate(("cr0", "cr2", "cr3", "cr4", "cr8", "efer"))}

    def get_register(self, index: int) -> int:
        answer = self.packet("p%x" % index)
        return int.from_bytes(bytes.fromhex(answer), "little") if answer[:1] != "E" else -1

    def packet(self, data: str) -> str:
        body = data.encode()
        self.sock.sendall(b"$" + body + b"#%02x" % (sum(body) & 0xFF))
        buffer = b""
        while True:
            buffer += self.sock.recv(65536)
            match = self._re.search(rb"\$([^#]*)#[0-9a-fA-F]{2}", buffer)
            if match:
                self.sock.sendall(b"+")
                return match.group(1).decode()

    def set_register(self, name: str, value: int) -> None:
        index = self.registers[name]
        assert self.packet("P%x=%s" % (index, value.to_bytes(8, "little").hex())) == "OK", name

    def close(self) -> None:
        """Hang up without `D` (detach would resume the guest: the firmware would run)."""
        self.sock.close()
