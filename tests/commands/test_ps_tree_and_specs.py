"""pstree ordering over hostile parent links, and how user arguments are read."""
from types import SimpleNamespace
from typing import Any

from pykd_ext.commands.pstree import tree_order
from pykd_ext.kernel.lookup import parse_spec


def proc(address: int, pid: int, ppid: int, create: int = 1, name: str = "p") -> Any:
    return SimpleNamespace(address=address, pid=pid, ppid=ppid, create_time_raw=create, name=name)


def test_parent_cycle_is_shown_as_roots_not_looped() -> None:
    a, b = proc(0x100, 8, 12), proc(0x200, 12, 8)
    system = proc(0x300, 4, 0)
    order, notes = tree_order([system, a, b])
    assert [(p.pid, d) for p, d in order] == [(4, 0), (8, 0), (12, 0)]
    assert any("parent-PID cycle" in n for n in notes)


def test_self_parent_and_pid_reuse() -> None:
    root = proc(0x100, 4, 4)                         # its own parent: a root
    child = proc(0x200, 100, 4, create=50)
    reused_parent = proc(0x300, 200, 0, create=900)  # created after its "child"
    orphan = proc(0x400, 300, 200, create=10)
    order, notes = tree_order([root, child, reused_parent, orphan])
    depth = {p.pid: d for p, d in order}
    assert depth == {4: 0, 100: 1, 200: 0, 300: 1}
    assert any("PID reused" in n for n in notes)


def test_deep_chain_is_iterative() -> None:
    chain = [proc(0x1000 + i, 4 * (i + 1), 4 * i) for i in range(3000)]   # deeper than !py's 500
    order, _ = tree_order(chain)
    assert [d for _, d in order] == list(range(3000))


def test_parse_spec() -> None:
    assert parse_spec("lsass.exe") == ("name", "lsass.exe")
    assert parse_spec("700") == ("id", 0x700)            # bare numbers are hex, like WinDbg
    assert parse_spec("0n700") == ("id", 700)
    assert parse_spec("0x2bc") == ("id", 0x2BC)
    assert parse_spec("2dc") == ("id", 0x2DC)            # hex letters: WinDbg's radix
    assert parse_spec("ffffcf05`14782180") == ("address", 0xFFFFCF0514782180)
    assert parse_spec("0xFFFFCF0514782180") == ("address", 0xFFFFCF0514782180)
    assert parse_spec("System") == ("name", "System")
    assert parse_spec("face.exe") == ("name", "face.exe")
