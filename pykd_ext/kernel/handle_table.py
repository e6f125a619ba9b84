"""Executive handle tables (`_HANDLE_TABLE`) walked and counted: every level, every entry format.

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
costs ~800 page reads, not 400,000 field reads. Counting (`count_handles`, what `ps` shows) does
not decode entries at all: each page's in-use entries are counted with byte-column operations by
the same in-use rule as the decoder (`EntryFormat.count_in_use`). Windows 8+ layouts also have
`_HANDLE_TABLE.FreeLists[].HandleCount`, but neither the forge nor any real dump here shows what
it holds, so the count is never taken from it; Windows 7's `_HANDLE_TABLE.HandleCount` is the
kernel's own count and is used as is. Every page read and every entry decoded is charged to the
command's work budget (kernel/budget.py).
"""
from array import array
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple, Union, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import INVALID, Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

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
LEGACY_ATTRIBUTE_BIT_COUNT = 3
LEGACY_POINTER_ATTRIBUTE_BITS = (1 << LEGACY_ATTRIBUTE_BIT_COUNT) - 1
LEGACY_PROTECT_CLOSE_BIT = 0x02000000
LEGACY_ACCESS_MASK = 0x01FFFFFF

#: A decoded in-use entry: (handle value, entry address, pointer, granted access, OBJ_* attributes)
RawEntry = Tuple[int, int, int, int, int]


def attribute_names(attributes: int) -> List[str]:
    return [name for bit, name in ATTRIBUTE_NAMES if attributes & bit]


