"""The bytes part of the work budget: strings and environment blocks the test wrote are read while
the budget lasts; then a string is a `<work budget exhausted>` Fault (never a truncated text),
an environment block is cut at the last complete string with a note, and the one budget note
names `--max-bytes`. Also: list walks charge one entry each and stop at once when spent."""
from typing import Any, Dict, List

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.budget import BUDGET_CUT, Budget
from pykd_ext.kernel.peb import read_environment
from pykd_ext.kernel.view import read_utf16
from pykd_ext.kernel.walk import END_BUDGET, END_OK, WalkEnd, walk_list
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace

BASE = 0x10000


class Space(AddressSpace):
    """Flat little memory at BASE (pages of zeros until written)."""

    pointer_size = 8

    def __init__(self, size: int = 0x10000) -> None:
        self.data = bytearray(size)

    def read(self, address: int, size: int) -> bytes:
        offset = address - BASE
        if offset < 0 or offset + size > len(self.data):
            raise MemoryReadError(Fault("not in dump", address))
        return bytes(self.data[offset:offset + size])

    def read_partial(self, address: int, size: int) -> Any:
        offset = address - BASE
        end = min(len(self.data), offset + size)
        if end <= offset:
            return b"", Fault("not in dump", address)
        fault = Fault("not in dump", BASE + end) if end < offset + size else None
        return bytes(self.data[offset:end]), fault

    def read_pointer(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def write(self, address: int, data: bytes) -> None:
        self.data[address - BASE:address - BASE + len(data)] = data


def test_strings_are_read_until_the_bytes_run_out() -> None:
    space = Space()
    text = "C:\\Windows\\System32\\svchost.exe"
    space.write(BASE, text.encode("utf-16-le"))
    notes: List[str] = []
    budget = Budget(max_bytes=3 * 2 * len(text), notes=notes)
    for _ in range(3):
        assert read_utf16(space, BASE, 2 * len(text), budget=budget) == text
    cut = read_utf16(space, BASE, 2 * len(text), budget=budget)
    assert isinstance(cut, Fault) and cut.reason == BUDGET_CUT and cut.marker == "<work budget exhausted>"
    assert budget.exhausted == ["bytes"] and len(notes) == 1 and "--max-bytes" in notes[0]
    assert not budget.walks_stopped                  # walks go on: only large values stop


def test_environment_block_cut_by_the_budget() -> None:
    space = Space()
    block = "\0".join(["A=1", "PATH=C:\\Windows", "TEMP=C:\\Temp"]) + "\0\0"
    space.write(BASE, block.encode("utf-16-le"))
    # room for the first two strings and part of the third: those two, and a note
    room = 2 * len("A=1\0PATH=C:\\Windows\0TE")
    env, note = read_environment(space, BASE, None, budget=Budget(max_bytes=room))
    assert env == ["A=1", "PATH=C:\\Windows"]
    assert note is not None and "cut short by the work budget" in note
    env, note = read_environment(space, BASE, 2 * len(block), budget=Budget(max_bytes=10 ** 6))
    assert env == ["A=1", "PATH=C:\\Windows", "TEMP=C:\\Temp"] and note is None
    spent = Budget(max_bytes=0)
    env, note = read_environment(space, BASE, 2 * len(block), budget=spent)
    assert isinstance(env, Fault) and env.reason == BUDGET_CUT


def _chain(space: Space, count: int) -> int:
    """A well-formed circular list: head at BASE, entries after it; returns the head."""
    head = BASE
    addresses = [head] + [BASE + 0x100 + 0x20 * i for i in range(count)]
    for i, at in enumerate(addresses):
        nxt, prev = addresses[(i + 1) % len(addresses)], addresses[i - 1]
        space.write(at, nxt.to_bytes(8, "little") + prev.to_bytes(8, "little"))
    return head


def test_walks_charge_one_entry_each_and_stop_at_once() -> None:
    space = Space()
    head = _chain(space, 30)
    notes: List[str] = []
    budget = Budget(max_entries=45, notes=notes)
    first, second, third = WalkEnd(), WalkEnd(), WalkEnd()
    assert len(list(walk_list(space, head, first, budget=budget))) == 30 and first.reason == END_OK
    assert len(list(walk_list(space, head, second, budget=budget))) == 15
    assert second.reason == END_BUDGET and second.note("x") == ""
    assert list(walk_list(space, head, third, budget=budget)) == [] and third.reason == END_BUDGET
    assert budget.entries == 0 and len(notes) == 1 and "45 list and table entries" in notes[0]


def test_budget_notes_name_each_kind() -> None:
    notes: Dict[str, str] = {}
    for kind in ("entries", "pages", "bytes"):
        budget = Budget(max_entries=1, max_pages=1, max_bytes=1)
        notes[kind] = budget.note(kind)
    assert "--max-entries N (N > 1)" in notes["entries"]
    assert "handle-table pages" in notes["pages"] and "--max-pages" in notes["pages"]
    assert "--max-bytes" in notes["bytes"]
