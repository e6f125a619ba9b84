"""The result grid: what every command returns and every renderer prints.

A command returns a `Result`: columns, whole-result `meta`, `notes`, and its records. Renderers
(`text`, `table`, `json`, `jsonl`, `csv`) never know which command produced it. Values in records
are plain Python (int, str, bool, None, lists, dicts) or `Fault` (unreadable memory), which each
renderer turns into its marker.

Records come in one of two forms:
- **streamed** (`rows=`): an iterable of `Row`s consumed once, while the command decodes. Each row
  carries one record (or None for a text-only block such as a header) and the WinDbg-shaped text
  lines of that record, computed only when text is printed. Why: a dump with 120,000 threads must
  not hold 120,000 records (and their text) before the first line prints; JSON output must not pay
  for the text. The command's generator may append to its notes list while it runs (walk notes,
  the kernel context's notes at the end): renderers read `notes` only after the rows.
- **a list** (`records=` plus an optional whole-result `text(result)` function): for small
  results; `text` reads `result.records`.

`Result.records` and `Result.notes` work on both forms: on a streamed result not yet consumed they
first run the stream to its end, keeping the rows (tests and the Python API use this).
"""
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Union

#: the text of one row: lines, or a function computing them when text is printed
RowText = Union[None, Sequence[str], Callable[[], Iterable[str]]]

#: Record keys that hold addresses (virtual or physical) in any command's records and meta. JSON,
#: JSONL and CSV write their integers as "0x..." strings (issue 12: jq 1.6 and JavaScript read
#: numbers as doubles and round 0xffffb30c8a00d050 to ...d000); counts, IDs, sizes, offsets stay
#: numbers. A column declared `fmt="addr"` is an address key too. The Python values stay ints.
ADDRESS_KEYS: FrozenSet[str] = frozenset((
    "address", "base", "end", "start", "entry", "entry_point", "image_base", "object", "object_header",
    "process", "thread", "job", "parent_job", "token", "peb", "peb32", "teb", "teb32", "prcb", "table",
    "table_code", "stack", "stack_base", "stack_limit", "stack_init", "stack_current", "start_address",
    "win32_start_address", "instruction_pointer", "dtb", "user_dtb", "directory_table_base",
    "kernel_base", "kd_debugger_data_block", "pfn_database", "ps_active_process_head",
    "ps_loaded_module_list", "restricted_sids_pointer", "device_map", "attached_process",
    "impersonation_token", "primary_token", "Flink", "Blink", "_address", "_list_flink", "_list_blink",
    "fls_data", "current_fiber", "queue_address",    # H10 (issue 17): fibers, ready queues
    # TEB and PEB pointers (`teb`, `peb` records)
    "exception_list", "sub_system_tib", "fiber_data", "arbitrary_user_pointer", "self",
    "environment_pointer", "rpc_handle", "tls_pointer", "win32_thread_info", "deallocation_stack",
    "ldr", "process_parameters", "sub_system_data", "process_heap", "process_heaps", "environment_address",
))
#: integers beyond a double's exact range are written as hex strings whatever their key
#: (registers, bugcheck parameters, KDBG pointers): no JSON reader can hold them as numbers
MAX_EXACT_JSON_INT = (1 << 53) - 1


class Column:
    """One column: `key` in each record, `title` in tables (default: the key), `fmt` for
    text/table/csv display: "str", "int", "hex", "addr" (an address: 16 hex digits in tables,
    "0x..." in JSON/CSV), "hex4" (%04x), "bool".

    A plain class, like `Row` below: every command module declares its columns at import, and
    a dataclass decorator here cost half a millisecond of each command's start-up."""

    __slots__ = ("key", "title", "fmt")

    def __init__(self, key: str, title: str = "", fmt: str = "str") -> None:
        self.key = key
        self.title = title or key
        self.fmt = fmt

    def __repr__(self) -> str:
        return "Column(key=%r, title=%r, fmt=%r)" % (self.key, self.title, self.fmt)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Column) and \
            (self.key, self.title, self.fmt) == (other.key, other.title, other.fmt)

    def __hash__(self) -> int:
        return hash((self.key, self.title, self.fmt))


class Row:
    """One item of a streamed result.

    `record`: the JSON record (None: a text-only block, e.g. a `PROCESS` header above threads);
    `text`: its WinDbg-shaped lines, or a function returning them (called only for text output);
    `links`: record-like facts used only to turn addresses in this row's text into WinDbg DML
    links (a header row names the process its lines show)."""

    __slots__ = ("record", "text", "links")

    def __init__(self, record: Optional[Dict[str, Any]] = None, text: RowText = None,
                 links: Optional[Dict[str, Any]] = None) -> None:
        self.record = record
        self.text = text
        self.links = links

    def lines(self) -> Iterable[str]:
        text = self.text
        if text is None:
            return ()
        if callable(text):
            return text()
        return text


