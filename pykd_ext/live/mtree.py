"""Parse QEMU's `info mtree -f`: which guest-physical ranges are RAM, at which RAM-file offsets.

Why: a QEMU RAM file is not guest-physical address 0..N. On q35 a guest with more than 2 GiB has
its RAM above 2 GiB at 4 GiB, ROM shadows cover 0xC0000-0xFFFFF, devices sit in between. QMP has
no structured answer; HMP's `info mtree -f` prints each address space's flattened view, one line
per range (QEMU softmmu/memory.c, `mtree_print_flatview`):

    FlatView #0
     AS "memory", root: system
     Root memory region: system
      0000000000000000-00000000000bffff (prio 0, ram): qemu-ram
      00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
      0000000000100000-000000007fffffff (prio 0, ram): qemu-ram @0000000000100000
      0000000100000000-00000001bfffffff (prio 0, ram): qemu-ram @0000000080000000

START-END is inclusive; the type is `ram`, `rom`, `i/o`, `romd`, ... (`nv-` before it for
non-volatile); NAME is the memory region; `@OFFSET` its offset inside that region (absent: 0).
For a memory-backend-file the region is named after the backend's id and spans the whole file, so
the offset is the file offset. We keep the view of the address space `"memory"` (what the CPUs
and `xp` see) and the `ram` ranges of one region. Older QEMUs head the view with
`address-space (flat view): memory` instead; both forms are read.
"""
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from pykd_ext.errors import TargetError

_RANGE = re.compile(r"^\s+([0-9a-fA-F]+)-([0-9a-fA-F]+) \(prio (-?\d+), ([^)]*)\): (.+?)"
                    r"(?: @([0-9a-fA-F]+))?(?: \[[^\]]*\])*\s*$")
#: ranges accepted from one view (a real machine has a few dozen)
MAX_RANGES = 100000


@dataclass(frozen=True)
class FlatRange:
    """One line of a flat view: guest-physical [start, start+size), the region and its offset."""

    start: int
    size: int
    kind: str            # "ram", "rom", "i/o", "romd", "nv-ram", ...
    region: str
    offset: int          # offset of `start` inside `region` (for a backend file: file offset)

    @property
    def end(self) -> int:
        return self.start + self.size


def _is_system_heading(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith('AS "memory"') or stripped == "address-space (flat view): memory"


def parse_flat_view(text: str) -> List[FlatRange]:
    """The ranges of the flat view of address space "memory" (the CPUs' physical space)."""
    ranges: List[FlatRange] = []
    in_view = False
    found = False
    for line in text.splitlines():
        if line.startswith("FlatView") or line.startswith("address-space"):
            if found and ranges:
                break                               # the next view starts: ours is complete
            in_view = _is_system_heading(line)
            found = found or in_view
            continue
        if not in_view and _is_system_heading(line):
            in_view = found = True
            continue
        if not in_view:
            continue
        match = _RANGE.match(line)
        if match is None:
            continue
        start, last = int(match.group(1), 16), int(match.group(2), 16)
        if last < start:
            raise TargetError("info mtree: range %s-%s ends before it starts"
                              % (match.group(1), match.group(2)))
        ranges.append(FlatRange(start, last - start + 1, match.group(4).strip(),
                                match.group(5).strip(), int(match.group(6) or "0", 16)))
        if len(ranges) > MAX_RANGES:
            raise TargetError("info mtree lists more than %d ranges" % MAX_RANGES)
    if not found:
        raise TargetError('info mtree -f shows no flat view of address space "memory"')
    return ranges


def ram_regions(ranges: Sequence[FlatRange]) -> List[str]:
    """Names of the regions that back RAM ranges, in address order of their first range."""
    return list(dict.fromkeys(r.region for r in ranges if r.kind == "ram"))


def ram_ranges(ranges: Sequence[FlatRange], region: Optional[str] = None) -> List[FlatRange]:
    """The RAM ranges of `region` (default: the one region backing RAM), page-aligned, sorted.

    A machine with several RAM regions (NUMA nodes, each its own backend) needs `region` named:
    a RAM file holds one region only.
    """
    if region is None:
        names = ram_regions(ranges)
        if not names:
            raise TargetError("info mtree -f shows no RAM in the guest's physical address space")
        if len(names) > 1:
            raise TargetError("the guest's RAM comes from several regions (%s): name the backend "
                              "(qemu:SOCKET?backend=ID)" % ", ".join(names))
        region = names[0]
    out = [r for r in ranges if r.kind == "ram" and r.region == region]
    if not out:
        raise TargetError("info mtree -f shows no RAM range of region %r" % region)
    for r in out:
        if (r.start | r.size | r.offset) & 0xFFF:
            raise TargetError("RAM range 0x%x-0x%x of %s is not page-aligned"
                              % (r.start, r.end - 1, r.region))
    return sorted(out, key=lambda r: r.start)
