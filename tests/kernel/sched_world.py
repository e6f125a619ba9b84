"""Forged dumps of the scheduling scenario (`forge.scenario.scheduling_scenario`), shared by the
scheduling, `ready`/`running` and fiber tests: built once per build for the test session.

`corrupted(...)` writes the same machine after changing a few words of its memory (through the
page tables the forge built), for the notes a torn or hostile ready queue must produce.
"""
import functools
import io
import json
import lzma
from typing import Any, Callable, Dict, Optional, Tuple

from pykd_ext.cli import run_command
from pykd_ext.forge import write_bitmap_dump
from pykd_ext.forge.builds import resolve_build
from pykd_ext.forge.kernel_objects import Planted, build_scenario
from pykd_ext.forge.scenario import scheduling_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

#: builds the scheduling tests run on: Windows 7 (no shared ready queue, inline affinity),
#: Windows 10 (shared queue, inline _GROUP_AFFINITY), Windows 11 (affinity via _KAFFINITY_EX)
SCHED_BUILDS = ("win7", "win10", "win11")

_CACHE: Dict[Tuple[str, str], Tuple[str, Planted]] = {}


def sched_dump(tmp_path_factory: Any, build: str, tamper: Optional[Callable[[Any, Planted], str]] = None
               ) -> Tuple[str, Planted]:
    """(path, planted facts) of the scheduling scenario on `build`; `tamper(machine, planted)`
    changes memory before the dump is written and returns a name for the variant."""
    machine, planted = build_scenario(scheduling_scenario(), build)
    name = tamper(machine, planted) if tamper is not None else "clean"
    key = (build, name)
    if key not in _CACHE:
        path = str(tmp_path_factory.mktemp("sched") / ("%s-%s.dmp" % (build, name)))
        write_bitmap_dump(path, machine.phys, machine.spec)
        planted.path = path
        _CACHE[key] = (path, planted)
    return _CACHE[key]


def poke(machine: Any, va: int, value: int, size: int) -> None:
    """Write `value` at kernel virtual address `va` of a forged machine."""
    pa = machine.pt.translate(va)
    assert pa is not None, hex(va)
    machine.phys.write(pa, value.to_bytes(size, "little"))


@functools.lru_cache(maxsize=None)
def isf(build: str) -> Dict[str, Any]:
    """The build's raw ISF JSON (independent of the generated layouts the decoder uses)."""
    table = resolve_build(build).table()
    with lzma.open(table.path, "rb") as handle:
        return json.load(handle)


def isf_field(doc: Dict[str, Any], type_name: str, field: str) -> Dict[str, Any]:
    return doc["user_types"][type_name]["fields"][field]


def run_json(*argv: str, status: int = 0) -> Dict[str, Any]:
    out = io.StringIO()
    code = run_command(list(argv) + ["--format", "json", "--quiet"], out=out)
    assert code == status, out.getvalue()[-400:]
    return addresses_as_ints(json.loads(out.getvalue()))


def run_text(*argv: str) -> str:
    out = io.StringIO()
    code = run_command(list(argv) + ["--quiet"], out=out)
    assert code == 0, out.getvalue()[-400:]
    return out.getvalue()
