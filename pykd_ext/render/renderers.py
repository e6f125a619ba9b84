"""Renderers: the same `Result` as WinDbg-shaped text, an aligned table, JSON, JSON lines or CSV."""
import csv
import io
import json
from typing import Callable, Dict, Iterable, List

from pykd_ext.render.grid import Result
from pykd_ext.render.values import plain, show

FORMATS = ("text", "table", "json", "jsonl", "csv")


def render_table(result: Result) -> Iterable[str]:
    cols = result.columns
    rows = [[show(rec.get(c.key), c.fmt) for c in cols] for rec in result.records]
    widths = [max([len(c.title)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    yield "  ".join(c.title.ljust(w) for c, w in zip(cols, widths)).rstrip()
    yield "  ".join("-" * w for w in widths)
    for row in rows:
        yield "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()


def render_text(result: Result) -> Iterable[str]:
    if result.text is not None:
        return result.text(result)
    return render_table(result)


def render_json(result: Result) -> Iterable[str]:
    """One JSON document {"command", "meta", "records", "notes"}, streamed a record at a time.

    200,000 handles must not become one string, and `indent=` switches `json` to its slow pure
    Python encoder: so each record is one compact line (C encoder) inside an indented document.
    """
    def nested(value: object) -> str:
        return json.dumps(value, indent=2).replace("\n", "\n  ")

    yield "{"
    yield '  "command": %s,' % json.dumps(result.command)
    yield '  "meta": %s,' % nested(plain(result.meta))
    if not result.records:
        yield '  "records": [],'
    else:
        yield '  "records": ['
        last = len(result.records) - 1
        for index, rec in enumerate(result.records):
            yield "    " + json.dumps(plain(rec)) + ("," if index < last else "")
        yield "  ],"
    yield '  "notes": %s' % nested(list(result.notes))
    yield "}"


def render_jsonl(result: Result) -> Iterable[str]:
    for rec in result.records:
        yield json.dumps(plain(rec), separators=(",", ":"))


def render_csv(result: Result) -> Iterable[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in result.columns])
    for rec in result.records:
        writer.writerow([show(rec.get(c.key), c.fmt) for c in result.columns])
    yield buf.getvalue().rstrip("\n")


RENDERERS: Dict[str, Callable[[Result], Iterable[str]]] = {
    "text": render_text, "table": render_table, "json": render_json,
    "jsonl": render_jsonl, "csv": render_csv,
}


def render(result: Result, fmt: str) -> List[str]:
    """All output lines of a result in one format."""
    return list(RENDERERS[fmt](result))
