"""The forged machine's KDBG says what a real kernel of the build says."""
from pathlib import Path
from typing import Optional

from forge_planted import Forged
from pykd_ext.forge.isf import SymbolTable, table_for_build
from pykd_ext.forge.machine import KDBG_LAYOUT_FIELDS
from pykd_ext.targets.opener import open_target


def _isf_value(table: SymbolTable, type_name: str, member: Optional[str]) -> int:
    return table.size(type_name) if member is None else table.offset(type_name, member)


def test_kdbg_layout_pairing_matches_real_windows(real_dir: Path, isf_dir: Path) -> None:
    """Each KDBG size/offset field names the ISF member a real 19041 kernel states in it."""
    with open_target(str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")) as target:
        real = target.info().kdbg
    assert real is not None
    table = table_for_build(19041, isf_dir)
    checked = 0
    for name, (type_name, member) in KDBG_LAYOUT_FIELDS.items():
        assert real[name] == _isf_value(table, type_name, member), name
        checked += 1
    assert checked == len(KDBG_LAYOUT_FIELDS) >= 30


def test_forged_kdbg_decodes_to_isf_facts(forged: Forged) -> None:
    """The KDBG our reader decodes from the forged dump: ISF sizes/offsets, global addresses,
    and the KdpDebuggerDataListHead links."""
    machine = forged.machine
    table = machine.table
    with open_target(forged.paths["full"]) as target:
        kdbg = target.info().kdbg
        list_head = machine.symbol("KdpDebuggerDataListHead")
        assert target.kernel.read_pointer(list_head) == machine.kdbg_address
    assert kdbg["_owner_tag"] == "KDBG"
    assert kdbg["KernBase"] == machine.kernel.base
    assert kdbg["_list_flink"] == kdbg["_list_blink"] == list_head
    for name, (type_name, member) in KDBG_LAYOUT_FIELDS.items():
        assert kdbg[name] == _isf_value(table, type_name, member), name
    for name in ("PsActiveProcessHead", "PsLoadedModuleList", "MmPfnDatabase", "PspCidTable",
                 "KiProcessorBlock", "ObpTypeObjectType"):
        assert kdbg[name] == machine.kernel.base + table.rva(name), name
        assert kdbg[name] < machine.kernel.base + machine.image.size_of_image
