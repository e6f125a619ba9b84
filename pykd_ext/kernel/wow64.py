"""WoW64: the 32-bit PEB, TEBs and loader lists of a 32-bit program on 64-bit Windows.

Why a module of its own: a WoW64 process has two of everything user-mode — a 64-bit PEB/TEB
(ntdll64's) and a 32-bit PEB/TEB (ntdll32's) — and the 32-bit structures have 4-byte pointers,
32-bit `LIST_ENTRY`s and 8-byte `UNICODE_STRING`s. Their layouts come from symbol data only:
- x86 layouts of the same (or the nearest) build (`_PEB`, `_TEB`, `_PEB_LDR_DATA`,
  `_LDR_DATA_TABLE_ENTRY`, `_RTL_USER_PROCESS_PARAMETERS` of a 32-bit kernel PDB), from the layout
  registry (the native architecture's `Arch.compat_arch`) or a user-given ISF (`--symbols32`);
- otherwise the 64-bit kernel PDB's own `_PEB32`/`_TEB32`, which decode the top-level fields
  but not what they point to (the loader and parameter types exist only in x86 symbol data).
Where the 32-bit structures are:
- PEB32: `_EWOW64PROCESS.Peb` (Windows 10+), `_WOW64_PROCESS.Wow64` (Vista), or the
  `EPROCESS.Wow64Process` value itself (Windows 7/8.1); on user dumps `TEB32.ProcessEnvironmentBlock`;
- TEB32: `TEB64 + TEB64.WowTebOffset` (builds that have the field) or `TEB64.NtTib.ExceptionList`
  (where WoW64 keeps it); a candidate is accepted only when the 32-bit `NtTib.Self` there names
  itself, so a wrong guess is never decoded as a TEB.
"""
from typing import Any, Iterator, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.kernel.view import StructView
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace
from pykd_ext.targets.arch import DEFAULT_ARCH, X86, Arch, arch_named

#: 32-bit user addresses end here (a WoW64 structure pointer above it is not a 32-bit pointer).
MAX_32BIT_ADDRESS = 0xFFFFFFFF


class Narrow32Space(AddressSpace):
    """A view of a (64-bit) address space that reads 4-byte pointers: 32-bit lists walk on it.

    `walk_list` and `read_pointer` use `pointer_size`; the bytes come from the wrapped space.
    """

    pointer_size = 4

    def __init__(self, space: AddressSpace) -> None:
        self.inner = space

    def read(self, address: int, size: int) -> bytes:
        return self.inner.read(address, size)

    def read_partial(self, address: int, size: int) -> Tuple[bytes, Optional[Fault]]:
        return self.inner.read_partial(address, size)

    def translate(self, address: int) -> int:
        return self.inner.translate(address)

    def regions(self) -> Iterator[Tuple[int, int]]:
        return self.inner.regions()

    def drop_caches(self) -> None:
        self.inner.drop_caches()


def narrow(space: AddressSpace) -> AddressSpace:
    """The space as 32-bit code sees it (itself when it already has 4-byte pointers)."""
    return space if space.pointer_size == Narrow32Space.pointer_size else Narrow32Space(space)


def guest_arch(native: Any) -> Arch:
    """The architecture of the 32-bit programs WoW64 runs beside the `native` layouts' kernel
    (`Arch.compat_arch`; x86 when the layouts do not say which architecture they are)."""
    host = arch_named(str(getattr(native, "arch", "") or DEFAULT_ARCH.name))
    guest = arch_named(host.compat_arch) if host is not None and host.compat_arch else None
    return guest if guest is not None else X86


class Layouts32:
    """The 32-bit structure layouts used for one WoW64 process, and where they came from.

    `full` is an x86 KernelLayouts (every type) or None; `native` is the 64-bit layouts whose
    `_PEB32`/`_TEB32` are used when `full` is None. `note` says which was chosen and why.
    """

    def __init__(self, full: Any, native: Any, note: str) -> None:
        self.full = full
        self.native = native
        self.note = note

    @property
    def label(self) -> str:
        if self.full is not None:
            return getattr(self.full, "label", str(self.full))
        return "%s (_PEB32/_TEB32 of the 64-bit PDB)" % getattr(self.native, "label", self.native)

    @property
    def build_id(self) -> str:
        source = self.full if self.full is not None else self.native
        return str(getattr(source, "build_id", "") or "")

    def peb_type(self) -> Any:
        if self.full is not None and self.full.has_type("_PEB"):
            return self.full.type("_PEB")
        if self.native is not None and self.native.has_type("_PEB32"):
            return self.native.type("_PEB32")
        return None

    def teb_type(self) -> Any:
        if self.full is not None and self.full.has_type("_TEB"):
            return self.full.type("_TEB")
        if self.native is not None and self.native.has_type("_TEB32"):
            return self.native.type("_TEB32")
        return None

    def type(self, name: str) -> Any:
        """A pointee type (`_PEB_LDR_DATA`, `_LDR_DATA_TABLE_ENTRY`, ...): x86 layouts only."""
        if self.full is not None and self.full.has_type(name):
            return self.full.type(name)
        return None

    def missing(self, what: str) -> str:
        return ("%s of the 32-bit side needs x86 layouts of build %s: none are installed (add an "
                "x86 ISF with `pykd-ext structs import`, or pass --symbols32 FILE)"
                % (what, getattr(self.native, "build", "?")))


