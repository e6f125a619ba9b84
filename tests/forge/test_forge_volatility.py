"""Volatility 3's crash-dump layer accepts the forged type 1 and type 5 dumps and reads the same
physical pages."""
import pytest
from volatility3.framework import contexts, exceptions
from volatility3.framework.layers import crash, physical

from forge_planted import PAGE, Forged, absent_pfns, pages_in_dump

KINDS = ("full", "fdmp", "sdmp")


def _crash_layer(path: str):
    context = contexts.Context()
    base = "file%d" % abs(hash(path))
    context.config["%s.location" % base] = "file://" + path
    context.layers.add_layer(physical.FileLayer(context, base, base))
    name = "crash%d" % abs(hash(path))
    context.config["%s.base_layer" % name] = base
    layer = crash.WindowsCrashDump64Layer(context, name, name)
    context.layers.add_layer(layer)
    return layer


@pytest.mark.parametrize("kind", KINDS)
def test_volatility_reads_the_same_pages(forged: Forged, kind: str) -> None:
    layer = _crash_layer(forged.paths[kind])
    phys = forged.machine.phys
    assert layer.dtb == forged.machine.pt.dtb
    assert layer.dump_type == (1 if kind == "full" else 5)
    written = set(phys.present_pfns())
    expected = pages_in_dump(forged, kind)
    for pfn in expected:
        data = layer.read(pfn * PAGE, PAGE)
        assert data == (phys.page_bytes(pfn) if pfn in written else bytes(PAGE)), hex(pfn)
    for pfn in absent_pfns(forged, kind):
        assert not layer.is_valid(pfn * PAGE, PAGE), hex(pfn)
        with pytest.raises(exceptions.InvalidAddressException):
            layer.read(pfn * PAGE, PAGE)
    mapped = sum(length for _, _, length, _ in layer._segments) // PAGE
    assert mapped == len(expected)


def test_volatility_finds_dtb_and_kernel_in_the_raw_image(forged: Forged) -> None:
    """Volatility 3's own raw-image methods agree with the forge: its self-referential DTB test
    picks exactly the planted PML4 among all present pages, and its low-stub kernel search finds
    the planted kernel base and PDB identity."""
    from volatility3.framework.automagic import pdbscan
    from volatility3.framework.automagic.windows import DtbSelfRef64bit
    from volatility3.framework.layers import intel

    machine = forged.machine
    test = DtbSelfRef64bit()
    hits = [pfn * PAGE for pfn in machine.phys.present_pfns()
            if test(machine.phys.page_bytes(pfn), pfn * PAGE, 0) is not None]
    assert hits == [machine.pt.dtb]

    context = contexts.Context()
    context.config["memory_layer.location"] = "file://" + forged.paths["raw"]
    context.layers.add_layer(physical.FileLayer(context, "memory_layer", "memory_layer"))
    context.config["kernel.memory_layer"] = "memory_layer"
    context.config["kernel.page_map_offset"] = machine.pt.dtb
    layer = intel.WindowsIntel32e(context, "kernel", "kernel")
    context.layers.add_layer(layer)
    found = pdbscan.KernelPDBScanner(context, "automagic.pdbscan").method_low_stub_offset(
        context, layer)
    assert found is not None
    _layer_name, base, pdb = found
    assert base == machine.kernel.base & 0xFFFFFFFFFFFF       # Volatility keeps 48 bits
    assert pdb["GUID"] == machine.table.guid and pdb["age"] == machine.table.age
    assert pdb["pdb_name"] == "ntkrnlmp.pdb"
