"""The batch report: one self-contained HTML file from a batch database.

Why this shape: the report is mailed around and opened offline, so it is one file with no script,
no stylesheet, font or image fetched from anywhere: inline CSS, charts as inline static SVG drawn
by matplotlib (its SVG backend, text kept as text so it can be searched and read by tests).
Every string that comes from a dump (paths, driver and process names, notes, error messages) is
HTML-escaped here (`html.escape`) and by matplotlib inside the SVG, so a hostile driver name in a
dump is shown, never run.

Contents: counts; charts of bugchecks, blamed modules, builds and crashes over time; the bucket
table (count, distinct contents, first and last crash, builds, example dumps); one table of dumps
per bucket (bounded by `ROWS_PER_BUCKET`); the error rows.
"""
import datetime
import html
import io
from typing import Any, List, Optional, Sequence, Tuple

from pykd_ext.batch.store import Store

ROWS_PER_BUCKET = 50
MAX_BUCKETS = 200
TOP_BARS = 12
EXAMPLES = 3

_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#eee}td.n{text-align:right}code{font-size:.95em;word-break:break-all}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{flex:1 1 520px}
.muted{color:#777}.err{color:#a00}
"""


def _e(value: Any) -> str:
    """HTML text of a value (None shown as an em dash, times to the second)."""
    if value is None:
        return "\u2014"
    if isinstance(value, datetime.datetime):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    return html.escape(str(value), quote=True)


def _bar_svg(title: str, labels: Sequence[str], values: Sequence[float], horizontal: bool = True) -> str:
    """A bar chart as an inline <svg> element (matplotlib's SVG backend, no pyplot state)."""
    from matplotlib.figure import Figure
    height = 1.2 + 0.32 * max(len(labels), 1) if horizontal else 3.6
    figure = Figure(figsize=(6.4, height))
    axes = figure.add_subplot(1, 1, 1)
    if not labels:
        axes.text(0.5, 0.5, "no data", ha="center", va="center")
        axes.set_axis_off()
    elif horizontal:
        positions = list(range(len(labels)))[::-1]
        axes.barh(positions, values, color="#4a78b5")
        axes.set_yticks(positions)
        axes.set_yticklabels(labels, fontsize=8)
        axes.set_xlabel("dumps")
        from matplotlib.ticker import MaxNLocator
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axes.bar(range(len(labels)), values, color="#4a78b5")
        axes.set_xticks(range(len(labels)))
        axes.set_xticklabels(labels, fontsize=8, rotation=45, ha="right")
        axes.set_ylabel("dumps")
        from matplotlib.ticker import MaxNLocator
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return _svg_of(figure)


def _svg_of(figure: Any) -> str:
    """The figure as an <svg> element: text kept as text, stable ids, no date stamp."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    out = io.StringIO()
    params: Any = {"svg.fonttype": "none", "svg.hashsalt": "pykd-ext-batch"}
    with rc_context(params):
        FigureCanvasSVG(figure).print_svg(out, metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg"):]


def _rows(store: Store, sql: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
    return store.con.execute(sql, list(params)).fetchall()


def _time_chart(store: Store) -> str:
    days = _rows(store, "SELECT CAST(crash_time AS DATE) AS day, count(*) FROM dumps "
                        "WHERE status = 'ok' AND crash_time IS NOT NULL GROUP BY day ORDER BY day")
    if len(days) > 60:        # many days: by month
        days = _rows(store, "SELECT date_trunc('month', crash_time) AS m, count(*) FROM dumps "
                            "WHERE status = 'ok' AND crash_time IS NOT NULL GROUP BY m ORDER BY m")
        labels = [d.strftime("%Y-%m") for d, _ in days]
    else:
        labels = [d.isoformat() for d, _ in days]
    return _bar_svg("Crashes over time", labels, [n for _, n in days], horizontal=False)


def _top_chart(store: Store, title: str, expression: str) -> str:
    rows = _rows(store, "SELECT %s AS k, count(*) AS n FROM dumps WHERE status = 'ok' "
                        "GROUP BY k ORDER BY n DESC, k LIMIT %d" % (expression, TOP_BARS))
    return _bar_svg(title, [str(k) if k is not None else "(unknown)" for k, _ in rows],
                    [n for _, n in rows])


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    out = ["<table><tr>" + "".join("<th>%s</th>" % _e(h) for h in headers) + "</tr>"]
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            cls = ' class="n"' if index in numeric else ""
            cells.append("<td%s>%s</td>" % (cls, cell))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _anchor(bucket: str, index: int) -> str:
    return "bucket-%d" % index


def render_report(store: Store, title: str = "pykd-ext batch report",
                  generated: Optional[datetime.datetime] = None) -> str:
    """The report of the database behind `store`, as HTML text."""
    total, ok, distinct = _rows(store, "SELECT count(*), count(*) FILTER (WHERE status = 'ok'), "
                                       "count(DISTINCT sha256) FROM dumps")[0]
    errors = total - ok
    stamp = (generated or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>%s</title>" % _e(title), "<style>%s</style></head><body>" % _CSS,
             "<h1>%s</h1>" % _e(title),
             '<p id="counts">%d dump file(s), %d distinct content(s): %d analysed, '
             '<span class="err">%d error row(s)</span>. <span class="muted">Generated %s.</span></p>'
             % (total, distinct, ok, errors, _e(stamp))]

    parts.append('<h2>Charts</h2><div class="charts">')
    for chart in (_top_chart(store, "Bugchecks", "bugcheck_name"),
                  _top_chart(store, "Blamed modules", "blamed_module"),
                  _top_chart(store, "Builds", "coalesce(kernel_version, CAST(build AS VARCHAR))"),
                  _time_chart(store)):
        parts.append('<div class="chart">%s</div>' % chart)
    parts.append("</div>")

    buckets = _rows(store, "SELECT bucket, count(*) AS n, count(DISTINCT sha256), min(crash_time), "
                           "max(crash_time), string_agg(DISTINCT CAST(build AS VARCHAR), ', ') "
                           "FROM dumps WHERE status = 'ok' GROUP BY bucket "
                           "ORDER BY n DESC, bucket LIMIT %d" % MAX_BUCKETS)
    parts.append("<h2>Buckets</h2>")
    parts.append('<p class="muted">Bucket = bugcheck name + blamed module; the blame rules are '
                 "in docs/batch.md (fault address, then the stack, then the kernel).</p>")
    rows = []
    for index, (bucket, count, contents, first, last, builds) in enumerate(buckets):
        examples = _rows(store, "SELECT path FROM dumps WHERE status = 'ok' AND bucket = ? "
                                "ORDER BY path LIMIT %d" % EXAMPLES, [bucket])
        rows.append(['<a href="#%s">%s</a>' % (_anchor(bucket, index), _e(bucket)), _e(count),
                     _e(contents), _e(first), _e(last), _e(builds),
                     "<br>".join("<code>%s</code>" % _e(p) for (p,) in examples)])
    parts.append(_table(("bucket", "dumps", "distinct", "first crash", "last crash", "builds",
                         "example dumps"), rows, numeric=(1, 2)))

    for index, (bucket, count, _c, _f, _l, _b) in enumerate(buckets):
        parts.append('<h2 id="%s">%s <span class="muted">(%d)</span></h2>'
                     % (_anchor(bucket, index), _e(bucket), count))
        dumps = _rows(store, "SELECT path, crash_time, kernel_version, build, bucket_detail, "
                             "blame_source, fault_location, process_name, pid, tid FROM dumps "
                             "WHERE status = 'ok' AND bucket = ? ORDER BY crash_time, path "
                             "LIMIT %d" % ROWS_PER_BUCKET, [bucket])
        rows = [["<code>%s</code>" % _e(path), _e(when), _e(version or build), _e(detail),
                 _e(source), _e(fault), _e(process), _e(pid), _e(tid)]
                for path, when, version, build, detail, source, fault, process, pid, tid in dumps]
        parts.append(_table(("dump", "crash time", "build", "bucket with offset", "blamed by",
                             "fault address", "process", "PID", "TID"), rows))
        if count > ROWS_PER_BUCKET:
            parts.append('<p class="muted">and %d more (query the database)</p>'
                         % (count - ROWS_PER_BUCKET))

    failed = _rows(store, "SELECT path, error FROM dumps WHERE status <> 'ok' ORDER BY path")
    parts.append('<h2 id="errors">Error rows <span class="muted">(%d)</span></h2>' % len(failed))
    parts.append(_table(("file", "why it was not analysed"),
                        [["<code>%s</code>" % _e(p), '<span class="err">%s</span>' % _e(e)]
                         for p, e in failed]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(db: str, path: str) -> str:
    """Write the report of database `db` to `path` (UTF-8); returns `path`."""
    store = Store(db, read_only=True)
    try:
        text = render_report(store)
    finally:
        store.close()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path
