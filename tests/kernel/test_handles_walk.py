"""Handle tables decoded on forged dumps of four builds agree with what the forge planted (a
3-level table with typed, named objects and attributes; the CID table; csrss's handles to other
processes), and the walker stays bounded on corrupt tables."""
import json
import lzma
from typing import Any, Dict

import pytest

from pykd_ext.kernel.handles import HandleDecoder, scan_handle_table
from pykd_ext.kernel.objects import INFO_MASK_HEADERS, reader_for
from pykd_ext.kernel.handles import OBJ_AUDIT_OBJECT_CLOSE, OBJ_INHERIT, OBJ_PROTECT_CLOSE
from pykd_ext.memory.faults import Fault
from security_world import BUILD_NAMES, world_for

ATTRS = {OBJ_INHERIT: "Inherit", OBJ_PROTECT_CLOSE: "Protected", OBJ_AUDIT_OBJECT_CLOSE: "AuditOnClose"}


@pytest.fixture(scope="module", params=BUILD_NAMES)
def world(request: Any, tmp_path_factory: Any) -> Any:
    return world_for(request.param, str(tmp_path_factory.getbasetemp()))


def _explorer(world: Any) -> Dict[str, Any]:
    pid = world.planted.by_name("explorer.exe")["pid"]
    return dict(world.security["handles"][pid], pid=pid)


@pytest.mark.slow
def test_three_level_table_every_entry(world: Any) -> None:
    planted = _explorer(world)
    scan = scan_handle_table(world.ctx, planted["table"], details=True)
    assert scan.levels == 2 and scan.fault is None and not scan.truncated
    decoder = HandleDecoder(world.ctx)
    got = {e[0]: decoder.record(e) for e in scan.raw}
    assert len(got) == len(planted["entries"])
    for entry in planted["entries"]:
        rec = got[entry["handle"]]
        assert rec["object"] == entry["object"]
        assert rec["granted_access"] == entry["access"]
        assert rec["attributes"] == [name for bit, name in ((OBJ_INHERIT, "Inherit"), (OBJ_PROTECT_CLOSE, "Protected"),
                                                           (OBJ_AUDIT_OBJECT_CLOSE, "AuditOnClose")) if entry["attributes"] & bit]
        fact = world.security["objects"].get(entry["object"])
        if fact is not None:
            assert rec["type"] == fact["type"]
            assert rec["name"] == fact["name"]
    per_page = 0x1000 // world.ctx.layouts.type("_HANDLE_TABLE_ENTRY").size
    assert max(got) >= 300 * per_page * 4          # entries on the far leaf were reached


@pytest.mark.slow
def test_handle_types_of_own_objects(world: Any) -> None:
    planted = _explorer(world)
    doc = world.run("handles", "0n%d" % planted["pid"])
    records = doc["records"]
    assert len(records) == len(planted["entries"])
    record = world.planted.process(planted["pid"])
    kinds = {r["object"]: r["type"] for r in records}
    assert kinds[record["address"]] == "Process"
    for thread in record["threads"]:
        assert kinds[thread["address"]] == "Thread"
    names = {r["type"]: r["name"] for r in records if r["type"] in ("Section", "Event", "Mutant")}
    assert names["Section"] == "\\KnownDlls\\ntdll.dll"
    assert names["Event"] == "\\Sessions\\1\\BaseNamedObjects\\ShellDesktopSwitchEvent"
    files = world.run("handles", "0n%d" % planted["pid"], "--type", "file")["records"]
    assert [r["details"]["file_name"] for r in files] == [
        "\\Windows\\explorer.exe", "\\Windows\\System32\\en-US\\explorer.exe.mui",
        "\\Users\\user\\AppData\\Local\\IconCache.db"]


@pytest.mark.slow
def test_cid_table_and_csrss_handles(world: Any) -> None:
    doc = world.run("handles", "--cid")
    expected = {}
    for proc in world.planted.processes:
        expected[proc["pid"]] = (proc["address"], "Process")
        for thread in proc["threads"]:
            expected[thread["tid"]] = (thread["address"], "Thread")
    got = {r["handle"]: (r["object"], r["type"]) for r in doc["records"]}
    assert got == expected
    csrss = world.planted.by_name("csrss.exe")
    targets = set(csrss["csrss_handles_to"])
    records = world.run("handles", "csrss.exe", "--type", "Process")["records"]
    assert targets and targets <= {r["object"] for r in records}


