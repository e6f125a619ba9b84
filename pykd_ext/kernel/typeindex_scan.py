"""Object type names without symbol addresses: `ObTypeIndexTable` by its shape, the header cookie
from a known object.

Why: a types-only layout (the derived ISFs: 32-bit Windows, Windows 11 22H2-24H2) has no symbol
addresses, and neither the dump header nor the KDBG block states `ObTypeIndexTable` or
`ObHeaderCookie`, so handle and object type names would stay unknown. Both can be recovered from
the kernel's own data, using Windows facts rather than offsets:
- `ObTypeIndexTable` is an array of `_OBJECT_TYPE` pointers in the kernel image's `.data`
  section whose entry 0 is NULL and entry 1 the sentinel 0xBAD0B0B0, and whose entry 2 is the
  "Type" object type (its `Name` reads "Type" and its `Index` is 2, both read with the layout);
- since Windows 10 (build 10240) `_OBJECT_HEADER.TypeIndex` is stored XORed with the
  `ObHeaderCookie` byte and the second byte of the header's address (Windows Internals 7th ed.,
  part 2, ch. 8). The first process on the active list is a "Process" object, so its stored byte
  gives the cookie; one of its threads ("Thread") must then decode consistently, else nothing is
  claimed.
Everything is bounded (pages scanned, table entries read). Results are cached on the context.
"""
from typing import TYPE_CHECKING, Any, List, Optional

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.kernel.walk import WalkEnd, walk_list

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext


SENTINEL = 0xBAD0B0B0
#: Windows 10 introduced the header cookie (see the module docstring)
COOKIE_FIRST_BUILD = 10240
#: bounds: .data pages scanned, type-table entries examined
MAX_DATA_PAGES = 2048
MAX_TYPES = 256
PAGE = 0x1000


def _data_sections(ctx: "KernelContext") -> Any:
    from pykd_ext.targets.pe import read_pe_info
    base = ctx.kernel_base
    if not base:
        return []
    try:
        pe = read_pe_info(ctx.space, base)
    except PykdExtError:
        return []
    found = [s for s in pe.sections if s.name.rstrip("\0") == ".data"]
    return [(base + s.virtual_address, s.virtual_size) for s in found]


def _type_name(ctx: "KernelContext", pointer: int) -> Optional[str]:
    if not pointer or not ctx.layouts.has_type("_OBJECT_TYPE"):
        return None
    name = ctx.read_unicode(ctx.view("_OBJECT_TYPE", pointer), "Name")
    return name if isinstance(name, str) else None


def find_type_index_table(ctx: "KernelContext") -> Optional[int]:
    """Address of `ObTypeIndexTable` in the kernel's .data (None when not found)."""
    cached = getattr(ctx, "_h10_type_table", False)
    if cached is not False:
        return cached
    ctx._h10_type_table = None
    size = ctx.pointer_size
    fmt = "<%d%s" % (PAGE // size, "Q" if size == 8 else "I")
    import struct
    unpack = struct.Struct(fmt).unpack
    pages = 0
    for start, length in _data_sections(ctx):
        for page in range(start & ~(PAGE - 1), start + length, PAGE):
            pages += 1
            if pages > MAX_DATA_PAGES:
                return None
            try:
                words = unpack(ctx.space.read(page, PAGE))
            except MemoryReadError:
                continue
            for i in range(len(words) - 2):
                if words[i] == 0 and words[i + 1] == SENTINEL and words[i + 2]:
                    if _type_name(ctx, words[i + 2]) == "Type":
                        ctx._h10_type_table = page + i * size
                        return ctx._h10_type_table
    return None


def _stored_index(ctx: "KernelContext", body: int) -> Optional[int]:
    header_type = ctx.layouts.type("_OBJECT_HEADER")
    view = ctx.view("_OBJECT_HEADER", body - header_type.offset("Body"))
    value = view["TypeIndex"]
    return value if isinstance(value, int) else None


def derive_header_cookie(ctx: "KernelContext") -> Optional[int]:
    """The `ObHeaderCookie` byte from the first listed process and one of its threads; None
    before Windows 10, or when the two objects do not agree."""
    cached = getattr(ctx, "_h10_cookie", False)
    if cached is not False:
        return cached
    ctx._h10_cookie = None
    if int(getattr(ctx.layouts, "build", 0) or 0) < COOKIE_FIRST_BUILD:
        return None
    table = find_type_index_table(ctx)
    if table is None:
        return None
    indexes = {}
    for index in range(2, MAX_TYPES):
        try:
            pointer = ctx.space.read_pointer(table + index * ctx.pointer_size)
        except MemoryReadError:
            break
        if not pointer:
            break
        name = _type_name(ctx, pointer)
        if name in ("Process", "Thread"):
            indexes[name] = index
    if len(indexes) != 2:
        return None
    try:
        processes = _first_entries(ctx, ctx.global_address("PsActiveProcessHead"), "_EPROCESS",
                                   "ActiveProcessLinks")
    except (PykdExtError, ValueError):
        return None
    header_offset = ctx.layouts.type("_OBJECT_HEADER").offset("Body")
    for process in processes:
        stored = _stored_index(ctx, process)
        if stored is None:
            continue
        header = process - header_offset
        cookie = (stored ^ indexes["Process"] ^ (header >> 8)) & 0xFF
        try:
            threads = _first_entries(ctx, process + ctx.layouts.type("_EPROCESS").offset("ThreadListHead"),
                                     "_ETHREAD", "ThreadListEntry")
        except (PykdExtError, ValueError):
            threads = []
        checked = _check_threads(ctx, threads, cookie, indexes["Thread"], header_offset)
        if checked:
            ctx._h10_cookie = cookie
            return cookie
    return None


def _first_entries(ctx: "KernelContext", head: Any, type_name: str, link: str, limit: int = 4) -> List[int]:
    """The first few structures on a kernel list, by raw walk: enough samples to derive the
    cookie, without the process/thread decoders (which themselves need the cookie)."""
    if not isinstance(head, int) or not head:
        return []
    offset = ctx.layouts.type(type_name).offset(link)
    return [entry - offset for entry in walk_list(ctx.space, head, WalkEnd(), limit)]


def _check_threads(ctx: "KernelContext", threads: Any, cookie: int, thread_index: int, header_offset: int) -> bool:
    for thread in list(threads)[:4]:
        stored = _stored_index(ctx, thread)
        if stored is not None:
            return ((stored ^ cookie ^ ((thread - header_offset) >> 8)) & 0xFF) == thread_index
    return False
