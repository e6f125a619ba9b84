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
}