def x86_layouts_for(native: Any, symbols32: Optional[str] = None) -> Layouts32:
    """The 32-bit layouts for a WoW64 process decoded with the 64-bit `native` layouts.

    Order: an ISF the user gave (`--symbols32`); x86 layouts of the same build number (newest
    revision); x86 layouts of the nearest build number (said in the note); the native
    `_PEB32`/`_TEB32` (top-level fields only).
    """
    guest = guest_arch(native)
    if symbols32:
        from pykd_ext.layouts.registry import load_isf_file
        full = load_isf_file(symbols32)
        if getattr(full, "pointer_size", guest.pointer_size) != guest.pointer_size:
            raise PykdExtError("--symbols32 %s is not a 32-bit symbol table" % symbols32)
        return Layouts32(full, native, "32-bit structures: %s (--symbols32)" % full.label)
    build = int(getattr(native, "build", 0) or 0)
    try:
        from pykd_ext.layouts.registry import layouts_for_entry, list_builds
        entries = [e for e in list_builds() if e.arch == guest.name and e.pointer_size == guest.pointer_size]
    except PykdExtError:
        entries = []
    if entries:
        same = [e for e in entries if e.build == build]
        if same:
            entry = max(same, key=lambda e: (e.revision or 0, e.build_id))
            return Layouts32(layouts_for_entry(entry), native,
                             "32-bit structures: %s layouts %s" % (guest.name, entry.build_id))
        entry = min(entries, key=lambda e: (abs(e.build - build), -(e.revision or 0), e.build_id))
        return Layouts32(layouts_for_entry(entry), native,
                         "32-bit structures: no %s layouts of build %d; decoded with the nearest "
                         "%s build %s" % (guest.name, build, guest.name, entry.build_id))
    return Layouts32(None, native, "32-bit structures: no %s layouts installed; the 64-bit PDB's "
                                   "_PEB32/_TEB32 decode the top-level fields only" % guest.name)


def peb32_from_wow64_pointer(space: AddressSpace, layouts: Any, pointer: Any) -> Any:
    """The PEB32 address from `EPROCESS.WoW64Process`/`Wow64Process` (read in kernel `space`).

    Which structure the pointer names is a fact of the build's layout: `_EWOW64PROCESS` (its
    `Peb` member), Vista's `_WOW64_PROCESS` (its `Wow64` member), or — builds with neither type,
    Windows 7 and 8.1 — the PEB32 itself.
    """
    if not isinstance(pointer, int) or not pointer:
        return pointer if isinstance(pointer, Fault) else None
    for type_name, member in (("_EWOW64PROCESS", "Peb"), ("_WOW64_PROCESS", "Wow64")):
        if layouts.has_type(type_name) and layouts.type(type_name).has_field(member):
            view = StructView(space, layouts.type(type_name), pointer)
            return view[member]
    return pointer


def teb32_candidates(teb64_view: StructView) -> List[int]:
    """Where the 32-bit TEB may be, best first (see the module docstring)."""
    out: List[int] = []
    if teb64_view.has("WowTebOffset"):
        offset = teb64_view["WowTebOffset"]
        if isinstance(offset, int) and offset:
            if offset >= 0x80000000:           # stored as a signed 32-bit value
                offset -= 0x100000000
            out.append(teb64_view.address + offset)
    exception_list = teb64_view.get("NtTib.ExceptionList")
    if isinstance(exception_list, int) and 0 < exception_list <= MAX_32BIT_ADDRESS:
        if exception_list not in out:
            out.append(exception_list)
    return out


def find_teb32(space: AddressSpace, teb64_view: StructView, layouts32: Layouts32) -> Optional[int]:
    """The 32-bit TEB of a WoW64 thread, or None (not WoW64, or not readable)."""
    teb_type = layouts32.teb_type()
    if teb_type is None:
        return None
    for candidate in teb32_candidates(teb64_view):
        if not 0 < candidate <= MAX_32BIT_ADDRESS:
            continue
        try:
            data = space.read(candidate + teb_type.offset("NtTib.Self"), 4)
        except MemoryReadError:
            continue
        if int.from_bytes(data, "little") == candidate:
            return candidate
    return None


__all__ = ["Layouts32", "MAX_32BIT_ADDRESS", "Narrow32Space", "find_teb32", "guest_arch", "narrow",
           "peb32_from_wow64_pointer", "teb32_candidates", "x86_layouts_for"]
