"""Loaded and unloaded kernel modules, as WinDbg's `lm` lists them.

Why two sources: a kernel or complete dump has the loader's own list, `PsLoadedModuleList` ->
`_KLDR_DATA_TABLE_ENTRY.InLoadOrderLinks` (base, size, names, checksum, timestamp on the entry;
offsets from the build's layout), and the kernel's `MmUnloadedDrivers` ring of recently unloaded
drivers. A triage dump has neither list's memory, but its writer copied both into the file (the
TRIAGE_DUMP64 driver list with its string pool and the unloaded-driver block), and the triage
reader (`targets/triage.py`) has decoded them: they are used as they are.

Where an entry's timestamp or checksum is missing (older layouts have no `TimeDateStamp` field)
and the module's PE header page is in the dump, it is read from the header.

`MmUnloadedDrivers` holds a pointer to an array of `_UNLOADED_DRIVER`, and `MmLastUnloadedDriver`
the next slot to write (ULONG). The kernel symbols carry no type for the array's element; its layout
is the one Volatility 3 declares (`volatility3/framework/symbols/windows/unloadedmodules-x64.json`
and `-x86.json`): `UNICODE_STRING Name; PVOID StartAddress; PVOID EndAddress; LARGE_INTEGER
CurrentTime` (x64 40 bytes, x86 24 bytes), defined once below as `UNLOADED_DRIVER`.
"""
import fnmatch
from typing import Any, Dict, List

from construct import Int16ul, Int32ul, Int64ul, Padding, Struct

from pykd_ext.errors import DumpFormatError, MemoryReadError
from pykd_ext.kernel.times import filetime_to_iso
from pykd_ext.kernel.walk import WalkEnd, walk_list
from pykd_ext.memory.faults import Fault

#: a real system loads a few hundred drivers; the bound only stops a corrupt list
MAX_DRIVERS = 4096
#: MI_UNLOADED_DRIVERS: the kernel keeps the last 50 unloaded drivers (Volatility caps at 1024)
MAX_UNLOADED = 1024
#: longest driver path read (UNICODE_STRING lengths are 16-bit)
MAX_NAME_CHARS = 32767

#: `_UNLOADED_DRIVER` per pointer size (Volatility 3's unloadedmodules-x64.json / -x86.json)
UNLOADED_DRIVER = {
    8: Struct("Length" / Int16ul, "MaximumLength" / Int16ul, Padding(4), "Buffer" / Int64ul,
              "StartAddress" / Int64ul, "EndAddress" / Int64ul, "CurrentTime" / Int64ul),
    4: Struct("Length" / Int16ul, "MaximumLength" / Int16ul, "Buffer" / Int32ul,
              "StartAddress" / Int32ul, "EndAddress" / Int32ul, "CurrentTime" / Int64ul),
}

#: record keys of one loaded module, in output order
DRIVER_KEYS = ("base", "end", "size", "name", "path", "timestamp", "checksum", "entry_point",
               "flags", "entry", "source")


class DriverListing:
    """Loaded modules in load order, unloaded ones newest last, and how they were found."""

    def __init__(self) -> None:
        self.loaded: List[Dict[str, Any]] = []
        self.unloaded: List[Dict[str, Any]] = []
        self.source = ""                 # "triage driver list" | "PsLoadedModuleList"
        self.unloaded_source = ""
        self.notes: List[str] = []


def _stem(name: Any) -> str:
    """`amdppm` for `amdppm.sys`: the module name WinDbg's `lm` prints."""
    text = name if isinstance(name, str) else ""
    return text.rsplit(".", 1)[0] if "." in text else text


def module_name(record: Dict[str, Any]) -> str:
    """WinDbg's module name of a record (`nt` for the kernel image, else the file name's stem)."""
    if record.get("is_kernel"):
        return "nt"
    return _stem(record.get("name")) or "?"


def matches(record: Dict[str, Any], pattern: str) -> bool:
    """`lm m PATTERN`: a case-insensitive wildcard (`*`, `?`) over the module name; the file name
    (`amdppm.sys`) is accepted too."""
    want = pattern.lower()
    names = [module_name(record).lower(), str(record.get("name") or "").lower()]
    return any(fnmatch.fnmatchcase(n, want) for n in names if n)


def _pe_facts(ctx: Any, base: Any) -> Dict[str, Any]:
    """TimeDateStamp and CheckSum from the module's PE header, when its page is in the dump."""
    if not isinstance(base, int) or not base:
        return {}
    from pykd_ext.targets.pe import read_pe_info
    try:
        info = read_pe_info(ctx.space, base)
    except (MemoryReadError, DumpFormatError):
        return {}
    return {"timestamp": info.timestamp, "checksum": info.checksum}


