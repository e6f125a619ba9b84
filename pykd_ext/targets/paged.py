"""`PagedTarget`: a target whose memory is physical pages reached through page tables.

Such a target is a `PhysicalSource` (a dump's file map, a raw image, a live VM's shared RAM, a
debugger's physical reads), an architecture (`arch.Arch`), a paging mode and the kernel's DTB. It
reaches the kernel through that DTB and each process through the process's DTB, over the same
pages; it keeps a bounded cache of process address spaces, hands the build's software-PTE layout to
every space once a layout is chosen, drops all caches on demand, builds its `TargetInfo` once and
closes the source when closed. Nothing here knows about files: crash dumps and raw images add
what their headers or scans say (`_build_info`); any other source can be used as it is.
"""
from typing import Dict, Optional

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.memory.faults import UNAVAILABLE, Fault
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.paging_modes import PagingMode
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.memory.space import AddressSpace, PhysicalSource
from pykd_ext.targets.arch import Arch
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo
from pykd_ext.targets.pe import PeInfo

#: process address spaces kept per target before the cache is reset (bounded memory)
PROCESS_SPACE_CACHE = 256


class NoDtbSpace(AddressSpace):
    """The kernel space of physical memory whose kernel DTB is unknown: every read fails typed."""

    def __init__(self, pointer_size: int = 8) -> None:
        self.pointer_size = pointer_size

    def read(self, address: int, size: int) -> bytes:
        raise MemoryReadError(Fault(UNAVAILABLE, address))


class PagedTarget(Target):
    """Physical memory, an architecture, a paging mode and a kernel DTB (None: unknown)."""

    def __init__(self, physical: PhysicalSource, arch: Arch, mode: Optional[PagingMode],
                 dtb: Optional[int], description: TargetDescription,
                 path: Optional[str] = None) -> None:
        self.path = path
        self.arch = arch
        self.mode = mode if dtb is not None else None
        self.dtb = dtb
        self._physical = physical
        self._description = description
        self._software_pte: Optional[SoftwarePteLayout] = None
        self._spaces: Dict[int, PagedAddressSpace] = {}
        self._info: Optional[TargetInfo] = None
        self._kernel: AddressSpace = (PagedAddressSpace(physical, dtb, self.mode)
                                      if self.mode is not None and dtb is not None
                                      else NoDtbSpace(arch.pointer_size))

    @property
    def kernel(self) -> AddressSpace:
        return self._kernel

    @property
    def physical(self) -> Optional[PhysicalSource]:
        return self._physical

    def process_space(self, directory_table_base: int) -> AddressSpace:
        kernel = self._kernel
        if not isinstance(kernel, PagedAddressSpace):
            return kernel
        key = kernel.mode.root(directory_table_base, kernel.maxphyaddr)
        if key == kernel.dtb:
            return kernel
        space = self._spaces.get(key)
        if space is None:
            if len(self._spaces) >= PROCESS_SPACE_CACHE:
                self._spaces.clear()
            space = self._spaces[key] = kernel.space_for(key)
        return space

    def set_software_pte(self, software_pte: Optional[SoftwarePteLayout]) -> None:
        """Let the paging code decode transition/prototype/pagefile PTEs (from the layout)."""
        self._software_pte = software_pte
        for space in [self._kernel] + list(self._spaces.values()):
            if isinstance(space, PagedAddressSpace):
                space.set_software_pte(software_pte)

    def describe(self) -> TargetDescription:
        return self._description

    def drop_caches(self) -> None:
        self._kernel.drop_caches()
        for space in self._spaces.values():
            space.drop_caches()
        self._physical.drop_caches()
        if self.live:
            self._info = None

    def close(self) -> None:
        self._spaces.clear()
        self._kernel.drop_caches()
        self._physical.close()

    def info(self) -> TargetInfo:
        if self._info is None:
            self._info = self._build_info()
        return self._info

    def _kernel_pe(self, info: TargetInfo, base: int) -> Optional[PeInfo]:
        """The kernel image's PE headers, or None with a note saying why not."""
        try:
            return self.pe_image(base)
        except PykdExtError as err:
            info.notes.append("kernel PE header at 0x%x not readable: %s" % (base, err.one_line()))
            return None

    def _build_info(self) -> TargetInfo:
        """What any paged source states: architecture, paging, DTB, physical memory."""
        physical = self._physical
        info = TargetInfo(path=self.path, arch=self.arch.name,
                          directory_table_base=self.dtb, physical_runs=physical.runs(),
                          pages_present=physical.page_count())
        if self.mode is not None:
            info.extra["paging"] = self.mode.name
        return info
