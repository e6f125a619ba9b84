"""Paging modes as data: one walker, five modes, each checked on tables planted from the manuals.

Independent sources of the expected values:
- the architecture facts written out below per mode (Intel SDM Vol. 3A 4.3/4.4/4.5, Arm ARM D8),
  used to plant random tables without going through `PagingMode`; each planted mapping is the
  expected translation;
- Volatility 3's own Intel layers (`Intel`, `IntelPAE`, `Intel32e`: an independent walker of the
  same three architectures) translating the same bytes;
- Volatility 3's `_structure` description of those layers (index bits, large-page levels).
"""
import random
import struct
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dumpbuild import DictPhysical  # noqa: E402

from pykd_ext.errors import MemoryReadError  # noqa: E402
from pykd_ext.memory import faults  # noqa: E402
from pykd_ext.memory.paged import PagedAddressSpace  # noqa: E402
from pykd_ext.memory.paging_modes import (AARCH64_4K, PAGING_MODES, X64_4LEVEL, X64_5LEVEL,  # noqa: E402
                                          X86_NONPAE, X86_PAE, PagingMode)

# --- the manuals' numbers, written out (not read from PagingMode) ------------------------------
# levels: (VA shift, index bits, may map a large page); entry bytes; VA bits; canonical;
# bits of a table entry, of a 4 KiB leaf, of a large-page entry; a present-but-first-level root
# offset inside its page (PAE: a 32-byte-aligned PDPT need not be page aligned).
ARCH_FACTS = {
    "x86 non-PAE": dict(levels=((22, 10, True), (12, 10, False)), entry=4, va_bits=32,
                        canonical=False, table=0x3, leaf=0x3, large=0x83, root_offset=0),
    "x86 PAE": dict(levels=((30, 2, False), (21, 9, True), (12, 9, False)), entry=8, va_bits=32,
                    canonical=False, table=0x1, leaf=0x3, large=0x83, root_offset=0x20),
    "x64 4-level": dict(levels=((39, 9, False), (30, 9, True), (21, 9, True), (12, 9, False)),
                        entry=8, va_bits=48, canonical=True, table=0x3, leaf=0x3, large=0x83,
                        root_offset=0),
    "x64 5-level": dict(levels=((48, 9, False), (39, 9, False), (30, 9, True), (21, 9, True),
                                (12, 9, False)),
                        entry=8, va_bits=57, canonical=True, table=0x3, leaf=0x3, large=0x83,
                        root_offset=0),
    # AArch64 4 KiB granule: table/page descriptors end in 0b11, L1/L2 blocks in 0b01
    "AArch64 4K granule 4-level": dict(levels=((39, 9, False), (30, 9, True), (21, 9, True),
                                               (12, 9, False)),
                                       entry=8, va_bits=48, canonical=True, table=0x3, leaf=0x3,
                                       large=0x1, root_offset=0),
}
ALL_MODES = [X86_NONPAE, X86_PAE, X64_4LEVEL, X64_5LEVEL, AARCH64_4K]


