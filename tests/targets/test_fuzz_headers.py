"""Bounded fuzzing of the dump header, bitmap, run and RDMP parsers: only typed errors, no hang.

Valid dumps are built in the test, then mutated (overwritten words at the places the parsers read,
random bytes, truncation). Opening must either work or raise a `PykdExtError`; on success, info()
and a few reads must only raise typed errors (reads: `MemoryReadError`).
"""
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "memory"))
import dumpbuild as b  # noqa: E402

from pykd_ext.errors import MemoryReadError, PykdExtError  # noqa: E402
from pykd_ext.targets.opener import open_target  # noqa: E402

KVA = 0xFFFFF80000000000


def _bases():
    phys = b.DictPhysical()
    pt = b.PageTables(phys)
    for pfn in (1, 2, 0x40, 0x41, 0x300):
        phys.add(pfn, pfn.to_bytes(8, "little") * 512)
    pt.map_4k(KVA, 0x40000)
    pt.map_2m(KVA + 0x200000, 0)
    runs = b.group_runs(phys.pages)
    body = b"".join(bytes(phys.pages[p]) for p in sorted(phys.pages))
    phys.add(0x10, b.low_stub_page(pt.dtb, KVA + 0x1000))
    lime = b"".join(struct.pack("<4sIQQQ", b"EMiL", 1, pfn << 12, ((pfn + n) << 12) - 1, 0)
                    + b"".join(bytes(phys.pages[pfn + i]) for i in range(n))
                    for pfn, n in b.group_runs(phys.pages))
    return {
        "raw": b.raw_image_bytes(phys, 0x310),
        "lime": lime,
        "full": b.full_dump_bytes(phys, pt.dtb, KdDebuggerDataBlock=KVA),
        "bitmap": b.bitmap_dump_bytes(phys, pt.dtb, 0x400),
        "rdmp": b.rdmp_dump_bytes(phys, pt.dtb, 8),
        "complete": b.rdmp_dump_bytes(phys, pt.dtb, 0xA),
        "x86": b.header32(1, 0x185000, runs) + body,
    }


BASES = _bases()

EXTENSIONS = {"raw": ".raw", "lime": ".lime"}
# Offsets the parsers read: header fields, run table, DumpType, body headers and bitmap/ranges,
# the LiME headers and the raw image's start block (0x10000 + 0, 0x70, 0xA0).
HOT = [0x18, 0x4, 0x10, 0x10070, 0x100A0, 0x10000, 0x2020, 0x2028,
       0x8, 0xC, 0x10, 0x30, 0x38, 0x80, 0x88, 0x8C, 0x90, 0x98, 0xA0, 0xA8, 0xB0, 0xF98, 0xFA0,
       0x64, 0x68, 0x6C, 0x70, 0xF88, 0x2000, 0x2004, 0x2010, 0x2018, 0x2020, 0x2028, 0x2030,
       0x2038, 0x2040, 0x1000, 0x1020, 0x1028, 0x1030]
WORDS = st.sampled_from([0, 1, 2, 5, 6, 8, 0xA, 0xFF, 0x1000, 0x2000, 0x45474150,
                         0x4547415045474150, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 1 << 40, 1 << 52])


@st.composite
def mutated(draw):
    kind = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[kind])
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            offset = min(draw(st.sampled_from(HOT)), len(data) - 8)
            width = draw(st.sampled_from([4, 8]))
            value = draw(WORDS) & ((1 << (8 * width)) - 1)
            struct.pack_into("<Q" if width == 8 else "<I", data, offset, value)
        else:
            offset = draw(st.integers(8, len(data) - 1))     # keep the signature (tested apart)
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[offset:offset + len(chunk)] = chunk
    if draw(st.integers(0, 4)) == 0:
        del data[draw(st.integers(8, len(data))):]
    return kind, bytes(data)


def _exercise(path):
    try:
        target = open_target(path)
    except PykdExtError:
        return
    try:
        try:
            target.info()
        except PykdExtError:
            pass
        physical = target.physical
        for pfn in (0, 1, 2, 0x40, 0x300, 0x3FF, 1 << 30):
            page = physical.page(pfn)
            assert page is None or len(page) == 4096
        for va in (KVA, KVA + 0xFF8, KVA + 0x201000, 0xFFFF800000000000, 0x1000):
            try:
                target.kernel.read(va, 16)
            except (MemoryReadError, PykdExtError):
                pass
    finally:
        target.close()


@pytest.mark.slow
@settings(max_examples=600, deadline=2000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=mutated())
def test_mutated_dumps_raise_only_typed_errors(tmp_path, case):
    kind, data = case
    path = tmp_path / (kind + EXTENSIONS.get(kind, ".dmp"))
    path.write_bytes(data)
    _exercise(str(path))


@pytest.mark.slow
@settings(max_examples=150, deadline=2000, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from([b"PAGEDU64", b"PAGEDUMP"]), rest=st.binary(max_size=0x2100))
def test_random_bytes_after_signature(tmp_path, head, rest):
    path = tmp_path / "random.dmp"
    path.write_bytes(head + rest)
    _exercise(str(path))
