"""The loader's module lists of a process: `PEB.Ldr` → `_PEB_LDR_DATA` → `_LDR_DATA_TABLE_ENTRY`s.

Why all three lists: ntdll keeps every loaded module on `InLoadOrderModuleList`,
`InMemoryOrderModuleList` and (initialised DLLs only) `InInitializationOrderModuleList`.
Malware that unlinks a DLL rarely fixes all three, so the lists are walked separately (each bounded
and cycle-safe with `walk_list`) and merged by entry address: every module says which lists hold
it, and a note says where the load-order and memory-order lists disagree. The same code walks
the 32-bit lists of a WoW64 process: it is given the 32-bit types and a 4-byte-pointer view of
the space (`wow64.narrow`).
"""
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.kernel.times import filetime_to_iso
from pykd_ext.kernel.view import StructView, read_unicode_string
from pykd_ext.kernel.walk import WalkEnd, walk_list
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace

#: A process has at most a few hundred modules; the bound only stops a corrupt list.
MAX_MODULES = 4096
#: Longest module path read (UNICODE_STRING lengths are 16-bit: 32767 characters at most).
MAX_PATH_CHARS = 32767

#: (short name, `_PEB_LDR_DATA` list head, `_LDR_DATA_TABLE_ENTRY` link member)
LISTS: Tuple[Tuple[str, str, str], ...] = (
    ("load", "InLoadOrderModuleList", "InLoadOrderLinks"),
    ("memory", "InMemoryOrderModuleList", "InMemoryOrderLinks"),
    ("init", "InInitializationOrderModuleList", "InInitializationOrderLinks"),
)
LIST_NAMES = tuple(name for name, _, _ in LISTS)

#: record keys of one module, in output order
MODULE_KEYS = ("pid", "process_name", "bitness", "address", "base", "size", "entry_point", "name",
               "path", "time_date_stamp", "load_time", "load_time_raw", "load_count", "flags",
               "load_reason", "lists", "layout")


class ModuleListing:
    """Modules of one loader data block, merged from the three lists (see the module docstring)."""

    def __init__(self, ldr: Any, bitness: int) -> None:
        self.ldr = ldr
        self.bitness = bitness
        self.modules: List[Dict[str, Any]] = []
        self.orders: Dict[str, List[int]] = {name: [] for name in LIST_NAMES}
        self.ends: Dict[str, WalkEnd] = {}
        self.notes: List[str] = []
        self.fault: Optional[Fault] = None          # the loader data itself is unreadable
        self.initialized: Any = None

    def by_base(self) -> Dict[int, Dict[str, Any]]:
        return {m["base"]: m for m in self.modules if isinstance(m.get("base"), int)}

    def in_order(self, which: str) -> List[Dict[str, Any]]:
        """The modules of one list, in that list's order."""
        index = {m["address"]: m for m in self.modules}
        return [index[a] for a in self.orders.get(which, []) if a in index]


def _decode_entry(space: AddressSpace, entry_type: Any, address: int, bitness: int,
                  enum_name: Any = None, budget: Any = None) -> Dict[str, Any]:
    view = StructView(space, entry_type, address)
    load_time_raw = view.get("LoadTime.QuadPart")
    count = view.get("ObsoleteLoadCount")
    if count is None:
        count = view.get("LoadCount")
    reason = view.get("LoadReason")
    if isinstance(reason, int) and enum_name is not None:
        named = enum_name("_LDR_DLL_LOAD_REASON", reason)
        reason = named if named is not None else reason
    full = read_unicode_string(space, view, "FullDllName", MAX_PATH_CHARS, budget)
    base_name = read_unicode_string(space, view, "BaseDllName", MAX_PATH_CHARS, budget)
    if isinstance(base_name, str) and not base_name and isinstance(full, str) and full:
        base_name = full.replace("/", "\\").rsplit("\\", 1)[-1]
    return {
        "bitness": bitness, "address": address, "base": view["DllBase"],
        "size": view["SizeOfImage"], "entry_point": view["EntryPoint"], "name": base_name,
        "path": full, "time_date_stamp": view.get("TimeDateStamp"),
        "load_time": (filetime_to_iso(load_time_raw) if isinstance(load_time_raw, int)
                      else load_time_raw),
        "load_time_raw": load_time_raw, "load_count": count, "flags": view.get("Flags"),
        "load_reason": reason, "lists": [],
    }