class Planter:
    """Random mappings planted from ARCH_FACTS; `expected(va)` is what they map va to."""

    def __init__(self, name: str, seed: int) -> None:
        self.facts = ARCH_FACTS[name]
        self.phys = DictPhysical()
        self.rng = random.Random(seed)
        self.next_frame = 0x20
        root_page = self._frame()
        self.dtb = (root_page << 12) + self.facts["root_offset"]
        self.mappings: List[Tuple[int, int, int]] = []       # (va, size, pa)
        self.tables: List[int] = [self.dtb]

    def _frame(self) -> int:
        frame = self.next_frame
        self.next_frame += 1
        self.phys.add(frame)
        return frame

    def _entry_at(self, table: int, index: int) -> int:
        return table + index * self.facts["entry"]

    def _get(self, address: int) -> int:
        page = self.phys.pages[address >> 12]
        fmt = "<Q" if self.facts["entry"] == 8 else "<I"
        return struct.unpack_from(fmt, page, address & 0xFFF)[0]

    def _set(self, address: int, value: int) -> None:
        page = self.phys.pages[address >> 12]
        fmt = "<Q" if self.facts["entry"] == 8 else "<I"
        struct.pack_into(fmt, page, address & 0xFFF, value)

    def canonical(self, va: int) -> int:
        bits = self.facts["va_bits"]
        if self.facts["canonical"] and va >> (bits - 1) & 1:
            va |= ((1 << 64) - 1) & ~((1 << bits) - 1)
        return va

    def map(self, va: int, pa: int, depth: int) -> bool:
        """Map `va` with an entry at level `depth` (a large page above the last level)."""
        levels = self.facts["levels"]
        table = self.dtb
        for d, (shift, bits, _large) in enumerate(levels):
            slot = self._entry_at(table, (va >> shift) & ((1 << bits) - 1))
            entry = self._get(slot)
            if d == depth:
                if entry:
                    return False                           # already used: skip this mapping
                flag = self.facts["leaf"] if d == len(levels) - 1 else self.facts["large"]
                self._set(slot, pa | flag)
                size = 1 << shift
                self.mappings.append((va & ~(size - 1), size, pa))
                return True
            if not entry:
                child = self._frame() << 12
                self.tables.append(child)
                self._set(slot, child | self.facts["table"])
                entry = child | self.facts["table"]
            elif entry & 0x3 != self.facts["table"] & 0x3 or \
                    (_large and self.facts["large"] & 0x80 and entry & 0x80):
                return False                               # a large page or garbage is here
            table = entry & 0x000FFFFFFFFFF000
        return False

    def plant(self, count: int, max_frame_bits: int) -> None:
        levels = self.facts["levels"]
        top = self.facts["va_bits"]
        for _ in range(count):
            large_depths = [d for d, (_s, _b, large) in enumerate(levels) if large]
            depth = len(levels) - 1
            if large_depths and self.rng.random() < 0.25:
                depth = self.rng.choice(large_depths)
            shift = levels[depth][0]
            va = self.rng.getrandbits(top) & ~((1 << shift) - 1)
            pa = self.rng.getrandbits(max_frame_bits) << 12 & ~((1 << shift) - 1)
            self.map(va, pa, depth)
        # garbage: not-present, non-zero entries in random free slots of every table
        for table in self.tables:
            bits = levels[0][1] if table == self.dtb else 9 if self.facts["entry"] == 8 else 10
            for _ in range(3):
                slot = self._entry_at(table, self.rng.randrange(1 << bits))
                if not self._get(slot):
                    self._set(slot, self.rng.getrandbits(8 * self.facts["entry"] - 1) << 1)

    def expected(self, va: int) -> Optional[int]:
        for start, size, pa in self.mappings:
            if start <= (va & ((1 << self.facts["va_bits"]) - 1)) < start + size:
                return pa + (va & ((1 << self.facts["va_bits"]) - 1)) - start
        return None

    def probes(self, count: int) -> List[int]:
        out = []
        for start, size, _pa in self.mappings:
            out.append(self.canonical(start + self.rng.randrange(size)))
        for _ in range(count):
            out.append(self.canonical(self.rng.getrandbits(self.facts["va_bits"])))
        return out


def _mode_id(mode: PagingMode) -> str:
    return mode.name


def test_modes_state_the_manuals_numbers() -> None:
    """Each mode's data equals ARCH_FACTS (written from the manuals) and its registry name."""
    for mode in ALL_MODES:
        facts = ARCH_FACTS[mode.name]
        assert PAGING_MODES[mode.name] is mode
        assert tuple((lv.shift, lv.index_bits, lv.large_pages) for lv in mode.levels) == \
            facts["levels"]
        assert (mode.entry.size, mode.va_bits, mode.canonical) == \
            (facts["entry"], facts["va_bits"], facts["canonical"])
        # the levels cover every VA bit above the page offset exactly once
        covered = sum(lv.index_bits for lv in mode.levels) + 12
        assert covered == mode.va_bits


@pytest.mark.parametrize("mode,vol_class", [(X86_NONPAE, "Intel"), (X86_PAE, "IntelPAE"),
                                            (X64_4LEVEL, "Intel32e")],
                         ids=["non-PAE", "PAE", "x64"])
def test_intel_modes_match_volatility_structure(mode: PagingMode, vol_class: str) -> None:
    from volatility3.framework.layers import intel
    layer = getattr(intel, vol_class)
    assert [(bits, large) for _name, bits, large in layer._structure] == \
        [(lv.index_bits, lv.large_pages) for lv in mode.levels]
    assert layer._maxvirtaddr == mode.va_bits
    assert layer._bits_per_register == 8 * mode.pointer_size
    assert struct.calcsize(layer._entry_format) == mode.entry.size


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_translation_of_planted_tables(mode: PagingMode) -> None:
    planter = Planter(mode.name, seed=11)
    planter.plant(300, max_frame_bits=min(28, mode.entry.size * 8 - 12))
    space = PagedAddressSpace(planter.phys, planter.dtb, mode)
    assert space.dtb == planter.dtb and space.pointer_size == mode.pointer_size
    hits = misses = 0
    for va in planter.probes(300):
        want = planter.expected(va)
        if want is None:
            with pytest.raises(MemoryReadError):
                space.translate(va)
            misses += 1
        else:
            assert space.translate(va) == want, hex(va)
            walk = space.walk(va)
            assert walk.physical_address == want and walk.fault is None
            assert walk.page_size in {1 << s for s, _b, _l in ARCH_FACTS[mode.name]["levels"]}
            hits += 1
    assert hits >= 250 and misses >= 100
    # the second pass goes through the leaf-table cache: same answers
    for va in planter.probes(50):
        want = planter.expected(va)
        if want is not None:
            assert space.translate(va) == want


