"""How `watch` shows changes: one line per change, or a full-screen table with changes highlighted.

Why two views: on a terminal a teacher wants the whole list standing still with what moved lit up
(rich's `Live`: redraws in place, no flicker, works over ssh); in a pipe or a log each change must
be one self-contained line a `grep` can find. Every string from the target passes through
`render.escape.escape_text` before it reaches either (process names are written by whoever owns
the machine), and the full-screen view hands rich `Text` objects, never markup, so a `[bold]` in
an image name stays text.
"""
from typing import Any, Dict, List, Optional, Sequence

from pykd_ext.live.changes import ADDED, CHANGED, REMOVED, Change
from pykd_ext.render.escape import escape_text
from pykd_ext.render.grid import Column
from pykd_ext.render.values import show

#: The marker of each change kind in line output.
SIGNS = {ADDED: "+", REMOVED: "-", CHANGED: "~"}
#: Record fields that name what a record is, shown before the identity in a change line.
LABEL_FIELDS = ("name", "process", "type", "path", "state")
#: Styles of the full-screen view (rich style names).
STYLES = {ADDED: "bold green", REMOVED: "bold red", CHANGED: "bold yellow"}
#: How many recent changes the full-screen view lists under the table.
RECENT = 12


def short(value: Any, limit: int = 60) -> str:
    """A JSON value as a short escaped string (addresses in hex)."""
    if isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, int):
        text = "0x%x" % value if value > 0xFFFFFF else str(value)
    elif isinstance(value, str):
        text = value
    else:
        import json
        text = json.dumps(value, sort_keys=True)
    text = escape_text(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def change_line(change: Change, refresh: int) -> str:
    """`[refresh] + thread address=0x... tid=100 (lsass.exe): state Waiting -> Ready`."""
    rec = change.record
    ident = " ".join("%s=%s" % (name, short(rec.get(name))) for name in change.identity)
    label = ""
    if "name" in rec and rec.get("name") is not None:
        label = " (%s)" % short(rec["name"])
    kind = _kind(change)
    head = "[%d] %s %s %s%s" % (refresh, SIGNS[change.change], kind, ident, label)
    if change.change != CHANGED:
        return escape_text(head)
    moves = ", ".join("%s %s -> %s" % (escape_text(name), short(old), short(new))
                      for name, (old, new) in change.fields.items())
    return escape_text("%s: %s" % (head, moves))


def _kind(change: Change) -> str:
    names = change.identity
    if "tid" in names:
        return "thread"
    if "handle" in names:
        return "handle"
    if "pid" in names and "address" in names:
        return "process"
    return "record"


class LiveView:
    """The full-screen view: the latest records as a table, changed cells highlighted, the
    most recent changes below. Built on rich (the `[live]` extra); imported only on a TTY."""

    def __init__(self, command: str, columns: Sequence[Column], stream: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live
        self.command = command
        self.columns = list(columns)
        self.console = Console(file=stream) if stream is not None else Console()
        self.live = Live(console=self.console, screen=True, auto_refresh=False)
        self.recent: List[str] = []

    def __enter__(self) -> "LiveView":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, refresh: int, records: Dict[Any, Dict[str, Any]], changes: List[Change],
               status: str) -> None:
        """Redraw the screen with this refresh's records and changes."""
        self.live.update(self.render(refresh, records, changes, status), refresh=True)

    def render(self, refresh: int, records: Dict[Any, Dict[str, Any]], changes: List[Change],
               status: str) -> Any:
        """The screen's content (a rich renderable): the table, then the recent changes."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text
        touched: Dict[Any, Change] = {c.key: c for c in changes if c.change != REMOVED}
        table = Table(title=Text("pykd-ext watch %s - refresh %d - %s"
                                 % (escape_text(self.command), refresh, escape_text(status))),
                      expand=True)
        for column in self.columns:
            table.add_column(Text(escape_text(column.title)), no_wrap=True)
        for key, rec in records.items():
            change = touched.get(key)
            cells = []
            for column in self.columns:
                text = Text(escape_text(show(rec.get(column.key), column.fmt)))
                if change is not None and (change.change == ADDED or column.key in change.fields):
                    text.stylize(STYLES[change.change])
                cells.append(text)
            table.add_row(*cells)
        for change in changes:
            self.recent.append(change_line(change, refresh))
        self.recent = self.recent[-RECENT:]
        log = Text("\n".join(self.recent) if self.recent else "no changes yet")
        return Group(table, log)


def view_for(command: str, columns: Sequence[Column], stream: Optional[Any] = None) -> LiveView:
    return LiveView(command, columns, stream)


__all__ = ["LiveView", "SIGNS", "change_line", "short", "view_for"]
