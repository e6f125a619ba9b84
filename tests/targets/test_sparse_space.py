"""SparseAddressSpace: planted ranges, reads across ranges, gaps, overlaps, a model check."""
from typing import Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import INVALID, NOT_IN_DUMP
from pykd_ext.memory.sparse import SparseAddressSpace

BASE = 0xFFFFF80000000000


def _space() -> SparseAddressSpace:
    space = SparseAddressSpace()
    space.add(BASE + 0x1000, b"A" * 0x10, "a")
    space.add(BASE + 0x1010, b"B" * 0x10, "b")        # adjacent to "a"
    space.add(BASE + 0x2000, b"C" * 0x8, "c")         # after a gap
    return space


def test_reads_within_and_across_ranges() -> None:
    space = _space()
    assert space.read(BASE + 0x1004, 4) == b"AAAA"
    assert space.read(BASE + 0x100C, 8) == b"AAAABBBB"
    assert space.read(BASE + 0x1000, 0x20) == b"A" * 16 + b"B" * 16
    assert space.read(BASE + 0x2000, 0) == b""
    assert space.read_pointer(BASE + 0x2000) == int.from_bytes(b"C" * 8, "little")


def test_gaps_raise_not_in_dump_with_readable_prefix() -> None:
    space = _space()
    with pytest.raises(MemoryReadError) as err:
        space.read(BASE + 0x1018, 0x10)
    assert err.value.fault.reason == NOT_IN_DUMP
    assert err.value.fault.address == BASE + 0x1020 and err.value.readable == 8
    with pytest.raises(MemoryReadError) as err:
        space.read(BASE + 0x500, 1)
    assert err.value.readable == 0 and err.value.fault.address == BASE + 0x500
    data, fault = space.read_partial(BASE + 0x1018, 0x10)
    assert data == b"B" * 8 and fault is not None and fault.address == BASE + 0x1020
    assert not space.is_readable(BASE + 0x2008)


def test_invalid_addresses_and_sizes() -> None:
    space = _space()
    with pytest.raises(MemoryReadError) as err:
        space.read((1 << 64) - 4, 8)
    assert err.value.fault.reason == INVALID
    with pytest.raises(ValueError):
        space.read(BASE, -1)
    with pytest.raises(ValueError):
        space.add((1 << 64) - 4, b"12345678")


def test_regions_merge_adjacent_ranges() -> None:
    space = _space()
    assert list(space.regions()) == [(BASE + 0x1000, 0x20), (BASE + 0x2000, 8)]
    assert [label for _, _, label in space.ranges()] == ["a", "b", "c"]
    assert space.total_bytes == 0x28 and space.range_count == 3


def test_overlaps_keep_first_source_and_are_recorded() -> None:
    space = _space()
    added = space.add(BASE + 0x0FF8, b"x" * 8 + b"A" * 0x10 + b"y" * 0x10 + b"z" * 8, "late")
    # Only the uncovered bytes were added: 8 before "a" and 8 after "b".
    assert added == 16
    assert space.read(BASE + 0x0FF8, 0x30) == b"x" * 8 + b"A" * 16 + b"B" * 16 + b"z" * 8
    assert [(o.kept, o.identical) for o in space.overlaps] == [("a", True), ("b", False)]
    assert [o.kept for o in space.inconsistent_overlaps()] == ["b"]
    assert space.label_at(BASE + 0x0FF8) == "late" and space.label_at(BASE + 0x1010) == "b"
    assert space.label_at(BASE) is None


def test_memoryview_sources_are_not_copied() -> None:
    backing = bytearray(b"0123456789")
    space = SparseAddressSpace(pointer_size=4)
    space.add(0x400000, memoryview(backing)[2:8], "view")
    assert space.read(0x400000, 6) == b"234567"
    assert space.read_pointer(0x400000) == int.from_bytes(b"2345", "little")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 60)), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(0, 480), st.integers(0, 80)), min_size=1, max_size=20))
def test_matches_a_byte_model(ranges: List[Tuple[int, int]],
                              reads: List[Tuple[int, int]]) -> None:
    """Against a dict model: first writer wins; a read returns bytes or fails at the first gap."""
    space = SparseAddressSpace()
    model: Dict[int, int] = {}
    for index, (start, size) in enumerate(ranges):
        data = bytes((index * 31 + i) & 0xFF for i in range(size))
        space.add(start, data, str(index))
        for i in range(size):
            model.setdefault(start + i, data[i])
    for start, size in reads:
        prefix = 0
        while prefix < size and start + prefix in model:
            prefix += 1
        if prefix == size:
            assert space.read(start, size) == bytes(model[start + i] for i in range(size))
        else:
            with pytest.raises(MemoryReadError) as err:
                space.read(start, size)
            assert err.value.readable == prefix
            assert err.value.fault.address == start + prefix
    covered = sorted(model)
    merged = sum(size for _, size in space.regions())
    assert merged == len(covered)