@pytest.mark.parametrize("mode,vol_class", [(X86_NONPAE, "Intel"), (X86_PAE, "IntelPAE"),
                                            (X64_4LEVEL, "Intel32e")],
                         ids=["non-PAE", "PAE", "x64"])
def test_translation_agrees_with_volatility(mode: PagingMode, vol_class: str) -> None:
    from volatility3.framework import contexts, exceptions
    from volatility3.framework.layers import intel, physical
    planter = Planter(mode.name, seed=5)
    # Volatility's IntelPAE stops at MAXPHYADDR 40, its 32-bit Intel at 32 (no PSE-36)
    planter.plant(300, max_frame_bits=20)
    flat = bytearray(planter.next_frame << 12)
    for pfn, page in planter.phys.pages.items():
        flat[pfn << 12:(pfn + 1) << 12] = page
    ctx = contexts.Context()
    ctx.add_layer(physical.BufferDataLayer(ctx, "mem", "mem", bytes(flat)))
    ctx.config["v.memory_layer"] = "mem"
    ctx.config["v.page_map_offset"] = planter.dtb
    vol = getattr(intel, vol_class)(ctx, "v", "v")
    ctx.add_layer(vol)
    ours = PagedAddressSpace(planter.phys, planter.dtb, mode)
    compared = 0
    for va in planter.probes(400):
        try:
            theirs: Optional[int] = vol._translate(va)[0]
        except exceptions.InvalidAddressException:
            theirs = None
        try:
            mine: Optional[int] = ours.translate(va)
        except MemoryReadError:
            mine = None
        assert mine == theirs, hex(va)
        compared += mine is not None
    assert compared >= 250


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_reads_and_faults_in_every_mode(mode: PagingMode) -> None:
    planter = Planter(mode.name, seed=3)
    # one 4 KiB page with planted bytes, the next one mapped to a frame that is not captured
    leaf = len(mode.levels) - 1
    data_frame = planter._frame()
    planter.phys.pages[data_frame][:8] = b"planted!"
    va = planter.canonical((1 << (mode.va_bits - 1)) | 0x5000)
    assert planter.map(va, data_frame << 12, leaf)
    assert planter.map(va + 0x1000, 0x7777 << 12, leaf)
    space = PagedAddressSpace(planter.phys, planter.dtb, mode)
    assert space.read(va, 8) == b"planted!"
    assert space.read_pointer(va) == int.from_bytes(b"planted!"[:mode.pointer_size], "little")
    with pytest.raises(MemoryReadError) as err:
        space.read(va + 0xFFC, 8)
    assert err.value.readable == 4
    assert err.value.fault.reason == faults.NOT_IN_DUMP
    assert err.value.fault.address == (0x7777 << 12)
    with pytest.raises(MemoryReadError) as err:
        space.read(va + 0x2000, 1)                   # nothing planted there
    assert err.value.fault.reason == faults.INVALID and err.value.fault.pte == 0
    assert err.value.fault.level in {lv.name for lv in mode.levels}
    for bad in (-1, mode.va_limit, planter.canonical(1 << (mode.va_bits - 1)) ^ (1 << 62)
                if mode.canonical else 1 << mode.va_bits):
        with pytest.raises(MemoryReadError) as err:
            space.translate(bad)
        assert err.value.fault.reason == faults.INVALID and err.value.fault.level is None


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_mappings_of_finds_every_planted_mapping(mode: PagingMode) -> None:
    planter = Planter(mode.name, seed=17)
    planter.plant(200, max_frame_bits=16)
    rng = random.Random(1)
    chosen = rng.sample(planter.mappings, 20)
    frames = set()
    for _start, size, pa in chosen:
        frames.add((pa + rng.randrange(size)) >> 12)
    if not ARCH_FACTS[mode.name]["root_offset"]:
        # a root entry naming the root (Windows' self-map) must not turn tables into pages
        _shift, bits, _large = ARCH_FACTS[mode.name]["levels"][0]
        free = [i for i in range(1 << bits)
                if not planter._get(planter._entry_at(planter.dtb, i))]
        planter._set(planter._entry_at(planter.dtb, free[-1]),
                     planter.dtb | ARCH_FACTS[mode.name]["table"])
        frames.add(planter.dtb >> 12)               # a table frame: never reported
    space = PagedAddressSpace(planter.phys, planter.dtb, mode)
    want = []
    for start, size, pa in planter.mappings:
        for frame in frames:
            if pa <= frame << 12 < pa + size:
                want.append((planter.canonical(start + (frame << 12) - pa), frame))
    got = list(space.mappings_of(frames))
    assert sorted(got) == sorted(want) and got == sorted(got, key=lambda hit: hit[0]
                                                        & ((1 << mode.va_bits) - 1))
    if mode.canonical:
        high = planter.canonical(1 << (mode.va_bits - 1))
        assert list(space.mappings_of(frames, lowest=high)) == [hit for hit in got if hit[0] >= high]
