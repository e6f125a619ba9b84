"""32-bit x86 page tables (PAE and non-PAE) built inside a forged `PhysicalImage`.

Why: forged 32-bit dumps must carry real tables so readers (ours, Volatility's WindowsIntel and
WindowsIntelPAE layers) translate through them, including 4 MiB / 2 MiB large pages and invalid
entries planted on purpose (transition, paged out, demand zero, prototype).

Table geometry is the architecture's (Intel SDM vol. 3A, 4.3 "32-bit paging": 1024 4-byte
entries, VA bits 31:22 / 21:12; 4.4 "PAE paging": a 4-entry PDPT indexed by VA bits 31:30, then
512 8-byte entries per level, bits 29:21 / 20:12). A PAE PDPTE has only Present and the frame
(its bits 1-2 and 5-8 are reserved). Windows' recursive mapping, which Volatility's DTB scan looks
for, is reproduced: non-PAE PDE 0x300 maps the directory itself (page tables at 0xC0000000);
PAE keeps the PDPT and its four directories in five consecutive frames, and directory 3's
entries 0-3 map the four directories (directories at 0xC0600000).
Entry bit positions (Valid, Write, Owner, LargePage, PageFrameNumber, and the software formats)
come from the build's `_MMPTE_*` types through `PteFormat`.
"""
from typing import Any, List, Optional, Tuple

from pykd_ext.forge.pagetables import Mapping
from pykd_ext.forge.physmem import PhysicalImage
from pykd_ext.forge.ptebits import PteFormat
from pykd_ext.memory.space import PAGE_SIZE

PAGE_4M = 0x400000
PAGE_2M = 0x200000
USER_LIMIT = 0x80000000             # default 2 GiB user space (no /3GB)
NON_PAE_SELF_MAP_INDEX = 0x300      # 0xC0000000 >> 22
PAE_SELF_MAP_DIRECTORY = 3          # directory of 0xC0000000..0xFFFFFFFF
PDPTE_PRESENT = 1                   # Intel SDM 4.4.1: PDPTE bit 0; bits 1-2, 5-8 reserved


class LayoutBits:
    """`PteFormat`'s view of a `KernelLayouts` (generated from any ISF, derived ones included):
    `has_member(type, member)` and `bits(type, member)` -> (position, length)."""

    def __init__(self, layouts: Any) -> None:
        self.layouts = layouts

    def has_member(self, type_name: str, member: str) -> bool:
        return bool(self.layouts.has_type(type_name) and self.layouts.type(type_name).has_field(member))

    def bits(self, type_name: str, member: str) -> Tuple[int, int]:
        f = self.layouts.type(type_name).field(member)
        if f.bit_position is None:
            raise ValueError("%s.%s is not a bit field" % (type_name, member))
        return int(f.bit_position), int(f.bit_length)


