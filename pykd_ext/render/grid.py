"""The result grid: what every command returns and every renderer prints.

A command builds a `Result` (columns + records + an optional WinDbg-shaped text form); renderers
(`text`, `table`, `json`, `jsonl`, `csv`) never know which command produced it. Values in records
are plain Python (int, str, bool, None, lists, dicts) or `Fault` (unreadable memory), which each
renderer turns into its marker.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional


@dataclass
class Column:
    """One column: `key` in each record, `title` in tables, `fmt` for text/table/csv display."""

    key: str
    title: str = ""
    fmt: str = "str"          # "str", "int", "hex", "addr" (16 hex digits), "hex4" (%04x), "bool"

    def __post_init__(self) -> None:
        if not self.title:
            self.title = self.key


@dataclass
class Result:
    """What a command produced."""

    command: str
    columns: List[Column]
    records: List[Dict[str, Any]]
    #: WinDbg-shaped text lines for `--format text`; None means "print the table".
    text: Optional[Callable[["Result"], Iterable[str]]] = None
    #: Whole-result facts (layout used, target, method), emitted in JSON and as text header notes.
    meta: Dict[str, Any] = field(default_factory=dict)
    #: Human notes ("the rest of the process list is not in this dump"); stderr in text mode.
    notes: List[str] = field(default_factory=list)
