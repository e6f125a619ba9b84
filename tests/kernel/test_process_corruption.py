"""Garbage in the kernel objects never crashes a command: every field becomes a value or a
marker, every walk ends with a note (the issue: "a broken link ends the walk with a visible
note, not an exception")."""
import random
from typing import Any

import pytest

from planted import World, run_json, run_text, standard_processes

COMMANDS = (["ps"], ["pstree"], ["psxview"], ["threads"], ["eproc", "lsass.exe", "-v"],
            ["ethread", "0n704"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_corruption_never_crashes(seed: int, tmp_path: Any, isf_dir: Any) -> None:
    del isf_dir
    rng = random.Random(seed)
    w = World(19041 if seed != 2 else 7601)
    w.plant(standard_processes(w.table.build or 19041))
    # scribble over random 8-byte words inside every planted process and thread
    eprocess, ethread = w.table.size("_EPROCESS"), w.table.size("_ETHREAD")
    for base, size in [(va, eprocess) for va in w.process_va.values()] + \
                      [(va, ethread) for va in w.thread_va.values()]:
        for _ in range(12):
            offset = rng.randrange(0, size - 8) & ~7
            w.pt.write_u64(base + offset, rng.choice([0, rng.getrandbits(64), base + rng.randrange(size),
                                                      0xFFFFA0F000000000]))
    path = w.write(str(tmp_path / "garbage.dmp"))
    for argv in COMMANDS:
        code, _ = run_text(argv + ["--target", path])
        assert code in (0, 2), argv            # 2: lsass/704 may no longer be recognisable
        code, _ = run_text(argv + ["--target", path], "json")
        assert code in (0, 2), argv
    assert run_json(["ps", "--target", path])["records"] is not None
