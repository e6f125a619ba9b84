"""Forge the user-mode side of scenario processes: loader lists, process parameters,
environments, TEBs, and the 32-bit PEB/TEB/loader data of WoW64 processes.

Why: `peb`, `teb` and `modules` — and Volatility's `windows.cmdline`, `windows.envars` and
`windows.dlllist` that check them — need processes whose user memory holds what a real process
has. `plant_user_objects(builder)` is called by the scenario builder (`kernel_objects._Builder.build`,
after the processes and threads are planted, before the kernel half is shared) and writes, into
each user process's own page tables, with offsets and bit positions from the build's layouts
(`_PEB`, `_PEB_LDR_DATA`, `_LDR_DATA_TABLE_ENTRY`, `_RTL_USER_PROCESS_PARAMETERS`, `_TEB`) and,
for WoW64, from the x86 layouts the decoder would choose (`kernel.wow64.x86_layouts_for`):
- PEB: Ldr, BeingDebugged, heaps, processor count, subsystem;
- loader lists: the image, ntdll, kernel32, KernelBase and per-process DLLs on all three lists
  (rootkit.exe's injected DLL is unlinked from the load-order list only — a DKOM-style hide);
- process parameters: current directory, DLL path, window title, desktop, an environment block
  (with `PYKD_FORGE_PID=<pid>`, so a reader using the wrong address space is caught, and one long
  variable so the block crosses a page);
- a TEB for every user thread with a TEB address: NT_TIB (self, stack), ClientId, PEB, last
  error/status, TLS pointer, fiber data (one thread has `HasFiberData`);
- WoW64: the PEB32 moved below 4 GiB (where 32-bit pointers can name it; `_EWOW64PROCESS.Peb`
  / Windows 7's `Wow64Process` re-pointed), its loader lists (32-bit exe, ntdll, kernel32,
  KernelBase), parameters and environment, and each thread's TEB32 at TEB64 + 0x2000 (named by
  `WowTebOffset` where the build has it and by the TEB64's `NtTib.ExceptionList`, as WoW64 does).
What was written is added to each planted process record under "user" (see `UserFacts`).
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.forge.kernel_memory import KernelMemory
from pykd_ext.forge.pagetables import PageTables
from pykd_ext.memory.space import PAGE_SIZE

#: Where the forge puts a process's loader data and strings: after its PEB page(s), inside the
#: gap before the process parameters H7's builder puts at PEB + 0x20000 (addresses are choices).
ARENA_OFFSET = 0x2000
ARENA_END = 0x20000
#: WoW64: 32-bit structures below 4 GiB (TEBs of the standard scenario sit at 0x00FAxxxx).
WOW64_ARENA = 0x00E00000
WOW64_ARENA_SIZE = 0x80000
#: TEB32 = TEB64 + this (the spacing Windows uses; the forge writes WowTebOffset/ExceptionList).
TEB32_DISTANCE = 0x2000
#: Forged user stacks (not mapped: only their bounds are in the TEB).
USER_STACK_TOP = 0x000000A2_20000000
USER_STACK_SIZE = 0x100000
#: NTSTATUS planted as LastStatusValue on every other thread: STATUS_OBJECT_NAME_NOT_FOUND
#: (ntstatus.h 0xC0000034).
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
#: A default locale id: en-US (MS-LCID 0x0409).
LCID_EN_US = 0x0409
#: PE TimeDateStamps the forged DLLs carry (arbitrary, distinct).
STAMP_BASE = 0x5B9D5F7A

#: (name, directory, base, size) of the 64-bit DLLs every user process loads.
NATIVE_DLLS: Tuple[Tuple[str, str, int, int], ...] = (
    ("ntdll.dll", "C:\\Windows\\SYSTEM32", 0x00007FFD_1C200000, 0x1F5000),
    ("KERNEL32.DLL", "C:\\Windows\\System32", 0x00007FFD_1B0E0000, 0xBD000),
    ("KERNELBASE.dll", "C:\\Windows\\System32", 0x00007FFD_19C60000, 0x2A3000),
)
#: 64-bit DLLs of a WoW64 process (besides ntdll), as on a real system.
WOW64_NATIVE_DLLS: Tuple[Tuple[str, str, int, int], ...] = (
    ("wow64.dll", "C:\\Windows\\System32", 0x00000000_77C80000, 0x52000),
    ("wow64win.dll", "C:\\Windows\\System32", 0x00000000_77C00000, 0x78000),
    ("wow64cpu.dll", "C:\\Windows\\System32", 0x00000000_77CE0000, 0xA000),
)
#: 32-bit DLLs of a WoW64 process (ntdll32 holds the scenario's WOW64_THREAD_START).
WOW64_DLLS: Tuple[Tuple[str, str, int, int], ...] = (
    ("ntdll.dll", "C:\\Windows\\SysWOW64", 0x77A00000, 0x1A0000),
    ("KERNEL32.DLL", "C:\\Windows\\SysWOW64", 0x76D20000, 0xF0000),
    ("KERNELBASE.dll", "C:\\Windows\\SysWOW64", 0x75A10000, 0x1E4000),
)
#: Per-process extra DLLs (by image name).
EXTRA_DLLS: Dict[str, Tuple[Tuple[str, str, int, int], ...]] = {
    "lsass.exe": (("lsasrv.dll", "C:\\Windows\\system32", 0x00007FFD_18A00000, 0x1B8000),),
    "svchost.exe": (("sechost.dll", "C:\\Windows\\System32", 0x00007FFD_1A9B0000, 0x9E000),),
    "explorer.exe": (("SHELL32.dll", "C:\\Windows\\System32", 0x00007FFD_1A0F0000, 0x745000),),
}
#: rootkit.exe's DLL: on InMemoryOrder and InInitializationOrder, unlinked from InLoadOrder.
HIDDEN_DLL = ("inject.dll", "C:\\ProgramData\\rk", 0x00007FFD_10000000, 0x12000)


@dataclass
class UserFacts:
    """What the forge wrote into one process's user memory (the tests' expected values)."""

    peb: int
    image_base: int
    ldr: int
    process_parameters: int
    command_line: str
    image_path: str
    current_directory: str
    dll_path: str
    window_title: str
    desktop: str
    environment: List[str]
    environment_address: int
    being_debugged: bool
    number_of_heaps: int
    process_heap: int
    modules: List[Dict[str, Any]] = field(default_factory=list)     # load order
    hidden_modules: List[Dict[str, Any]] = field(default_factory=list)
    tebs: Dict[int, Dict[str, Any]] = field(default_factory=dict)    # tid -> TEB facts
    wow64: Optional["UserFacts"] = None                               # the 32-bit side
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """What `dataclasses.asdict` gives (fresh containers all the way down), without its
        per-value deep copy: leaves are ints, strings and booleans (10,000 processes' worth)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    """UserFacts, dicts, lists and tuples as fresh plain containers; immutable leaves shared.
    (Recursive: the records nest four levels at most — process, TEB, TEB32, values.)"""
    if isinstance(value, UserFacts):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class Writer:
    """Field writes by layout (`KernelLayouts`: 64-bit or x86) through one address space."""

    def __init__(self, mem: KernelMemory, layouts: Any) -> None:
        self.mem = mem
        self.layouts = layouts
        self.pointer_size = int(layouts.pointer_size)
        self._fields: Dict[Tuple[str, str], Any] = {}      # (type, path) -> FieldLayout

    def _field(self, type_name: str, path: str) -> Any:
        key = (type_name, path)
        found = self._fields.get(key)
        if found is None:
            found = self._fields[key] = self.layouts.type(type_name).field(path)
        return found

    def has(self, type_name: str, path: str) -> bool:
        key = (type_name, path)
        if key in self._fields:
            return True
        return self.layouts.has_type(type_name) and self.layouts.type(type_name).has_field(path)

    def size(self, type_name: str) -> int:
        return self.layouts.type(type_name).size

    def offset(self, type_name: str, path: str) -> int:
        return self.layouts.type(type_name).offset(path)

    def put(self, type_name: str, address: int, path: str, value: int) -> None:
        f = self._field(type_name, path)
        at = address + f.offset
        if f.bit_length is not None:
            mask = (1 << f.bit_length) - 1
            old = int.from_bytes(self.mem.read(at, f.size), "little")
            new = (old & ~(mask << f.bit_position)) | ((value & mask) << f.bit_position)
            self.mem.write(at, new.to_bytes(f.size, "little"))
            return
        self.mem.write(at, (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little"))

    def put_if(self, type_name: str, address: int, path: str, value: int) -> bool:
        if not self.has(type_name, path):
            return False
        self.put(type_name, address, path, value)
        return True

    def get(self, type_name: str, address: int, path: str) -> int:
        f = self.layouts.type(type_name).field(path)
        return int.from_bytes(self.mem.read(address + f.offset, f.size), "little")

    def unicode_string(self, type_name: str, address: int, path: str, text: str, buffer: int) -> int:
        data = text.encode("utf-16-le")
        self.put(type_name, address, path + ".Length", len(data))
        self.put(type_name, address, path + ".MaximumLength", len(data) + 2)
        self.put(type_name, address, path + ".Buffer", buffer)
        self.mem.write(buffer, data + b"\0\0")
        return (buffer + len(data) + 2 + 7) & ~7

    def list_link(self, head: int, entries: List[int]) -> None:
        """A circular LIST_ENTRY chain of this pointer width (Flink at +0, Blink at +width)."""
        chain = [head] + list(entries)
        n = self.pointer_size
        for i, entry in enumerate(chain):
            self.mem.write(entry, chain[(i + 1) % len(chain)].to_bytes(n, "little"))
            self.mem.write(entry + n, chain[i - 1].to_bytes(n, "little"))


class UserArena:
    """A bump allocator over [base, end) of one process's user space, mapping pages on demand."""

    def __init__(self, space: PageTables, base: int, end: int) -> None:
        self.space = space
        self.cursor = base
        self.end = end

    def alloc(self, size: int, align: int = 16) -> int:
        start = -(-self.cursor // align) * align
        stop = start + max(size, 1)
        if stop > self.end:
            raise MemoryError("user arena at 0x%x is full" % start)
        ensure_mapped(self.space, start, stop - start)
        self.cursor = stop
        return start


def ensure_mapped(space: PageTables, va: int, size: int) -> None:
    """Map fresh zeroed pages over [va, va+size) where nothing is mapped yet."""
    page = va & ~(PAGE_SIZE - 1)
    while page < va + size:
        if space.translate(page) is None:
            space.map_new(page, PAGE_SIZE)
        page += PAGE_SIZE


def _environment(proc: Any, record: Dict[str, Any], processors: int, bits: int) -> List[str]:
    user = "SYSTEM" if (record.get("session_id") or 0) == 0 else "user"
    profile = ("C:\\Windows\\system32\\config\\systemprofile" if user == "SYSTEM"
               else "C:\\Users\\user")
    env = [
        "=C:=C:\\Windows\\system32",
        "ALLUSERSPROFILE=C:\\ProgramData",
        "COMPUTERNAME=FORGE-PC",
        "ComSpec=C:\\Windows\\system32\\cmd.exe",
        "NUMBER_OF_PROCESSORS=%d" % processors,
        "OS=Windows_NT",
        "Path=C:\\Windows\\system32;C:\\Windows;C:\\Windows\\System32\\Wbem",
        "PROCESSOR_ARCHITECTURE=%s" % ("AMD64" if bits == 64 else "x86"),
        "PYKD_FORGE_PID=%d" % proc.pid,
        "PYKD_FORGE_IMAGE=%s" % proc.name,
        "SystemDrive=C:",
        "SystemRoot=C:\\Windows",
        "TEMP=%s\\AppData\\Local\\Temp" % profile,
        "USERNAME=%s" % user,
        "USERPROFILE=%s" % profile,
        "windir=C:\\Windows",
    ]
    if proc.name.lower() == "explorer.exe":   # one long value: the block crosses a page
        env.append("PYKD_FORGE_LONG=" + "".join("%04d;" % i for i in range(700)))
    if bits == 32:
        env.append("PROCESSOR_ARCHITEW6432=AMD64")
    return env


def _dll_entries(dlls: Tuple[Tuple[str, str, int, int], ...], order: int) -> List[Dict[str, Any]]:
    out = []
    for n, (name, directory, base, size) in enumerate(dlls):
        out.append({"name": name, "path": "%s\\%s" % (directory, name), "base": base, "size": size,
                    "entry_point": base + 0x1000 + 0x10 * n, "time_date_stamp": STAMP_BASE + 0x1111 * (order + n)})
    return out


class _ProcessPlanter:
    """Writes one process's user objects (one bitness at a time)."""

    def __init__(self, builder: Any, proc: Any, record: Dict[str, Any], index: int) -> None:
        self.builder = builder
        self.proc = proc
        self.record = record
        self.index = index
        self.space: PageTables = builder.spaces[proc.pid]
        self.mem = KernelMemory(self.space, builder.facts)
        self.w64 = Writer(self.mem, builder.facts.layouts)
        peb = record["peb"]
        self.arena = UserArena(self.space, peb + ARENA_OFFSET, peb + ARENA_END)
        self.load_time = record.get("create_time_raw") or builder.spec.boot_time

    def plant_modules(self, w: Writer, arena: UserArena, ldr: int,
                      modules: List[Dict[str, Any]], hidden: List[Dict[str, Any]]) -> None:
        """_PEB_LDR_DATA at `ldr` with `modules` on all lists (`hidden` not on load order)."""
        entry_size = w.size("_LDR_DATA_TABLE_ENTRY")
        w.put("_PEB_LDR_DATA", ldr, "Length", w.size("_PEB_LDR_DATA"))
        w.put("_PEB_LDR_DATA", ldr, "Initialized", 1)
        addresses: Dict[str, int] = {}
        for n, module in enumerate(modules + hidden):
            entry = arena.alloc(entry_size, 16)
            addresses[module["name"] + "@%x" % module["base"]] = entry
            module["entry"] = entry
            w.put("_LDR_DATA_TABLE_ENTRY", entry, "DllBase", module["base"])
            w.put("_LDR_DATA_TABLE_ENTRY", entry, "EntryPoint", module["entry_point"])
            w.put("_LDR_DATA_TABLE_ENTRY", entry, "SizeOfImage", module["size"])
            w.put_if("_LDR_DATA_TABLE_ENTRY", entry, "TimeDateStamp", module["time_date_stamp"])
            load_time = self.load_time + 10000 * n
            if w.put_if("_LDR_DATA_TABLE_ENTRY", entry, "LoadTime.QuadPart", load_time):
                module["load_time_raw"] = load_time
            else:
                module["load_time_raw"] = None
            if not w.put_if("_LDR_DATA_TABLE_ENTRY", entry, "ObsoleteLoadCount", 0xFFFF):
                w.put_if("_LDR_DATA_TABLE_ENTRY", entry, "LoadCount", 0xFFFF)
            text = arena.alloc(2 * (len(module["path"]) + len(module["name"])) + 8, 8)
            nxt = w.unicode_string("_LDR_DATA_TABLE_ENTRY", entry, "FullDllName", module["path"], text)
            w.unicode_string("_LDR_DATA_TABLE_ENTRY", entry, "BaseDllName", module["name"], nxt)
        link = {name: w.offset("_LDR_DATA_TABLE_ENTRY", member) for name, member in (
            ("load", "InLoadOrderLinks"), ("memory", "InMemoryOrderLinks"),
            ("init", "InInitializationOrderLinks"))}
        head = {name: ldr + w.offset("_PEB_LDR_DATA", member) for name, member in (
            ("load", "InLoadOrderModuleList"), ("memory", "InMemoryOrderModuleList"),
            ("init", "InInitializationOrderModuleList"))}
        init_order = [m for m in modules[1:] if m["name"].lower() == "ntdll.dll"] + \
                     [m for m in modules[1:] if m["name"].lower() != "ntdll.dll"]
        for m in modules:
            m["lists"] = ["load", "memory"] + (["init"] if m in init_order else [])
        for m in hidden:
            m["lists"] = ["memory", "init"]
        w.list_link(head["load"], [m["entry"] + link["load"] for m in modules])
        w.list_link(head["memory"], [m["entry"] + link["memory"] for m in modules + hidden])
        w.list_link(head["init"], [m["entry"] + link["init"] for m in init_order + hidden])

    def plant_parameters(self, w: Writer, arena: UserArena, params: int, bits: int,
                         new_block: bool) -> Dict[str, Any]:
        proc, record = self.proc, self.record
        from pykd_ext.forge.paths import dos_path
        image_path = dos_path(proc.image_path or proc.name)
        command_line = proc.command_line or proc.name
        directory = "C:\\Windows\\system32\\" if (record.get("session_id") or 0) == 0 \
            else "C:\\Users\\user\\"
        if bits == 32:
            directory = "C:\\Windows\\SysWOW64\\"
        facts = {"image_path": image_path, "command_line": command_line,
                 "current_directory": directory, "dll_path": "", "window_title": image_path,
                 "desktop": "Winsta0\\Default"}
        if new_block:
            size = w.size("_RTL_USER_PROCESS_PARAMETERS")
            w.put("_RTL_USER_PROCESS_PARAMETERS", params, "Length", size)
            w.put("_RTL_USER_PROCESS_PARAMETERS", params, "MaximumLength", size)
            text = arena.alloc(2 * (len(image_path) + len(command_line)) + 16, 8)
            nxt = w.unicode_string("_RTL_USER_PROCESS_PARAMETERS", params, "ImagePathName", image_path, text)
            w.unicode_string("_RTL_USER_PROCESS_PARAMETERS", params, "CommandLine", command_line, nxt)
        w.put_if("_RTL_USER_PROCESS_PARAMETERS", params, "Flags", 1)   # RTL_USER_PROC_PARAMS_NORMALIZED
        strings = [("CurrentDirectory.DosPath", directory), ("WindowTitle", image_path),
                   ("DesktopInfo", "Winsta0\\Default"), ("DllPath", "")]
        text = arena.alloc(sum(2 * len(s) + 8 for _, s in strings) + 16, 8)
        for path, value in strings:
            if value:
                text = w.unicode_string("_RTL_USER_PROCESS_PARAMETERS", params, path, value, text)
        env = _environment(proc, record, self.builder.spec.processors, bits)
        block = ("\0".join(env) + "\0\0").encode("utf-16-le")
        where = arena.alloc(len(block), 16)
        self.mem.write(where, block)
        w.put("_RTL_USER_PROCESS_PARAMETERS", params, "Environment", where)
        w.put_if("_RTL_USER_PROCESS_PARAMETERS", params, "EnvironmentSize", len(block))
        facts.update(environment=env, environment_address=where)
        return facts

    def plant_peb_fields(self, w: Writer, type_name: str, peb: int, image_base: int, ldr: int,
                         params: int, heap: int) -> None:
        w.put(type_name, peb, "ImageBaseAddress", image_base)
        w.put(type_name, peb, "Ldr", ldr)
        w.put(type_name, peb, "ProcessParameters", params)
        w.put_if(type_name, peb, "BeingDebugged", int(self.being_debugged))
        w.put_if(type_name, peb, "ProcessHeap", heap)
        w.put_if(type_name, peb, "NumberOfHeaps", 3)
        w.put_if(type_name, peb, "MaximumNumberOfHeaps", 16)
        w.put_if(type_name, peb, "NumberOfProcessors", self.builder.spec.processors)
        w.put_if(type_name, peb, "OSPlatformId", 2)                 # VER_PLATFORM_WIN32_NT
        w.put_if(type_name, peb, "ImageSubsystem", 2)               # IMAGE_SUBSYSTEM_WINDOWS_GUI
        w.put_if(type_name, peb, "ImageSubsystemMajorVersion", 6)
        version = self.builder.choice.version.split(".")
        w.put_if(type_name, peb, "OSMajorVersion", int(version[0]))
        w.put_if(type_name, peb, "OSMinorVersion", int(version[1]))
        w.put_if(type_name, peb, "OSBuildNumber", self.builder.choice.build)
        w.put_if(type_name, peb, "SessionId", self.record.get("session_id") or 0)

    @property
    def being_debugged(self) -> bool:
        return self.proc.name.lower() == "rootkit.exe"

    def plant(self) -> UserFacts:
        proc, record, w = self.proc, self.record, self.w64
        peb = record["peb"]
        image_base = w.get("_PEB", peb, "ImageBaseAddress")
        params = w.get("_PEB", peb, "ProcessParameters")
        if proc.wow64:
            image_base &= 0xFFFFFFFF           # a WoW64 image is a 32-bit image below 4 GiB
        ldr = self.arena.alloc(w.size("_PEB_LDR_DATA"), 16)
        heap = peb + ARENA_END - 0x1000 + 0x40 * self.index    # an address only (not mapped)
        self.plant_peb_fields(w, "_PEB", peb, image_base, ldr, params, heap)
        exe = {"name": proc.name, "path": dos_path_of(proc), "base": image_base, "size": 0x4A000,
               "entry_point": image_base + 0x1F30, "time_date_stamp": STAMP_BASE - 0x777}
        dlls = NATIVE_DLLS[:1] + WOW64_NATIVE_DLLS if proc.wow64 else \
            NATIVE_DLLS + EXTRA_DLLS.get(proc.name.lower(), ())
        modules = [exe] + _dll_entries(dlls, 1)
        hidden = _dll_entries((HIDDEN_DLL,), 40) if proc.name.lower() == "rootkit.exe" else []
        self.plant_modules(w, self.arena, ldr, modules, hidden)
        pfacts = self.plant_parameters(w, self.arena, params, 64, new_block=False)
        facts = UserFacts(peb=peb, image_base=image_base, ldr=ldr, process_parameters=params,
                          being_debugged=self.being_debugged, number_of_heaps=3, process_heap=heap,
                          modules=modules, hidden_modules=hidden, **pfacts)
        if proc.wow64:
            facts.wow64 = self.plant_wow64(image_base, exe)
        self.plant_tebs(facts)
        return facts

    def plant_wow64(self, image_base: int, exe64: Dict[str, Any]) -> Optional[UserFacts]:
        from pykd_ext.kernel.wow64 import x86_layouts_for
        builder = self.builder
        l32 = x86_layouts_for(builder.facts.layouts)
        self.layouts32 = l32
        arena = UserArena(self.space, WOW64_ARENA, WOW64_ARENA + WOW64_ARENA_SIZE)
        native = self.w64
        if l32.full is not None:
            w32 = Writer(self.mem, l32.full)
            peb_type = "_PEB"
        else:
            w32 = native                               # x64 PDB's _PEB32: top-level fields only
            peb_type = "_PEB32"
        peb32 = arena.alloc(w32.size(peb_type), PAGE_SIZE)
        self.repoint_peb32(peb32)
        notes: List[str] = [l32.note]
        if l32.full is None:
            w32.put(peb_type, peb32, "ImageBaseAddress", image_base)
            return UserFacts(peb=peb32, image_base=image_base, ldr=0, process_parameters=0,
                             command_line="", image_path="", current_directory="", dll_path="",
                             window_title="", desktop="", environment=[], environment_address=0,
                             being_debugged=self.being_debugged, number_of_heaps=3,
                             process_heap=0, notes=notes + ["no x86 layouts: 32-bit loader data "
                                                            "and parameters not planted"])
        ldr = arena.alloc(w32.size("_PEB_LDR_DATA"), 16)
        params = arena.alloc(w32.size("_RTL_USER_PROCESS_PARAMETERS"), 16)
        heap = WOW64_ARENA + WOW64_ARENA_SIZE + 0x10000
        self.plant_peb_fields(w32, peb_type, peb32, image_base, ldr, params, heap)
        exe = dict(exe64)
        modules = [exe] + _dll_entries(WOW64_DLLS, 20)
        self.plant_modules(w32, arena, ldr, modules, [])
        pfacts = self.plant_parameters(w32, arena, params, 32, new_block=True)
        return UserFacts(peb=peb32, image_base=image_base, ldr=ldr, process_parameters=params,
                         being_debugged=self.being_debugged, number_of_heaps=3, process_heap=heap,
                         modules=modules, notes=notes, **pfacts)

    def repoint_peb32(self, peb32: int) -> None:
        """Make the kernel's WoW64 pointer name the relocated PEB32 (see the module docstring)."""
        builder, record = self.builder, self.record
        facts, kmem = builder.facts, builder.mem
        ep = record["address"]
        if facts.has("_EPROCESS", "WoW64Process") and facts.has_type("_EWOW64PROCESS"):
            wow = int.from_bytes(kmem.read(ep + facts.offset("_EPROCESS", "WoW64Process"), 8), "little")
            kmem.put("_EWOW64PROCESS", wow, "Peb", peb32)
        else:
            kmem.put("_EPROCESS", ep, "Wow64Process", peb32)
        record["peb32"] = peb32

    def plant_tebs(self, facts: UserFacts) -> None:
        w = self.w64
        teb_size = w.size("_TEB")
        l32 = getattr(self, "layouts32", None)
        for n, thread in enumerate(self.record["threads"]):
            teb = thread.get("teb") or 0
            if not teb:
                continue
            ensure_mapped(self.space, teb, teb_size)
            stack_base = USER_STACK_TOP + (self.index * 64 + n) * 2 * USER_STACK_SIZE
            t = {"address": teb, "tid": thread["tid"], "pid": self.proc.pid,
                 "stack_base": stack_base, "stack_limit": stack_base - 0x3000,
                 "deallocation_stack": stack_base - USER_STACK_SIZE,
                 "last_error": (thread["tid"] * 7) % 1000,
                 "last_status": STATUS_OBJECT_NAME_NOT_FOUND if n % 2 else 0,
                 "tls_pointer": teb + 0x1480 if n % 3 == 0 else 0,
                 "has_fiber_data": self.proc.name.lower() == "explorer.exe" and n == 1,
                 "peb": facts.peb, "teb32": None}
            t["fiber_data"] = (self.arena.alloc(0x100, 16) if t["has_fiber_data"] else 0x1E00)
            # H10 (issue 17): a scenario's fiber thread, as ConvertThreadToFiber + FlsAlloc leave it
            fiber = any(s.tid == thread["tid"] and getattr(s, "fiber", False) for s in self.proc.threads)
            if fiber:
                t["has_fiber_data"] = True
                t["fiber_data"] = self.arena.alloc(0x100, 16)
                t["fls_data"] = self.arena.alloc(0x100, 16)
                w.put_if("_TEB", teb, "FlsData", t["fls_data"])
            self.write_teb(w, "_TEB", t, 0)
            if self.proc.wow64 and facts.wow64 is not None:
                teb32 = teb + TEB32_DISTANCE
                w32 = Writer(self.mem, l32.full) if l32 is not None and l32.full is not None else w
                type32 = "_TEB" if w32 is not w else "_TEB32"
                ensure_mapped(self.space, teb32, w32.size(type32))
                t32 = dict(t, address=teb32, peb=facts.wow64.peb, stack_base=0x00700000 - n * 0x100000,
                           stack_limit=0x006FD000 - n * 0x100000, deallocation_stack=0x00600000 - n * 0x100000,
                           tls_pointer=teb32 + 0xE10 if t["tls_pointer"] else 0,
                           fiber_data=0x1E00, has_fiber_data=False, teb32=None)
                if fiber:                          # H10: the 32-bit side converted to a fiber
                    t32.update(has_fiber_data=True, fiber_data=0x00500000 - n * 0x10000,
                               fls_data=0x00508000 - n * 0x10000)
                    w32.put_if(type32, teb32, "FlsData", t32["fls_data"])
                self.write_teb(w32, type32, t32, -TEB32_DISTANCE)
                w.put("_TEB", teb, "NtTib.ExceptionList", teb32)
                w.put_if("_TEB", teb, "WowTebOffset", TEB32_DISTANCE)
                t["teb32"] = t32
                t["exception_list"] = teb32
            facts.tebs[thread["tid"]] = t

    def write_teb(self, w: Writer, type_name: str, t: Dict[str, Any], wow_offset: int) -> None:
        teb = t["address"]
        w.put(type_name, teb, "NtTib.Self", teb)
        w.put(type_name, teb, "NtTib.StackBase", t["stack_base"])
        w.put(type_name, teb, "NtTib.StackLimit", t["stack_limit"])
        w.put(type_name, teb, "NtTib.FiberData", t["fiber_data"])
        w.put_if(type_name, teb, "DeallocationStack", t["deallocation_stack"])
        w.put(type_name, teb, "ClientId.UniqueProcess", t["pid"])
        w.put(type_name, teb, "ClientId.UniqueThread", t["tid"])
        w.put(type_name, teb, "ProcessEnvironmentBlock", t["peb"])
        w.put(type_name, teb, "LastErrorValue", t["last_error"])
        w.put_if(type_name, teb, "LastStatusValue", t["last_status"])
        w.put(type_name, teb, "ThreadLocalStoragePointer", t["tls_pointer"])
        w.put_if(type_name, teb, "CurrentLocale", LCID_EN_US)
        w.put_if(type_name, teb, "HasFiberData", int(t["has_fiber_data"]))
        if wow_offset:
            w.put_if(type_name, teb, "WowTebOffset", wow_offset)


def dos_path_of(proc: Any) -> str:
    from pykd_ext.forge.paths import dos_path
    return dos_path(proc.image_path or proc.name)


def plant_user_objects(builder: Any) -> None:
    """The hook `kernel_objects._Builder.build` calls: user objects of every planted process."""
    for index, (proc, record) in enumerate(zip(builder.spec.processes, builder.planted.processes)):
        if not record.get("peb") or proc.pid not in builder.spaces:
            record["user"] = None
            continue
        planter = _ProcessPlanter(builder, proc, record, index)
        facts = planter.plant()
        record["user"] = facts.to_dict()


__all__ = ["HIDDEN_DLL", "NATIVE_DLLS", "TEB32_DISTANCE", "UserFacts", "WOW64_DLLS",
           "plant_user_objects"]
