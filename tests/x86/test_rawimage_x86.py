"""Raw physical images of 32-bit Windows: DTB found from Windows' recursive page-table mapping,
kernel from the KDBG block, build from NtBuildLab; processes decoded with the derived layout.

Expected values: what the forge planted (DTB, kernel base, KDBG address, processes), and
Volatility 3's x86 layers over the same raw file for the translations.
"""
import io
import json
from pathlib import Path

import pytest

from pykd_ext.forge.dumpfile import write_raw_image
from pykd_ext.forge.x86_kernel import ProcessSpec32, ThreadSpec32, X86Scenario, build_x86
from pykd_ext.memory.paging_modes import X86_NONPAE, X86_PAE
from pykd_ext.targets.arch import X86
from pykd_ext.targets.dtbscan import find_x86_directories
from pykd_ext.targets.opener import open_target
from pykd_ext.targets.rawimage import RawImageTarget
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

CASES = [("6.1.7601.17514-x86", False), ("10.0.17763.107-x86", True)]


@pytest.mark.parametrize("build_id,pae", CASES, ids=[c[0] for c in CASES])
def test_x86_raw_image_end_to_end(tmp_path: Path, build_id: str, pae: bool) -> None:
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8), ThreadSpec32(12)]),
             ProcessSpec32(700, 4, "services.exe", [ThreadSpec32(704), ThreadSpec32(708)])]
    forged = build_x86(X86Scenario(build_id, procs))
    path = write_raw_image(str(tmp_path / "x86.raw"), forged.phys)
    with open_target(path) as target:
        assert isinstance(target, RawImageTarget) and target.arch is X86
        info = target.info()
        assert (info.arch, info.directory_table_base, info.build) == ("x86", forged.kernel.dtb,
                                                                      forged.layouts.build)
        assert info.extra["paging"] == ("x86 PAE" if pae else "x86 non-PAE")
        assert info.kernel_base == forged.kernel_base
        assert info.kd_debugger_data_block == forged.globals["KdDebuggerDataBlock"]
        assert info.ps_active_process_head == forged.globals["PsActiveProcessHead"]
        assert info.extra["build_lab"].startswith("%d." % forged.layouts.build)
        # the kernel DTB comes first; every process's own directory is a candidate too
        found = find_x86_directories(target.physical)
        assert (found[0].dtb, found[0].mode) == (forged.kernel.dtb, X86_PAE if pae else X86_NONPAE)
        assert {c.dtb for c in found} >= set(forged.dtbs.values())
        for pid, dtb in forged.dtbs.items():
            assert target.process_space(dtb).read(forged.processes[pid], 8) == \
                target.kernel.read(forged.processes[pid], 8)
    from pykd_ext.cli import run_command
    out = io.StringIO()
    assert run_command(["ps", "--target", path, "--format", "json", "--quiet"], out=out) == 0
    rows = [(r["pid"], r["ppid"], r["name"], r["address"], r["threads_active"], r["layout"])
            for r in addresses_as_ints(json.loads(out.getvalue()))["records"]]
    assert rows == [(p.pid, p.ppid, p.name, forged.processes[p.pid], len(p.threads), build_id)
                    for p in procs]


def test_an_x64_or_empty_raw_image_is_not_taken_for_x86(tmp_path: Path) -> None:
    path = tmp_path / "zeros.raw"
    path.write_bytes(bytes(0x40000))
    with open_target(str(path)) as target:
        assert target.arch is not X86 and target.dtb is None
        assert target.info().arch == "x64"
