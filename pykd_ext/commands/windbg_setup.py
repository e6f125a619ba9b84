"""`windbg-setup [--write DIR]`: what makes `!py eproc lsass.exe` resolve inside WinDbg.

The pykd bootstrapper finds a script by Win32 `SearchPath` (the current directory, then PATH,
`.py` appended), not through `sys.path`; `!py -m pykd_ext CMD` does go through `sys.path`.
So there are three ways, all printed with the exact commands:
1. the scripts folder on PATH before WinDbg starts (then `!py eproc lsass.exe`);
2. the script's full path (`!py C:\\...\\scripts\\eproc.py lsass.exe`);
3. `!py -m pykd_ext eproc lsass.exe` (works with the pip-installed package alone).
`--write DIR` creates the thin scripts in DIR (for a pip install, which does not ship `scripts/`)
and a `pykd-ext.cmdtree` file (`.cmdtree FILE` opens a window of clickable commands).
Nothing here needs a target or pykd.
"""
import argparse
import os
import sys
from typing import Any, Dict, Iterable, List, Optional

from pykd_ext.errors import TargetError
from pykd_ext.render.grid import Column, Result

HELP = "print (and with --write create) what makes `!py eproc` resolve inside WinDbg"

#: the commands that get a `!py` script, with the one-line usage each script's docstring shows
SCRIPTS: Dict[str, str] = {
    "eproc": "!py eproc [NAME|PID|ADDRESS] [-v]: one process, like !process <p> 1 (default: the current process)",
    "ps": "!py ps [NAME|PID ...]: the process list, like !process 0 0",
    "pstree": "!py pstree: processes as a parent/child tree",
    "threads": "!py threads [NAME|PID|ADDRESS]: a process's threads, like !process <p> 2 (default: the current process)",
    "ethread": "!py ethread [ADDRESS|TID]: one thread, like !thread (default: the implicit thread)",
    "token": "!py token [PROCESS|TOKEN]: a token, like !token (default: the current process's)",
    "handles": "!py handles [PROCESS]: a process's handle table, like !handle 0 3 <p>",
    "job": "!py job [PROCESS|JOB]: a job, like !job",
    "peb": "!py peb [PROCESS]: a process environment block, like !peb",
    "teb": "!py teb [THREAD]: a thread environment block, like !teb",
    "modules": "!py modules [PROCESS]: loaded modules from the PEB loader lists (64- and 32-bit)",
    "dt": "!py dt TYPE [ADDRESS] [FIELDS]: a structure, like dt nt!TYPE",
    "psxview": "!py psxview: processes seen by each source (lists, CID table, threads, processors)",
    "layouts": "!py layouts [show|export FILE]: the kernel layouts in use; export them as an ISF file",
}

SCRIPT_TEMPLATE = '''"""`{usage}`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("{command}")
'''

#: the examples a `.cmdtree` window offers (WinDbg `.cmdtree` file format: `windbg ANSI Command
#: Tree 1.0`, `title {"..."}`, `body`, then `{"label"} {"command"}` lines under `{"group"}`)
CMDTREE_COMMANDS = (
    ("Processes", (("ps", "!py ps"), ("pstree", "!py pstree"), ("psxview", "!py psxview"))),
    ("Current process", (("eproc", "!py eproc"), ("threads", "!py threads"), ("token", "!py token"),
                         ("handles", "!py handles"), ("peb", "!py peb"),
                         ("modules", "!py modules"))),
    ("Current thread", (("ethread", "!py ethread"), ("teb", "!py teb"))),
    ("Layouts", (("layouts", "!py layouts"),)),
)


def script_text(command: str) -> str:
    """The thin `!py` script of one command (the same text as the repository's `scripts/`)."""
    return SCRIPT_TEMPLATE.format(usage=SCRIPTS[command], command=command)


def cmdtree_text(prefix: str = "!py ") -> str:
    lines = ["windbg ANSI Command Tree 1.0", "title {\"pykd-ext\"}", "body", "{\"pykd-ext\"}"]
    for group, items in CMDTREE_COMMANDS:
        lines.append(" {\"%s\"}" % group)
        for label, command in items:
            lines.append("  {\"%s\"} {\"%s\"}" % (label, prefix + command[len("!py "):]))
    return "\n".join(lines) + "\n"


def repo_scripts_dir() -> Optional[str]:
    """The checkout's `scripts/` folder, when pykd_ext runs from a source tree."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folder = os.path.join(here, "scripts")
    return folder if os.path.isfile(os.path.join(folder, "eproc.py")) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", metavar="DIR",
                        help="create the !py scripts and pykd-ext.cmdtree in DIR (existing files are replaced)")


def write_scripts(folder: str) -> List[str]:
    try:
        os.makedirs(folder, exist_ok=True)
        written = []
        for command in SCRIPTS:
            path = os.path.join(folder, command + ".py")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(script_text(command))
            written.append(path)
        path = os.path.join(folder, "pykd-ext.cmdtree")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(cmdtree_text())
        written.append(path)
    except OSError as err:
        raise TargetError("cannot write the scripts: %s" % (err.strerror or err), folder) from None
    return written


def _win(path: str) -> str:
    return path.replace("/", "\\") if os.sep == "\\" or path[1:3] == ":\\" else path


def run(session: Any, args: argparse.Namespace) -> Result:
    written: List[str] = []
    if args.write:
        written = write_scripts(args.write)
        folder: Optional[str] = os.path.abspath(args.write)
    else:
        folder = repo_scripts_dir()
    steps: List[Dict[str, Any]] = []

    def step(what: str, command: str) -> None:
        steps.append({"step": what, "command": command})

    step("python", "pykd needs a CPython WinDbg's bootstrapper can load (PyPI wheels: 3.9 or older): "
                   "`py -3.9 -m pip install pykd` and `py -3.9 -m pip install %s`"
         % ("-e <this checkout>" if repo_scripts_dir() else "pykd-ext"))
    step("load", ".load pykd")
    if folder:
        shown = _win(folder)
        step("PATH (before starting WinDbg)", "set PATH=%%PATH%%;%s" % shown)
        step("then", "!py eproc lsass.exe")
        step("or full path", "!py %s lsass.exe" % _win(os.path.join(folder, "eproc.py")))
        step("command window", ".cmdtree %s" % _win(os.path.join(folder, "pykd-ext.cmdtree")))
    else:
        step("scripts", "not in this install: run `pykd-ext windbg-setup --write C:\\pykd-ext` to create them")
    step("without scripts", "!py -m pykd_ext eproc lsass.exe")
    step("python version", "!py -3.9 -m pykd_ext ps   (when several Pythons are installed)")
    meta = {"scripts": folder, "written": written, "python": sys.version.split()[0]}

    def text(result: Result) -> Iterable[str]:
        if written:
            yield "Wrote %d files to %s" % (len(written), result.meta["scripts"])
        for rec in result.records:
            yield "%-30s %s" % (rec["step"] + ":", rec["command"])
        if not (result.meta["scripts"] and os.path.isfile(os.path.join(result.meta["scripts"], "pykd-ext.cmdtree"))):
            if result.meta["scripts"]:
                yield "(the .cmdtree file is created by --write)"

    return Result("windbg-setup", [Column("step"), Column("command")], steps, text=text, meta=meta)
