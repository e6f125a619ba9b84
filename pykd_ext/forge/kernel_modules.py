"""Plant loaded drivers on `PsLoadedModuleList` and recently unloaded ones in `MmUnloadedDrivers`.

Why: `lm` and the stack scan turn addresses into `module+0xoffset`; a forged kernel with only
ntoskrnl on its module list cannot test either, nor be compared with Volatility 3's
`windows.modules`. The entries are `_KLDR_DATA_TABLE_ENTRY`s (the loader's kernel type; builds
without it get `_LDR_DATA_TABLE_ENTRY`) laid out with the build's symbol data, linked after the
kernel's own entry on `InLoadOrderLinks`. The unloaded ring is the array `MmUnloadedDrivers`
points to (its element layout from Volatility 3's `unloadedmodules-x64.json`, as the reader's
`kernel.drivers.UNLOADED_DRIVER`) and `MmLastUnloadedDriver` its count.

Everything is allocated after every other pool object of the scenario (`plant_kernel_modules` runs
last), so no address planted before moves. `planted_modules(planted)` returns the facts.
"""
from typing import Any, Dict, List, Tuple

#: (file name, path, size, TimeDateStamp, CheckSum): the drivers of a small Windows 10 boot,
#: values forged (sizes rounded to pages, stamps/checksums arbitrary but distinct)
DRIVERS: Tuple[Tuple[str, str, int, int, int], ...] = (
    ("hal.dll", "\\SystemRoot\\system32\\hal.dll", 0x6000, 0x1A7BE8E9, 0xCE9F),
    ("kd.dll", "\\SystemRoot\\system32\\kd.dll", 0xB000, 0x5E1A2B3C, 0x4EF6),
    ("CLFS.SYS", "\\SystemRoot\\System32\\drivers\\CLFS.SYS", 0x6A000, 0x503208A5, 0x72C51),
    ("Wdf01000.sys", "\\SystemRoot\\system32\\drivers\\Wdf01000.sys", 0xE3000, 0x6A1B2C3D, 0xE4A11),
    ("ACPI.sys", "\\SystemRoot\\System32\\drivers\\ACPI.sys", 0xD4000, 0x3C5D7E9F, 0xD0F37),
    ("amdppm.sys", "\\SystemRoot\\System32\\drivers\\amdppm.sys", 0x3B000, 0x4F1E2D3C, 0x38E6B),
    ("Ntfs.sys", "\\SystemRoot\\System32\\Drivers\\Ntfs.sys", 0x2E5000, 0x7A6B5C4D, 0x2F1A09),
    ("tcpip.sys", "\\SystemRoot\\System32\\drivers\\tcpip.sys", 0x2D1000, 0x1F2E3D4C, 0x2C8B71),
)
#: (file name, size, seconds before the dump it was unloaded)
UNLOADED: Tuple[Tuple[str, int, int], ...] = (
    ("dam.sys", 0x1C000, 3500), ("WdBoot.sys", 0x12000, 3400), ("hwpolicy.sys", 0x11000, 3300),
)
#: where the forged drivers are loaded: below the kernel image, 4 MiB apart (more than the largest
#: image above), first at this distance below the kernel base
DRIVER_AREA_BELOW_KERNEL = 0x4000000
DRIVER_STRIDE = 0x400000
#: `_UNLOADED_DRIVER` on x64 (Volatility 3 unloadedmodules-x64.json): Name (UNICODE_STRING, 16
#: bytes), StartAddress +16, EndAddress +24, CurrentTime +32; 40 bytes
UNLOADED_DRIVER_SIZE = 40
UNLOADED_START, UNLOADED_END, UNLOADED_TIME = 16, 24, 32


def _entry_type(facts: Any) -> str:
    return "_KLDR_DATA_TABLE_ENTRY" if facts.has("_KLDR_DATA_TABLE_ENTRY", "DllBase") else "_LDR_DATA_TABLE_ENTRY"


