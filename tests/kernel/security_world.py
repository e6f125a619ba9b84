"""Forged dumps of the standard scenario (with the security objects `forge.security_objects`
plants) for the token/handle/job tests: one per tested build, written once per session.

Expected values in the tests come from what the forge planted (`planted.security`), never from
our decoders' output.
"""
import io
import json
from typing import Any, Dict, List

from pykd_ext.forge.builds import BUILDS, resolve_build
from pykd_ext.forge.kernel_objects import write_scenario_dump
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

BUILD_NAMES = sorted(BUILDS)
_CACHE: Dict[str, "World"] = {}


class World:
    def __init__(self, name: str, path: str, planted: Any) -> None:
        self.name = name
        self.path = path
        self.planted = planted
        self.security = planted.security
        self._session: Any = None

    @property
    def ctx(self) -> Any:
        from pykd_ext.kernel.context import context_for
        from pykd_ext.session import Session
        if self._session is None:
            self._session = Session(self.path)
        return context_for(self._session)

    def process(self, pid: int) -> Any:
        from pykd_ext.kernel.process import Process
        return Process(self.ctx, self.planted.process(pid)["address"])

    def run(self, *argv: str, fmt: str = "json") -> Any:
        from pykd_ext.cli import run_command
        out = io.StringIO()
        code = run_command(list(argv) + ["--target", self.path, "--format", fmt, "--quiet"], out=out)
        assert code == 0, (argv, out.getvalue()[-400:])
        return addresses_as_ints(json.loads(out.getvalue())) if fmt == "json" else out.getvalue().splitlines()


def world_for(name: str, directory: str) -> World:
    if name not in _CACHE:
        path = "%s/security-%s.dmp" % (directory, name)
        planted = write_scenario_dump(path, standard_scenario(), resolve_build(name))
        _CACHE[name] = World(name, path, planted)
    return _CACHE[name]


def by_pid(records: List[Dict[str, Any]]) -> Dict[Any, Dict[str, Any]]:
    return {r["pid"]: r for r in records}
