"""Loader-list walks, environment blocks and the WoW64 helpers on hand-built memory.

Structures are written with offsets read straight from the ISF JSON (the 64-bit kernel ISF in
`../shared/isf`, the x86 one in `../shared/isf-derived`), not from the generated layouts the
decoders use, so a wrong layout fails here. Covered: cycles, broken links and the walk limit end
a walk with a note (never an exception); 32-bit lists walk through a 4-byte-pointer view;
environment blocks cut by a missing page keep their complete strings; the WoW64 PEB32/TEB32 rules.
"""
import json
import lzma
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layouts"))
from isfdata import isf_for  # noqa: E402

from pykd_ext.errors import MemoryReadError, PykdExtError  # noqa: E402
from pykd_ext.kernel.modules import walk_modules  # noqa: E402
from pykd_ext.kernel.peb import read_environment  # noqa: E402
from pykd_ext.kernel.view import StructView  # noqa: E402
from pykd_ext.kernel.wow64 import (find_teb32, narrow, peb32_from_wow64_pointer,  # noqa: E402
                                   x86_layouts_for)
from pykd_ext.layouts.registry import load_layouts  # noqa: E402
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault  # noqa: E402
from pykd_ext.memory.space import AddressSpace  # noqa: E402

WIN10 = "10.0.19041.1288"
PAGE = 0x1000