class X86PageTables:
    """One 32-bit address space (a CR3) with its tables stored in `phys`."""

    def __init__(self, phys: PhysicalImage, ptes: PteFormat, pae: bool,
                 kernel_from: Optional["X86PageTables"] = None) -> None:
        """`kernel_from`: share that space's kernel half (entries >= 0x80000000), as every
        Windows process does."""
        self.phys = phys
        self.ptes = ptes
        self.pae = pae
        self.entry_size = 8 if pae else 4
        self.mappings: List[Mapping] = []
        self._owner_bit = ptes.hardware(0, user=True) ^ ptes.hardware(0)
        if pae:
            first = phys.allocate(5)
            for pfn in range(first, first + 5):
                phys.touch(pfn)
            self.pdpt_pfn = first
            self.directories = [first + 1 + i for i in range(4)]
            for i, pd in enumerate(self.directories):
                self._write(self.pdpt_pfn * PAGE_SIZE + i * 8, pd * PAGE_SIZE | PDPTE_PRESENT, 8)
            self_map = self.directories[PAE_SELF_MAP_DIRECTORY]
            for i, pd in enumerate(self.directories):
                self._set_entry(self_map, i, ptes.hardware(pd))
        else:
            self.pd_pfn = phys.allocate(1)
            phys.touch(self.pd_pfn)
            self._set_entry(self.pd_pfn, NON_PAE_SELF_MAP_INDEX, ptes.hardware(self.pd_pfn))
        if kernel_from is not None:
            self.share_kernel(kernel_from)

    @property
    def dtb(self) -> int:
        """CR3: the PDPT's physical address (PAE) or the directory's (non-PAE)."""
        return self.pdpt_pfn * PAGE_SIZE if self.pae else self.pd_pfn * PAGE_SIZE

    # --- raw entries -----------------------------------------------------------------------------

    def _write(self, address: int, value: int, size: int) -> None:
        self.phys.write(address, value.to_bytes(size, "little"))

    def _set_entry(self, table_pfn: int, index: int, value: int) -> None:
        self._write(table_pfn * PAGE_SIZE + index * self.entry_size, value, self.entry_size)

    def _get_entry(self, table_pfn: int, index: int) -> int:
        page = self.phys.page(table_pfn)
        if page is None:
            return 0
        at = index * self.entry_size
        return int.from_bytes(page[at:at + self.entry_size], "little")

    def _directory(self, va: int) -> Tuple[int, int]:
        """(directory pfn, index in it) of a VA."""
        if self.pae:
            return self.directories[(va >> 30) & 3], (va >> 21) & 0x1FF
        return self.pd_pfn, (va >> 22) & 0x3FF

    def _pt_index(self, va: int) -> int:
        return (va >> 12) & (0x1FF if self.pae else 0x3FF)

    def _table_for(self, va: int, user: bool) -> int:
        """PFN of the page table holding the PTE of `va` (created when missing)."""
        directory, index = self._directory(va)
        entry = self._get_entry(directory, index)
        if entry & self.ptes.valid_bit:
            if entry & self.ptes.large_bit:
                raise ValueError("0x%x is already inside a large page" % va)
            if user and not entry & self._owner_bit:
                entry |= self._owner_bit
                self._set_entry(directory, index, entry)
            return self.ptes.frame_of(entry)
        table = self.phys.allocate(1)
        self.phys.touch(table)
        self._set_entry(directory, index, self.ptes.hardware(table, user=user))
        return table

    def set_pte_raw(self, va: int, value: int, level: str = "PTE") -> None:
        """Write a raw entry for `va` ("PDE" or "PTE")."""
        self._check_va(va)
        if level == "PDE":
            directory, index = self._directory(va)
            self._set_entry(directory, index, value)
            return
        self._set_entry(self._table_for(va, va < USER_LIMIT), self._pt_index(va), value)

    def set_transition(self, va: int, pfn: int) -> None:
        self.set_pte_raw(va, self.ptes.transition(pfn))

    def set_paged_out(self, va: int, pagefile: int, page_offset: int) -> None:
        self.set_pte_raw(va, self.ptes.paged_out(pagefile, page_offset))

    def set_demand_zero(self, va: int) -> None:
        self.set_pte_raw(va, self.ptes.demand_zero())

    def set_prototype(self, va: int, proto_address: int) -> None:
        self.set_pte_raw(va, self.ptes.prototype(proto_address))

    @staticmethod
    def _check_va(va: int) -> None:
        if not 0 <= va < 1 << 32:
            raise ValueError("0x%x is not a 32-bit address" % va)

    # --- mappings --------------------------------------------------------------------------------

    @property
    def large_page(self) -> int:
        return PAGE_2M if self.pae else PAGE_4M

    def map(self, va: int, pa: int, size: int, page_size: int = PAGE_SIZE,
            writable: bool = True, user: Optional[bool] = None) -> None:
        """Map [va, va+size) to [pa, pa+size) with 4 KiB pages or the mode's large pages."""
        if page_size not in (PAGE_SIZE, self.large_page):
            raise ValueError("page size must be 4 KiB or 0x%x, not 0x%x" % (self.large_page, page_size))
        if va % page_size or pa % page_size or size <= 0 or size % page_size:
            raise ValueError("va 0x%x, pa 0x%x and size 0x%x must be multiples of 0x%x"
                             % (va, pa, size, page_size))
        self._check_va(va)
        self._check_va(va + size - 1)
        if not self.pae and pa + size > 1 << 32 and page_size == PAGE_SIZE:
            raise ValueError("non-PAE 4 KiB pages reach only the first 4 GiB")
        is_user = (va < USER_LIMIT) if user is None else user
        for offset in range(0, size, page_size):
            page_va = va + offset
            frame_pa = pa + offset
            high = 0
            if not self.pae and page_size != PAGE_SIZE:
                # PSE-36 (Intel SDM 4.3): PA bits 39:32 of a 4 MiB page sit in PDE bits 20:13
                high = ((frame_pa >> 32) & 0xFF) << 13
                frame_pa &= 0xFFC00000
            entry = self.ptes.hardware(frame_pa // PAGE_SIZE, large=page_size != PAGE_SIZE,
                                       writable=writable, user=is_user) | high
            if page_size == PAGE_SIZE:
                self._set_entry(self._table_for(page_va, is_user), self._pt_index(page_va), entry)
            else:
                directory, index = self._directory(page_va)
                self._set_entry(directory, index, entry)
        self.mappings.append(Mapping(va, pa, size, page_size))

    def map_new(self, va: int, data_or_size: Any, user: Optional[bool] = None) -> int:
        """Map fresh 4 KiB frames at `va` holding `data` (or `size` zero bytes); returns va."""
        if isinstance(data_or_size, int):
            data, size = b"", data_or_size
        else:
            data = bytes(data_or_size)
            size = len(data)
        size = -(-max(size, 1) // PAGE_SIZE) * PAGE_SIZE
        pages = size // PAGE_SIZE
        first = self.phys.allocate(pages)
        is_user = (va < USER_LIMIT) if user is None else user
        self.map(va, first * PAGE_SIZE, size, user=is_user)
        for pfn in range(first, first + pages):
            self.phys.touch(pfn)
        if data:
            self.phys.write(first * PAGE_SIZE, data)
        if is_user:
            self.phys.mark_user(range(first, first + pages))
        return va

    def share_kernel(self, other: "X86PageTables") -> None:
        """Copy the kernel half's directory entries (0x80000000 and up) from `other`."""
        if other.pae != self.pae:
            raise ValueError("cannot share tables between PAE and non-PAE spaces")
        if self.pae:
            for i in (2, 3):
                for index in range(512):
                    if i == PAE_SELF_MAP_DIRECTORY and index < 4:
                        continue                 # the self map stays this space's own
                    value = other._get_entry(other.directories[i], index)
                    if value:
                        self._set_entry(self.directories[i], index, value)
        else:
            for index in range(0x200, 0x400):
                if index == NON_PAE_SELF_MAP_INDEX:
                    continue
                value = other._get_entry(other.pd_pfn, index)
                if value:
                    self._set_entry(self.pd_pfn, index, value)

    # --- the forge's own walk ------------------------------------------------------------------

    def translate(self, va: int) -> Optional[int]:
        """Physical address of `va` through these tables, or None (not valid)."""
        directory, index = self._directory(va)
        pde = self._get_entry(directory, index)
        if not pde & self.ptes.valid_bit:
            return None
        if pde & self.ptes.large_bit:
            span = self.large_page
            base = self.ptes.frame_of(pde) * PAGE_SIZE & ~(span - 1)
            if not self.pae:
                base = (pde & 0xFFC00000) | (((pde >> 13) & 0xFF) << 32)
            return base + (va & (span - 1))
        pte = self._get_entry(self.ptes.frame_of(pde), self._pt_index(va))
        if not pte & self.ptes.valid_bit:
            return None
        return self.ptes.frame_of(pte) * PAGE_SIZE + (va & (PAGE_SIZE - 1))

    def write_virtual(self, va: int, data: bytes) -> None:
        done = 0
        while done < len(data):
            address = va + done
            chunk = min(len(data) - done, PAGE_SIZE - (address & (PAGE_SIZE - 1)))
            pa = self.translate(address)
            if pa is None:
                raise ValueError("0x%x is not mapped" % address)
            self.phys.write(pa, data[done:done + chunk])
            done += chunk

    def read_virtual(self, va: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            address = va + len(out)
            chunk = min(size - len(out), PAGE_SIZE - (address & (PAGE_SIZE - 1)))
            pa = self.translate(address)
            if pa is None:
                raise ValueError("0x%x is not mapped" % address)
            out += self.phys.read(pa, chunk)
        return bytes(out)
