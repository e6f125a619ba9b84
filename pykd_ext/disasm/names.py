"""Naming code addresses without symbols: `module+0xoffset`, or `module!Export+0xoffset`.

Why small and local: `u` and the faulting instruction need only "which loaded module holds this
address, and which exported function starts at or before it". The modules come from what the
target itself lists (a triage dump's driver list; a kernel context's PsLoadedModuleList, passed
in by the caller; at least the kernel image from `info().kernel_base`). Exports come from the
module's export directory where the dump holds it (a triage dump usually does not: then names
are `module+0xoffset`, as WinDbg prints them without symbols). One bisect per address; each
module's export table is read once per namer, bounded.

Module names are shown as their file stem (`ntoskrnl`, `amdppm`), as `kernel.stack.Frame` does.
"""
import bisect
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.targets.pe import (IMAGE_DIRECTORY_ENTRY_EXPORT, IMAGE_EXPORT_DIRECTORY,
                                 MAX_EXPORT_NAMES, read_pe_info)

#: Longest export name read (bytes); longer ones are cut.
MAX_EXPORT_NAME = 256
#: Bytes of export data read at once (the name pointer / ordinal / function arrays).
MAX_EXPORT_ARRAY = 4 * MAX_EXPORT_NAMES

Module = Tuple[int, int, str]          # (base, size, file name)


def stem(name: str) -> str:
    """`ntoskrnl.exe` -> `ntoskrnl` (path components dropped)."""
    name = name.replace("/", "\\").rsplit("\\", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def modules_of_target(target: Any, extra: Optional[Iterable[Module]] = None) -> List[Module]:
    """(base, size, name) of the loaded modules a target states: its triage driver list (or a
    user-mode dump's module list), the
    `extra` modules a caller walked (PsLoadedModuleList), and the kernel image at
    `info().kernel_base` (its SizeOfImage from its PE header) when no list has it."""
    info = target.info()
    found: Dict[int, Module] = {}
    extra_facts = info.extra or {}
    listed = list(extra_facts.get("drivers") or []) + list(extra_facts.get("modules") or [])
    for driver in listed:                      # triage driver list; a user dump's module list
        if isinstance(driver, dict) and isinstance(driver.get("base"), int) \
                and isinstance(driver.get("size"), int) and driver["size"] > 0:
            found[driver["base"]] = (driver["base"], driver["size"], str(driver.get("name") or "?"))
    for base, size, name in extra or ():
        if isinstance(base, int) and isinstance(size, int) and size > 0:
            found.setdefault(base, (base, size, str(name or "?")))
    base = info.kernel_base
    if isinstance(base, int) and base and base not in found:
        try:
            size = target.pe_image(base).size_of_image
        except PykdExtError:
            size = 0
        if size:
            found[base] = (base, size, "nt")
    return sorted(found.values())


def read_exports(space: Any, base: int) -> List[Tuple[int, str]]:
    """(rva, name) of a mapped image's named exports, sorted by rva; empty when the headers or
    the export directory are not in the dump. Bounded by MAX_EXPORT_NAMES."""
    try:
        pe = read_pe_info(space, base)
        if len(pe.data_directories) <= IMAGE_DIRECTORY_ENTRY_EXPORT:
            return []
        rva, size = pe.data_directories[IMAGE_DIRECTORY_ENTRY_EXPORT]
        if not rva or size < IMAGE_EXPORT_DIRECTORY.sizeof():
            return []
        exp = IMAGE_EXPORT_DIRECTORY.parse(space.read(base + rva, IMAGE_EXPORT_DIRECTORY.sizeof()))
        count = min(exp.NumberOfNames, MAX_EXPORT_NAMES)
        functions = min(exp.NumberOfFunctions, MAX_EXPORT_NAMES)
        if not count or not functions:
            return []
        names = space.read(base + exp.AddressOfNames, 4 * count)
        ordinals = space.read(base + exp.AddressOfNameOrdinals, 2 * count)
        addresses = space.read(base + exp.AddressOfFunctions, 4 * functions)
    except (PykdExtError, ValueError):
        return []
    except Exception:                            # a construct parse of short bytes
        return []
    out: List[Tuple[int, str]] = []
    for index in range(count):
        ordinal = int.from_bytes(ordinals[2 * index:2 * index + 2], "little")
        if ordinal >= functions:
            continue
        function = int.from_bytes(addresses[4 * ordinal:4 * ordinal + 4], "little")
        if rva <= function < rva + size:         # a forwarder string, not code
            continue
        name_rva = int.from_bytes(names[4 * index:4 * index + 4], "little")
        try:
            raw, _fault = space.read_partial(base + name_rva, MAX_EXPORT_NAME)
        except PykdExtError:
            continue
        text = bytes(raw).split(b"\0", 1)[0].decode("ascii", "replace")
        if text:
            out.append((function, text))
    out.sort()
    return out


class AddressNamer:
    """`name(address)` -> `module+0xoff` / `module!Export+0xoff` / None, over a module list."""

    def __init__(self, space: Any, modules: Sequence[Module], exports: bool = True) -> None:
        self.space = space
        self._modules = sorted(m for m in modules if m[1] > 0)
        self._bases = [m[0] for m in self._modules]
        self._exports_wanted = exports
        self._exports: Dict[int, Tuple[List[int], List[str]]] = {}

    @property
    def modules(self) -> List[Module]:
        return list(self._modules)

    def module(self, address: int) -> Optional[Module]:
        index = bisect.bisect_right(self._bases, address) - 1
        if index >= 0:
            found = self._modules[index]
            if address < found[0] + found[1]:
                return found
        return None

    def _export_table(self, base: int) -> Tuple[List[int], List[str]]:
        table = self._exports.get(base)
        if table is None:
            rows = read_exports(self.space, base) if self._exports_wanted else []
            table = self._exports[base] = ([r for r, _ in rows], [n for _, n in rows])
        return table

    def name(self, address: int) -> Optional[str]:
        found = self.module(address)
        if found is None:
            return None
        base, _size, file_name = found
        rva = address - base
        rvas, names = self._export_table(base)
        index = bisect.bisect_right(rvas, rva) - 1
        if index >= 0:
            offset = rva - rvas[index]
            return "%s!%s%s" % (stem(file_name), names[index], "+0x%x" % offset if offset else "")
        return "%s+0x%x" % (stem(file_name), rva)