def walk_modules(space: AddressSpace, ldr_type: Any, entry_type: Any, ldr: Any, bitness: int,
                 limit: int = MAX_MODULES, enum_name: Any = None,
                 who: str = "loader lists", budget: Any = None) -> ModuleListing:
    """Walk the three module lists of the `_PEB_LDR_DATA` at `ldr` (see the module docstring).

    `space` must read pointers of the structures' width (use `wow64.narrow` for 32-bit lists).
    Never raises on bad memory: unreadable data ends a walk with a note. Entries and name bytes
    are charged to `budget` (the command's `kernel.budget.Budget`) when one is given.
    """
    listing = ModuleListing(ldr, bitness)
    if isinstance(ldr, Fault):
        listing.fault = ldr
        return listing
    if not isinstance(ldr, int) or not ldr:
        listing.notes.append("%s: PEB.Ldr is NULL (the loader has not initialised)" % who)
        return listing
    head_view = StructView(space, ldr_type, ldr)
    if head_view.fault is not None and not head_view.data:
        listing.fault = head_view.fault
        return listing
    listing.initialized = head_view.get("Initialized")
    found: Dict[int, Dict[str, Any]] = {}
    for name, head_member, link_member in LISTS:
        if not ldr_type.has_field(head_member) or not entry_type.has_field(link_member):
            continue
        link = entry_type.offset(link_member)
        end = WalkEnd()
        for entry_link in walk_list(space, ldr + ldr_type.offset(head_member), end, limit=limit,
                                    budget=budget):
            address = entry_link - link
            listing.orders[name].append(address)
            module = found.get(address)
            if module is None:
                module = _decode_entry(space, entry_type, address, bitness, enum_name, budget)
                found[address] = module
            module["lists"].append(name)
        listing.ends[name] = end
        note = end.note("%s %s" % (who, head_member))
        if note:
            listing.notes.append(note)
    ordered = listing.orders["load"] + [a for n in ("memory", "init") for a in listing.orders[n]]
    seen = set()
    for address in ordered:
        if address not in seen:
            seen.add(address)
            listing.modules.append(found[address])
    load, memory = set(listing.orders["load"]), set(listing.orders["memory"])
    complete = all(e.complete for e in listing.ends.values())
    if complete and load != memory:
        only_load = [found[a] for a in listing.orders["load"] if a not in memory]
        only_memory = [found[a] for a in listing.orders["memory"] if a not in load]
        if only_memory:
            listing.notes.append("%s: %d module(s) on InMemoryOrderModuleList but not on "
                                 "InLoadOrderModuleList: %s" % (who, len(only_memory),
                                                                _names(only_memory)))
        if only_load:
            listing.notes.append("%s: %d module(s) on InLoadOrderModuleList but not on "
                                 "InMemoryOrderModuleList: %s" % (who, len(only_load),
                                                                  _names(only_load)))
    stray = [found[a] for a in listing.orders["init"] if a not in load and a not in memory]
    if complete and stray:
        listing.notes.append("%s: %d module(s) only on InInitializationOrderModuleList: %s"
                             % (who, len(stray), _names(stray)))
    return listing


def _names(modules: List[Dict[str, Any]]) -> str:
    out = []
    for m in modules[:8]:
        name = m.get("name")
        out.append(name if isinstance(name, str) and name else "entry %#x" % m["address"])
    return ", ".join(out) + (", ..." if len(modules) > 8 else "")


def module_for(listing: Optional[ModuleListing], address: Any) -> Optional[str]:
    """Name of the module of this listing that contains `address`, or None."""
    if listing is None or not isinstance(address, int) or not address:
        return None
    for m in listing.modules:
        base, size = m.get("base"), m.get("size")
        if isinstance(base, int) and isinstance(size, int) and base <= address < base + size:
            name = m.get("name")
            return name if isinstance(name, str) else None
    return None


__all__ = ["LISTS", "LIST_NAMES", "MAX_MODULES", "MODULE_KEYS", "ModuleListing", "module_for",
           "walk_modules"]
