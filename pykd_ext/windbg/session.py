"""A `Session` whose target is the debugger (pykd) and whose layouts prefer the debugger's PDB.

Why a subclass: commands only ever see `session.target` and `session.layouts`. Offline, layouts
are chosen by PDB GUID or fingerprint (`layouts.select`); inside WinDbg the exact PDB is loaded,
so after an exact GUID match the next best source is the PDB itself through typeInfo
(`layouts.from_typeinfo`), before any nearest-revision guess.
"""
from typing import Any, Optional

from pykd_ext.session import Session


class PykdSession(Session):
    """Session over `open_pykd_target(dump_path)`; `--symbols`/`--build` still win when given."""

    def __init__(self, dump_path: Optional[str] = None, symbols: Optional[str] = None,
                 build: Optional[str] = None, quiet: bool = True) -> None:
        def factory() -> Any:
            from pykd_ext.targets.pykd_target import open_pykd_target
            return open_pykd_target(dump_path)

        super().__init__(target_path=dump_path, symbols=symbols, build=build, quiet=quiet,
                         target_factory=factory)

    @property
    def layouts(self) -> Any:
        if self._layouts is None:
            if self.symbols or self.build:
                return Session.layouts.fget(self)  # type: ignore[attr-defined]
            from pykd_ext.layouts.from_typeinfo import choose_layouts_for_pykd
            self._layouts = choose_layouts_for_pykd(self.target)
        return self._layouts
