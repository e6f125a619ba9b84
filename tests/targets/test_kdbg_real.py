"""The KDBG block of both real triage dumps, checked against the dump header and the ISF."""
import mmap
from pathlib import Path
from typing import Dict

import pytest

from isf_facts import field_offset, isf_files_for_build, load_isf, type_size
from pykd_ext.targets.dumpheader import parse_header64
from pykd_ext.targets.kdbg import decode_kdbg
from pykd_ext.targets.opener import open_target

DUMPS = [("win10-19041-x64-triage.dmp", 19041), ("win10-17763-x64-triage.dmp", 17763)]


def _isf_facts(isf: dict) -> Dict[str, int]:
    """What each KDBG offset/size field must equal, per the kernel's own PDB (ISF)."""
    return {
        "OffsetKThreadState": field_offset(isf, "_KTHREAD", "State"),
        "OffsetKThreadTeb": field_offset(isf, "_KTHREAD", "Teb"),
        "OffsetKThreadKernelStack": field_offset(isf, "_KTHREAD", "KernelStack"),
        "OffsetKThreadInitialStack": field_offset(isf, "_KTHREAD", "InitialStack"),
        "OffsetKThreadApcProcess": field_offset(isf, "_KTHREAD", "ApcState.Process"),
        "OffsetKThreadWaitReason": field_offset(isf, "_KTHREAD", "WaitReason"),
        "SizeEProcess": type_size(isf, "_EPROCESS"),
        "SizeEThread": type_size(isf, "_ETHREAD"),
        "SizePrcb": type_size(isf, "_KPRCB"),
        "OffsetEprocessPeb": field_offset(isf, "_EPROCESS", "Peb"),
        "OffsetEprocessParentCID": field_offset(isf, "_EPROCESS", "InheritedFromUniqueProcessId"),
        "OffsetEprocessDirectoryTableBase": field_offset(isf, "_EPROCESS", "Pcb.DirectoryTableBase"),
        "OffsetPrcbCurrentThread": field_offset(isf, "_KPRCB", "CurrentThread"),
        "OffsetPrcbNumber": field_offset(isf, "_KPRCB", "Number"),
    }


@pytest.mark.parametrize("name,build", DUMPS)
def test_kdbg_agrees_with_header(real_dir: Path, name: str, build: int) -> None:
    path = real_dir / "kernel-triage" / name
    with open(path, "rb") as handle:
        mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        header = parse_header64(mm, str(path))
        mm.close()
    with open_target(str(path)) as target:
        info = target.info()
        kdbg = info.kdbg
        assert kdbg is not None
        assert kdbg["_owner_tag"] == "KDBG" and kdbg["_size"] == 0x380
        kern_base = kdbg["KernBase"]
        assert kern_base >> 47 == 0x1FFFF and kern_base & 0xFFF == 0   # canonical kernel, paged
        assert info.kernel_base == kern_base
        assert kdbg["PsActiveProcessHead"] == header.ps_active_process_head
        assert kdbg["PsLoadedModuleList"] == header.ps_loaded_module_list
        assert info.build == build == header.build
        # The block is also mapped at the header's KdDebuggerDataBlock and decodes the same.
        again = decode_kdbg(target.kernel, header.kd_debugger_data_block)
        assert again == kdbg


@pytest.mark.parametrize("name,build", DUMPS)
def test_kdbg_offsets_match_isf_of_same_build(real_dir: Path, isf_dir: Path, name: str,
                                              build: int) -> None:
    with open_target(str(real_dir / "kernel-triage" / name)) as target:
        kdbg = target.info().kdbg
    matching = None
    # Stop at the first revision that matches (loading every ISF is slow).
    for path in isf_files_for_build(isf_dir, build):
        facts = _isf_facts(load_isf(str(path)))
        if all(kdbg[key] == value for key, value in facts.items()):
            matching = path.name
            break
    # Revisions of one build differ at most in a few sizes: at least one must match exactly.
    assert matching, "no %d revision matches the KDBG's offsets and sizes" % build


@pytest.mark.slow
def test_kdbg_globals_identify_one_19041_revision(real_dir: Path, isf_dir: Path) -> None:
    """KernBase + the ISF's symbol RVAs reproduce the KDBG's global addresses for one revision."""
    with open_target(str(real_dir / "kernel-triage" / "win10-19041-x64-triage.dmp")) as target:
        kdbg = target.info().kdbg
    hits = []
    for path in isf_files_for_build(isf_dir, 19041):
        symbols = load_isf(str(path))["symbols"]
        if all(kdbg["KernBase"] + symbols[name]["address"] == kdbg[name]
               for name in ("PsActiveProcessHead", "PsLoadedModuleList", "KiProcessorBlock",
                            "PspCidTable")):
            hits.append(path.name)
    assert hits == ["5278AFF86C341677D7D7835C85B7B844-1.json.xz"]
