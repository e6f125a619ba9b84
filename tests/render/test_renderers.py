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
        assert doc == {"command": "ps", "meta": {"layout": "10.0.19041.1288", "nested": {"a": [1, 2]}},
                       "records": [json.loads(json.dumps(_plain(r))) for r in records],
                       "notes": ["the rest of the list is not in the dump"]}
        record_lines = [line for line in lines if line.startswith("    {")]
        assert len(record_lines) == len(records)


def _plain(record):
    from pykd_ext.render.values import plain
    return plain(record)


def test_fault_is_data_in_every_format():
    doc = json.loads("\n".join(render(_result(RECORDS), "json")))
    assert doc["records"][1]["peb"] == {"unreadable": {"reason": NOT_IN_DUMP, "address": 0x1000}}
    lines = render(_result(RECORDS), "jsonl")
    assert [json.loads(line)["pid"] for line in lines] == [4, 636]
    rows = list(csv.reader(io.StringIO("\n".join(render(_result(RECORDS), "csv")))))
    assert rows[0] == ["pid", "name", "peb"] and rows[2][2] == "<not in dump>"
    table = render(_result(RECORDS), "table")
    assert table[0].split() == ["pid", "name", "peb"] and "<not in dump>" in table[3]
