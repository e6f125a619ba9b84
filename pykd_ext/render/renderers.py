"""Renderers: the same `Result` as WinDbg-shaped text, an aligned table, JSON, JSON lines or CSV.

Every renderer is a generator over the result's records, consumed once: the first line of a
streamed result is out before its last record is decoded (only `table` buffers, for its column
widths). `render_lines` is the one way out for every sink (CLI, `!py`, tests): the human formats
(text, table, csv) leave it escaped (`render.escape`), JSON escapes by itself.
"""
import io
import json
from typing import Any, Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional

from pykd_ext.render.escape import escape_lines, escape_text
from pykd_ext.render.grid import MAX_EXACT_JSON_INT, Result
from pykd_ext.render.values import json_default, plain, show

FORMATS = ("text", "table", "json", "jsonl", "csv")
#: formats a person reads: every line is escaped (strings from the dump must not drive a terminal)
HUMAN_FORMATS = ("text", "table", "csv")

#: one record per call through the C encoder (`default` only for Faults, bytes, objects)
_RECORD_ENCODER = json.JSONEncoder(default=json_default)
_COMPACT_ENCODER = json.JSONEncoder(default=json_default, separators=(",", ":"))


def _hex(value: int) -> str:
    return "0x%x" % value if value >= 0 else "-0x%x" % -value


def serial_value(value: Any, keys: FrozenSet[str], key: Optional[str] = None) -> Any:
    """`value` as JSON/JSONL/CSV write it: integers under an address key (`Result.address_keys`,
    at any depth, lists included) and integers too large for a double become "0x..." strings;
    everything else is unchanged (the C encoder and `json_default` handle it)."""
    kind = type(value)
    if kind is int:
        if key in keys or value > MAX_EXACT_JSON_INT or value < -MAX_EXACT_JSON_INT:
            return _hex(value)
        return value
    if kind is dict:
        # scalars inline (a thread record has ~40 values; one call each was most of the cost)
        out = {}
        for k, v in value.items():
            vkind = type(v)
            if vkind is int:
                out[k] = _hex(v) if (k in keys or v > MAX_EXACT_JSON_INT or v < -MAX_EXACT_JSON_INT) else v
            elif vkind is str or v is None or vkind is bool or vkind is float:
                out[k] = v
            else:
                out[k] = serial_value(v, keys, k)
        return out
    if kind is list or kind is tuple:
        return [serial_value(v, keys, key) for v in value]
    if kind in _JSON_SCALARS:
        return value
    try:                        # a Fault, bytes, an object with to_dict: its JSON form, walked too
        return serial_value(json_default(value), keys, key)
    except TypeError:
        return value            # the encoder reports what it cannot write


_JSON_SCALARS = (str, float, bool, type(None))


def serial_record(result: Result, record: Dict[str, Any]) -> Dict[str, Any]:
    """One record with its addresses as hex strings (the one place serialised output types them)."""
    keys = result.address_keys
    widen = result.record_address_keys
    if widen is not None:
        keys = keys | widen(record)
    return serial_value(record, keys)


def addresses_as_ints(value: Any) -> Any:
    """The inverse of `serial_value` for a parsed JSON document: every "0x..." string back to its
    int (for Python readers of our JSON/JSONL that want the API's values; jq and JavaScript should
    keep the strings)."""
    kind = type(value)
    if kind is str:
        text = value[1:] if value.startswith("-") else value
        if text[:2] == "0x" and len(text) > 2 and all(c in _HEX_DIGITS for c in text[2:]):
            return int(value, 16)
        return value
    if kind is dict:
        return {k: addresses_as_ints(v) for k, v in value.items()}
    if kind is list:
        return [addresses_as_ints(v) for v in value]
    return value


_HEX_DIGITS = frozenset("0123456789abcdef")


def render_table(result: Result) -> Iterable[str]:
    """An aligned table. It buffers every row (the widths depend on all of them): for streamed
    output of big results use text, jsonl or csv."""
    cols = result.columns
    rows = [[escape_text(show(rec.get(c.key), c.fmt)) for c in cols] for rec in result.iter_records()]
    widths = [max([len(c.title)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    yield "  ".join(c.title.ljust(w) for c, w in zip(cols, widths)).rstrip()
    yield "  ".join("-" * w for w in widths)
    for row in rows:
        yield "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()


def render_text(result: Result) -> Iterable[str]:
    if result.has_text:
        return result.text_lines()
    return render_table(result)


def render_json(result: Result) -> Iterator[str]:
    """One JSON document {"command", "meta", "records", "notes"}, streamed a record at a time.

    200,000 handles must not become one string, and `indent=` switches `json` to its slow pure
    Python encoder: so each record is one compact line (C encoder) inside an indented document.
    `meta` comes first (known before decoding), `notes` last (decoding adds to them). A record's
    line is written when the next one is decoded (it needs its comma).
    """
    def nested(value: object) -> str:
        return json.dumps(value, indent=2).replace("\n", "\n  ")

    yield "{"
    yield '  "command": %s,' % json.dumps(result.command)
    yield '  "meta": %s,' % nested(serial_value(plain(result.meta), result.address_keys))
    encode = _RECORD_ENCODER.encode
    previous = None
    for rec in result.iter_records():
        if previous is None:
            yield '  "records": ['
        else:
            yield "    " + previous + ","
        previous = encode(serial_record(result, rec))
    if previous is None:
        yield '  "records": [],'
    else:
        yield "    " + previous
        yield "  ],"
    yield '  "notes": %s' % nested(list(result.notes))
    yield "}"


def render_jsonl(result: Result) -> Iterator[str]:
    encode = _COMPACT_ENCODER.encode
    for rec in result.iter_records():
        yield encode(serial_record(result, rec))


def render_csv(result: Result) -> Iterator[str]:
    """A header row, then one row per record as it is decoded."""
    import csv                  # here: most commands never write CSV (start-up cost)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = result.columns

    def take() -> str:
        line = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return line[:-1]

    writer.writerow([c.key for c in columns])
    yield take()
    keys = result.address_keys
    for rec in result.iter_records():
        writer.writerow([_csv_cell(rec.get(c.key), c.fmt, c.key in keys) for c in columns])
        yield take()


def _csv_cell(value: Any, fmt: str, is_address: bool) -> str:
    """A CSV cell: addresses as "0x..." like JSON (tables keep WinDbg's 16 hex digits)."""
    if is_address and type(value) is int:
        return _hex(value)
    if is_address and isinstance(value, (list, tuple)):
        return ",".join(_hex(v) if type(v) is int else show(v, fmt) for v in value)
    return show(value, fmt)


RENDERERS: Dict[str, Callable[[Result], Iterable[str]]] = {
    "text": render_text, "table": render_table, "json": render_json,
    "jsonl": render_jsonl, "csv": render_csv,
}


def render_lines(result: Result, fmt: str) -> Iterator[str]:
    """Output lines of a result in one format, as they are produced (consumes a streamed result);
    lines of the human formats are escaped."""
    lines = RENDERERS[fmt](result)
    if fmt in HUMAN_FORMATS:
        return escape_lines(lines)
    return iter(lines)


def render(result: Result, fmt: str) -> List[str]:
    """All output lines of a result in one format."""
    return list(render_lines(result, fmt))