class Result:
    """What a command produced (see the module docstring for the two forms)."""

    def __init__(self, command: str, columns: List[Column],
                 records: Optional[Iterable[Dict[str, Any]]] = None,
                 text: Optional[Callable[["Result"], Iterable[str]]] = None,
                 meta: Optional[Dict[str, Any]] = None, notes: Optional[List[str]] = None,
                 rows: Optional[Iterable[Row]] = None, rows_have_text: bool = True) -> None:
        if rows is not None and records is not None:
            raise ValueError("a Result has records or rows, not both")
        self.command = command
        self.columns = columns
        #: WinDbg-shaped text of a list result; None means "print the table" (or the rows' text)
        self.text = text
        #: Whole-result facts (layout used, target, method): known before the first record, so
        #: JSON writes them first.
        self.meta: Dict[str, Any] = meta if meta is not None else {}
        self._notes: List[str] = notes if notes is not None else []
        self._records: Iterable[Dict[str, Any]] = records if records is not None else []
        self._rows: Optional[Iterable[Row]] = rows
        self._consumed = False
        #: False: the rows carry no text, `--format text` prints the table
        self.rows_have_text = rows_have_text
        #: called once per record as renderers consume them (progress counting)
        self.on_record: Optional[Callable[[], Any]] = None
        #: records rendered so far (the CLI's exit code: 0 when any, 1 "nothing matched" when none)
        self.record_count = 0
        #: keys whose integers are addresses in this result's records (see ADDRESS_KEYS)
        self.address_keys: FrozenSet[str] = ADDRESS_KEYS.union(c.key for c in columns if c.fmt == "addr")
        #: optional per-record widening of `address_keys` (dt: a pointer member's "value")
        self.record_address_keys: Optional[Callable[[Dict[str, Any]], FrozenSet[str]]] = None

    # ---- what renderers use (each consumes a streamed result once)
    @property
    def streamed(self) -> bool:
        return self._rows is not None

    @property
    def has_text(self) -> bool:
        """Whether `--format text` has WinDbg-shaped lines (else it prints the table)."""
        return self.text is not None or (self._rows is not None and self.rows_have_text)

    def iter_rows(self) -> Iterator[Row]:
        """Every row once (a list result: one text-less row per record)."""
        tick = self.on_record
        if self._rows is None:
            for record in self._records:
                self.record_count += 1
                if tick is not None:
                    tick()
                yield Row(record)
            return
        source = self._rows
        if not isinstance(source, list):
            if self._consumed:
                raise RuntimeError("the rows of a streamed %s result were already consumed" % self.command)
            self._consumed = True
        for row in source:
            if row.record is not None:
                self.record_count += 1
                if tick is not None:
                    tick()
            yield row

    def iter_records(self) -> Iterator[Dict[str, Any]]:
        for row in self.iter_rows():
            if row.record is not None:
                yield row.record

    def text_lines(self) -> Iterator[str]:
        """The WinDbg-shaped text (only when `has_text`)."""
        if self.text is not None:
            self.record_count = len(self.records)      # a list result: its text shows its records
            for line in self.text(self):
                yield line
            return
        for row in self.iter_rows():
            for line in row.lines():
                yield line

    # ---- whole-result access (materializes a stream that was not consumed yet)
    def materialize(self) -> "Result":
        """Run a streamed result to its end, keeping its rows (its notes are then complete)."""
        if self._rows is not None and not isinstance(self._rows, list):
            if self._consumed:
                raise RuntimeError("the rows of a streamed %s result were already consumed" % self.command)
            self._rows = list(self._rows)
        elif self._rows is None and not isinstance(self._records, list):
            self._records = list(self._records)
        return self

    @property
    def records(self) -> List[Dict[str, Any]]:
        self.materialize()
        if self._rows is not None:
            return [row.record for row in self._rows if row.record is not None]
        records = self._records
        if not isinstance(records, list):
            records = self._records = list(records)
        return records

    @records.setter
    def records(self, value: Iterable[Dict[str, Any]]) -> None:
        self._rows, self._consumed, self._records = None, False, value

    @property
    def notes(self) -> List[str]:
        """Human notes ("the rest of the process list is not in this dump"); stderr in text mode.
        Complete only after the rows ran: reading them first runs an unconsumed stream."""
        if self._rows is not None and not self._consumed and not isinstance(self._rows, list):
            self.materialize()
        return self._notes

    @notes.setter
    def notes(self, value: List[str]) -> None:
        self._notes = value
