"""List walks end cleanly on every kind of broken list (planted in a tiny address space)."""
import struct
from typing import Dict

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.walk import (END_CYCLE, END_HEAD_UNREADABLE, END_LIMIT, END_NULL, END_OK,
                                  END_UNREADABLE, WalkEnd, walk_list)
from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.memory.space import AddressSpace


class DictSpace(AddressSpace):
    """8-byte cells at chosen addresses; everything else is missing."""

    def __init__(self, cells: Dict[int, int]) -> None:
        self.cells = cells

    def read(self, address: int, size: int) -> bytes:
        out = b""
        for off in range(0, size, 8):
            if address + off not in self.cells:
                raise MemoryReadError(Fault(NOT_IN_DUMP, address + off), len(out))
            out += struct.pack("<Q", self.cells[address + off])
        return out


def linked(head: int, entries):
    """A well-formed circular doubly linked list."""
    chain = [head] + list(entries)
    cells = {}
    for i, addr in enumerate(chain):
        cells[addr] = chain[(i + 1) % len(chain)]
        cells[addr + 8] = chain[i - 1]
    return cells


def test_complete_walk_yields_entries_in_order():
    entries = [0x2000, 0x3000, 0x4000]
    end = WalkEnd()
    assert list(walk_list(DictSpace(linked(0x1000, entries)), 0x1000, end)) == entries
    assert end.reason == END_OK and end.count == 3 and end.note("x") == ""


def test_cycle_that_skips_the_head_stops():
    cells = linked(0x1000, [0x2000, 0x3000])
    cells[0x3000] = 0x2000          # 0x3000 -> 0x2000 -> 0x3000 ... never back to head
    end = WalkEnd()
    assert list(walk_list(DictSpace(cells), 0x1000, end)) == [0x2000, 0x3000]
    assert end.reason == END_CYCLE and end.at == 0x2000


def test_unreadable_link_keeps_entries_before_it():
    cells = linked(0x1000, [0x2000, 0x3000])
    del cells[0x3000], cells[0x3008]
    end = WalkEnd()
    assert list(walk_list(DictSpace(cells), 0x1000, end)) == [0x2000]
    assert end.reason == END_UNREADABLE and end.at == 0x3000
    assert "unreadable link" in end.note("processes")


def test_null_link_and_unreadable_head_and_limit():
    cells = linked(0x1000, [0x2000])
    cells[0x2000] = 0
    end = WalkEnd()
    assert list(walk_list(DictSpace(cells), 0x1000, end)) == [0x2000]
    assert end.reason == END_NULL
    end = WalkEnd()
    assert list(walk_list(DictSpace({}), 0x1000, end)) == []
    assert end.reason == END_HEAD_UNREADABLE
    end = WalkEnd()
    got = list(walk_list(DictSpace(linked(0x1000, range(0x2000, 0x12000, 0x1000))), 0x1000, end, limit=5))
    assert len(got) == 5 and end.reason == END_LIMIT


def test_back_link_mismatch_is_reported_not_fatal():
    cells = linked(0x1000, [0x2000, 0x3000])
    cells[0x3008] = 0x9999          # unlinked-by-DKOM style inconsistency
    end = WalkEnd()
    assert list(walk_list(DictSpace(cells), 0x1000, end)) == [0x2000, 0x3000]
    assert end.back_link_mismatches == [0x3000]
    assert "inconsistent back links" in end.note("processes")
