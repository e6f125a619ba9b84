"""The pykd target against the dump it reads: the same bytes, the same typed faults, the facts the
dump states. Truth comes from what the forge planted (bytes, invalid PTEs), the dump header/KDBG
read by our file reader, and the ISF of the build (PDB GUID, global RVAs)."""
import types
from typing import Any, Dict, List

import pytest

from pykd_ext.errors import MemoryReadError, TargetError, UnsupportedDumpError
from pykd_ext.memory.faults import NOT_IN_DUMP, UNAVAILABLE
from pykd_ext.layouts.isf import load_isf
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.targets.opener import open_target
from pykd_ext.targets.pykd_target import PykdApi, PykdTarget, open_pykd_target


def _pykd_target(standin: Any, dump: Any) -> PykdTarget:
    standin._standin_configure(dump=dump.path)
    return open_pykd_target()


@pytest.mark.parametrize("build", [7601, 19041, 22000])
def test_planted_bytes_read_back(standin: Any, machines: Dict[int, Any], build: int) -> None:
    dump = machines[build]
    target = _pykd_target(standin, dump)
    for va, data in dump.planted.expected_bytes.items():
        assert target.kernel.read(va, len(data)) == data
        if len(data) >= 0x810:
            assert target.kernel.read(va + 0x7F0, 0x20) == data[0x7F0:0x810]   # inside one page
    # a read crossing two pages of the planted 3-page buffer
    va = min(v for v in dump.planted.expected_bytes if len(dump.planted.expected_bytes[v]) == 3 * 0x1000)
    assert target.kernel.read(va + 0xFF8, 0x10) == dump.planted.expected_bytes[va][0xFF8:0x1008]


def test_faults_are_typed_like_the_file_reader(standin: Any, machines: Dict[int, Any]) -> None:
    """pykd only says "Memory exception"; the target re-derives the reason by its own page walk,
    so each invalid PTE kind gives the same Fault reason as the offline reader of the same file."""
    dump = machines[19041]
    target = _pykd_target(standin, dump)
    offline = open_target(dump.path)
    software_pte = SoftwarePteLayout.from_user_types(load_isf(dump.isf)["user_types"])   # not-present PTE bits
    target.set_software_pte(software_pte)
    offline.set_software_pte(software_pte)
    try:
        cases: List[int] = list(dump.planted.special.values()) + [0xFFFF800000000000, 0x1000]
        for va in cases:
            outcomes = []
            for space in (offline.kernel, target.kernel):
                try:
                    outcomes.append(("data", space.read(va, 8)))
                except MemoryReadError as err:
                    outcomes.append(("fault", err.fault.reason, err.fault.level, err.readable))
            assert outcomes[0] == outcomes[1], hex(va)
        reasons = set()
        for kind in ("prototype", "paged_out", "demand_zero"):
            with pytest.raises(MemoryReadError) as caught:
                target.kernel.read(dump.planted.special[kind], 8)
            reasons.add(caught.value.fault.reason)
        assert len(reasons) == 3            # three different typed reasons, none "unavailable"
        assert UNAVAILABLE not in reasons
    finally:
        offline.close()


def test_partial_read_keeps_the_readable_prefix(standin: Any, machines: Dict[int, Any]) -> None:
    dump = machines[19041]
    target = _pykd_target(standin, dump)
    special = dump.planted.special["demand_zero"]
    before = special - 0x1000                 # the prototype page: also unreadable
    buffer_va = max(dump.planted.expected_bytes, key=lambda v: len(dump.planted.expected_bytes[v])
                    if v < 0xFFFFF78000200000 else -1)
    data = dump.planted.expected_bytes[buffer_va]
    end = buffer_va + len(data)               # the page after the planted buffer is not mapped
    got, fault = target.kernel.read_partial(end - 0x10, 0x20)
    assert got == data[-0x10:]
    assert fault is not None and fault.address in (end, end & ~0xFFF) or fault.reason
    with pytest.raises(MemoryReadError) as caught:
        target.kernel.read(end - 0x10, 0x20)
    assert caught.value.readable == 0x10
    assert before  # the special region is contiguous (sanity of the fixture)


def test_engine_memory_exception_is_a_memory_read_error(standin: Any, machines: Dict[int, Any]) -> None:
    dump = machines[19041]
    target = _pykd_target(standin, dump)
    with pytest.raises(standin.MemoryException) as raw:
        standin.loadBytes(0x1000, 8)
    assert "Memory exception at 0x1000" in str(raw.value)
    with pytest.raises(MemoryReadError):
        target.kernel.read(0x1000, 8)
    with pytest.raises(MemoryReadError):
        target.kernel.read(0xFFFFFFFFFFFFFFF8, 0x10)          # past the top of the address space


