"""Renderers: JSON is streamed but must be exactly the document json.dumps would make."""
import csv
import io
import json

from pykd_ext.memory.faults import NOT_IN_DUMP, Fault
from pykd_ext.render.grid import Column, Result
from pykd_ext.render.renderers import render


def _result(records):
    return Result(command="ps", columns=[Column("pid", fmt="int"), Column("name"), Column("peb", fmt="addr")],
                  records=records, meta={"layout": "10.0.19041.1288", "nested": {"a": [1, 2]}},
                  notes=["the rest of the list is not in the dump"])


RECORDS = [{"pid": 4, "name": "System", "peb": 0, "kinds": ["system", "protected"]},
           {"pid": 636, "name": "lsass.exe", "peb": Fault(NOT_IN_DUMP, 0x1000), "token": {"t": 1}}]


def test_streamed_json_is_the_whole_document_one_record_per_line():
    for records in (RECORDS, [], RECORDS[:1]):
        lines = render(_result(records), "json")
        doc = json.loads("\n".join(lines))
        # issue 12: the `addr` column and every "address" are "0x..." strings, counts stay numbers
        expected = [{"pid": 4, "name": "System", "peb": "0x0", "kinds": ["system", "protected"]},
                    {"pid": 636, "name": "lsass.exe",
                     "peb": {"unreadable": {"reason": NOT_IN_DUMP, "address": "0x1000"}}, "token": {"t": 1}}]
        assert doc == {"command": "ps", "meta": {"layout": "10.0.19041.1288", "nested": {"a": [1, 2]}},
                       "records": expected[:len(records)],
                       "notes": ["the rest of the list is not in the dump"]}
        record_lines = [line for line in lines if line.startswith("    {")]
        assert len(record_lines) == len(records)


def _plain(record):
    from pykd_ext.render.values import plain
    return plain(record)


def test_fault_is_data_in_every_format():
    doc = json.loads("\n".join(render(_result(RECORDS), "json")))
    assert doc["records"][1]["peb"] == {"unreadable": {"reason": NOT_IN_DUMP, "address": "0x1000"}}
    lines = render(_result(RECORDS), "jsonl")
    assert [json.loads(line)["pid"] for line in lines] == [4, 636]
    rows = list(csv.reader(io.StringIO("\n".join(render(_result(RECORDS), "csv")))))
    assert rows[0] == ["pid", "name", "peb"] and rows[2][2] == "<not in dump>"
    table = render(_result(RECORDS), "table")
    assert table[0].split() == ["pid", "name", "peb"] and "<not in dump>" in table[3]


# ---- streamed results (issue 10 "Scale", issue 12 item 9)
from pykd_ext.render.grid import Row  # noqa: E402
from pykd_ext.render.renderers import render_lines  # noqa: E402

COLUMNS = [Column("pid", fmt="int"), Column("name")]


def _streamed(count, log, notes):
    """A streamed result whose generator logs each record it produces and adds a note at the end
    (as a command adds the kernel context's notes after its last row)."""
    def rows():
        yield Row(None, ["HEADER"])
        for pid in range(count):
            log.append(pid)
            yield Row({"pid": pid, "name": "p%d" % pid}, lambda pid=pid: ["line %d" % pid])
        notes.append("decoded %d" % len(log))
    return Result("t", COLUMNS, rows=rows(), meta={"m": 1}, notes=notes)


def test_each_format_writes_the_first_record_before_the_last_is_produced():
    def is_record(fmt, line):
        return {"text": line.startswith("line "), "json": line.startswith("    {"),
                "jsonl": line.startswith("{"), "csv": line[:1].isdigit()}[fmt]

    for fmt in ("text", "json", "jsonl", "csv"):
        log, notes = [], []
        result = _streamed(50, log, notes)
        produced_at_first = None
        lines = []
        for line in render_lines(result, fmt):
            if produced_at_first is None and is_record(fmt, line):
                produced_at_first = len(log)
            lines.append(line)
        assert produced_at_first is not None and produced_at_first <= 2, fmt
        assert len(log) == 50
        assert result.notes == ["decoded 50"]
    doc = json.loads("\n".join(render(_streamed(3, [], []), "json")))
    assert doc["meta"] == {"m": 1} and [r["pid"] for r in doc["records"]] == [0, 1, 2]
    assert doc["notes"] == ["decoded 3"]          # notes the stream added, after the records