class PageSpace(AddressSpace):
    """Sparse memory by page; absent pages fault with NOT_IN_DUMP (like a dump without them)."""

    def __init__(self, pointer_size: int = 8) -> None:
        self.pages: Dict[int, bytearray] = {}
        self.pointer_size = pointer_size

    def map(self, address: int, size: int) -> None:
        for page in range(address & ~(PAGE - 1), address + size, PAGE):
            self.pages.setdefault(page, bytearray(PAGE))

    def write(self, address: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            self.pages[(address + i) & ~(PAGE - 1)][(address + i) & (PAGE - 1)] = byte

    def put(self, address: int, value: int, size: int) -> None:
        self.write(address, value.to_bytes(size, "little"))

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            at = address + len(out)
            page = self.pages.get(at & ~(PAGE - 1))
            if page is None:
                raise MemoryReadError(Fault(NOT_IN_DUMP, at), len(out))
            off = at & (PAGE - 1)
            out += page[off:off + min(size - len(out), PAGE - off)]
        return bytes(out)


class IsfOffsets:
    """Member offsets from an ISF document (dotted paths through embedded structs)."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        self.types = doc["user_types"]

    def offset(self, type_name: str, path: str) -> int:
        total, current = 0, type_name
        for part in path.split("."):
            member = self.types[current]["fields"][part]
            total += member["offset"]
            current = member["type"].get("name", "")
        return total

    def size(self, type_name: str) -> int:
        return self.types[type_name]["size"]


def x86_isf(shared_dir: Path) -> IsfOffsets:
    with lzma.open(shared_dir / "isf-derived" / "10.0.19041.1288-x86.json.xz") as fh:
        return IsfOffsets(json.load(fh))


def build_ldr(space: PageSpace, isf: IsfOffsets, ptr: int, ldr: int,
              names: Tuple[str, ...]) -> Dict[str, int]:
    """A _PEB_LDR_DATA at `ldr` with `names` on all three lists; entries after it."""
    entry_size = isf.size("_LDR_DATA_TABLE_ENTRY")
    space.map(ldr, 0x4000)
    space.put(ldr + isf.offset("_PEB_LDR_DATA", "Initialized"), 1, 1)
    entries = {}
    text = ldr + 0x3000
    for n, name in enumerate(names):
        entry = ldr + 0x100 + n * ((entry_size + 15) & ~15)
        entries[name] = entry
        space.put(entry + isf.offset("_LDR_DATA_TABLE_ENTRY", "DllBase"), 0x10000000 * (n + 1), ptr)
        space.put(entry + isf.offset("_LDR_DATA_TABLE_ENTRY", "SizeOfImage"), 0x1000 * (n + 1), 4)
        data = name.encode("utf-16-le")
        for member in ("FullDllName", "BaseDllName"):
            base = entry + isf.offset("_LDR_DATA_TABLE_ENTRY", member)
            space.put(base + isf.offset("_UNICODE_STRING", "Length"), len(data), 2)
            space.put(base + isf.offset("_UNICODE_STRING", "Buffer"), text, ptr)
        space.write(text, data)
        text += len(data) + 8
    for head_member, link_member in (("InLoadOrderModuleList", "InLoadOrderLinks"),
                                     ("InMemoryOrderModuleList", "InMemoryOrderLinks"),
                                     ("InInitializationOrderModuleList", "InInitializationOrderLinks")):
        head = ldr + isf.offset("_PEB_LDR_DATA", head_member)
        chain = [head] + [entries[n] + isf.offset("_LDR_DATA_TABLE_ENTRY", link_member) for n in names]
        for i, link in enumerate(chain):
            space.put(link, chain[(i + 1) % len(chain)], ptr)
            space.put(link + ptr, chain[i - 1], ptr)
    return entries


@pytest.fixture(scope="module")
def win10() -> Tuple[Any, IsfOffsets]:
    return load_layouts(WIN10), IsfOffsets(isf_for(WIN10))


def walk(space: AddressSpace, layouts: Any, ldr: int, **kw: Any) -> Any:
    return walk_modules(space, layouts.type("_PEB_LDR_DATA"), layouts.type("_LDR_DATA_TABLE_ENTRY"),
                        ldr, 8 * layouts.pointer_size, **kw)


def test_clean_lists(win10: Tuple[Any, IsfOffsets]) -> None:
    layouts, isf = win10
    space = PageSpace()
    build_ldr(space, isf, 8, 0x20000, ("a.exe", "ntdll.dll", "b.dll"))
    listing = walk(space, layouts, 0x20000)
    assert [m["name"] for m in listing.modules] == ["a.exe", "ntdll.dll", "b.dll"]
    assert [m["base"] for m in listing.modules] == [0x10000000, 0x20000000, 0x30000000]
    assert all(m["lists"] == ["load", "memory", "init"] for m in listing.modules)
    assert listing.notes == [] and listing.initialized == 1


def test_cycle_ends_the_walk_with_a_note(win10: Tuple[Any, IsfOffsets]) -> None:
    layouts, isf = win10
    space = PageSpace()
    entries = build_ldr(space, isf, 8, 0x20000, ("a.exe", "ntdll.dll", "b.dll"))
    link = isf.offset("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")
    space.put(entries["b.dll"] + link, entries["ntdll.dll"] + link, 8)     # b -> ntdll: a loop
    listing = walk(space, layouts, 0x20000)
    assert listing.ends["load"].reason == "cycle"
    assert any("InLoadOrderModuleList" in n and "cycle" in n for n in listing.notes)
    assert len(listing.orders["load"]) == 3


def test_broken_link_and_limit(win10: Tuple[Any, IsfOffsets]) -> None:
    layouts, isf = win10
    space = PageSpace()
    entries = build_ldr(space, isf, 8, 0x20000, ("a.exe", "ntdll.dll", "b.dll"))
    link = isf.offset("_LDR_DATA_TABLE_ENTRY", "InMemoryOrderLinks")
    space.put(entries["ntdll.dll"] + link, 0x7FFF0000, 8)                 # into unmapped memory
    listing = walk(space, layouts, 0x20000)
    assert listing.ends["memory"].reason == "unreadable link"
    assert any("InMemoryOrderModuleList" in n and "unreadable link" in n for n in listing.notes)
    assert [m["name"] for m in listing.modules] == ["a.exe", "ntdll.dll", "b.dll"]
    listing = walk(space, layouts, 0x20000, limit=2)
    assert listing.ends["load"].reason == "limit reached"
    assert len(listing.orders["load"]) == 2
    unreadable = walk(space, layouts, 0x900000)
    assert isinstance(unreadable.fault, Fault) and unreadable.modules == []


def test_32bit_lists_through_a_narrow_view(shared_dir: Path) -> None:
    isf = x86_isf(shared_dir)
    layouts32 = x86_layouts_for(load_layouts(WIN10)).full
    assert layouts32 is not None and layouts32.pointer_size == 4
    space = PageSpace(pointer_size=8)                     # a 64-bit process's space ...
    build_ldr(space, isf, 4, 0x00E00000, ("app.exe", "ntdll.dll", "KERNEL32.DLL"))
    listing = walk_modules(narrow(space), layouts32.type("_PEB_LDR_DATA"),
                           layouts32.type("_LDR_DATA_TABLE_ENTRY"), 0x00E00000, 32)
    assert [m["name"] for m in listing.modules] == ["app.exe", "ntdll.dll", "KERNEL32.DLL"]
    assert [m["size"] for m in listing.modules] == [0x1000, 0x2000, 0x3000]
    assert listing.notes == []


def test_environment_block_reads() -> None:
    space = PageSpace()
    block = "\0".join(["A=1", "LONG=" + "x" * 3000, "Z=26"]).encode("utf-16-le") + b"\0\0\0\0"
    space.map(0x50000, len(block))
    space.write(0x50000, block)
    env, note = read_environment(space, 0x50000, len(block))
    assert env == ["A=1", "LONG=" + "x" * 3000, "Z=26"] and note is None
    env, note = read_environment(space, 0x50000, None)               # no EnvironmentSize
    assert env == ["A=1", "LONG=" + "x" * 3000, "Z=26"] and note is None
    del space.pages[0x51000]                                         # the block loses a page
    env, note = read_environment(space, 0x50000, len(block))
    assert env == ["A=1"] and "cut short" in note
    env, note = read_environment(space, 0x90000, 64)
    assert isinstance(env, Fault) and env.reason == NOT_IN_DUMP


def test_x86_layout_choice(shared_dir: Path) -> None:
    same = x86_layouts_for(load_layouts(WIN10))
    assert same.full.build_id.startswith("10.0.19041") and "nearest" not in same.note
    near = x86_layouts_for(load_layouts("6.3.9600.19913"))
    assert near.full is not None and near.full.build != 9600 and "nearest" in near.note
    with pytest.raises(PykdExtError):
        x86_layouts_for(load_layouts(WIN10),
                        symbols32=str(shared_dir / "isf-derived" / "10.0.17134.1-x64.json.xz"))


def test_peb32_pointer_rules(win10: Tuple[Any, IsfOffsets]) -> None:
    layouts, isf = win10
    space = PageSpace()
    space.map(0x70000, 0x100)
    space.put(0x70000 + isf.offset("_EWOW64PROCESS", "Peb"), 0x00E00000, 8)
    assert peb32_from_wow64_pointer(space, layouts, 0x70000) == 0x00E00000
    win7 = load_layouts("6.1.7601.24540")
    assert not win7.has_type("_EWOW64PROCESS") and not win7.has_type("_WOW64_PROCESS")
    assert peb32_from_wow64_pointer(space, win7, 0x00E00000) == 0x00E00000
    assert peb32_from_wow64_pointer(space, layouts, 0) is None


def test_teb32_needs_a_self_pointer(win10: Tuple[Any, IsfOffsets], shared_dir: Path) -> None:
    layouts, isf = win10
    x86 = x86_isf(shared_dir)
    l32 = x86_layouts_for(layouts)
    space = PageSpace()
    teb64, teb32 = 0x00FB0000, 0x00FB2000
    space.map(teb64, 0x4000)
    space.put(teb64 + isf.offset("_TEB", "WowTebOffset"), 0x2000, 4)
    view = StructView(space, layouts.type("_TEB"), teb64)
    assert find_teb32(space, view, l32) is None               # nothing claims to be a TEB there
    space.put(teb32 + x86.offset("_NT_TIB", "Self"), teb32, 4)
    assert find_teb32(space, StructView(space, layouts.type("_TEB"), teb64), l32) == teb32
    space.put(teb64 + isf.offset("_TEB", "WowTebOffset"), 0, 4)
    space.put(teb64 + isf.offset("_TEB", "NtTib") + isf.offset("_NT_TIB", "ExceptionList"), teb32, 8)
    assert find_teb32(space, StructView(space, layouts.type("_TEB"), teb64), l32) == teb32
