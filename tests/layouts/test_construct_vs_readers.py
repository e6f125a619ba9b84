"""The compiled readers and a full construct parse agree, and both find values planted at the
offsets the ISF JSON states (the independent side)."""
import random
import struct

import pytest

from isfdata import isf_for
from pykd_ext.layouts.model import compile_record
from pykd_ext.layouts.registry import load_layouts

VERSION = "10.0.19041.1288"


def _walk(container, path):
    for part in path.split("."):
        container = container[part]
    return container


def test_planted_values_read_back_at_isf_offsets() -> None:
    isf = isf_for(VERSION)
    ep = isf["user_types"]["_EPROCESS"]["fields"]
    kp = isf["user_types"]["_KPROCESS"]["fields"]
    size = isf["user_types"]["_EPROCESS"]["size"]
    buf = bytearray(size)
    pid_off = ep["UniqueProcessId"]["offset"]
    struct.pack_into("<Q", buf, pid_off, 0x1234)
    dtb_off = ep["Pcb"]["offset"] + kp["DirectoryTableBase"]["offset"]
    struct.pack_into("<Q", buf, dtb_off, 0x1AD002)
    name_off = ep["ImageFileName"]["offset"]
    buf[name_off:name_off + 7] = b"System\0"
    bit = ep["PrimaryTokenFrozen"]["type"]
    flags_off = ep["PrimaryTokenFrozen"]["offset"]
    struct.pack_into("<I", buf, flags_off, 1 << bit["bit_position"])
    layouts = load_layouts(VERSION)
    t = layouts.type("_EPROCESS")
    assert t.size == size
    assert t.reader("UniqueProcessId")(bytes(buf)) == 0x1234
    assert t.reader("Pcb.DirectoryTableBase")(buf) == 0x1AD002
    assert t.reader("ImageFileName")(memoryview(buf))[:6] == b"System"
    assert t.reader("PrimaryTokenFrozen")(buf) == 1
    # base offset: the same struct inside a larger buffer
    big = bytes(100) + bytes(buf)
    assert t.reader("UniqueProcessId")(big, 100) == 0x1234
    parsed = t.parse(bytes(buf))
    assert parsed.UniqueProcessId == 0x1234
    assert parsed.Pcb.DirectoryTableBase == 0x1AD002
    assert bytes(parsed.ImageFileName[:6]) == b"System"
    assert parsed.PrimaryTokenFrozen == 1
    # a short buffer is an error, never a silent value
    with pytest.raises(struct.error):
        t.reader("UniqueProcessId")(bytes(pid_off + 4))


@pytest.mark.parametrize("version", ["6.1.7601.24540", "10.0.19041.1288", "10.0.22000.2538"])
def test_parse_agrees_with_readers_on_random_bytes(version: str) -> None:
    layouts = load_layouts(version)
    rng = random.Random(version)
    compared = 0
    for name in layouts.type_names():
        t = layouts.type(name)
        if t.size > 0x2000:
            continue                                  # _KPRCB: covered by its members' types
        data = bytes(rng.getrandbits(8) for _ in range(t.size))
        parsed = t.parse(data)
        for fname, fl in t.fields.items():
            value = parsed[fname]
            if fl.kind in ("base", "pointer", "enum", "bitfield"):
                assert t.reader(fname)(data) == value, (name, fname)
                compared += 1
            elif fl.kind == "array" and fl.element.kind in ("base", "pointer", "enum"):
                elem = fl.element
                raw = t.reader(fname)(data)
                for i in range(fl.count):
                    assert t.reader("%s[%d]" % (fname, i))(data) == value[i]
                assert len(raw) == fl.size
                compared += 1
    assert compared > 500


def test_build_then_parse_round_trips() -> None:
    layouts = load_layouts(VERSION)
    rec = layouts.construct("_KTHREAD")
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(rec.size))
    first = rec.parse(data)
    rebuilt = rec.build(first)
    assert len(rebuilt) == rec.size
    again = rec.parse(rebuilt)
    t = layouts.type("_KTHREAD")
    for fname, fl in t.fields.items():
        if fl.kind in ("base", "pointer", "bitfield", "enum"):
            assert again[fname] == first[fname], fname


def test_shared_variants_compile_once() -> None:
    a = load_layouts("10.0.19041.1288").type("_LIST_ENTRY")
    b = load_layouts("10.0.19041.1415").type("_LIST_ENTRY")
    assert a is b                                  # one variant object, compiled once
    assert compile_record(a.record) is a
