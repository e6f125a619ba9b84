"""Which loaded module holds an address: a sorted map of (base, end, name), O(log n) look-ups.

Why its own module: the blame rules, the stack scan and the crash record all turn addresses into
`module+0xoffset`, for every frame of thousands of dumps; one bisect over the driver list (read
once per dump) is the whole cost.
"""
import bisect
from typing import Any, Iterable, List, Optional, Tuple

#: File names of the NT kernel image (uniprocessor/multiprocessor/PAE/5-level paging variants:
#: the name the boot loader gives it differs, the role does not).
KERNEL_IMAGE_NAMES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe",
                      "ntkrla57.exe")
#: The hardware abstraction layer: part of the kernel for blame (what !analyze calls "nt/hal").
HAL_NAMES = ("hal.dll", "halmacpi.dll", "halacpi.dll")


class ModuleMap:
    """Loaded modules by address; `kernel_names` are the modules the blame rules skip."""

    def __init__(self, modules: Iterable[Tuple[Any, Any, Any]], kernel_base: Optional[int] = None) -> None:
        rows = sorted((int(b), int(b) + int(s), str(n or "?")) for b, s, n in modules
                      if isinstance(b, int) and isinstance(s, int) and s > 0)
        self._bases = [r[0] for r in rows]
        self._rows = rows
        kernel = {n.lower() for n in KERNEL_IMAGE_NAMES + HAL_NAMES}
        if kernel_base is not None:
            found = self.find(kernel_base)
            if found is not None:
                kernel.add(found[0].lower())
        self.kernel_names = kernel
        self.kernel_image = self._kernel_image(kernel_base)

    def _kernel_image(self, kernel_base: Optional[int]) -> str:
        found = self.find(kernel_base) if kernel_base is not None else None
        if found is not None:
            return found[0]
        for _base, _end, name in self._rows:
            if name.lower() in KERNEL_IMAGE_NAMES:
                return name
        return KERNEL_IMAGE_NAMES[0]

    def __len__(self) -> int:
        return len(self._rows)

    def find(self, address: Optional[int]) -> Optional[Tuple[str, int]]:
        """(module name, offset) of the module holding `address`, or None."""
        if not isinstance(address, int):
            return None
        index = bisect.bisect_right(self._bases, address) - 1
        if index < 0:
            return None
        base, end, name = self._rows[index]
        if address >= end:
            return None
        return name, address - base

    def is_kernel(self, name: str) -> bool:
        return name.lower() in self.kernel_names

    def describe(self, address: Optional[int]) -> Optional[str]:
        """`module+0xoffset`, or None when no module holds the address."""
        found = self.find(address)
        return None if found is None else "%s+0x%x" % found

    def span(self) -> Tuple[int, int]:
        """[lowest base, highest end) of all modules ((0, 0) when there are none)."""
        if not self._rows:
            return 0, 0
        return self._rows[0][0], max(end for _, end, _ in self._rows)

    def rows(self) -> List[Tuple[int, int, str]]:
        return list(self._rows)
