"""AArch64 page tables (4 KiB granule, 48-bit VA, four levels) built inside a forged `PhysicalImage`.

Why its own builder: the x86/x64 builder (`forge.pagetables`) writes entries whose bits come from
Windows' `_MMPTE` (Intel's hardware format); AArch64 descriptors are another format. Forged ARM64
dumps need real descriptors so the reader's walker (`memory.paged` driven by
`memory.paging_modes.AARCH64_4K`) is tested on tables it did not write.

Descriptor facts (Arm ARM DDI 0487, D8.3 "Translation table descriptor formats", 4 KiB granule):
- bits[1:0] = 0b11: a table descriptor at L0-L2 (next-level table address in bits 47:12), a page
  descriptor at L3 (output address bits 47:12);
- bits[1:0] = 0b01 at L1 / L2: a block descriptor mapping 1 GiB / 2 MiB (output address bits
  47:30 / 47:21); 0b01 at L0 and L3 is invalid;
- bit 10 AF (access flag) set on every mapping made here, bits 9:8 SH = 0b11 (inner shareable),
  bits 4:2 AttrIndx 0; bit 54 UXN/XN and bit 53 PXN forbid execution (set when not executable).
Index bits (D8.2): L0 = VA[47:39], L1 = VA[38:30], L2 = VA[29:21], L3 = VA[20:12]; the upper half
(TTBR1) and the lower half (TTBR0) are indexed the same way, so one root serves a kernel address
built here (Windows on ARM64 gives TTBR1 the kernel's table).
"""
from typing import List, NamedTuple

from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.memory.paging_modes import AARCH64_4K
from pykd_ext.memory.space import PAGE_SIZE

DESC_TABLE = 0b11          # table (L0-L2) or page (L3)
DESC_BLOCK = 0b01          # block (L1, L2)
AF = 1 << 10
SH_INNER = 0b11 << 8
PXN = 1 << 53
UXN = 1 << 54
ADDRESS_MASK = ((1 << 48) - 1) & ~(PAGE_SIZE - 1)
#: Page sizes a mapping may use: level index -> size (L1 block, L2 block, L3 page).
SIZES = {1: 1 << 30, 2: 1 << 21, 3: PAGE_SIZE}


class Arm64Mapping(NamedTuple):
    va: int
    pa: int
    size: int
    executable: bool


class Arm64PageTables:
    """One AArch64 translation regime (a TTBR value) with its tables stored in `phys`."""

    mode = AARCH64_4K

    def __init__(self, phys: PhysicalImage) -> None:
        self.phys = phys
        self.root = phys.allocate() * PAGE_SIZE
        phys.touch(self.root // PAGE_SIZE)
        self.mappings: List[Arm64Mapping] = []

    @property
    def ttbr(self) -> int:
        """The value a TTBR (and a Windows DirectoryTableBase) holds: the root's address."""
        return self.root

    def _index(self, va: int, level: int) -> int:
        return (va >> self.mode.levels[level].shift) & 0x1FF

    def _table(self, va: int, level: int) -> int:
        """Physical address of the level-`level` table for `va`, creating missing tables."""
        table = self.root
        for upper in range(level):
            entry_at = table + 8 * self._index(va, upper)
            entry = self.phys.read_u64(entry_at)
            if entry & 0b11 == DESC_TABLE:
                table = entry & ADDRESS_MASK
                continue
            if entry & 1:
                raise ValueError("0x%x is already mapped by a block at L%d" % (va, upper))
            new = self.phys.allocate() * PAGE_SIZE
            self.phys.touch(new // PAGE_SIZE)
            self.phys.write_u64(entry_at, new | DESC_TABLE)
            table = new
        return table

    def map(self, va: int, pa: int, size: int = PAGE_SIZE, executable: bool = False) -> None:
        """Map [va, va+size) to [pa, pa+size) with pages/blocks of `size` (4 KiB, 2 MiB, 1 GiB)."""
        level = {v: k for k, v in SIZES.items()}.get(size)
        if level is None or va % size or pa % size:
            raise ValueError("a mapping is one aligned 4 KiB page, 2 MiB or 1 GiB block")
        kind = DESC_TABLE if level == 3 else DESC_BLOCK
        entry = (pa & ADDRESS_MASK) | AF | SH_INNER | kind | (0 if executable else PXN | UXN)
        self.phys.write_u64(self._table(va, level) + 8 * self._index(va, level), entry)
        self.mappings.append(Arm64Mapping(va, pa, size, executable))

    def map_new(self, va: int, size: int = PAGE_SIZE, data: bytes = b"",
                executable: bool = False) -> int:
        """Map fresh RAM at `va`, write `data` there; returns its physical address."""
        pa = self.phys.allocate(size // PAGE_SIZE, size // PAGE_SIZE) * PAGE_SIZE
        self.map(va, pa, size, executable)
        if data:
            self.phys.write(pa, data)
        else:
            self.phys.touch(pa // PAGE_SIZE)
        return pa
