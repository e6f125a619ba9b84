"""Commands: each module here turns a Session and parsed arguments into a `Result`.

A command module defines `HELP` (one line), `add_arguments(parser)` and
`run(session, args) -> Result`. The CLI (`pykd_ext.cli`) and the `!py` scripts (`scripts/`) both
dispatch through `COMMANDS`, so a command behaves the same everywhere.

Why the one-line summaries are repeated here (`SUMMARIES`, equal to each module's `HELP`, checked
by tests/cli): a command module imports its kernel decoders, layouts and renderers, and inside
WinDbg every `!py` command starts a fresh interpreter. The top-level parser and `pykd-ext --help`
list every command from this registry alone; only the command being run is imported.
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
    # H13 (issue 13): batch triage into a DuckDB database
    "batch": "pykd_ext.commands.batch",
    # H16 (issue 16): PDBs from symbol servers
    "symbols": "pykd_ext.commands.symbols",
    # H4 (issue 12): loaded kernel modules, like WinDbg's lm
    "lm": "pykd_ext.commands.lm", "drivers": "pykd_ext.commands.lm",
    "watch": "pykd_ext.commands.watch",  # H7 (issue 14): re-run a command, show what changed
    "diagram": "pykd_ext.commands.diagram",  # H7 (issue 14): one process's structures as a graph
    "lab": "pykd_ext.commands.lab",  # H6 (issue 14): lab vm (QEMU paused on a forged scenario)
    "u": "pykd_ext.commands.u",  # H8 (issue 15): disassemble, like WinDbg's u
    "completion": "pykd_ext.commands.completion",  # issue 12: bash/zsh/fish completion scripts
    "ready": "pykd_ext.commands.ready", "running": "pykd_ext.commands.running",  # H10 (issue 17)
    "vad": "pykd_ext.commands.vad",  # H10 (issue 17)
}

#: command name -> its module's `HELP` (the line `pykd-ext --help` shows without importing it)
SUMMARIES: Dict[str, str] = {
    "info": "describe a dump or memory image: format, build, bugcheck, DTB, KDBG, physical memory",
    "dt": "show a kernel structure's layout (and values at an address), WinDbg dt style",
    "structs": "kernel structure layouts: list builds, diff two builds, a field's history, import an ISF",
    "ps": "list processes on the active process list (like !process 0 0)",
    "pstree": "the active process list as a parent/child tree",
    "eproc": "one process in detail (like !process <p> 1, plus kind/protection/job/token)",
    "threads": "threads of processes (like !process <p> 2); all processes when none is named",
    "ethread": "one thread in detail (like !thread)",
    "psxview": "cross-view of processes: active list, CID table, thread owners, processors, sessions",
    "layouts": "show the kernel layouts in use; `export FILE` writes the debugger's (typeInfo) layouts as ISF",
    "windbg-setup": "print (and with --write create) what makes `!py eproc` resolve inside WinDbg",
    "token": "an access token: user, groups, privileges, integrity (like !token)",
    "handles": "handle tables of processes, the kernel or PspCidTable (like !handle 0 3)",
    "job": "a job object: counters, limits, members, nesting, silos (like !job)",
    "peb": "process environment block: image, loader lists, parameters, environment (like !peb)",
    "teb": "thread environment block: stack, ClientId, PEB, last error, TLS, fibers (like !teb)",
    "modules": "loaded modules from the PEB loader lists (InLoad/InMemory/InInit order), 64- and 32-bit",
    "batch": "analyse many dumps into one DuckDB database: crash records, blamed drivers, buckets, HTML report",
    "symbols": "fetch PDBs from symbol servers into a WinDbg-shaped cache (by GUID/age or for a dump)",
    "lm": "loaded kernel modules (PsLoadedModuleList or the triage driver list) and unloaded drivers (like lm)",
    "drivers": "loaded kernel modules (PsLoadedModuleList or the triage driver list) and unloaded drivers (like lm)",
    "watch": "re-run a command and show what changed: processes/threads that appeared or exited, fields that moved",
    "diagram": "one process's structures and how they link (EPROCESS, threads, TEB, PEB, modules, token, handles, job) as Graphviz",
    "lab": "teaching labs: `lab vm [SCENARIO]` starts QEMU paused on a forged scenario (`--stop` ends it)",
    "u": "disassemble code in the dump, like WinDbg's u (u ADDRESS [L COUNT])",
    "completion": "print a shell completion script (bash, zsh, fish): commands, options, file and choice values",
    "ready": "ready threads per processor by priority, and the shared ready queues (like !ready)",
    "running": "current, next (standby) and idle thread of each processor (like !running -i -t)",
    "vad": "a process's virtual address descriptors: ranges, commit, protection, mapped files (like !vad)",
}


#: the global options about a target: a command that reads none sets `UNUSED_GLOBALS =
#: TARGET_OPTIONS`, and its --help leaves them out (issue 12: help lists only options that apply;
#: they are still accepted, so `pykd-ext --target X structs list` works)
TARGET_OPTIONS = ("--target", "--symbols", "--engine", "--fetch-symbols", "--symbol-path", "--pause",
                  "--layout", "--max-entries", "--max-pages", "--max-bytes")


def summary(name: str) -> str:
    """A command's one-line help; a command registered without a summary is imported for it."""
    text = SUMMARIES.get(name)
    if text is None:
        import importlib
        text = str(getattr(importlib.import_module(COMMANDS[name]), "HELP", ""))
    return text
