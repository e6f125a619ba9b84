"""Inferred layouts on data that does not prove anything: nothing is picked, nothing hangs."""
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import DictSpace, FakeTarget  # noqa: E402
from pykd_ext.errors import UnknownBuildError  # noqa: E402
from pykd_ext.layouts.inferred import infer_layouts  # noqa: E402
from pykd_ext.targets.base import TargetInfo  # noqa: E402

HEAD = 0xFFFFF80000A00000
PROCESS = 0xFFFFC00000100000


def _target(process: bytes) -> FakeTarget:
    space = DictSpace()
    space.plant(PROCESS, process)
    info = TargetInfo(build=99999, arch="x64", ps_active_process_head=HEAD,
                      extra={"process": PROCESS, "process_size": len(process)})
    return FakeTarget(info, space)


def test_two_system_lookalike_link_pairs_prove_nothing() -> None:
    data = bytearray(0x800)
    data[0x300:0x308] = b"System\0\0"
    for link in (0x100, 0x200):          # PID 4 then a LIST_ENTRY whose Blink is the head, twice
        struct.pack_into("<QQQ", data, link - 8, 4, PROCESS + link, HEAD)
    with pytest.raises(UnknownBuildError) as err:
        infer_layouts(_target(bytes(data)))
    assert "UniqueProcessId" in err.value.one_line()


def test_a_looping_process_list_is_walked_a_bounded_number_of_times() -> None:
    data = bytearray(0x800)
    data[0x300:0x308] = b"System\0\0"
    struct.pack_into("<QQQ", data, 0x100 - 8, 4, PROCESS + 0x100, HEAD)   # Flink loops to itself
    layouts = infer_layouts(_target(bytes(data)))
    by_path = {f["path"]: f for f in layouts.provenance() if f["type"] == "_EPROCESS"}
    assert by_path["UniqueProcessId"]["value"] == 0xF8 and by_path["ActiveProcessLinks"]["value"] == 0x100
    assert by_path["ImageFileName"]["value"] == 0x300
    # the loop is System again, not a second process: no process-list evidence
    assert by_path["UniqueProcessId"]["sources"] == ["self-consistency:System"]
