"""Generated layouts build a type's members on first use (`cons.Record.fields`); that first use
must give every caller the whole member list, also when threads (batch workers) meet there."""
import threading
import time

from pykd_ext.layouts.cons import At, Base, Record

U32 = Base("unsigned long", 4, False, "int")


def test_members_built_on_first_use_and_whole_for_concurrent_first_users() -> None:
    calls = []

    def members():
        calls.append(1)
        time.sleep(0.05)                 # a slow first build: the other threads arrive meanwhile
        return ("A" / At(0, U32), "B" / At(4, U32))

    record = Record("_T", 8, "struct", members)
    assert record._fields is None and calls == []          # nothing built at definition
    start = threading.Barrier(8)
    seen = []

    def use() -> None:
        start.wait()
        seen.append(tuple(m.name for m in record.fields))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [("A", "B")] * 8
    assert record.parse(bytes([1, 0, 0, 0, 2, 0, 0, 0])) == {"A": 1, "B": 2}


def test_members_given_directly_are_kept() -> None:
    record = Record("_T", 4, "struct", "A" / At(0, U32))
    assert [m.name for m in record.fields] == ["A"]
    assert [m.name for m in Record("_E", 0, "struct").fields] == []
