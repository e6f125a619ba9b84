"""The work budget of one command: how much any dump may make it do, summed over every walk.

Why: each walk is bounded and cycle-safe on its own, but a hostile dump multiplies them: 4,096
overlapping "processes" that each walk the same 4,096-entry chain as their thread list are 16
million entries; nine processes sharing one 4,000-page handle table are nine million handles.
Every walk of one command therefore draws on one shared `Budget` (owned by the `KernelContext`):

- `entries`: list entries visited (`walk.walk_list`: processes, threads, sessions, modules, job
  members), handle-table entries decoded one by one (handles, the CID table), SIDs of token
  arrays, wait blocks, registry KCB and object-directory steps;
- `pages`: handle-table pages read (4 KiB each, whether decoded entry by entry or counted in bulk);
- `bytes`: bytes read for large values (environment blocks, `UNICODE_STRING` texts).

When the entries or pages run out, the walk that hit the limit ends like any other walk (reason
`BUDGET_CUT`), every later walk ends at once, the command prints what it decoded, and the context
gets ONE note naming the budget and how to raise it. When the bytes run out, later large values
read as a `Fault` of reason `BUDGET_CUT` (shown `<work budget exhausted>`), and the same one note.

Defaults: generous for real large machines (10,000 processes, 200,000 threads, 500,000 handles
across all processes: `ps`/`threads` visit about 410,000 list entries, `handles --all` decodes
500,000 entries from some 15,000 pages), tight enough that the hostile dumps above end in
seconds with memory proportional to the budget (about 1 us and a few dozen bytes per entry).
The CLI sets them through the session (`budget_for`); the attribute names are `max_entries`,
`max_pages` and `max_bytes` (or a ready `Budget` as `session.budget`).
"""
from typing import Any, Optional

#: Default allowances (see the module docstring for the reasoning).
DEFAULT_MAX_ENTRIES = 2000000
DEFAULT_MAX_PAGES = 100000
DEFAULT_MAX_BYTES = 256 << 20

#: Why a walk or a read stopped when the budget ran out (a `WalkEnd` reason, a `Fault` reason).
BUDGET_CUT = "work budget exhausted"

#: kind -> (what the note counts, the CLI option that raises it)
KINDS = {
    "entries": ("list and table entries", "--max-entries"),
    "pages": ("handle-table pages", "--max-pages"),
    "bytes": ("bytes of strings and environment blocks", "--max-bytes"),
}


class Budget:
    """What is left of one command's allowance; shared by every walk of the command.

    Hot loops read and decrement the counters directly (`entries`, `pages`): a walk checks
    `budget.entries > 0` and subtracts one per entry, and calls `cut("entries")` when it finds
    none left. `walks_stopped` is True once entries or pages ran out: every later walk ends at once.
    """

    __slots__ = ("entries", "pages", "bytes", "max_entries", "max_pages", "max_bytes",
                 "exhausted", "walks_stopped", "notes")

    def __init__(self, max_entries: Optional[int] = None, max_pages: Optional[int] = None,
                 max_bytes: Optional[int] = None, notes: Optional[list] = None) -> None:
        self.max_entries = _limit(max_entries, DEFAULT_MAX_ENTRIES)
        self.max_pages = _limit(max_pages, DEFAULT_MAX_PAGES)
        self.max_bytes = _limit(max_bytes, DEFAULT_MAX_BYTES)
        self.entries = self.max_entries
        self.pages = self.max_pages
        self.bytes = self.max_bytes
        #: the kinds that ran out, first first
        self.exhausted: list = []
        self.walks_stopped = False
        #: where the one note goes when a kind runs out (the KernelContext's notes)
        self.notes = notes

    # ---- charging
    def cut(self, kind: str) -> None:
        """Record that `kind` ran out (once): later walks stop, and the one note is written.
        Walks stopped by one kind (entries or pages) are not blamed on the other."""
        if kind in self.exhausted or (kind in ("entries", "pages") and self.walks_stopped):
            return
        self.exhausted.append(kind)
        if kind in ("entries", "pages"):
            self.walks_stopped = True
            if kind == "entries":
                self.entries = 0
            else:
                self.pages = 0
        else:
            self.bytes = 0
        if self.notes is not None:
            self.notes.append(self.note(kind))

    def take_entries(self, wanted: int) -> int:
        """How many of `wanted` entries may still be decoded (charged now); cuts when short."""
        if self.walks_stopped:
            return 0
        granted = min(max(wanted, 0), self.entries)
        self.entries -= granted
        if granted < wanted:
            self.cut("entries")
        return granted

    def take_entry(self) -> bool:
        """One entry: True when it may be decoded."""
        return self._take_one("entries")

    def take_page(self) -> bool:
        """One handle-table page: True when it may be read."""
        return self._take_one("pages")

    def _take_one(self, kind: str) -> bool:
        left = getattr(self, kind)
        if self.walks_stopped or left <= 0:
            self.cut(kind)
            return False
        setattr(self, kind, left - 1)
        return True

    def take_bytes(self, wanted: int) -> int:
        """How many of `wanted` bytes may still be read (charged now); cuts when short."""
        granted = min(max(wanted, 0), self.bytes)
        self.bytes -= granted
        if granted < wanted:
            self.cut("bytes")
        return granted

    # ---- reporting
    def note(self, kind: str) -> str:
        """The one line a command prints when `kind` ran out."""
        what, option = KINDS[kind]
        limit = getattr(self, "max_" + kind)
        if kind == "bytes":
            return ("stopped reading large values after %s %s (work budget); later ones show "
                    "<%s>; rerun with %s N (N > %d) to read more" % (_thousands(limit), what,
                                                                     BUDGET_CUT, option, limit))
        return ("stopped after %s %s (work budget): what follows is incomplete (counts cut short "
                "are left empty); rerun with %s N (N > %d) to decode more"
                % (_thousands(limit), what, option, limit))


def _limit(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


def _thousands(value: int) -> str:
    return "{:,}".format(value)


def budget_for(session: Any) -> Budget:
    """The one Budget of a session's command: `session.budget` when it is one, else built once
    from `session.max_entries` / `max_pages` / `max_bytes` (defaults when absent)."""
    given = getattr(session, "budget", None)
    if isinstance(given, Budget):
        return given
    made = getattr(session, "_work_budget", None)
    if not isinstance(made, Budget):
        made = Budget(getattr(session, "max_entries", None), getattr(session, "max_pages", None),
                      getattr(session, "max_bytes", None))
        try:
            session._work_budget = made
        except AttributeError:      # a session object that takes no attributes: not cached
            pass
    return made


__all__ = ["BUDGET_CUT", "Budget", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES", "DEFAULT_MAX_PAGES",
           "budget_for"]
