"""32-bit kernel dumps (`PAGEDUMP`) end to end at the memory layer: the forge's writer, our reader,
and Volatility 3's 32-bit crash layer with its x86 paging layers over the same file.

Expected values: the bytes and addresses the forge planted, and what Volatility's
`WindowsCrashDump32Layer` + `WindowsIntel`/`WindowsIntelPAE` read from the same dump.
"""
from pathlib import Path

import pytest

from pykd_ext.forge.dumpfile import build_header
from pykd_ext.forge.x86_kernel import ProcessSpec32, ThreadSpec32, X86Scenario, build_x86
from pykd_ext.targets import dumpheader as dh
from pykd_ext.memory.paging_modes import X86_NONPAE, X86_PAE
from pykd_ext.targets.arch import X64, X86
from pykd_ext.targets.crashdump import dump_paging_mode
from pykd_ext.targets.opener import open_target

CASES = [("6.1.7601.17514-x86", "full", False), ("10.0.19041.1288-x86", "bitmap", True)]


def _forge(build_id: str):
    procs = [ProcessSpec32(4, 0, "System", [ThreadSpec32(8), ThreadSpec32(12)]),
             ProcessSpec32(600, 4, "winlogon.exe", [ThreadSpec32(604)])]
    return build_x86(X86Scenario(build_id, procs, running_tid=8))


def _volatility(path: str, dtb: int, pae: bool):
    from volatility3.framework import contexts
    from volatility3.framework.layers import crash, intel, physical
    ctx = contexts.Context()
    ctx.config["file.location"] = Path(path).as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    ctx.config["crash.base_layer"] = "file"
    ctx.add_layer(crash.WindowsCrashDump32Layer(ctx, "crash", "crash"))
    ctx.config["virt.memory_layer"] = "crash"
    ctx.config["virt.page_map_offset"] = dtb
    layer = (intel.WindowsIntelPAE if pae else intel.WindowsIntel)(ctx, "virt", "virt")
    ctx.add_layer(layer)
    return ctx.layers["crash"], layer


@pytest.mark.parametrize("build_id,kind,pae", CASES, ids=[c[0] for c in CASES])
def test_forged_x86_dump_reads_like_volatility(tmp_path: Path, build_id: str, kind: str, pae: bool) -> None:
    forged = _forge(build_id)
    assert forged.pae == pae
    path = forged.write(str(tmp_path / "x86.dmp"), kind)
    crash, virt = _volatility(path, forged.kernel.dtb, pae)
    assert crash.dtb == forged.kernel.dtb
    with open_target(path) as target:
        info = target.info()
        assert (info.container, info.arch, info.build) == ("PAGEDUMP", "x86", forged.layouts.build)
        assert info.extra["paging"] == ("x86 PAE" if pae else "x86 non-PAE")
        assert info.extra["paging_source"] == "header PaeEnabled"
        assert info.kernel_base == forged.kernel_base == info.kdbg["KernBase"]   # not sign-extended
        assert info.kdbg["PsActiveProcessHead"] == forged.globals["PsActiveProcessHead"]
        assert info.extra["pdb_name"] == forged.pdb_name
        assert info.extra["kernel_timestamp"] == forged.image.timestamp
        for pfn in forged.phys.present_pfns()[:64]:
            assert bytes(target.physical.page(pfn)) == crash.read(pfn << 12, 4096)
        k = target.kernel
        probes = [forged.kernel_base, forged.globals["KdDebuggerDataBlock"]]
        probes += list(forged.processes.values()) + list(forged.threads.values())
        for va in probes:
            assert k.translate(va) == virt.translate(va)[0]
            assert k.read(va, 0x40) == virt.read(va, 0x40)
        # each process's own space (PAE: a 32-byte-aligned PDPT) maps the shared kernel half
        for pid, dtb in forged.dtbs.items():
            space = target.process_space(dtb)
            assert space.read(forged.processes[pid], 16) == k.read(forged.processes[pid], 16)
            assert (space is k) == (dtb == forged.kernel.dtb)


def test_x86_kdbg_values_only_undo_sign_extension() -> None:
    kdbg = {"KernBase": 0xFFFFFFFF82A00000, "SizeEProcess": 0x2C0, "MmPfnDatabase": 0,
            "_owner_tag": "KDBG", "PaeEnabled": 1, "odd": 0x1_0000_0000}
    out = X86.kdbg_values(kdbg)
    assert out == {"KernBase": 0x82A00000, "SizeEProcess": 0x2C0, "MmPfnDatabase": 0,
                   "_owner_tag": "KDBG", "PaeEnabled": 1, "odd": 0x1_0000_0000}
    assert X64.kdbg_values(kdbg) == kdbg                 # x64 pointers are stored as they are
    assert X86.narrow_pointer(0xFFFFFFFF82A00000) == 0x82A00000
    assert X86.narrow_pointer(0x1_0000_0000) is None     # neither a 32-bit nor a sign-extended one


def test_pae_mode_from_header_or_dtb(tmp_path: Path) -> None:
    forged = _forge("10.0.19041.1288-x86")
    spec = forged.dump_spec()
    for pae_byte, dtb, want in ((1, 0x185000, (X86_PAE, "header PaeEnabled")),
                                (0, 0x185000, (X86_NONPAE, "header PaeEnabled")),
                                (0x50, 0x185020, (X86_PAE, "DTB not page aligned (a PAE PDPT)")),
                                (0x50, 0x185000, (X86_PAE, "assumed (header PaeEnabled unset)"))):
        spec.dtb = dtb
        raw = bytearray(build_header(spec, dh.DUMP_TYPE_FULL, [(1, 1)], 0x2000))
        raw[dh.header_offsets(32)["PaeEnabled"]] = pae_byte
        header = dh.parse_header32(bytes(raw))
        assert dump_paging_mode(X86, header) == want


def test_object_types_without_symbols_scan_and_cookie(tmp_path: Path) -> None:
    """Types-only layout: `ObTypeIndexTable` found by its shape in the image's .data (where the
    forge put it), the Windows 10 header cookie derived from known objects (the forge's byte),
    none before Windows 10."""
    from pykd_ext.kernel.context import KernelContext
    from pykd_ext.kernel.typeindex_scan import derive_header_cookie, find_type_index_table
    from pykd_ext.layouts.registry import load_layouts
    for build_id in ("10.0.19041.1288-x86", "6.1.7601.17514-x86"):
        forged = _forge(build_id)
        path = forged.write(str(tmp_path / ("%s.dmp" % build_id)))
        with open_target(path) as target:
            ctx = KernelContext(target, load_layouts(build_id))
            assert find_type_index_table(ctx) == forged.globals["ObTypeIndexTable"]
            # the forged image also holds ObGetObjectType's code, which names it first (H12)
            assert ctx.resolve_global("ObTypeIndexTable") == (forged.globals["ObTypeIndexTable"],
                                                              "disasm:ObGetObjectType")
            assert derive_header_cookie(ctx) == forged.cookie
            assert (forged.cookie is None) == (forged.layouts.build < 10240)
            for pid, body in forged.processes.items():
                assert ctx.object_type_name(body) == "Process"
            for tid, body in forged.threads.items():
                assert ctx.object_type_name(body) == "Thread"
