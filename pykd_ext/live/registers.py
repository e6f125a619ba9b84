"""Parse QEMU's `info registers -a`: each vCPU's control registers (CR3 above all).

Why: a raw image must search for the kernel's page tables; a running guest's vCPUs hold them in
CR3. HMP's `info registers -a` (through QMP's `human-monitor-command`, which does not pause the
guest) prints, per vCPU, a `CPU#N` line and `NAME=HEX` pairs (QEMU target/i386/cpu-dump.c,
`x86_cpu_dump_state`): `CR0=80050033 CR2=... CR3=00000000001ad000 CR4=00350ef8`, `EFER=...`,
`RIP=...`/`EIP=...`, and `CPL=N` on the flags line. Widths vary with the vCPU's mode (8 hex digits
in 32-bit mode, 16 in long mode), so values are read as numbers, whatever their width.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List

_CPU = re.compile(r"^CPU#(\d+)")
_PAIR = re.compile(r"\b([A-Z][A-Z0-9]*)=([0-9a-fA-F]+)\b")
#: the registers kept per vCPU (HMP prints many more: segments, FPU, XMM)
KEPT = ("RIP", "EIP", "RSP", "ESP", "CR0", "CR2", "CR3", "CR4", "EFER", "CPL", "HLT", "SMM")
#: CR0.PG (bit 31), CR4.PAE (bit 5), CR4.LA57 (bit 12), EFER.LMA (bit 10): Intel SDM vol. 3, 2.5, 2.2.1
CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10
#: vCPUs accepted from one answer
MAX_VCPUS = 4096


@dataclass
class VcpuRegisters:
    """One vCPU's registers as HMP printed them (`values`: name -> number)."""

    index: int
    values: Dict[str, int] = field(default_factory=dict)

    @property
    def cr3(self) -> int:
        return self.values.get("CR3", 0)

    @property
    def pc(self) -> int:
        return self.values.get("RIP", self.values.get("EIP", 0))

    @property
    def paging(self) -> bool:
        return bool(self.values.get("CR0", 0) & CR0_PG)

    @property
    def long_mode(self) -> bool:
        return bool(self.values.get("EFER", 0) & EFER_LMA)

    @property
    def five_level(self) -> bool:
        return bool(self.values.get("CR4", 0) & CR4_LA57)

    def record(self) -> Dict[str, int]:
        out = {"cpu": self.index}
        out.update((name.lower(), value) for name, value in self.values.items())
        return out


def parse_registers(text: str) -> List[VcpuRegisters]:
    """Every vCPU of an `info registers -a` answer (one `CPU#N` block each), in order."""
    cpus: List[VcpuRegisters] = []
    current = None
    for line in text.splitlines():
        head = _CPU.match(line.strip())
        if head is not None:
            if len(cpus) >= MAX_VCPUS:
                break
            current = VcpuRegisters(int(head.group(1)))
            cpus.append(current)
            continue
        if current is None:
            # `info registers` without -a prints one vCPU with no heading
            current = VcpuRegisters(0)
            cpus.append(current)
        for name, value in _PAIR.findall(line):
            if name in KEPT and name not in current.values:
                current.values[name] = int(value, 16)
    return [cpu for cpu in cpus if cpu.values]
