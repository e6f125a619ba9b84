"""`PagedTarget`: what every file target with physical memory shares (crash dumps, raw images).

Such a target reaches the kernel through its DTB and each process through that process's DTB,
over the same physical pages. It keeps a bounded cache of process address spaces, hands the
build's software-PTE layout to every space once a layout is chosen, drops all caches on demand,
and builds its `TargetInfo` once. The paging mode (x64, or x86 PAE/non-PAE) is the kernel
space's: process spaces are made the same way.
"""
from typing import Any, Dict, Optional

from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_x64 import X64AddressSpace
from pykd_ext.memory.paging_x86 import X86AddressSpace
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import AddressSpace, PhysicalMemory
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo

#: process address spaces kept per target before the cache is reset (bounded memory)
PROCESS_SPACE_CACHE = 256


class PagedTarget(Target):
    """A file target whose memory is physical pages reached through page tables.

    Subclasses call `_init_paged` and set `self._kernel`, then implement `_build_info`.
    """

    path: str
    _kernel: AddressSpace

    def _init_paged(self, path: str, fmap: Any, physical: PhysicalMemory) -> None:
        self.path = path
        self._fmap = fmap
        self._physical = physical
        self._software_pte: Optional[SoftwarePteLayout] = None
        self._spaces: Dict[int, AddressSpace] = {}
        self._info: Optional[TargetInfo] = None

    @property
    def kernel(self) -> AddressSpace:
        return self._kernel

    @property
    def physical(self) -> Optional[PhysicalMemory]:
        return self._physical

    def process_space(self, directory_table_base: int) -> AddressSpace:
        kernel = self._kernel
        if isinstance(kernel, X86AddressSpace):
            # a PAE CR3 is 32-byte aligned, not page aligned
            key = directory_table_base & (0xFFFFFFE0 if kernel.pae else 0xFFFFF000)
        else:
            key = directory_table_base & ~0xFFF
        if isinstance(kernel, PagedAddressSpace) and key == kernel.dtb:
            return kernel
        space = self._spaces.get(key)
        if space is None:
            if len(self._spaces) >= PROCESS_SPACE_CACHE:
                self._spaces.clear()
            if isinstance(kernel, X86AddressSpace):
                space = X86AddressSpace(self._physical, key, kernel.pae, self._software_pte)
            else:
                space = X64AddressSpace(self._physical, key, self._software_pte)
            self._spaces[key] = space
        return space

    def set_software_pte(self, software_pte: Optional[SoftwarePteLayout]) -> None:
        """Let the paging code decode transition/prototype/pagefile PTEs (from the layout)."""
        self._software_pte = software_pte
        for space in [self._kernel] + list(self._spaces.values()):
            if isinstance(space, PagedAddressSpace):
                space.set_software_pte(software_pte)

    def describe(self) -> TargetDescription:
        return TargetDescription("file", self.path)

    def drop_caches(self) -> None:
        self._kernel.drop_caches()
        for space in self._spaces.values():
            space.drop_caches()

    def close(self) -> None:
        self._spaces.clear()
        self._kernel.drop_caches()
        self._fmap.close()

    def info(self) -> TargetInfo:
        if self._info is None:
            self._info = self._build_info()
        return self._info

    def _build_info(self) -> TargetInfo:
        raise NotImplementedError
