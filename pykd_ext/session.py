"""One command invocation's context: the target, its layouts, and output options.

Opened lazily so that commands which need no target (`structs list`, `dt TYPE --build B`) never
touch a file, and so that `!py` invocations (a fresh interpreter each time) import only what the
command uses. Both the CLI and the `!py` scripts build a Session and call the same command code.
"""
from typing import Any, Callable, List, Optional

from pykd_ext.errors import TargetError, UnknownBuildError
from pykd_ext.targets.base import Target


class Session:
    """Target + layouts for one command; `target` and `layouts` open on first use."""

    def __init__(self, target_path: Optional[str] = None, symbols: Optional[str] = None,
                 build: Optional[str] = None, quiet: bool = False,
                 target_factory: Optional[Callable[[], Target]] = None) -> None:
        self.target_path = target_path
        self.symbols = symbols          # --symbols: an ISF file to use ad hoc
        self.build = build              # --build: a layout chosen by name (no target needed)
        self.quiet = quiet
        self._target_factory = target_factory
        self._target: Optional[Target] = None
        self._layouts: Any = None
        self.notes: List[str] = []      # what the session itself did, for the command's notes
        self.fetch_symbols = False      # --fetch-symbols (issue 16)
        self.symbol_path: Optional[str] = None   # --symbol-path, WinDbg syntax

    @property
    def has_target(self) -> bool:
        return self._target is not None or self._target_factory is not None or bool(self.target_path)

    @property
    def target(self) -> Target:
        if self._target is None:
            if self._target_factory is not None:
                self._target = self._target_factory()
            elif self.target_path:
                from pykd_ext.targets.opener import open_target
                self._target = open_target(self.target_path)
            else:
                raise TargetError("this command needs --target PATH")
        return self._target

    @property
    def layouts(self) -> Any:
        """The chosen kernel layouts for the target (or --build / --symbols)."""
        if self._layouts is None:
            from pykd_ext.layouts.select import layouts_for_session
            fetched = self._fetch_symbols_if_asked()
            try:
                self._layouts = layouts_for_session(self)
            except UnknownBuildError as err:
                if not fetched:                    # a kernel known only by its image (triage)
                    fetched = self._fetch_symbols_if_asked(by_image=True)
                    if fetched is not None and fetched.imported:
                        self._layouts = layouts_for_session(self)
                if self._layouts is None:
                    if fetched is not None:
                        err.message = "%s (%s)" % (err.message, fetched.note)
                    raise
            if fetched is None and self._layouts.choice.get("method") == "inferred":
                # no layout fitted: the PDB (through the kernel image) beats offsets inferred
                fetched = self._fetch_symbols_if_asked(by_image=True)
                if fetched is not None and fetched.imported:
                    self._layouts = layouts_for_session(self)
            if fetched is not None:
                self._layouts.choice.setdefault("warnings", []).append(fetched.note)
                self.notes.append(fetched.note)
        return self._layouts

    def _fetch_symbols_if_asked(self, by_image: bool = False) -> Any:
        """Issue 16: with --fetch-symbols or a symbol path, get the target kernel's PDB first
        (pykd_ext/symbols/auto.py): a `Fetched` (imported?, note), or None."""
        if self.symbols or self.build or not self.has_target:
            return None
        from pykd_ext.symbols.auto import ensure_kernel_layouts, fetch_wanted
        return ensure_kernel_layouts(self, by_image) if fetch_wanted(self) else None

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None
