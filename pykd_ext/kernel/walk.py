"""Bounded, cycle-safe walks of kernel `LIST_ENTRY` chains.

A corrupt or hostile list (DKOM, a torn dump) must never hang or crash a command: every walk has
a hard limit, remembers what it has seen, checks that each link points back (`Flink->Blink`), and
ends with a `WalkEnd` that says why it stopped. Callers show that reason as a note.

The per-walk limit bounds one list; the command's `Budget` (kernel/budget.py), passed to every
walk, bounds their sum: a walk that finds the budget spent ends with `END_BUDGET` (no per-walk
note: the budget writes one note for the whole command).
"""
from typing import Iterator, List, Optional

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.budget import BUDGET_CUT, Budget
from pykd_ext.memory.space import AddressSpace

DEFAULT_LIMIT = 100000

# Why a walk ended.
END_OK = "complete"                 # back at the head
END_LIMIT = "limit reached"         # more entries than the limit
END_CYCLE = "cycle"                 # an entry came round twice without reaching the head
END_UNREADABLE = "unreadable link"  # a Flink could not be read (memory not in the dump)
END_NULL = "null link"              # Flink is 0
END_HEAD_UNREADABLE = "list head unreadable"
END_BUDGET = BUDGET_CUT             # the command's work budget ran out (this walk or an earlier one)


class WalkEnd:
    """How a walk ended: `reason`, the link address where it stopped, and the fault if any."""

    def __init__(self) -> None:
        self.reason = END_OK
        self.at: Optional[int] = None
        self.fault: Optional[object] = None
        self.count = 0
        self.back_link_mismatches: List[int] = []   # entries whose Flink->Blink != entry

    @property
    def complete(self) -> bool:
        return self.reason == END_OK

    @property
    def cut_by_budget(self) -> bool:
        """True when the work budget, not the list, ended the walk (the count is then unknown)."""
        return self.reason == END_BUDGET

    def note(self, what: str) -> str:
        """A one-line human note, or '' when the walk completed cleanly or the work budget ended
        it (the budget's own note, written once, says so for every walk it cut)."""
        if (self.reason == END_OK or self.reason == END_BUDGET) and not self.back_link_mismatches:
            return ""
        text = "%s: walk stopped after %d entries (%s" % (what, self.count, self.reason)
        if self.at is not None:
            text += " at 0x%x" % self.at
        if self.fault is not None:
            text += ": %s" % self.fault
        text += ")"
        if self.back_link_mismatches:
            text += "; %d entries with inconsistent back links" % len(self.back_link_mismatches)
        return text


def walk_list(space: AddressSpace, head: int, end: Optional[WalkEnd] = None,
              limit: int = DEFAULT_LIMIT, check_back_links: bool = True,
              budget: Optional[Budget] = None) -> Iterator[int]:
    """Yield the address of each `LIST_ENTRY` linked from `head` (the head itself excluded).

    The caller subtracts the link's offset to get the containing structure. Reads two pointers
    per entry (Flink, and Blink when checking back links). Fills `end` (if given) when done.
    Each entry yielded is charged to `budget` (one entry); a spent budget ends the walk.
    """
    end = end if end is not None else WalkEnd()
    if budget is not None and budget.walks_stopped:
        end.reason = END_BUDGET
        return
    seen = set()
    read_link = space.read_link
    try:
        current = space.read_pointer(head)
    except MemoryReadError as err:
        end.reason, end.at, end.fault = END_HEAD_UNREADABLE, head, err.fault
        return
    previous = head
    while current != head:
        if current == 0:
            end.reason, end.at = END_NULL, previous
            return
        if current in seen:
            end.reason, end.at = END_CYCLE, current
            return
        if end.count >= limit:
            end.reason, end.at = END_LIMIT, current
            return
        if budget is not None:
            if budget.entries <= 0 or budget.walks_stopped:
                budget.cut("entries")
                end.reason, end.at = END_BUDGET, current
                return
            budget.entries -= 1
        seen.add(current)
        try:
            flink, blink = read_link(current)
        except MemoryReadError as err:
            end.reason, end.at, end.fault = END_UNREADABLE, current, err.fault
            return
        if check_back_links and blink != previous:
            end.back_link_mismatches.append(current)
        end.count += 1
        yield current
        previous = current
        current = flink
