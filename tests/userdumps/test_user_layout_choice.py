"""Layout choice for user-mode dumps: the dump's build, or the nearest build, named in the output.

A user dump states its build (MINIDUMP_SYSTEM_INFO / USERDU64 header); when no layout of that
build exists the nearest build's layouts decode it, and every result says which ones. Simulated
here by presenting the real 17134 dump as an unknown build (17500): the decoded values must not
change (PEB/TEB layouts barely move between neighbouring builds) and the choice must be stated.
"""
import dataclasses
from pathlib import Path
from typing import Any

from pykd_ext.commands import peb as peb_command
from pykd_ext.commands import teb as teb_command
from pykd_ext.session import Session
from pykd_ext.targets.opener import open_target

NATIVE = "user-dumps/win10-17134-x64-userdu64.dmp"


class Args:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def session_with_build(path: Path, build: int) -> Session:
    target = open_target(str(path))
    info = dataclasses.replace(target.info(), build=build)
    target.info = lambda: info          # type: ignore[assignment]
    return Session(target_factory=lambda: target)


def test_unknown_build_uses_the_nearest_and_says_so(real_dir: Path) -> None:
    session = session_with_build(real_dir / NATIVE, 17500)
    try:
        result = peb_command.run(session, Args(process=None, all=False, symbols32=None))
        choice = result.meta["layout_choice"]
        assert choice["method"] == "nearest-build"
        chosen = result.meta["layout"]["build_id"]
        assert chosen.startswith("10.0.17763.")                    # |17763-17500| < |17134-17500|
        assert any("nearest build" in n and "17500" in n for n in result.notes)
        (rec,) = result.records
        assert rec["layout"] == chosen
    finally:
        session.close()
    exact = Session(target_path=str(real_dir / NATIVE))
    try:
        (base,) = peb_command.run(exact, Args(process=None, all=False, symbols32=None)).records
        assert exact.layouts.build == 17134
    finally:
        exact.close()
    for key in ("image_base", "command_line", "image_path", "environment", "ldr", "process_parameters"):
        assert rec[key] == base[key], key


def test_teb_by_tid_and_by_address(real_dir: Path) -> None:
    session = Session(target_path=str(real_dir / NATIVE))
    try:
        threads = session.target.info().extra["threads"]
        second = threads[1]
        for spec in ("0n%d" % second["id"], "0x%x" % second["teb"]):
            result = teb_command.run(session, Args(thread=spec, process=None, symbols32=None))
            (rec,) = result.records
            assert rec["address"] == second["teb"] and rec["client_id_tid"] == second["id"]
    finally:
        session.close()