@pytest.mark.slow
def test_optional_header_offsets_match_the_isf(world: Any, isf_dir: Any) -> None:
    """Sizes of the optional headers summed straight from the ISF JSON (not our layouts)."""
    table = world.ctx.layouts
    path = [p for p in isf_dir.rglob("*.json.xz") if table.guid and table.guid.upper() in p.name.upper()][0]
    with lzma.open(str(path)) as handle:
        types = json.load(handle)["user_types"]
    reader = reader_for(world.ctx)
    for mask in range(64):
        for bit, _name in INFO_MASK_HEADERS:
            want = sum(types[n]["size"] for b, n in INFO_MASK_HEADERS if b <= bit and mask & b and n in types)
            got = reader.optional_header_offset(mask, bit)
            if not mask & bit or any(mask & b and n not in types for b, n in INFO_MASK_HEADERS if b <= bit):
                assert got is None
            else:
                assert got == want


@pytest.mark.slow
def test_handles_summary_in_eproc_v(world: Any) -> None:
    planted = _explorer(world)
    lines = world.run("eproc", "explorer.exe", "-v", fmt="text")
    summary = [l for l in lines if l.strip().startswith("Handles summary:")]
    assert summary and ("%d in use" % len(planted["entries"])) in summary[0]
    assert any(l.strip().startswith("Token summary:") and "Medium integrity" in l for l in lines)


# ---- corrupt tables, without a dump ----------------------------------------------------------------

class _Space:
    pointer_size = 8

    def __init__(self, pages: Dict[int, bytes]) -> None:
        self.pages = pages

    def read(self, address: int, size: int) -> bytes:
        from pykd_ext.errors import MemoryReadError
        page, offset = address & ~0xFFF, address & 0xFFF
        if page not in self.pages or offset + size > 0x1000:
            raise MemoryReadError(Fault("not in dump", address))
        return self.pages[page][offset:offset + size]

    def read_partial(self, address: int, size: int) -> Any:
        try:
            return self.read(address, size), None
        except Exception as err:
            return b"", err.fault

    def read_pointer(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")


class _Ctx:
    def __init__(self, space: _Space, layouts: Any) -> None:
        from pykd_ext.kernel.view import StructView
        self.space, self.layouts, self.pointer_size = space, layouts, 8
        self._sv = StructView

    def view(self, name: str, address: int, size: Any = None) -> Any:
        return self._sv(self.space, self.layouts.type(name), address, size)


@pytest.mark.parametrize("build", ["6.1.7601.24540", "10.0.19041.1288"])
def test_corrupt_tables_end_bounded(build: str) -> None:
    from pykd_ext.layouts.registry import load_layouts
    layouts = load_layouts(build)
    code_off = layouts.type("_HANDLE_TABLE").offset("TableCode")
    table, top = 0xFFFF800000001000, 0xFFFF800000002000

    def table_page(code: int) -> bytes:
        page = bytearray(0x1000)
        page[code_off:code_off + 8] = code.to_bytes(8, "little")
        return bytes(page)

    # TableCode level 3 does not exist
    scan = scan_handle_table(_Ctx(_Space({table: table_page(top | 3)}), layouts), table)
    assert scan.levels is None and isinstance(scan.fault, Fault)
    # a level-1 page whose every pointer is itself: each page read once, no loop, no entries
    loop = b"".join((top | 0).to_bytes(8, "little") for _ in range(512))
    scan = scan_handle_table(_Ctx(_Space({table: table_page(top | 1), top: loop}), layouts), table)
    assert scan.pages <= 2 and scan.levels == 1
    # a level-1 page pointing at a missing leaf: a fault, counted, not raised
    missing = (0xFFFF800000009000).to_bytes(8, "little") + bytes(0xFF8)
    scan = scan_handle_table(_Ctx(_Space({table: table_page(top | 1), top: missing}), layouts), table)
    assert scan.fault_count == 1 and scan.entries == []
    assert "not in the dump" in scan.notes("t")[0]
    # the table itself unreadable
    scan = scan_handle_table(_Ctx(_Space({}), layouts), table)
    assert scan.levels is None and scan.notes("t")


@pytest.mark.slow
def test_kernel_handle_table(world: Any) -> None:
    """`--kernel`: without ObpKernelHandleTable in the dump, the System process's table."""
    system = world.planted.process(4)
    doc = world.run("handles", "--kernel")
    assert doc["meta"]["tables"][0]["table"] == system["handle_table"]
    assert len(doc["records"]) == system["handle_count"]
    assert {r["type"] for r in doc["records"]} <= {"Process", "Thread", "Token"}