class EntryFormat:
    """How one build's `_HANDLE_TABLE_ENTRY` stores pointer, access and attributes (64-bit words).

    `in_use` = (word, low bit, high bit): an entry is in use exactly when bits [low, high) of
    that 64-bit word of the entry are not all zero (the object pointer; before Windows 8 without
    its three attribute bits). The per-entry `decoder()` returns None for exactly those entries,
    and `count_in_use` counts the same rule a page at a time without decoding entries."""

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
            ignored_low_bits = 0
        else:
            obj = entry.field("Object")
            self.pointer = (obj.offset // 8, 8 * (obj.offset % 8), 8 * obj.size)   # H10: 32 on x86
            self.pointer_shift = 0
            access = entry.field("GrantedAccess")
            self.access = (access.offset // 8, 8 * (access.offset % 8), 8 * access.size)
            self.attributes = None
            ignored_low_bits = LEGACY_ATTRIBUTE_BIT_COUNT
        word, shift, width = self.pointer
        self.in_use: Tuple[int, int, int] = (word, shift + ignored_low_bits, shift + width)
        self._columns = self._in_use_columns()

    @staticmethod
    def _bits(entry: Any, name: str) -> Tuple[int, int, int]:
        """(word index, shift within the 64-bit word, width) of a bitfield."""
        fl = entry.field(name)
        return fl.offset // 8, 8 * (fl.offset % 8) + int(fl.bit_position or 0), int(fl.bit_length or 8 * fl.size)

    def _in_use_columns(self) -> List[Tuple[int, Optional[bytes]]]:
        """(byte offset in the entry, translate table masking that byte or None for all 8 bits)
        for every byte the `in_use` bit range touches."""
        word, low, high = self.in_use
        columns: List[Tuple[int, Optional[bytes]]] = []
        for byte in range(low // 8, (high - 1) // 8 + 1):
            first, last = max(low, 8 * byte) - 8 * byte, min(high, 8 * byte + 8) - 8 * byte
            mask = ((1 << (last - first)) - 1) << first
            table = None if mask == 0xFF else bytes(value & mask for value in range(256))
            columns.append((8 * word + byte, table))
        return columns

    def count_in_use(self, page: bytes) -> int:
        """In-use entries of one leaf page, by the `in_use` rule, without a per-entry decode.

        Each byte of the pointer bits is taken for all entries at once (`page[offset::size]`),
        masked with `bytes.translate` where only some of its bits belong to the pointer; OR-ing
        those columns as big integers leaves a non-zero byte exactly for each in-use entry."""
        size = self.size
        count = len(page) // size
        combined = 0
        for offset, table in self._columns:
            column = page[offset:count * size:size]
            if table is not None:
                column = column.translate(table)
            combined |= int.from_bytes(column, "little")
        if not combined:
            return 0
        return count - combined.to_bytes(count, "little").count(0)

    def decoder(self) -> Callable[[array, int], Optional[Tuple[int, int, int]]]:
        """decode(words, first_word_index) -> (pointer, access, attributes) or None when free
        (free: the `in_use` bits are all zero)."""
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


def entry_format(ctx: "KernelContext") -> EntryFormat:
    fmt = getattr(ctx, "_handle_entry_format", None)
    if fmt is None:
        fmt = EntryFormat(ctx.layouts)
        ctx._handle_entry_format = fmt
    return fmt


class HandleScan:
    """How the pages of one `_HANDLE_TABLE` were walked, and the in-use entries found.

    `entries`: (handle value, pointer) pairs (the shape `processes.cid_table` consumes);
    `raw`: full `RawEntry` tuples when the scan was asked for details; `counted`: in-use entries
    (equal to `len(entries)` after a decoding scan, the bulk count after `count_handles`).
    `levels` is None when the table could not be walked (`fault`, or `invalid_level` for a
    TableCode whose level bits say 3). `repeated_pages` counts references to pages already read
    (a table that refers to itself); `budget_cut` says the command's work budget ended the walk."""

    def __init__(self) -> None:
        self.table: Optional[int] = None
        self.entries: List[Tuple[int, int]] = []
        self.raw: List[RawEntry] = []
        self.counted = 0
        self.pages = 0
        self.fault: Optional[Fault] = None
        self.fault_count = 0
        self.truncated = False
        self.levels: Optional[int] = None
        self.invalid_level: Optional[int] = None
        self.table_code: Optional[int] = None
        self.repeated_pages = 0
        self.first_repeat: Optional[int] = None
        self.points_at_itself = False
        self.budget_cut = False

    @property
    def complete(self) -> bool:
        """Every page of the table was read (the count is exact)."""
        return (self.levels is not None and self.fault is None and not self.truncated
                and not self.budget_cut)

    def summary(self) -> str:
        """What follows "Handle table at <address>" in a listing's header line."""
        if self.invalid_level is not None:
            return "has an invalid TableCode level %d (not walked)" % self.invalid_level
        if self.levels is None:
            return "is not readable (%s)" % self.fault
        text = "with %d entries in use" % self.counted
        if self.budget_cut:
            text += " (counting stopped: work budget exhausted)"
        elif self.fault is not None or self.truncated:
            text += " (partial: see the notes)"
        if self.points_at_itself or self.repeated_pages:
            text += " (refers to itself: see the notes)"
        return text

    def notes(self, what: str) -> List[str]:
        out = []
        table = "0x%x" % self.table if self.table is not None else "?"
        if self.invalid_level is not None:
            out.append("%s: handle table %s has an invalid TableCode level %d (TableCode 0x%x; "
                       "only levels 0-2 exist): not walked" % (what, table, self.invalid_level,
                                                                self.table_code or 0))
        elif self.fault is not None and self.levels is None:
            out.append("%s: handle table not readable (%s)" % (what, self.fault))
        elif self.fault is not None:
            out.append("%s: %d handle table page(s) not in the dump (first: %s)"
                       % (what, max(self.fault_count, 1), self.fault))
        if self.points_at_itself:
            out.append("%s: handle table %s: TableCode 0x%x points back into the table's own "
                       "page: a self-reference, not a table of handles" % (what, table, self.table_code or 0))
        if self.repeated_pages:
            out.append("%s: handle table %s refers to pages already read %d time(s) (first: page "
                       "0x%x): a cycle or self-reference; each page was read once"
                       % (what, table, self.repeated_pages, self.first_repeat or 0))
        if self.truncated:
            out.append("%s: stopped after %d handle table pages" % (what, self.pages))
        return out


def _pointer_typecode(size: int) -> str:
    """The `array` typecode of an unsigned integer of `size` bytes (4 or 8)."""
    for code in ("I", "L", "Q"):
        if array(code).itemsize == size:
            return code
    raise ValueError("no array typecode for %d-byte pointers" % size)


def leaf_pages(ctx: "KernelContext", table: int, scan: HandleScan,
               max_pages: int = MAX_HANDLE_PAGES) -> Iterator[Tuple[bytes, int, int]]:
    """(page bytes, page address, first entry index) of each entry page of the `_HANDLE_TABLE`
    at `table`, lowest index first, read level by level (an explicit stack, no recursion).
    Bounded by `max_pages` and the work budget (one page each); each page read once; never
    raises for bad memory: what went wrong is recorded on `scan`."""
    scan.table = table
    view = ctx.view("_HANDLE_TABLE", table)
    code = cast(Union[int, Fault], view["TableCode"])      # a ULONG_PTR: int or Fault
    if not isinstance(code, int):
        scan.fault = code
        return
    scan.table_code = code
    levels = code & HANDLE_LEVEL_MASK
    if levels > MAX_HANDLE_LEVELS:
        scan.invalid_level = levels
        scan.fault = Fault(INVALID, table)
        return
    scan.levels = levels
    budget = getattr(ctx, "budget", None)
    per_page = entry_format(ctx).per_page
    pointer_size = int(ctx.pointer_size)
    ptrs_per_page = HANDLE_PAGE_SIZE // pointer_size
    typecode = _pointer_typecode(pointer_size)
    base = code & ~HANDLE_LEVEL_MASK
    if base <= table < base + HANDLE_PAGE_SIZE:
        scan.points_at_itself = True
    seen_pages = set()

    def read_page(address: int) -> Optional[bytes]:
        if address in seen_pages:          # a page referenced twice: a corrupt table
            scan.repeated_pages += 1
            if scan.first_repeat is None:
                scan.first_repeat = address
            return None
        if scan.pages >= max_pages:
            scan.truncated = True
            return None
        if budget is not None and not budget.take_page():
            scan.budget_cut = True
            return None
        seen_pages.add(address)
        scan.pages += 1
        try:
            return ctx.space.read(address, HANDLE_PAGE_SIZE)
        except MemoryReadError as err:
            scan.fault_count += 1
            if scan.fault is None:
                scan.fault = err.fault
            return None

    # (page address, depth, first index) on an explicit stack, lowest index first
    stack: List[Tuple[int, int, int]] = [(base, levels, 0)]
    while stack and not scan.truncated and not scan.budget_cut:
        address, depth, first = stack.pop()
        data = read_page(address)
        if data is None:
            continue
        if depth == 0:
            yield data, address, first
            continue
        pointers = array(typecode, data)
        span = per_page * (ptrs_per_page ** (depth - 1))
        children = [(pointers[i], depth - 1, first + i * span) for i in range(ptrs_per_page) if pointers[i]]
        stack.extend(reversed(children))


def iter_handle_entries(ctx: "KernelContext", table: int, scan: Optional[HandleScan] = None,
                        max_pages: int = MAX_HANDLE_PAGES) -> Iterator[RawEntry]:
    """Every in-use entry of the table as a `RawEntry`, one page decoded at a time (streamed:
    memory does not grow with the table). Each entry is charged to the work budget; how the
    walk ended is recorded on `scan` (give one to read it afterwards)."""
    scan = scan if scan is not None else HandleScan()
    fmt = entry_format(ctx)
    decode = fmt.decoder()
    per_page, words_per_entry, entry_size = fmt.per_page, fmt.words, fmt.size
    pointer_word = fmt.in_use[0]
    budget = getattr(ctx, "budget", None)
    for data, address, first_index in leaf_pages(ctx, table, scan, max_pages):
        words = array("Q", data)
        for i in range(per_page):
            w = i * words_per_entry
            if not words[w + pointer_word]:
                continue
            got = decode(words, w)
            if got is None:
                continue
            if budget is not None:
                if budget.entries <= 0 or budget.walks_stopped:
                    budget.cut("entries")
                    scan.budget_cut = True
                    return
                budget.entries -= 1
            scan.counted += 1
            yield (first_index + i) * HANDLE_VALUE_INC, address + i * entry_size, got[0], got[1], got[2]


def scan_handle_table(ctx: "KernelContext", table: int, max_pages: int = MAX_HANDLE_PAGES,
                      details: bool = False) -> HandleScan:
    """All in-use entries of the `_HANDLE_TABLE` at `table`, decoded one by one (bounded,
    cycle-safe, never raises); each decoded entry is charged to the work budget. `entries` holds
    (handle, pointer) pairs; with `details`, `raw` holds the full `RawEntry` tuples too."""
    scan = HandleScan()
    entries, raw = scan.entries, scan.raw
    for entry in iter_handle_entries(ctx, table, scan, max_pages):
        entries.append((entry[0], entry[2]))
        if details:
            raw.append(entry)
    return scan


def count_handles(ctx: "KernelContext", table: int, max_pages: int = MAX_HANDLE_PAGES) -> HandleScan:
    """The in-use entries of a table counted a page at a time (`EntryFormat.count_in_use`: the
    same rule as the per-entry decoder, ~15x cheaper); `scan.counted` holds the count, and the
    scan says whether it is complete (missing pages, the page limit, the work budget)."""
    scan = HandleScan()
    count_page = entry_format(ctx).count_in_use
    for data, _address, _first in leaf_pages(ctx, table, scan, max_pages):
        scan.counted += count_page(data)
    return scan


def handle_count(ctx: "KernelContext", table: int) -> Union[int, Fault, None]:
    """A table's handle count: `_HANDLE_TABLE.HandleCount` where the build keeps one (Windows 7),
    else the in-use entries counted in bulk (`count_handles`). A Fault when no page of the table
    is readable; the partial count when some pages are missing (as the per-entry scan gave);
    None when the work budget stopped the count (unknown)."""
    if not ctx.has("_HANDLE_TABLE_ENTRY"):
        return None          # H9: an inferred layout that proved ObjectTable but not the table's format
    view = ctx.view("_HANDLE_TABLE", table)
    if view.has("HandleCount"):
        return cast(Union[int, Fault], view["HandleCount"])     # a LONG: int or Fault
    scan = count_handles(ctx, table)
    if scan.budget_cut:
        return None
    if scan.fault is not None and not scan.counted:
        return scan.fault
    return scan.counted


__all__ = ['EntryFormat', 'HANDLE_LEVEL_MASK', 'HANDLE_PAGE_SIZE', 'HANDLE_VALUE_INC', 'HandleScan', 'LEGACY_ACCESS_MASK', 'LEGACY_ATTRIBUTE_BIT_COUNT', 'LEGACY_LOCK_BIT', 'LEGACY_POINTER_ATTRIBUTE_BITS', 'LEGACY_PROTECT_CLOSE_BIT', 'MAX_HANDLE_LEVELS', 'MAX_HANDLE_PAGES', 'OBJ_AUDIT_OBJECT_CLOSE', 'OBJ_INHERIT', 'OBJ_PROTECT_CLOSE', 'RawEntry', 'X64_VA_BITS', 'attribute_names', 'count_handles', 'entry_format', 'handle_count', 'iter_handle_entries', 'leaf_pages', 'scan_handle_table']
