"""The process environment block: PEB fields, process parameters, environment and module lists.

Why here: `peb`, `modules` and `eproc -v` all need the same decoding, on kernel targets (user
memory through the process's page tables) and user-mode dumps, for 64-bit and WoW64 32-bit PEBs.
Every field comes from the build's `_PEB`/`_RTL_USER_PROCESS_PARAMETERS` layout (32-bit ones
from `wow64.Layouts32`); a field is its value, None (this build has no such field, or the pointer
is NULL) or the `Fault` that made it unreadable — one missing page never fails the command.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from pykd_ext.kernel.budget import BUDGET_CUT
from pykd_ext.kernel.modules import ModuleListing, walk_modules
from pykd_ext.kernel.userspace import UserProcess, absent_note
from pykd_ext.kernel.view import StructView, read_unicode_string
from pykd_ext.kernel.wow64 import narrow
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: An environment block is read up to this many bytes (Windows caps one variable at 32767
#: characters; real blocks are a few KiB).
MAX_ENVIRONMENT_BYTES = 0x100000
#: Longest process-parameter string read (UNICODE_STRING lengths are 16-bit).
MAX_STRING_CHARS = 32767

#: (record key, `_PEB` member) decoded for every PEB, 64- or 32-bit
PEB_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("inherited_address_space", "InheritedAddressSpace"),
    ("read_image_file_exec_options", "ReadImageFileExecOptions"),
    ("being_debugged", "BeingDebugged"), ("image_base", "ImageBaseAddress"), ("ldr", "Ldr"),
    ("process_parameters", "ProcessParameters"), ("sub_system_data", "SubSystemData"),
    ("process_heap", "ProcessHeap"), ("number_of_heaps", "NumberOfHeaps"),
    ("maximum_number_of_heaps", "MaximumNumberOfHeaps"), ("process_heaps", "ProcessHeaps"),
    ("nt_global_flag", "NtGlobalFlag"), ("number_of_processors", "NumberOfProcessors"),
    ("os_major", "OSMajorVersion"), ("os_minor", "OSMinorVersion"), ("os_build", "OSBuildNumber"),
    ("os_csd_version", "OSCSDVersion"), ("os_platform_id", "OSPlatformId"),
    ("image_subsystem", "ImageSubsystem"), ("image_subsystem_major", "ImageSubsystemMajorVersion"),
    ("image_subsystem_minor", "ImageSubsystemMinorVersion"), ("session_id", "SessionId"),
)
#: (record key, `_RTL_USER_PROCESS_PARAMETERS` UNICODE_STRING member)
PARAM_STRINGS: Tuple[Tuple[str, str], ...] = (
    ("image_path", "ImagePathName"), ("command_line", "CommandLine"),
    ("current_directory", "CurrentDirectory.DosPath"), ("dll_path", "DllPath"),
    ("window_title", "WindowTitle"), ("desktop", "DesktopInfo"), ("shell_info", "ShellInfo"),
)
#: record keys of a PEB, in output order (`peb32` holds a nested record with the same keys)
PEB_KEYS = (("pid", "process", "name", "bitness", "address")
            + tuple(k for k, _ in PEB_FIELDS) + ("ldr_initialized",)
            + tuple(k for k, _ in PARAM_STRINGS)
            + ("environment_address", "environment_size", "environment", "module_count",
               "modules", "wow64", "peb32", "layout", "space"))
#: fields that are flags (shown as Yes/No)
BOOLEAN_FIELDS = ("inherited_address_space", "read_image_file_exec_options", "being_debugged")

Value = Union[int, str, bool, None, Fault]


class PebDecoding:
    """One decoded PEB: the record, the module listing, display extras and notes."""

    def __init__(self, record: Dict[str, Any], listing: Optional[ModuleListing],
                 display: Dict[str, Any], notes: List[str]) -> None:
        self.record = record
        self.listing = listing
        self.display = display
        self.notes = notes

    def listings(self) -> List[ModuleListing]:
        """The loader listings of this PEB and, for a WoW64 process, of its 32-bit PEB."""
        out = [self.listing]
        sub = self.display.get("peb32")
        if sub is not None:
            out.append(sub.listing)
        return [listing for listing in out if listing is not None]


def read_environment(space: AddressSpace, address: Any, size: Any,
                     limit: int = MAX_ENVIRONMENT_BYTES,
                     budget: Any = None) -> Tuple[Union[List[str], Fault, None], Optional[str]]:
    """(["NAME=value", ...] or Fault or None, note) of the environment block at `address`.

    The block is NUL-separated UTF-16 strings ending with an empty string. `EnvironmentSize`
    (when the build has it and it is sane) bounds the read; otherwise pages are read until the
    terminator, at most `limit` bytes. A block cut short by a missing page yields the complete
    strings before the gap and a note. The bytes read are charged to `budget` (the command's
    `kernel.budget.Budget`) when one is given: a spent budget cuts the block the same way, or
    makes it a Fault of reason `BUDGET_CUT` when nothing could be read.
    """
    if isinstance(address, Fault):
        return address, None
    if not isinstance(address, int) or not address:
        return None, None
    note: Optional[str] = None
    cut = False
    if isinstance(size, int) and 0 < size <= limit:
        wanted = size if budget is None else budget.take_bytes(size)
        cut = wanted < size
        data, fault = space.read_partial(address, wanted) if wanted else (b"", None)
    else:
        buffer = bytearray()
        fault = None
        cursor = address
        while len(buffer) < limit:
            chunk = min(PAGE_SIZE - (cursor & (PAGE_SIZE - 1)), limit - len(buffer))
            if budget is not None:
                granted = budget.take_bytes(chunk)
                if granted < chunk:
                    cut = True
                    chunk = granted
                    if not chunk:
                        break
            piece, fault = space.read_partial(cursor, chunk)
            start = max(0, len(buffer) - 3)
            buffer += piece
            if fault is not None or cut or _terminated(buffer, start):
                break
            cursor += chunk
        data = bytes(buffer)
    if not data and fault is not None:
        return fault, None
    if not data and cut:
        return Fault(BUDGET_CUT, address), None
    text = data[:len(data) & ~1].decode("utf-16-le", errors="replace")
    end = text.find("\0\0")
    if end >= 0:
        text = text[:end]
    elif fault is not None or cut:
        why = "unreadable memory (%s)" % fault if fault is not None else "the work budget"
        note = "environment block at %#x is cut short by %s" % (address, why)
        text = text.rsplit("\0", 1)[0] if "\0" in text else ""
    elif len(data) >= limit:
        note = "environment block at %#x is longer than %d bytes; the rest is not shown" % (address, limit)
    return [s for s in text.split("\0") if s], note


def _terminated(data: Union[bytes, bytearray], start: int = 0) -> bool:
    """Whether `data` (UTF-16 from an even offset) holds two NUL characters at or after `start`."""
    at = data.find(b"\0\0\0\0", start)
    while at >= 0:
        if at % 2 == 0:
            return True
        at = data.find(b"\0\0\0\0", at + 1)
    return False


def _plain_fields(view: StructView, fields: Tuple[Tuple[str, str], ...]) -> Dict[str, Value]:
    out: Dict[str, Value] = {}
    for key, path in fields:
        value = view.get(path)
        if key in BOOLEAN_FIELDS and isinstance(value, int):
            value = bool(value)
        out[key] = value
    return out


def decode_peb(space: AddressSpace, address: Any, peb_type: Any, params_type: Any,
               ldr_type: Any, entry_type: Any, bitness: int, layout_id: str,
               with_modules: bool = True, enum_name: Any = None,
               who: str = "PEB", missing_types: Optional[str] = None,
               budget: Any = None) -> PebDecoding:
    """Decode the PEB at `address` (any bitness: give the matching types and a matching space).

    `params_type`/`ldr_type`/`entry_type` may be None (32-bit side without x86 layouts): those
    parts come back None and `missing_types` is added to the notes. Strings, the environment and
    the loader lists are charged to `budget` (the command's work budget) when one is given.
    """
    notes: List[str] = []
    record: Dict[str, Any] = {key: None for key in PEB_KEYS}
    record.update(bitness=bitness, address=address, layout=layout_id, modules=[], wow64=None)
    display: Dict[str, Any] = {}
    if isinstance(address, Fault) or not isinstance(address, int) or not address:
        if isinstance(address, Fault):
            notes.append(absent_note(who, address))
        return PebDecoding(record, None, display, notes)
    view = StructView(space, peb_type, address)
    if view.fault is not None and not view.data:
        notes.append(absent_note("%s at %#x" % (who, address), view.fault))
        for key, path in PEB_FIELDS:
            record[key] = view.fault if peb_type.has_field(path) else None
        return PebDecoding(record, None, display, notes)
    record.update(_plain_fields(view, PEB_FIELDS))
    # --- process parameters
    params = record["process_parameters"]
    if params_type is None:
        if isinstance(params, int) and params and missing_types:
            notes.append(missing_types)
    elif isinstance(params, int) and params:
        pview = StructView(space, params_type, params)
        if pview.fault is not None and not pview.data:
            notes.append(absent_note("%s process parameters at %#x" % (who, params), pview.fault))
        for key, path in PARAM_STRINGS:
            if params_type.has_field(path + ".Length"):
                record[key] = read_unicode_string(space, pview, path, MAX_STRING_CHARS, budget)
        env = pview.get("Environment")
        size = pview.get("EnvironmentSize")
        record["environment_address"] = env
        record["environment_size"] = size
        environment, note = read_environment(space, env, size, budget=budget)
        record["environment"] = environment
        if note:
            notes.append("%s: %s" % (who, note))
        display["current_directory_handle"] = pview.get("CurrentDirectory.Handle")
    elif isinstance(params, Fault):
        for key, _ in PARAM_STRINGS:
            record[key] = params
    # --- loader lists
    listing: Optional[ModuleListing] = None
    ldr = record["ldr"]
    if with_modules and ldr_type is not None and entry_type is not None:
        listing = walk_modules(space, ldr_type, entry_type, ldr, bitness, enum_name=enum_name,
                               who="%s loader lists" % who, budget=budget)
        record["ldr_initialized"] = (bool(listing.initialized) if isinstance(listing.initialized, int)
                                     else listing.initialized)
        if listing.fault is not None:
            notes.append(absent_note("%s loader data at %#x" % (who, ldr), listing.fault))
            record["modules"] = listing.fault
        else:
            record["modules"] = [_module_brief(m) for m in listing.in_order("load")]
            record["module_count"] = len(listing.orders["load"])
            heads = {}
            hview = StructView(space, ldr_type, ldr)
            for member in ("InLoadOrderModuleList", "InMemoryOrderModuleList",
                           "InInitializationOrderModuleList"):
                if ldr_type.has_field(member):
                    heads[member] = (hview[member + ".Flink"], hview[member + ".Blink"])
            display["list_heads"] = heads
        notes.extend(listing.notes)
    elif with_modules and isinstance(ldr, int) and ldr and missing_types:
        if missing_types not in notes:
            notes.append(missing_types)
    return PebDecoding(record, listing, display, notes)


def _module_brief(module: Dict[str, Any]) -> Dict[str, Any]:
    return {key: module.get(key) for key in ("base", "size", "name", "path", "time_date_stamp",
                                             "load_time", "lists")}


def decode_user_process(user: UserProcess, with_modules: bool = True) -> PebDecoding:
    """The 64-bit PEB of a process and, for WoW64, its 32-bit PEB nested as `peb32`."""
    layouts = user.layouts
    who = "PEB of %s (PID %s)" % (user.name, user.pid)
    enum_name = _enum_namer(layouts)
    if user.space is None:
        record: Dict[str, Any] = {key: None for key in PEB_KEYS}
        record.update(pid=user.pid, process=user.address, name=user.name, bitness=8 * layouts.pointer_size,
                      address=user.peb, layout=layouts.build_id, space=user.source, wow64=user.wow64)
        return PebDecoding(record, None, {}, list(user.notes))
    main = decode_peb(user.space, user.peb, layouts.type("_PEB"),
                      _opt_type(layouts, "_RTL_USER_PROCESS_PARAMETERS"),
                      _opt_type(layouts, "_PEB_LDR_DATA"), _opt_type(layouts, "_LDR_DATA_TABLE_ENTRY"),
                      8 * layouts.pointer_size, layouts.build_id, with_modules, enum_name, who,
                      budget=user.budget)
    record = main.record
    record.update(pid=user.pid, process=user.address, name=user.name, wow64=user.wow64,
                  space=user.source)
    notes = list(user.notes) + main.notes
    if user.wow64 and user.layouts32 is not None:
        l32 = user.layouts32
        peb_type = l32.peb_type()
        who32 = "32-bit PEB of %s (PID %s)" % (user.name, user.pid)
        if peb_type is None:
            notes.append(l32.missing("the 32-bit PEB"))
        else:
            sub = decode_peb(narrow(user.space), user.peb32, peb_type,
                             l32.type("_RTL_USER_PROCESS_PARAMETERS"), l32.type("_PEB_LDR_DATA"),
                             l32.type("_LDR_DATA_TABLE_ENTRY"), 32, l32.build_id, with_modules,
                             _enum_namer(l32.full) if l32.full is not None else None, who32,
                             l32.missing("the loader lists and process parameters"),
                             budget=user.budget)
            sub.record.update(pid=user.pid, process=user.address, name=user.name, wow64=True,
                              space=user.source)
            record["peb32"] = sub.record
            main.display["peb32"] = sub
            notes.append(l32.note)
            notes.extend(sub.notes)
    elif user.wow64 and isinstance(user.peb32, Fault):
        notes.append(absent_note("32-bit PEB pointer of %s" % user.name, user.peb32))
    budget = user.budget
    if budget is not None and budget.notes is None:
        # a user-mode dump's budget belongs to no kernel context: its one note travels here
        notes.extend(budget.note(kind) for kind in budget.exhausted)
    main.notes = _dedupe(notes)
    return main


def _dedupe(notes: List[str]) -> List[str]:
    seen = set()
    out = []
    for note in notes:
        if note and note not in seen:
            seen.add(note)
            out.append(note)
    return out


def _opt_type(layouts: Any, name: str) -> Any:
    return layouts.type(name) if layouts is not None and layouts.has_type(name) else None


def _enum_namer(layouts: Any) -> Any:
    if layouts is None:
        return None

    def name_of(enum: str, value: int) -> Optional[str]:
        if not layouts.has_enum(enum):
            return None
        return layouts.enum(enum).name_of(value)
    return name_of


def summary_lines(ctx: "KernelContext", process: Any) -> List[str]:
    """`eproc -v` one-liners: PEB, image, command line, modules, environment (or why not)."""
    from pykd_ext.kernel.userspace import from_kernel_process
    try:
        user = from_kernel_process(ctx, process)
        decoded = decode_user_process(user)
    except Exception as err:  # a summary line must never fail `eproc`
        return ["    PEB: not decoded (%s)" % err]
    rec = decoded.record
    peb = rec.get("address")
    if not peb and not isinstance(peb, Fault):
        return ["    PEB: none (no user-mode address space)"]
    if isinstance(peb, Fault):
        return ["    PEB: %s" % peb.marker]
    parts = ["    PEB %x" % peb]
    image = rec.get("image_base")
    if isinstance(image, Fault):
        return ["    PEB %x: user memory not in dump" % peb]
    parts.append("image %s" % _short(rec.get("image_path")))
    parts.append("cmdline %s" % _short(rec.get("command_line")))
    mods = rec.get("modules")
    parts.append("%s modules" % (len(mods) if isinstance(mods, list) else _short(mods)))
    env = rec.get("environment")
    parts.append("%s environment variables" % (len(env) if isinstance(env, list) else _short(env)))
    lines = [", ".join(parts)]
    sub = rec.get("peb32")
    if isinstance(sub, dict):
        mods32 = sub.get("modules")
        lines.append("    Wow64 PEB32 %s, %s 32-bit modules" % (
            "%x" % sub["address"] if isinstance(sub.get("address"), int) else _short(sub.get("address")),
            len(mods32) if isinstance(mods32, list) else _short(mods32)))
    return lines


def _short(value: Any) -> str:
    if isinstance(value, Fault):
        return value.marker
    if value is None:
        return "-"
    if isinstance(value, str):
        return "'%s'" % (value if len(value) <= 80 else value[:77] + "...")
    return str(value)


__all__ = ["BOOLEAN_FIELDS", "PARAM_STRINGS", "PEB_FIELDS", "PEB_KEYS", "PebDecoding",
           "decode_peb", "decode_user_process", "read_environment", "summary_lines"]