def test_json_document_keeps_meta_first_and_notes_last():
    lines = render(_streamed(2, [], []), "json")
    keys = [line.split('"')[1] for line in lines if line.startswith('  "')]
    assert keys == ["command", "meta", "records", "notes"]


def test_text_of_rows_and_the_table_fallback():
    assert render(_streamed(2, [], []), "text") == ["HEADER", "line 0", "line 1"]
    textless = Result("t", COLUMNS, rows=iter([Row({"pid": 7, "name": "x"})]), rows_have_text=False)
    assert render(textless, "text") == ["pid  name", "---  ----", "7    x"]


def test_a_stream_is_consumed_once_but_records_and_notes_materialize_it():
    log, notes = [], []
    result = _streamed(3, log, notes)
    assert result.notes == ["decoded 3"]           # reading notes ran the stream to its end
    assert [r["pid"] for r in result.records] == [0, 1, 2]
    assert render(result, "text") == ["HEADER", "line 0", "line 1", "line 2"]   # kept rows
    assert log == [0, 1, 2]                       # decoded once
    once = _streamed(2, [], [])
    render(once, "jsonl")
    try:
        render(once, "jsonl")
    except RuntimeError as err:
        assert "already consumed" in str(err)
    else:
        raise AssertionError("a consumed stream rendered twice")


def test_on_record_counts_records_not_header_rows():
    seen = []
    result = _streamed(4, [], [])
    result.on_record = lambda: seen.append(1)
    render(result, "jsonl")
    assert len(seen) == 4


class _Obj:
    def to_dict(self):
        return {"x": b"\x01\x02", "t": (1, 2)}


def test_c_encoder_writes_what_plain_wrote():
    """The JSON of a record is `json.dumps(plain(record))` (the pre-stream encoding), byte for
    byte, for every kind of value `plain` knew: Faults, bytes, tuples, objects with to_dict."""
    record = {"f": Fault(NOT_IN_DUMP, 0x1000), "b": b"\xff\x00", "ba": bytearray(b"\x10"),
              "t": (1, "a", None), "o": _Obj(), "nested": [{"f": Fault(NOT_IN_DUMP, 8)}],
              "u": "\u202e\x1b", "big": 0xFFFFB30C8A00D050, "int_key": {3: "x"}}
    result = Result("t", COLUMNS, records=[record])
    (line,) = render(result, "jsonl")
    expected = _plain(record)
    # issue 12: an int beyond a double's exact range, and fault addresses, are hex strings
    expected.update(big="0xffffb30c8a00d050", f={"unreadable": {"reason": NOT_IN_DUMP, "address": "0x1000"}},
                    nested=[{"f": {"unreadable": {"reason": NOT_IN_DUMP, "address": "0x8"}}}])
    assert line == json.dumps(expected, separators=(",", ":"))
    assert json.loads(line)["u"] == "\u202e\x1b"


def test_table_and_csv_escape_dump_strings_json_keeps_them():
    record = {"pid": 1, "name": "a\x1b[2J\r\nb\u202e"}
    table = render(Result("t", COLUMNS, records=[record]), "table")
    assert table[2] == "1    a\\x1b[2J\\x0d\\x0ab\\u202e"
    assert len(table[0].split("  ")[0]) == len("pid")
    rows = render(Result("t", COLUMNS, records=[record]), "csv")
    assert rows == ["pid,name", '1,"a\\x1b[2J\\x0d\\x0ab\\u202e"']
    (line,) = render(Result("t", COLUMNS, records=[record]), "jsonl")
    assert json.loads(line)["name"] == record["name"] and line.isascii()
