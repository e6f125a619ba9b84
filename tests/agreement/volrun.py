"""Run Volatility 3 plugins in-process on one dump and return their rows as dicts.

Why in-process: the `vol` CLI re-runs its layer stacking and kernel (PDB) search for every
plugin (seconds each). Here the first plugin's automagic result — the kernel layer, its DTB,
the kernel base and the ISF symbol table — is copied into the next plugins' configuration, so
the whole set of plugins shares one search; everything Volatility reports is still its own.
"""
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import volatility3
import volatility3.plugins
import volatility3.symbols
from volatility3 import framework
from volatility3.framework import automagic, constants, contexts, interfaces, plugins
from volatility3.framework.automagic import stacker
from volatility3.framework.configuration import requirements

logging.getLogger("volatility3").setLevel(logging.ERROR)
_IMPORTED = False


def _prepare(isf_dir: str) -> None:
    global _IMPORTED
    wanted = os.path.abspath(isf_dir)
    if wanted not in volatility3.symbols.__path__:
        volatility3.symbols.__path__ = [wanted] + list(constants.SYMBOL_BASEPATHS)
    if not _IMPORTED:
        framework.require_interface_version(2, 0, 0)
        framework.import_files(volatility3.plugins, True)
        _IMPORTED = True


class _NullFile(interfaces.plugins.FileHandlerInterface):
    def __init__(self, filename: str) -> None:
        super().__init__(filename)

    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _value(value: Any) -> Any:
    if isinstance(value, interfaces.renderers.BaseAbsentValue):
        return None
    if hasattr(value, "real") and not isinstance(value, (bool, float)):   # format hints
        return int(value)
    return value


class VolatilityRun:
    """One dump, one context; `rows(plugin_name)` runs a plugin ("windows.pslist.PsList")."""

    def __init__(self, dump: str, isf_dir: str) -> None:
        _prepare(isf_dir)
        self.context = contexts.Context()
        self.context.config["automagic.LayerStacker.single_location"] = \
            requirements.URIRequirement.location_from_file(dump)
        self.available = automagic.available(self.context)
        self.plugins = framework.list_plugins()
        self._kernel_config: Optional[interfaces.configuration.HierarchicalDict] = None

    def rows(self, name: str, **options: Any) -> List[Dict[str, Any]]:
        plugin = self.plugins[name]
        path = interfaces.configuration.path_join("plugins", plugin.__name__)
        for key, value in options.items():
            self.context.config[interfaces.configuration.path_join(path, key)] = value
        if self._kernel_config is not None:
            self.context.config.splice(interfaces.configuration.path_join(path, "kernel"),
                                       self._kernel_config)
        chosen = automagic.choose_automagic(self.available, plugin)
        self.context.config["automagic.LayerStacker.stackers"] = \
            stacker.choose_os_stackers(plugin)
        constructed = plugins.construct_plugin(self.context, chosen, plugin, "plugins", None,
                                               _NullFile)
        if self._kernel_config is None:
            self._kernel_config = self.context.config.branch(
                interfaces.configuration.path_join(path, "kernel"))
        grid = constructed.run()
        columns = [c.name for c in grid.columns]
        out: List[Dict[str, Any]] = []

        def visit(node: interfaces.renderers.TreeNode, _acc: Any) -> bool:
            row = {col: _value(node.values[i]) for i, col in enumerate(columns)}
            row["_depth"] = node.path_depth - 1
            out.append(row)
            return True

        grid.populate(visit, None)
        return out


def run_plugins(dump: str, isf_dir: str, names: Sequence[str]) -> Dict[str, List[Dict[str, Any]]]:
    run = VolatilityRun(dump, isf_dir)
    return {name: run.rows(name) for name in names}
