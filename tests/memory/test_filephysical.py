"""Page indexes of file-backed physical memory against naive recomputation from planted bitmaps."""
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pykd_ext.memory import filephysical as fp


def _naive_offsets(bitmap: bytes, bits: int, first: int):
    out = {}
    rank = 0
    for pfn in range(bits):
        if bitmap[pfn >> 3] >> (pfn & 7) & 1:
            out[pfn] = first + rank * 4096
            rank += 1
    return out


def _naive_runs(pfns):
    runs = []
    for pfn in sorted(pfns):
        if runs and runs[-1][0] + runs[-1][1] == pfn:
            runs[-1][1] += 1
        else:
            runs.append([pfn, 1])
    return [tuple(r) for r in runs]


def _check_bitmap(bitmap: bytes, bits: int):
    first = 0x3000
    expected = _naive_offsets(bitmap, bits, first)
    body = bytearray(first + len(expected) * 4096)
    for pfn, offset in expected.items():
        body[offset:offset + 8] = pfn.to_bytes(8, "little")
    mem = fp.BitmapPhysicalMemory(memoryview(bytes(body)), bitmap, bits, first)
    assert mem.present_pages == len(expected)
    for pfn in range(bits + 70):
        page = mem.page(pfn)
        if pfn in expected:
            assert page is not None and len(page) == 4096
            assert int.from_bytes(page[:8], "little") == pfn
        else:
            assert page is None
    assert mem.page(-1) is None
    assert mem.runs() == _naive_runs(expected)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.integers(min_value=0, max_value=7))
def test_bitmap_index_matches_naive_rank(bitmap, trim):
    bits = max(0, len(bitmap) * 8 - trim)     # also bit counts that are not a multiple of 8
    _check_bitmap(bitmap, bits)


def test_bitmap_dense_and_sparse_words():
    rng = random.Random(7)
    bitmap = bytes([0xFF] * 24 + [0] * 16 + [rng.randrange(256) for _ in range(40)] + [0xFF] * 8)
    _check_bitmap(bitmap, len(bitmap) * 8)


def test_bits_past_the_count_do_not_exist():
    mem = fp.BitmapPhysicalMemory(memoryview(bytes(0x3000)), b"\xFF", 3, 0)
    assert mem.present_pages == 3 and mem.page(3) is None and mem.runs() == [(0, 3)]


def test_run_memory():
    # runs in file order (not sorted), each at its own file offset
    runs = [(0x100, 2, 0x2000), (0x10, 1, 0x4000), (0x200, 3, 0x5000)]
    body = bytearray(0x8000)
    for base, count, offset in runs:
        for i in range(count):
            body[offset + i * 4096] = (base + i) & 0xFF
    mem = fp.RunPhysicalMemory(memoryview(bytes(body)), runs)
    present = {base + i for base, count, _ in runs for i in range(count)}
    for pfn in range(0x210):
        page = mem.page(pfn)
        assert (page is not None) == (pfn in present)
        if page is not None:
            assert page[0] == pfn & 0xFF
    assert mem.runs() == [(0x10, 1), (0x100, 2), (0x200, 3)]
    assert mem.page_count() == 6


def test_flat_memory_and_read_across_pages():
    data = bytes(range(256)) * 48                # 3 pages
    mem = fp.FlatPhysicalMemory(memoryview(data))
    assert mem.runs() == [(0, 3)] and mem.page(3) is None
    assert mem.read(0xFFE, 4) == data[0xFFE:0x1002]


def test_popcount_fallback_agrees():
    for value in (0, 1, 0xFFFFFFFFFFFFFFFF, 0x8000000000000001, 0x123456789ABCDEF):
        assert fp.popcount(value) == bin(value).count("1")


def test_merge_runs():
    assert fp.merge_runs([(5, 2), (0, 5), (10, 0), (7, 1)]) == [(0, 8)]