def test_info_states_what_the_dump_states(standin: Any, machines: Dict[int, Any]) -> None:
    dump = machines[19041]
    target = _pykd_target(standin, dump)
    offline = open_target(dump.path)
    try:
        ours, theirs = target.info(), offline.info()
        kdbg = theirs.kdbg or {}
        assert ours.container == "pykd" and ours.arch == "x64"
        assert ours.build == theirs.build == 19041
        assert ours.directory_table_base == theirs.directory_table_base
        assert ours.kernel_base == kdbg["KernBase"]
        assert ours.ps_active_process_head == kdbg["PsActiveProcessHead"]
        assert ours.ps_loaded_module_list == kdbg["PsLoadedModuleList"]
        assert ours.bugcheck_code == 0x139 and ours.bugcheck_parameters[:3] == [3, 0xF1, 0xF2]
        table = dump.machine.table
        assert ours.extra["pdb_guid"] == table.guid.upper() and ours.extra["pdb_age"] == table.age
        assert ours.extra["pdb_source"] == "CodeView record of nt"
        assert ours.dump_type == "full" and not target.live
    finally:
        offline.close()


def test_physical_and_process_space(standin: Any, machines: Dict[int, Any]) -> None:
    dump = machines[19041]
    target = _pykd_target(standin, dump)
    offline = open_target(dump.path)
    try:
        assert target.physical is not None
        pa, _size = dump.planted.expected_translation[min(dump.planted.expected_translation)]
        assert target.physical.read(pa & ~0xFFF, 0x1000) == offline.physical.read(pa & ~0xFFF, 0x1000)
        user_va = min(va for va in dump.planted.expected_bytes if va < 0x800000000000)
        dtb = offline.info().directory_table_base
        space = target.process_space(dtb)
        assert space is not target.kernel
        assert space.read(user_va, 0x1000) == dump.planted.expected_bytes[user_va]
    finally:
        offline.close()


class _FakeEngine:
    """A pykd-shaped module over a bytearray: a live kernel whose memory changes (0.2.x names)."""

    def __init__(self, memory: bytearray, base: int) -> None:
        self.memory, self.base = memory, base

        class BaseException_(Exception):
            pass

        self.BaseException = BaseException_     # pykd 0.2.x: no DbgException / MemoryException

    def loadBytes(self, va: int, n: int, phy: bool = False) -> List[int]:
        if phy or not self.base <= va <= va + n <= self.base + len(self.memory):
            raise self.BaseException("Memory exception at 0x%x" % va)
        return list(self.memory[va - self.base:va - self.base + n])

    def isDumpAnalyzing(self) -> bool:
        return False

    def isKernelDebugging(self) -> bool:
        return True

    def is64bitSystem(self) -> bool:
        return True


def test_pykd_02_names_and_live_cache_drop() -> None:
    base = 0xFFFFF80000000000
    engine = _FakeEngine(bytearray(b"\x11" * 0x3000), base)
    api = PykdApi(engine)
    assert api.memory_errors == (engine.BaseException,)
    target = PykdTarget(engine)
    assert target.live and target.physical is None
    assert target.kernel.read(base + 0x10, 4) == b"\x11" * 4
    engine.memory[0x10:0x14] = b"\x22" * 4
    assert target.kernel.read(base + 0x10, 4) == b"\x11" * 4        # cached within a command
    target.drop_caches()
    assert target.kernel.read(base + 0x10, 4) == b"\x22" * 4        # fresh after the drop
    with pytest.raises(MemoryReadError) as caught:
        target.kernel.read(base + 0x2FF0, 0x20)
    assert caught.value.readable == 0x10 and caught.value.fault.reason == UNAVAILABLE
    assert target.info().container == "pykd"                       # missing calls are tolerated


def test_not_a_kernel_session_is_refused(standin: Any, real_dir: Any) -> None:
    standin._standin_configure(dump=str(real_dir / "user-dumps" / "win10-17134-x64-userdu64.dmp"))
    with pytest.raises(UnsupportedDumpError):
        open_pykd_target()


def test_load_dump_errors_are_typed(standin: Any, tmp_path: Any) -> None:
    with pytest.raises(TargetError):
        open_pykd_target(str(tmp_path / "missing.dmp"))
    bad = tmp_path / "bad.dmp"
    bad.write_bytes(b"PAGEDU64" + b"\0" * 64)
    with pytest.raises(TargetError):
        open_pykd_target(str(bad))


def test_triage_dump_through_pykd(standin: Any, real_dir: Any) -> None:
    """A virtual-only dump: no physical memory, faults say "not in dump", the triage block's
    process and thread become the debugger's current process and implicit thread."""
    path = str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")
    offline = open_target(path)
    try:
        extra = offline.info().extra
        standin._standin_configure(dump=path)
        target = open_pykd_target()
        info = target.info()
        assert target.physical is None
        assert info.dump_type == "triage"
        assert info.extra["process"] == extra["process"] and info.extra["thread"] == extra["thread"]
        assert target.current_process() == extra["process"]
        assert target.implicit_thread() == extra["thread"]
        assert target.kernel.read(extra["process"], 0x40) == offline.kernel.read(extra["process"], 0x40)
        with pytest.raises(MemoryReadError) as caught:
            target.kernel.read(0xFFFF800000000000, 8)
        assert caught.value.fault.reason == NOT_IN_DUMP
    finally:
        offline.close()


def test_api_call_tolerates_missing_functions() -> None:
    api = PykdApi(types.SimpleNamespace(loadBytes=lambda *a: [0], DbgException=RuntimeError))
    assert api.call("getCurrentProcess") is None
    assert api.offset("nt!PsActiveProcessHead") is None
