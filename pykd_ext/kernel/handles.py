"""What a handle refers to: each raw handle-table entry decoded into a `handles` record.

Why apart from `handle_table`: walking and counting a table (what `ps` and the CID table need)
knows nothing of processes or threads, while describing a handle's object (a process's image, a
thread's ids, a file or key name) needs the process and thread decoders. Keeping them apart keeps
the kernel package free of import cycles (`.ci/import_cycles.py`).
"""
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.handle_table import (  # noqa: F401  (re-exported: one import for callers)
    EntryFormat,
    HANDLE_LEVEL_MASK,
    HANDLE_PAGE_SIZE,
    HANDLE_VALUE_INC,
    HandleScan,
    LEGACY_ACCESS_MASK,
    LEGACY_ATTRIBUTE_BIT_COUNT,
    LEGACY_LOCK_BIT,
    LEGACY_POINTER_ATTRIBUTE_BITS,
    LEGACY_PROTECT_CLOSE_BIT,
    MAX_HANDLE_LEVELS,
    MAX_HANDLE_PAGES,
    OBJ_AUDIT_OBJECT_CLOSE,
    OBJ_INHERIT,
    OBJ_PROTECT_CLOSE,
    RawEntry,
    X64_VA_BITS,
    attribute_names,
    count_handles,
    entry_format,
    handle_count,
    iter_handle_entries,
    leaf_pages,
    scan_handle_table)
from pykd_ext.kernel.objects import ObjectReader, reader_for
from pykd_ext.kernel.process import Process
from pykd_ext.kernel.registry_keys import key_layouts_present, key_path
from pykd_ext.kernel.thread import Thread
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext



# ---- decoding what a handle refers to -------------------------------------------------------------

class HandleDecoder:
    """Turns raw entries into `handles` records: type, name and per-type details of each object."""

    def __init__(self, ctx: "KernelContext", objects: Optional[ObjectReader] = None) -> None:
        self.ctx = ctx
        self.objects = objects or reader_for(ctx)
        self._details: Dict[int, Tuple[Any, Dict[str, Any]]] = {}

    def record(self, entry: RawEntry, points_to_body: bool = False,
               owner: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        handle, entry_address, pointer, access, attributes = entry
        objects = self.objects
        body = pointer if points_to_body else objects.body_of(pointer)
        header = objects.header(body)
        name, details = self.describe(body, header.type_name)
        # kept lean: a process can hold 100,000 handles (per-table facts go in the result's meta)
        rec = {"handle": handle, "entry": entry_address, "object": body,
               "object_header": header.header, "type": header.type_name,
               "granted_access": access, "attributes": attribute_names(attributes),
               "name": name, "details": details,
               "pointer_count": header.pointer_count, "handle_count": header.handle_count}
        if owner:
            rec.update(owner)
        return rec

    def describe(self, body: int, type_name: Any) -> Tuple[Any, Dict[str, Any]]:
        """(name, details) of an object by its type (cached per object)."""
        found = self._details.get(body)
        if found is not None:
            return found
        details: Dict[str, Any] = {}
        name: Any = None
        try:
            if type_name == "File":
                name, details = self._file(body)
            elif type_name == "Process":
                name, details = self._process(body)
            elif type_name == "Thread":
                name, details = self._thread(body)
            elif type_name == "Key":
                name, details = self._key(body)
            else:
                name = self.objects.full_name(body)
        except MemoryReadError as err:
            name = err.fault
        result = (name, details)
        self._details[body] = result
        return result

    def _file(self, body: int) -> Tuple[Any, Dict[str, Any]]:
        view = self.ctx.view("_FILE_OBJECT", body)
        file_name = self.ctx.read_unicode(view, "FileName")
        device = view["DeviceObject"]
        device_name: Any = None
        if isinstance(device, int) and device:
            device_name = self.objects.full_name(device)
            if isinstance(device_name, str) and not device_name.startswith("\\"):
                device_name = "\\Device\\" + device_name
        elif isinstance(device, Fault):
            device_name = device
        details = {"file_name": file_name, "device": device if isinstance(device, int) else None,
                   "device_name": device_name}
        if isinstance(file_name, str) and isinstance(device_name, str):
            return device_name + file_name, details
        return file_name, details

    def _key(self, body: int) -> Tuple[Any, Dict[str, Any]]:
        """The key's path from its KCB chain (`kernel.registry_keys`); no name on layouts
        without the key cache types (some types-only derived builds)."""
        if not key_layouts_present(self.ctx.layouts):
            return None, {"key_path": None,
                          "note": "this layout has no _CM_KEY_BODY: key path not decodable"}
        path = key_path(self.ctx, body)
        details: Dict[str, Any] = {"kcb": path.kcb, "key_path": path.text}
        if not path.complete:
            details["note"] = "key path partial (%s)%s" % (
                path.problem, ": %s" % path.fault if path.fault is not None else "")
        return path.text, details

    def _process(self, body: int) -> Tuple[Any, Dict[str, Any]]:
        process = Process(self.ctx, body)
        pid, image = process.pid, process.name
        details = {"pid": pid, "image": image}
        if isinstance(pid, int) and isinstance(image, str):
            return "%s(%d)" % (image, pid), details
        return None, details

    def _thread(self, body: int) -> Tuple[Any, Dict[str, Any]]:
        thread = Thread(self.ctx, body)
        tid, pid = thread.tid, thread.pid
        details = {"tid": tid, "pid": pid}
        if isinstance(tid, int) and isinstance(pid, int):
            return "TID %d (PID %d)" % (tid, pid), details
        return None, details


__all__ = ['EntryFormat', 'HANDLE_LEVEL_MASK', 'HANDLE_PAGE_SIZE', 'HANDLE_VALUE_INC', 'HandleDecoder', 'HandleScan', 'LEGACY_ACCESS_MASK', 'LEGACY_ATTRIBUTE_BIT_COUNT', 'LEGACY_LOCK_BIT', 'LEGACY_POINTER_ATTRIBUTE_BITS', 'LEGACY_PROTECT_CLOSE_BIT', 'MAX_HANDLE_LEVELS', 'MAX_HANDLE_PAGES', 'OBJ_AUDIT_OBJECT_CLOSE', 'OBJ_INHERIT', 'OBJ_PROTECT_CLOSE', 'RawEntry', 'X64_VA_BITS', 'attribute_names', 'count_handles', 'entry_format', 'handle_count', 'iter_handle_entries', 'leaf_pages', 'scan_handle_table']
