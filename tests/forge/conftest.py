"""The forged machine of the forge tests, written once per session as every dump kind."""
import os
import random
from pathlib import Path

import pytest

from forge_planted import Forged, plant
from pykd_ext.forge import forge_machine, write_bitmap_dump, write_full_dump, write_raw_image
from pykd_ext.forge.isf import table_for_build


@pytest.fixture(scope="session")
def forged(tmp_path_factory: pytest.TempPathFactory, isf_dir: Path) -> Forged:
    table = table_for_build(19041, isf_dir)
    machine = forge_machine(build=19041, table=table, processors=4,
                            bugcheck_code=0x139, bugcheck_parameters=(3, 0xFFFF1, 0xFFFF2, 0))
    result = plant(machine, random.Random(20261122))
    out = tmp_path_factory.mktemp("forged")
    result.paths = {
        "full": write_full_dump(str(out / "full.dmp"), machine.phys, machine.spec),
        "fdmp": write_bitmap_dump(str(out / "complete-bitmap.dmp"), machine.phys, machine.spec),
        "sdmp": write_bitmap_dump(str(out / "kernel-bitmap.dmp"), machine.phys, machine.spec,
                                  kernel_only=True),
        "raw": write_raw_image(str(out / "memory.raw"), machine.phys),
    }
    for path in result.paths.values():
        os.chmod(path, 0o444)                  # readers must not need write access
    return result