def plant_kernel_modules(builder: Any) -> None:
    """Plant `DRIVERS` after ntoskrnl on PsLoadedModuleList and `UNLOADED` in MmUnloadedDrivers
    (x64 kernels with those symbols); the facts land in `builder.planted.drivers` and
    `builder.planted.unloaded_drivers` (see `planted_modules`)."""
    facts, mem = builder.facts, builder.mem
    kernel = builder.machine.kernel
    type_name = _entry_type(facts)
    link = facts.offset(type_name, "InLoadOrderLinks")
    ntoskrnl = builder.planted.globals["ntoskrnl_ldr_entry"]
    chain = [ntoskrnl + facts.offset("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")]
    drivers: List[Dict[str, Any]] = [{"name": "ntoskrnl.exe", "base": kernel.base, "size": kernel.size_of_image,
                                      "entry": ntoskrnl, "path": "\\SystemRoot\\system32\\ntoskrnl.exe"}]
    base = kernel.base - DRIVER_AREA_BELOW_KERNEL
    for name, path, size, stamp, checksum in DRIVERS:
        entry = builder.raw_block(type_name)
        mem.put(type_name, entry, "DllBase", base)
        mem.put(type_name, entry, "EntryPoint", base + 0x1000)
        mem.put(type_name, entry, "SizeOfImage", size)
        mem.put_if(type_name, entry, "TimeDateStamp", stamp)
        mem.put_if(type_name, entry, "CheckSum", checksum)
        mem.put_if(type_name, entry, "LoadCount", 1)
        buffer = builder.pool.alloc(2 * (len(path) + len(name)) + 16, 8)
        after = mem.unicode_string(type_name, entry, "FullDllName", path, buffer)
        mem.unicode_string(type_name, entry, "BaseDllName", name, after)
        chain.append(entry + link)
        drivers.append({"name": name, "path": path, "base": base, "size": size, "timestamp": stamp,
                        "checksum": checksum, "entry": entry})
        base += DRIVER_STRIDE
    mem.list_link(builder.sym("PsLoadedModuleList"), chain)
    builder.planted.drivers = drivers
    builder.planted.unloaded_drivers = _plant_unloaded(builder, base)


def _plant_unloaded(builder: Any, base: int) -> List[Dict[str, Any]]:
    facts, mem = builder.facts, builder.mem
    if not (facts.has_symbol("MmUnloadedDrivers") and facts.has_symbol("MmLastUnloadedDriver")):
        return []
    kernel = builder.machine.kernel
    if not all(kernel.base <= builder.sym(name) < kernel.base + kernel.size_of_image - 8
               for name in ("MmUnloadedDrivers", "MmLastUnloadedDriver")):
        return []              # the forged image is cut short of these globals
    array = builder.pool.alloc(UNLOADED_DRIVER_SIZE * len(UNLOADED), 16)
    out: List[Dict[str, Any]] = []
    for index, (name, size, before) in enumerate(UNLOADED):
        item = array + index * UNLOADED_DRIVER_SIZE
        data = name.encode("utf-16-le")
        buffer = builder.pool.alloc(len(data) + 2, 8)
        mem.write(buffer, data + b"\0\0")
        mem.put("_UNICODE_STRING", item, "Length", len(data))
        mem.put("_UNICODE_STRING", item, "MaximumLength", len(data) + 2)
        mem.put("_UNICODE_STRING", item, "Buffer", buffer)
        when = builder.spec.dump_time - before * 10000000
        mem.u64(item + UNLOADED_START, base)
        mem.u64(item + UNLOADED_END, base + size)
        mem.u64(item + UNLOADED_TIME, when)
        out.append({"name": name, "start": base, "end": base + size, "time": when})
        base += DRIVER_STRIDE
    mem.u64(builder.sym("MmUnloadedDrivers"), array)
    mem.write(builder.sym("MmLastUnloadedDriver"), len(UNLOADED).to_bytes(4, "little"))
    builder.planted.globals["MmUnloadedDrivers"] = builder.sym("MmUnloadedDrivers")
    builder.planted.globals["MmLastUnloadedDriver"] = builder.sym("MmLastUnloadedDriver")
    return out


def planted_modules(planted: Any) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(loaded drivers in list order, unloaded drivers) a forged dump holds."""
    return list(getattr(planted, "drivers", []) or []), list(getattr(planted, "unloaded_drivers", []) or [])


__all__ = ["DRIVERS", "UNLOADED", "plant_kernel_modules", "planted_modules"]
