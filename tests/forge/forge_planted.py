"""What the forge tests plant in their forged machine: the truth readers are checked against.

What is planted (all recorded in `Forged.expected_*`, the tests' independent truth):
- random bytes in kernel 4 KiB pages (one buffer crossing pages), in a user page (left out of the
  kernel-only bitmap dump), inside 2 MiB pages (the kernel image itself is mapped with them) and
  inside a 1 GiB page whose frames sit at 1 GiB in the memory map;
- invalid PTEs of every kind a reader must classify (transition, prototype, paged out, demand zero);
- the memory map has three RAM runs with holes, so the full dump has several runs.
"""
import random
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from pykd_ext.forge import PAGE_1G, PAGE_2M, ForgedMachine

PAGE = 0x1000
KERNEL_BUFFER_VA = 0xFFFFF78000100000          # 4 KiB pages
USER_VA = 0x00007FF6A0000000
LARGE_VA = 0xFFFFF80000000000                   # 2 MiB pages, fresh frames
HUGE_VA = 0xFFFFC00000000000                    # one 1 GiB page -> PA 0x40000000
HUGE_PA = 0x40000000
SPECIAL_VA = 0xFFFFF78000200000


@dataclass
class Forged:
    machine: ForgedMachine
    paths: Dict[str, str]
    #: virtual address -> (physical address, leaf page size) for a sample of mapped addresses
    expected_translation: Dict[int, Tuple[int, int]] = field(default_factory=dict)
    #: virtual address -> bytes planted there
    expected_bytes: Dict[int, bytes] = field(default_factory=dict)
    #: kind of invalid PTE -> virtual address
    special: Dict[str, int] = field(default_factory=dict)
    transition_pfn: int = 0
    user_pfns: List[int] = field(default_factory=list)


def plant(machine: ForgedMachine, rng: random.Random) -> Forged:
    pt, phys = machine.pt, machine.phys
    forged = Forged(machine=machine, paths={})

    # 4 KiB kernel pages: a 3-page buffer with random content (reads cross page boundaries).
    data = bytes(rng.getrandbits(8) for _ in range(3 * PAGE))
    pt.map_new(KERNEL_BUFFER_VA, data)
    forged.expected_bytes[KERNEL_BUFFER_VA] = data
    for index in range(3):
        va = KERNEL_BUFFER_VA + index * PAGE
        forged.expected_translation[va + 0x123] = (pt.translate(va) + 0x123, PAGE)

    # A user page (a process's private memory): in the full and FDMP dumps, not in SDMP.
    user = bytes(rng.getrandbits(8) for _ in range(PAGE))
    pt.map_new(USER_VA, user)
    forged.expected_bytes[USER_VA] = user
    forged.user_pfns = [pt.translate(USER_VA) // PAGE]
    forged.expected_translation[USER_VA + 8] = (pt.translate(USER_VA) + 8, PAGE)

    # 2 MiB pages: reserve two large pages, plant data in a few 4 KiB frames inside them.
    pt.map_new(LARGE_VA, 2 * PAGE_2M, page_size=PAGE_2M, materialise=False)
    large_pa = pt.translate(LARGE_VA)
    assert large_pa % PAGE_2M == 0
    for offset in (0x0, 0x5000, PAGE_2M + 0x1F000):
        blob = bytes(rng.getrandbits(8) for _ in range(PAGE))
        phys.write(large_pa + offset, blob)
        forged.expected_bytes[LARGE_VA + offset] = blob
        forged.expected_translation[LARGE_VA + offset + 0x7F8] = (large_pa + offset + 0x7F8,
                                                                   PAGE_2M)
    # The kernel image is mapped with 2 MiB pages too: its header page is planted data.
    base = machine.kernel.base
    forged.expected_translation[base + 0x3C] = (machine.kernel.physical + 0x3C, PAGE_2M)
    forged.expected_bytes[machine.kdbg_address] = pt.read_virtual(machine.kdbg_address, 0x80)

    # One 1 GiB page onto the RAM run at 1 GiB.
    pt.map(HUGE_VA, HUGE_PA, PAGE_1G, page_size=PAGE_1G)
    for offset in (0x1000, 0x42000, 0xFF000):
        blob = bytes(rng.getrandbits(8) for _ in range(PAGE))
        phys.write(HUGE_PA + offset, blob)
        forged.expected_bytes[HUGE_VA + offset] = blob
        forged.expected_translation[HUGE_VA + offset + 0x10] = (HUGE_PA + offset + 0x10, PAGE_1G)

    # Invalid PTEs of each kind, one page each, in a 4 KiB-mapped kernel region.
    standby = phys.allocate(1)
    phys.write(standby * PAGE, b"standby page".ljust(PAGE, b"\x5a"))
    forged.transition_pfn = standby
    forged.special = {"transition": SPECIAL_VA, "prototype": SPECIAL_VA + PAGE,
                      "paged_out": SPECIAL_VA + 2 * PAGE, "demand_zero": SPECIAL_VA + 3 * PAGE}
    pt.set_transition(SPECIAL_VA, standby)
    pt.set_prototype(SPECIAL_VA + PAGE, 0xFFFFA00000001230)
    pt.set_paged_out(SPECIAL_VA + 2 * PAGE, pagefile=1, page_offset=0x1234)
    pt.set_demand_zero(SPECIAL_VA + 3 * PAGE)
    return forged


def pages_in_dump(forged: Forged, kind: str) -> List[int]:
    """Frames a dump of this kind must hold (the truth the readers are checked against)."""
    phys = forged.machine.phys
    if kind == "full":
        return [pfn for first, count in phys.ram_runs() for pfn in range(first, first + count)]
    present = phys.present_pfns()
    if kind == "sdmp":
        return [pfn for pfn in present if pfn not in set(forged.user_pfns)]
    return present


def absent_pfns(forged: Forged, kind: str) -> List[int]:
    """Frames a dump of this kind must not hold: holes of the memory map and, for bitmap dumps,
    RAM never written (and user pages in SDMP)."""
    phys = forged.machine.phys
    holes = [0, 0x9F, 0xA0, 0xFF, 0x1800, 0x3FFFF, 0x40100, 0x7FFFF]
    if kind == "full":
        return holes
    present = set(pages_in_dump(forged, kind))
    never_written = [pfn for pfn in (0x1FF, 0x1005, 0x40050, 0x17FF) if pfn not in present]
    assert never_written, "the test machine must leave some RAM unwritten"
    extra = list(forged.user_pfns) if kind == "sdmp" else []
    return holes + never_written + extra
