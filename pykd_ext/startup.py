"""Start-up of a one-shot command: standard modules imported but never used load on first use.

Why: every `pykd-ext` command and every `!py` command inside WinDbg is a fresh start, so import
time is paid per command. `construct` (the layout vocabulary) imports `pdb`, `pickle`, `hashlib`,
`inspect` and `traceback` at its top for features pykd-ext never calls (its interactive debugger,
`Pickled`, `Checksum`); `dataclasses` imports `inspect` for classes without a docstring (ours all
have one: a test checks); on Python 3.9 (WinDbg's) `platform`, which construct asks for the OS
name, imports `subprocess` (and `signal`, `selectors`) to run `ver` where nothing else answers.
Together they were about a sixth of a command's CPU. Before anything imports them, each is
registered as a placeholder module; the first attribute anybody reads from it imports the real
module and fills the placeholder with it, so code that does use them is unaffected (a bug's
traceback, a debugger, a batch run's pickling, the live VM's QEMU all load the real ones).

(`importlib.util.LazyLoader` does not help here: on Python 3.9-3.11 the `import` statement itself
reads `__spec__` of a module found in `sys.modules`, which makes a lazy module load at once.)

Only the entry points call this: `pykd_ext.cli` as it is imported (before its own imports bring in
`dataclasses`), and the WinDbg scripts; `import pykd_ext` as a library does not change the
interpreter's modules.
"""
import _thread
import importlib
import importlib.util
import sys
import types
from typing import Any

#: imported (by construct, dataclasses, platform) for what pykd-ext does not use; loaded on first use
DEFERRED_MODULES = ("pdb", "pickle", "hashlib", "inspect", "traceback", "subprocess")


#: one first use at a time (batch workers are threads): the placeholder leaves `sys.modules` once
_LOADING = _thread.RLock()      # re-entrant: loading one may touch another


class _Placeholder(types.ModuleType):
    """Stands in `sys.modules` for a module not loaded yet; becomes a copy of it on first use."""

    def __getattr__(self, attribute: str) -> Any:
        # only called for attributes the placeholder lacks, i.e. before the real module is loaded
        name = self.__name__
        with _LOADING:
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
            self.__dict__.update(real.__dict__)
        return getattr(real, attribute)


def defer_unused_imports() -> None:
    """Register each of DEFERRED_MODULES as a placeholder unless it is already imported."""
    for name in DEFERRED_MODULES:
        if name not in sys.modules:
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            placeholder = _Placeholder(name)
            # set, so that reading it (the `import` statement does) does not load the module, and
            # real, so that `importlib.util.find_spec(name)` still answers
            placeholder.__spec__ = spec
            sys.modules[name] = placeholder
