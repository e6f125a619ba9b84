"""Commands: each module here turns a Session and parsed arguments into a `Result`.

A command module defines `HELP` (one line), `add_arguments(parser)` and
`run(session, args) -> Result`. The CLI (`pykd_ext.cli`) and the `!py` scripts (`scripts/`) both
dispatch through `COMMANDS`, so a command behaves the same everywhere. Modules are imported only
when their command runs.
"""
from typing import Dict

#: command name -> module implementing it
COMMANDS: Dict[str, str] = {
    "info": "pykd_ext.commands.info",
    "dt": "pykd_ext.commands.dt", "structs": "pykd_ext.commands.structs",
    "ps": "pykd_ext.commands.ps", "pstree": "pykd_ext.commands.pstree",
    "eproc": "pykd_ext.commands.eproc", "threads": "pykd_ext.commands.threads",
    "ethread": "pykd_ext.commands.ethread", "psxview": "pykd_ext.commands.psxview",
    "layouts": "pykd_ext.commands.layouts", "windbg-setup": "pykd_ext.commands.windbg_setup",
    "token": "pykd_ext.commands.token", "handles": "pykd_ext.commands.handles",
    "job": "pykd_ext.commands.job",
    # H9 (issue 5): PEB/TEB/loader modules, kernel targets and user-mode dumps
    "peb": "pykd_ext.commands.peb", "teb": "pykd_ext.commands.teb",
    "modules": "pykd_ext.commands.modules",
}
