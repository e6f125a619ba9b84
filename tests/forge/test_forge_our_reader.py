"""Our reader (`open_target`) returns exactly the planted bytes from every forged dump kind."""
import os

import pytest

from forge_planted import PAGE, Forged, absent_pfns, pages_in_dump
from pykd_ext.errors import MemoryReadError
from pykd_ext.memory import faults
from pykd_ext.layouts.isf import load_isf
from pykd_ext.memory.pte import SoftwarePteLayout
from pykd_ext.targets.opener import open_target

DUMPS = ("full", "fdmp", "sdmp")


@pytest.mark.parametrize("kind", DUMPS)
def test_physical_pages(forged: Forged, kind: str) -> None:
    phys = forged.machine.phys
    written = set(phys.present_pfns())
    with open_target(forged.paths[kind]) as target:
        physical = target.physical
        assert physical is not None
        expected = pages_in_dump(forged, kind)
        assert physical.page_count() == len(expected)
        for pfn in expected:
            page = physical.page(pfn)
            assert page is not None, hex(pfn)
            assert bytes(page) == (phys.page_bytes(pfn) if pfn in written else bytes(PAGE))
        for pfn in absent_pfns(forged, kind):
            assert physical.page(pfn) is None, hex(pfn)
            with pytest.raises(MemoryReadError) as err:
                physical.read(pfn * PAGE + 8, 8)
            assert err.value.fault.reason == faults.NOT_IN_DUMP


@pytest.mark.parametrize("kind", DUMPS)
def test_virtual_reads_and_translation(forged: Forged, kind: str) -> None:
    with open_target(forged.paths[kind]) as target:
        space = target.kernel
        for va, (pa, _size) in forged.expected_translation.items():
            assert space.translate(va) == pa, hex(va)
        for va, data in forged.expected_bytes.items():
            if kind == "sdmp" and va < 0x800000000000:
                with pytest.raises(MemoryReadError) as err:
                    space.read(va, len(data))
                assert err.value.fault.reason == faults.NOT_IN_DUMP
                continue
            assert space.read(va, len(data)) == data, hex(va)
            # an unaligned read crossing into the next planted page of the buffer
            if len(data) > PAGE:
                assert space.read(va + PAGE - 3, 6) == data[PAGE - 3:PAGE + 3]


@pytest.mark.parametrize("kind", DUMPS)
def test_planted_invalid_ptes(forged: Forged, kind: str) -> None:
    with open_target(forged.paths[kind]) as target:
        target.set_software_pte(SoftwarePteLayout.from_user_types(load_isf(forged.machine.table.path)["user_types"]))
        space = target.kernel
        special = forged.special
        standby = forged.machine.phys.page_bytes(forged.transition_pfn)
        assert space.translate(special["transition"] + 4) == forged.transition_pfn * PAGE + 4
        assert space.read(special["transition"], PAGE) == standby
        expected = {"prototype": faults.PROTOTYPE, "paged_out": faults.PAGED_OUT,
                    "demand_zero": faults.DEMAND_ZERO}
        for name, reason in expected.items():
            with pytest.raises(MemoryReadError) as err:
                space.read(special[name], 8)
            assert err.value.fault.reason == reason, name
            assert err.value.fault.level == "PTE"
        with pytest.raises(MemoryReadError) as err:
            space.read(special["paged_out"], 8)
        assert err.value.fault.pagefile == 1
        assert err.value.fault.pagefile_offset == 0x1234 * PAGE


@pytest.mark.parametrize("kind", DUMPS)
def test_info_states_the_planted_facts(forged: Forged, kind: str) -> None:
    machine = forged.machine
    with open_target(forged.paths[kind]) as target:
        info = target.info()
    assert info.container == "PAGEDU64"
    assert info.dump_type_code == (1 if kind == "full" else 5)
    assert info.build == 19041 and info.processors == 4
    assert info.bugcheck_code == 0x139
    assert info.bugcheck_parameters == [3, 0xFFFF1, 0xFFFF2, 0]
    assert info.directory_table_base == machine.pt.dtb
    assert info.kd_debugger_data_block == machine.kdbg_address
    assert info.ps_active_process_head == machine.symbol("PsActiveProcessHead")
    assert info.ps_loaded_module_list == machine.symbol("PsLoadedModuleList")
    assert info.pfn_database == machine.symbol("MmPfnDatabase")
    assert info.kernel_base == machine.kernel.base
    assert info.kdbg is not None
    assert info.kdbg["PsActiveProcessHead"] == machine.symbol("PsActiveProcessHead")
    assert info.system_time == machine.spec.system_time
    assert info.pages_present == len(pages_in_dump(forged, kind))
    assert info.extra.get("required_dump_space") == os.path.getsize(forged.paths[kind])


def test_raw_image(forged: Forged) -> None:
    """The raw-image reader finds the planted DTB (low stub), kernel base and PDB identity."""
    machine = forged.machine
    with open_target(forged.paths["raw"]) as target:
        info = target.info()
        assert info.container == "raw"
        assert info.directory_table_base == machine.pt.dtb
        assert info.kernel_base == machine.kernel.base
        assert str(info.extra["pdb_guid"]).replace("-", "").upper() == machine.table.guid
        assert info.extra["pdb_age"] == machine.table.age
        assert info.extra["pdb_name"] == "ntkrnlmp.pdb"
        space = target.kernel
        for va, data in forged.expected_bytes.items():
            assert space.read(va, len(data)) == data, hex(va)
        for pfn in forged.machine.phys.present_pfns():
            assert bytes(target.physical.page(pfn)) == forged.machine.phys.page_bytes(pfn)
