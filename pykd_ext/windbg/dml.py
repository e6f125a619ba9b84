"""DML for WinDbg: every EPROCESS/ETHREAD/token/job address in text output becomes a `!py` link.

Why one post-processing step instead of markup inside each command: commands build a `Result`
whose records say what each address *is* (a process record's `address` is an EPROCESS, a
thread's `process` is its EPROCESS, `token`/`job` are what they say), so the links follow from
the records, and the text renderer stays the same for the CLI, the scripts and the tests.
Without DML (`isWindbgExt()` false) the lines are printed unchanged.

DML facts (Debugger Markup Language, WinDbg docs "Customizing Debugger Output Using DML"):
`<link cmd="...">text</link>` runs `cmd` when clicked; `<`, `>`, `&` and `"` in plain text must
be written as `&lt;`, `&gt;`, `&amp;`, `&quot;`.
"""
import re
from typing import Any, Dict, Iterable, Iterator, List, Optional

#: which `!py` command opens an object of each kind
LINK_COMMANDS = {"process": "eproc", "thread": "ethread", "token": "token", "job": "job"}

#: record keys that always name an object of one kind, whatever the record is
_KEY_KINDS = {"process": "process", "token": "token", "job": "job", "owning_process": "process",
              "parent_address": "process", "thread": "thread", "ethread": "thread", "eprocess": "process"}

#: a hex number as text output prints addresses: optional 0x, 8 or 16 digits, optional backtick
_HEX = re.compile(r"(?<![0-9A-Za-z_`])((?:0x)?)([0-9a-fA-F]{8}(?:`?[0-9a-fA-F]{8})?)(?![0-9A-Za-z_`])")


def escape(text: str) -> str:
    """Plain text made safe inside DML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _record_kind(record: Dict[str, Any]) -> Optional[str]:
    """What a record's own `address` is: a thread (has a TID) or a process (has a PID)."""
    if "tid" in record:
        return "thread"
    if "pid" in record and ("ppid" in record or "name" in record):
        return "process"
    return None


def add_link_targets(found: Dict[int, str], record: Dict[str, Any], limit: int = 200000) -> None:
    """Add to `found` (address -> kind) every object address one record names."""
    kind = _record_kind(record)
    if kind and isinstance(record.get("address"), int) and record["address"]:
        found.setdefault(record["address"], kind)
    for key, key_kind in _KEY_KINDS.items():
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value:
            found.setdefault(value, key_kind)
    for key in ("threads", "processes"):
        nested = record.get(key)
        if isinstance(nested, list):
            for inner in nested[:limit]:
                if isinstance(inner, dict):
                    inner_kind = _record_kind(inner)
                    if inner_kind and isinstance(inner.get("address"), int):
                        found.setdefault(inner["address"], inner_kind)


def link_targets(records: Iterable[Dict[str, Any]], limit: int = 200000) -> Dict[int, str]:
    """address -> kind for every object address the records name (bounded)."""
    found: Dict[int, str] = {}
    for count, record in enumerate(records):
        if count >= limit or not isinstance(record, dict):
            break
        add_link_targets(found, record, limit)
    return found


def decorate_line(line: str, targets: Dict[int, str], prefix: str = "!py ") -> str:
    """One text line as DML: escaped, known addresses wrapped in `!py` links."""
    out: List[str] = []
    pos = 0
    for match in _HEX.finditer(line):
        value = int(match.group(2).replace("`", ""), 16)
        kind = targets.get(value)
        if kind is None:
            continue
        out.append(escape(line[pos:match.start()]))
        out.append('<link cmd="%s%s 0x%x">%s</link>' % (escape(prefix), LINK_COMMANDS[kind], value,
                                                        escape(match.group(0))))
        pos = match.end()
    out.append(escape(line[pos:]))
    return "".join(out)


def decorate(lines: Iterable[str], records: Iterable[Dict[str, Any]], prefix: str = "!py ") -> List[str]:
    """All text lines of a result as DML; `prefix` + command is what a link runs
    (`!py ` for the scripts, `!py -m pykd_ext ` when started as a module)."""
    targets = link_targets(records)
    return [decorate_line(line, targets, prefix) for line in lines]


def decorate_result(result: Any, prefix: str = "!py ") -> Iterator[str]:
    """A result's text as DML lines, as they are produced.

    A streamed result is decorated row by row: each row's lines link the addresses its own record
    (and `links`) and every earlier row named, so nothing waits for the last record. A list result
    (small) links what all its records name. Lines are escaped (`render.escape`) before markup.
    """
    from pykd_ext.render.escape import escape_text
    from pykd_ext.render.renderers import render_lines
    if result.streamed and result.has_text and result.text is None:
        targets: Dict[int, str] = {}
        for row in result.iter_rows():
            if isinstance(row.record, dict):
                add_link_targets(targets, row.record)
            if isinstance(row.links, dict):
                add_link_targets(targets, row.links)
            for line in row.lines():
                yield decorate_line(escape_text(line), targets, prefix)
        return
    result.materialize()
    targets = link_targets(result.records)
    for line in render_lines(result, "text"):
        yield decorate_line(line, targets, prefix)
