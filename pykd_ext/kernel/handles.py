"""Executive handle tables (`_HANDLE_TABLE`): every level, every entry format, every handle decoded.

Why one walker: a process's handle table, the kernel's (System's) table and `PspCidTable` are the
same structure. `TableCode`'s low two bits give the number of pointer levels above the entry
pages (0: one page of entries, 1: a page of pointers to entry pages, 2: pointers to pointers);
each page is one 4 KiB allocation; a handle value is its entry index times 4 (the low two bits
of a handle are tag bits). Source: Windows Internals 7th ed., Part 1, ch. 8 "Object handles and
the process handle table"; ReactOS `ex/handle.c`.

Entry formats, chosen by what the build's `_HANDLE_TABLE_ENTRY` has (never by version number):
- before Windows 8: `Object` is the pointer with three attribute bits in its low bits (bit 0 the
  entry lock, set when unlocked; `OBJ_INHERIT`; `OBJ_AUDIT_OBJECT_CLOSE`) and `GrantedAccess`
  carries protect-from-close in bit 25 (`ObpAccessProtectCloseBit`, ReactOS `ob.h`);
- Windows 8 and later: `ObjectPointerBits` (bit position and width from the layout) hold the
  pointer shifted right by its alignment, `Attributes` the `OBJ_*` handle attributes, and
  `GrantedAccessBits` the access mask.
In process tables the pointer is the object's `_OBJECT_HEADER`; in `PspCidTable` it is the body.

Each page is read once (4 KiB) and decoded from an `array('Q')`, so a table of 200,000 handles
costs ~800 page reads, not 400,000 field reads.
"""
from array import array
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.objects import ObjectReader, reader_for
from pykd_ext.kernel.registry_keys import key_layouts_present, key_path
from pykd_ext.memory.faults import INVALID, Fault

#: One handle table page (a level-0 page of entries or a level-1/2 page of pointers).
HANDLE_PAGE_SIZE = 0x1000
#: TableCode's low two bits: the number of pointer levels.
HANDLE_LEVEL_MASK = 3
MAX_HANDLE_LEVELS = 2
#: Handle value = entry index * 4.
HANDLE_VALUE_INC = 4
#: x64 canonical kernel addresses: 48 significant bits, the top 16 copy bit 47.
X64_VA_BITS = 48
#: Pages read per table at most (a million handles at 16 bytes per entry).
MAX_HANDLE_PAGES = 4096

#: `OBJ_*` handle attribute bits (wdm.h OBJ_INHERIT = 2; ReactOS ob.h OBJ_PROTECT_CLOSE = 1,
#: OBJ_AUDIT_OBJECT_CLOSE = 4): what Windows 8+ keeps in `_HANDLE_TABLE_ENTRY.Attributes`.
OBJ_PROTECT_CLOSE = 0x1
OBJ_INHERIT = 0x2
OBJ_AUDIT_OBJECT_CLOSE = 0x4
ATTRIBUTE_NAMES: Tuple[Tuple[int, str], ...] = (
    (OBJ_INHERIT, "Inherit"), (OBJ_PROTECT_CLOSE, "Protected"), (OBJ_AUDIT_OBJECT_CLOSE, "AuditOnClose"))
#: Before Windows 8 (ReactOS ob.h / ex.h): low three bits of `Object` are the lock bit and the
#: inherit/audit attributes; protect-from-close is bit 25 of `GrantedAccess`, the access mask
#: the 25 bits below it.
LEGACY_LOCK_BIT = 0x1
LEGACY_POINTER_ATTRIBUTE_BITS = 0x7
LEGACY_PROTECT_CLOSE_BIT = 0x02000000
LEGACY_ACCESS_MASK = 0x01FFFFFF

#: A decoded in-use entry: (handle value, entry address, pointer, granted access, OBJ_* attributes)
RawEntry = Tuple[int, int, int, int, int]


def attribute_names(attributes: int) -> List[str]:
    return [name for bit, name in ATTRIBUTE_NAMES if attributes & bit]