def _loaded_from_list(ctx: Any, listing: DriverListing) -> None:
    head = ctx.global_address("PsLoadedModuleList")
    type_name = "_KLDR_DATA_TABLE_ENTRY" if ctx.has("_KLDR_DATA_TABLE_ENTRY") else "_LDR_DATA_TABLE_ENTRY"
    if head is None:
        listing.notes.append("PsLoadedModuleList: address unknown (no symbols, header or KDBG entry)")
        return
    if not ctx.has(type_name):
        listing.notes.append("PsLoadedModuleList: this layout has no %s" % type_name)
        return
    listing.source = "PsLoadedModuleList"
    link = ctx.layouts.type(type_name).offset("InLoadOrderLinks")
    end = WalkEnd()
    for entry_link in walk_list(ctx.space, head, end, limit=MAX_DRIVERS, budget=ctx.budget):
        entry = entry_link - link
        view = ctx.view(type_name, entry)
        base, size = view["DllBase"], view["SizeOfImage"]
        record: Dict[str, Any] = {
            "base": base, "size": size,
            "end": base + size if isinstance(base, int) and isinstance(size, int) else None,
            "name": ctx.read_unicode(view, "BaseDllName"), "path": ctx.read_unicode(view, "FullDllName"),
            "timestamp": view.get("TimeDateStamp"), "checksum": view.get("CheckSum"),
            "entry_point": view.get("EntryPoint"), "flags": view.get("Flags"), "entry": entry,
            "source": "PsLoadedModuleList"}
        if not record["timestamp"] or not record["checksum"]:
            # not on the entry (older layouts) or left 0: the image's own header, when in the dump
            for key, value in _pe_facts(ctx, base).items():
                if not record[key] and isinstance(value, int):
                    record[key] = value
        listing.loaded.append(record)
    note = end.note("PsLoadedModuleList")
    if note:
        listing.notes.append(note)


def _loaded_from_triage(drivers: List[Any], listing: DriverListing) -> None:
    listing.source = "triage driver list"
    for d in drivers[:MAX_DRIVERS]:
        if not isinstance(d, dict):
            continue
        base, size = d.get("base"), d.get("size")
        listing.loaded.append({
            "base": base, "size": size,
            "end": base + size if isinstance(base, int) and isinstance(size, int) else None,
            "name": d.get("name"), "path": d.get("path"), "timestamp": d.get("timestamp"),
            "checksum": d.get("checksum"), "entry_point": d.get("entry_point"), "flags": d.get("flags"),
            "entry": None, "source": "triage driver list"})


def _unloaded_from_kernel(ctx: Any, listing: DriverListing) -> None:
    """`MmUnloadedDrivers` / `MmLastUnloadedDriver` (symbols, else the KDBG's fields)."""
    layout = UNLOADED_DRIVER.get(ctx.pointer_size)
    array = ctx.read_global_pointer("MmUnloadedDrivers")
    count = ctx.read_global_u32("MmLastUnloadedDriver")
    if layout is None or array is None or count is None:
        return
    listing.unloaded_source = "MmUnloadedDrivers"
    if isinstance(array, Fault) or isinstance(count, Fault):
        listing.notes.append("MmUnloadedDrivers: not in the dump (%s)"
                             % (array if isinstance(array, Fault) else count))
        return
    if not array or not count:
        return
    if count > MAX_UNLOADED:
        listing.notes.append("MmLastUnloadedDriver is %d (more than %d): list ignored" % (count, MAX_UNLOADED))
        return
    size = layout.sizeof()
    try:
        raw = ctx.space.read(array, count * size)
    except MemoryReadError as err:
        listing.notes.append("MmUnloadedDrivers array at 0x%x is not in the dump (%s)" % (array, err.fault))
        return
    from pykd_ext.kernel.view import read_utf16
    for index in range(count):
        item = layout.parse(raw[index * size:(index + 1) * size])
        if not item.Buffer or not item.Length:
            continue
        name = read_utf16(ctx.space, item.Buffer, item.Length, MAX_NAME_CHARS, ctx.budget)
        listing.unloaded.append({"name": name, "start": item.StartAddress, "end": item.EndAddress,
                                 "unload_time": filetime_to_iso(item.CurrentTime) if item.CurrentTime else None,
                                 "source": "MmUnloadedDrivers"})


def kernel_modules(ctx: Any) -> DriverListing:
    """Loaded (and unloaded) kernel modules of the target (see the module docstring)."""
    listing = DriverListing()
    extra = ctx.info.extra or {}
    drivers = extra.get("drivers")
    if isinstance(drivers, list) and drivers:
        _loaded_from_triage(drivers, listing)
    else:
        _loaded_from_list(ctx, listing)
    kernel_base = ctx.kernel_base
    for record in listing.loaded:
        record["is_kernel"] = bool(kernel_base) and record.get("base") == kernel_base or (
            not kernel_base and record is listing.loaded[0])
    unloaded = extra.get("unloaded_drivers")
    if isinstance(unloaded, list) and "drivers" in extra:
        listing.unloaded_source = "triage unloaded-driver list"
        for u in unloaded[:MAX_UNLOADED]:
            if isinstance(u, dict):
                listing.unloaded.append({"name": u.get("name"), "start": u.get("start"), "end": u.get("end"),
                                         "unload_time": None, "source": "triage unloaded-driver list"})
    else:
        _unloaded_from_kernel(ctx, listing)
    return listing


__all__ = ["DRIVER_KEYS", "DriverListing", "MAX_DRIVERS", "UNLOADED_DRIVER", "kernel_modules",
           "matches", "module_name"]
