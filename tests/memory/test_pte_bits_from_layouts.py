"""The software-PTE bits the paging code uses come from the chosen layout, matching the ISF."""
import json
import lzma

from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.pte import SoftwarePteLayout


def test_pte_bits_from_generated_layouts_equal_the_isf(isf_dir):
    row = next(line.split("\t") for line in (isf_dir / "INDEX.tsv").read_text().splitlines()
               if line.startswith("10.0.19041.1288\t"))
    with lzma.open(isf_dir / "windows" / "ntkrnlmp.pdb" / row[4].strip(), "rt") as handle:
        from_isf = SoftwarePteLayout.from_user_types(json.load(handle)["user_types"])
    assert SoftwarePteLayout.from_layouts(load_layouts("10.0.19041.1288")) == from_isf


def test_selection_hands_the_bits_to_a_paged_target():
    from pykd_ext.layouts import select

    class PagedTarget:
        got = None

        def set_software_pte(self, layout):
            self.got = layout

    target = PagedTarget()
    layouts = load_layouts("10.0.19041.1288")
    select._give_target_pte_bits(target, layouts)
    assert target.got == SoftwarePteLayout.from_layouts(layouts)
    assert target.got.pagefile_high[1] > 0