class EntryFormat:
    """How one build's `_HANDLE_TABLE_ENTRY` stores pointer, access and attributes (64-bit words)."""

    def __init__(self, layouts: Any) -> None:
        entry = layouts.type("_HANDLE_TABLE_ENTRY")
        self.size = entry.size
        self.words = max(1, entry.size // 8)
        self.per_page = HANDLE_PAGE_SIZE // entry.size
        self.modern = entry.has_field("ObjectPointerBits")
        # H10: x86 kernels keep 32-bit addresses in the pointer bits (no sign extension)
        self.address_bits = X64_VA_BITS if int(getattr(layouts, "pointer_size", 8) or 8) == 8 else 32
        if self.modern:
            self.pointer = self._bits(entry, "ObjectPointerBits")
            self.pointer_shift = self.address_bits - self.pointer[2]     # alignment bits dropped
            self.access = self._bits(entry, "GrantedAccessBits")
            self.attributes = self._bits(entry, "Attributes") if entry.has_field("Attributes") else None
        else:
            obj = entry.field("Object")
            self.pointer = (obj.offset // 8, 8 * (obj.offset % 8), 8 * obj.size)   # H10: 32 on x86
            self.pointer_shift = 0
            access = entry.field("GrantedAccess")
            self.access = (access.offset // 8, 8 * (access.offset % 8), 8 * access.size)
            self.attributes = None

    @staticmethod
    def _bits(entry: Any, name: str) -> Tuple[int, int, int]:
        """(word index, shift within the 64-bit word, width) of a bitfield."""
        fl = entry.field(name)
        return fl.offset // 8, 8 * (fl.offset % 8) + int(fl.bit_position or 0), int(fl.bit_length or 8 * fl.size)

    def decoder(self) -> Callable[[array, int], Optional[Tuple[int, int, int]]]:
        """decode(words, first_word_index) -> (pointer, access, attributes) or None when free."""
        pw, ps, pl = self.pointer
        pmask = (1 << pl) - 1
        aw, ashift, alen = self.access
        amask = (1 << alen) - 1
        if self.modern:
            shift = self.pointer_shift
            x64 = self.address_bits == X64_VA_BITS          # H10: sign-extend x64 only
            high = ((1 << 64) - 1) ^ ((1 << X64_VA_BITS) - 1) if x64 else 0
            sign = 1 << (X64_VA_BITS - 1) if x64 else 1 << 64
            attr = self.attributes

            def modern(words: array, i: int) -> Optional[Tuple[int, int, int]]:
                bits = (words[i + pw] >> ps) & pmask
                if not bits:
                    return None
                pointer = bits << shift
                if pointer & sign:
                    pointer |= high
                access = (words[i + aw] >> ashift) & amask
                attributes = ((words[i + attr[0]] >> attr[1]) & ((1 << attr[2]) - 1)) if attr else 0
                return pointer, access, attributes
            return modern

        def legacy(words: array, i: int) -> Optional[Tuple[int, int, int]]:
            value = (words[i + pw] >> ps) & pmask          # H10: the Object field's own width
            pointer = value & ~LEGACY_POINTER_ATTRIBUTE_BITS & 0xFFFFFFFFFFFFFFFF
            if not pointer:
                return None
            raw_access = (words[i + aw] >> ashift) & amask
            attributes = (value & (OBJ_INHERIT | OBJ_AUDIT_OBJECT_CLOSE)) | \
                (OBJ_PROTECT_CLOSE if raw_access & LEGACY_PROTECT_CLOSE_BIT else 0)
            return pointer, raw_access & LEGACY_ACCESS_MASK, attributes
        return legacy


def entry_format(ctx: Any) -> EntryFormat:
    fmt = getattr(ctx, "_handle_entry_format", None)
    if fmt is None:
        fmt = EntryFormat(ctx.layouts)
        ctx._handle_entry_format = fmt
    return fmt


class HandleScan:
    """In-use entries of one `_HANDLE_TABLE` and how the scan ended.

    `entries`: (handle value, pointer) pairs (the shape `processes.cid_table` consumes);
    `raw`: full `RawEntry` tuples when the scan was asked for details."""

    def __init__(self) -> None:
        self.table: Optional[int] = None
        self.entries: List[Tuple[int, int]] = []
        self.raw: List[RawEntry] = []
        self.pages = 0
        self.fault: Optional[Fault] = None
        self.fault_count = 0
        self.truncated = False
        self.levels: Optional[int] = None
        self.table_code: Optional[int] = None

    def notes(self, what: str) -> List[str]:
        out = []
        if self.fault is not None and self.levels is None:
            out.append("%s: handle table not readable (%s)" % (what, self.fault))
        elif self.fault is not None:
            out.append("%s: %d handle table page(s) not in the dump (first: %s)"
                       % (what, max(self.fault_count, 1), self.fault))
        if self.truncated:
            out.append("%s: stopped after %d handle table pages" % (what, self.pages))
        return out


def scan_handle_table(ctx: Any, table: int, max_pages: int = MAX_HANDLE_PAGES,
                      details: bool = False) -> HandleScan:
    """All in-use entries of the `_HANDLE_TABLE` at `table` (bounded, cycle-safe, never raises)."""
    scan = HandleScan()
    scan.table = table
    view = ctx.view("_HANDLE_TABLE", table)
    code = view["TableCode"]
    if not isinstance(code, int):
        scan.fault = code
        return scan
    scan.table_code = code
    levels = code & HANDLE_LEVEL_MASK
    if levels > MAX_HANDLE_LEVELS:
        scan.fault = Fault(INVALID, table)
        return scan
    scan.levels = levels
    fmt = entry_format(ctx)
    decode = fmt.decoder()
    per_page, words_per_entry, entry_size = fmt.per_page, fmt.words, fmt.size
    ptrs_per_page = HANDLE_PAGE_SIZE // ctx.pointer_size
    seen_pages = set()
    entries, raw = scan.entries, scan.raw

    def page_words(address: int) -> Optional[array]:
        if scan.pages >= max_pages:
            scan.truncated = True
            return None
        if address in seen_pages:          # a page referenced twice: a corrupt table
            return None
        seen_pages.add(address)
        scan.pages += 1
        try:
            data = ctx.space.read(address, HANDLE_PAGE_SIZE)
        except MemoryReadError as err:
            scan.fault_count += 1
            if scan.fault is None:
                scan.fault = err.fault
            return None
        return array("Q", data)

    def leaf(address: int, first_index: int) -> None:
        words = page_words(address)
        if words is None:
            return
        for i in range(per_page):
            w = i * words_per_entry
            if not words[w]:
                continue
            got = decode(words, w)
            if got is None:
                continue
            handle = (first_index + i) * HANDLE_VALUE_INC
            entries.append((handle, got[0]))
            if details:
                raw.append((handle, address + i * entry_size, got[0], got[1], got[2]))

    # levels are walked iteratively: (page address, depth, first index) on an explicit stack
    base = code & ~HANDLE_LEVEL_MASK
    stack: List[Tuple[int, int, int]] = [(base, levels, 0)]
    while stack and not scan.truncated:
        address, depth, first = stack.pop()
        if depth == 0:
            leaf(address, first)
            continue
        words = page_words(address)
        if words is None:
            continue
        span = per_page * (ptrs_per_page ** (depth - 1))
        children = [(words[i], depth - 1, first + i * span) for i in range(ptrs_per_page) if words[i]]
        stack.extend(reversed(children))
    return scan


def handle_count(ctx: Any, table: int) -> Union[int, Fault]:
    """A table's handle count: `_HANDLE_TABLE.HandleCount` where the build keeps one (Windows 7),
    else the in-use entries counted; a Fault when the table is not in the dump."""
    view = ctx.view("_HANDLE_TABLE", table)
    if view.has("HandleCount"):
        return view["HandleCount"]
    scan = scan_handle_table(ctx, table)
    if scan.fault is not None and not scan.entries:
        return scan.fault
    return len(scan.entries)


# ---- decoding what a handle refers to -------------------------------------------------------------

class HandleDecoder:
    """Turns raw entries into `handles` records: type, name and per-type details of each object."""

    def __init__(self, ctx: Any, objects: Optional[ObjectReader] = None) -> None:
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
        from pykd_ext.kernel.process import Process
        process = Process(self.ctx, body)
        pid, image = process.pid, process.name
        details = {"pid": pid, "image": image}
        if isinstance(pid, int) and isinstance(image, str):
            return "%s(%d)" % (image, pid), details
        return None, details

    def _thread(self, body: int) -> Tuple[Any, Dict[str, Any]]:
        from pykd_ext.kernel.thread import Thread
        thread = Thread(self.ctx, body)
        tid, pid = thread.tid, thread.pid
        details = {"tid": tid, "pid": pid}
        if isinstance(tid, int) and isinstance(pid, int):
            return "TID %d (PID %d)" % (tid, pid), details
        return None, details


__all__ = ["ATTRIBUTE_NAMES", "EntryFormat", "HANDLE_LEVEL_MASK", "HANDLE_PAGE_SIZE",
           "HANDLE_VALUE_INC", "HandleDecoder", "HandleScan", "MAX_HANDLE_PAGES", "OBJ_INHERIT",
           "OBJ_PROTECT_CLOSE", "OBJ_AUDIT_OBJECT_CLOSE", "RawEntry", "attribute_names",
           "entry_format", "handle_count", "scan_handle_table"]
