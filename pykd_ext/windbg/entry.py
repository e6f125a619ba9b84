"""The shared `!py` entry: one command, run over the debugger, printed through `pykd.dprintln`.

How WinDbg runs us (pykd bootstrapper facts, `/work/shared/reference/pykd.md`): `!py eproc
lsass.exe` finds `eproc.py` by Win32 SearchPath, sets `sys.argv = [<script path>, "lsass.exe"]`,
runs it as `__main__` in a fresh interpreter with `sys.setrecursionlimit(500)`, and delivers
Ctrl+Break as `SystemExit("CTRL+BREAK")`. So this module:
- takes the command's arguments exactly as `sys.argv[1:]` (the bootstrapper already split them,
  quotes grouped, backslashes kept) and parses them with the command's own `add_arguments`;
- imports only the one command module (each invocation starts cold);
- never calls `pykd.initialize()` (the debugger is already attached) and never catches
  `SystemExit`/`BaseException` except argparse's own exit for `-h` or a usage error;
- fills WinDbg's defaults: no process given → the current process (`getCurrentProcess()`), no
  thread given → the implicit thread (`getImplicitThread()`);
- prints through `pykd.dprintln`, as DML with `!py` links when `pykd.isWindbgExt()`.
`!py -m pykd_ext eproc lsass.exe` comes here too (`pykd_ext.__main__` → `main`).
"""
import argparse
import importlib
import sys
from typing import Any, Iterable, List, Optional, Sequence

from pykd_ext.startup import defer_unused_imports

#: commands whose object argument defaults to the debugger's current process
PROCESS_DEFAULT = ("eproc", "threads", "token", "handles", "job", "peb", "modules")
#: commands whose object argument defaults to the debugger's implicit thread
THREAD_DEFAULT = ("ethread", "teb")
#: lines per `dprintln` call (output appears progressively, without one call per line)
LINES_PER_CALL = 64

PROG = "pykd-ext"


def _parser(command: str, command_module: Any, prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=getattr(command_module, "HELP", ""),
                                     conflict_handler="resolve")
    from pykd_ext.render.renderers import FORMATS
    parser.add_argument("--format", "-f", choices=FORMATS, default="text",
                        help="output format (default: text, WinDbg-shaped)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.add_argument("--symbols", metavar="ISF",
                        help="use this ISF symbol table instead of the debugger's PDB")
    command_module.add_arguments(parser)
    return parser


def _has_positional(parser: argparse.ArgumentParser, argv: Sequence[str]) -> bool:
    """Whether argv holds a positional token (skipping options and the values they take)."""
    takes_value = {opt for action in parser._actions for opt in action.option_strings  # noqa: SLF001
                   if action.nargs != 0}
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":
            return True
        if token.startswith("-") and len(token) > 1 and not _is_number(token):
            if token in takes_value:
                skip = True
            continue
        return True
    return False


def _is_number(token: str) -> bool:
    try:
        int(token, 0)
        return True
    except ValueError:
        return False


def _with_default_object(command: str, argv: List[str], parser: argparse.ArgumentParser,
                         pykd: Any) -> List[str]:
    """WinDbg's defaults: the current process / implicit thread when none is named."""
    if command not in PROCESS_DEFAULT + THREAD_DEFAULT or _has_positional(parser, argv):
        return argv
    if not any(not a.option_strings for a in parser._actions):  # noqa: SLF001 - no positional at all
        return argv
    getter = "getCurrentProcess" if command in PROCESS_DEFAULT else "getImplicitThread"
    func = getattr(pykd, getter, None)
    if func is None:
        return argv
    engine_error: Any = getattr(pykd, "DbgException", None) or getattr(pykd, "BaseException", Exception)
    try:
        value = func()
    except engine_error:        # no current process/thread: the command reports what is missing
        return argv
    return argv + ["0x%x" % int(value)] if value else argv


def _emit(pykd: Any, lines: Iterable[str], dml: bool) -> None:
    """Print lines as they come, `LINES_PER_CALL` per `dprintln` (a streamed result shows its
    first lines while the rest is still being decoded)."""
    batch: List[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= LINES_PER_CALL:
            pykd.dprintln("\n".join(batch), dml)
            batch = []
    if batch:
        pykd.dprintln("\n".join(batch), dml)


def run(command: str, argv: Sequence[str], prog: Optional[str] = None, link_prefix: str = "!py ") -> int:
    """Run one command over the debugger; return the exit code (0 ok, 2 user error)."""
    from pykd_ext.commands import COMMANDS
    from pykd_ext.errors import PykdExtError
    from pykd_ext.targets.pykd_target import import_pykd
    try:
        pykd = import_pykd()
    except PykdExtError as err:
        sys.stderr.write("%s: %s\n" % (PROG, err.one_line()))
        return 2
    module_name = COMMANDS.get(command)
    if module_name is None:
        pykd.dprintln("%s: unknown command %r; commands: %s" % (PROG, command, " ".join(sorted(COMMANDS))))
        return 2
    module = importlib.import_module(module_name)
    parser = _parser(command, module, prog or "!py %s" % command)
    argv = list(argv)
    try:
        argv = _with_default_object(command, argv, parser, pykd)
        args = parser.parse_args(argv)
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:   # argparse: -h or a usage error
            return int(stop.code or 0)
        raise                                                 # Ctrl+Break: let it through
    except PykdExtError as err:
        sys.stderr.write("%s: %s\n" % (PROG, err.one_line()))
        return 2
    from pykd_ext.render.output import NOTES_ON_STDERR, write_error, write_notes
    from pykd_ext.render.renderers import render_lines
    from pykd_ext.windbg.session import PykdSession
    session = PykdSession(symbols=getattr(args, "symbols", None), build=getattr(args, "build", None))
    try:
        result = module.run(session, args)
        dml = args.format == "text" and bool(pykd.isWindbgExt())
        if dml:
            from pykd_ext.windbg.dml import decorate_result
            lines: Iterable[str] = decorate_result(result, link_prefix)
        else:
            lines = render_lines(result, args.format)      # escaped for the human formats
        _emit(pykd, lines, dml)
        if args.format in NOTES_ON_STDERR:
            write_notes(result.notes)
    except PykdExtError as err:
        write_error(PROG, err.one_line())
        return 2
    except KeyboardInterrupt:
        write_error(PROG, "interrupted")
        return 130
    finally:
        session.close()
    return 0


def _drop_script_folder() -> None:
    """Take the running script's folder off `sys.path` (the bootstrapper prepends it).

    `scripts/token.py` would otherwise shadow the standard library's `token` module for every
    later `import tokenize` (tracebacks, linecache) in this interpreter.
    """
    import os
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return
    folder = os.path.normcase(os.path.dirname(os.path.abspath(path)))
    sys.path[:] = [p for p in sys.path if os.path.normcase(os.path.abspath(p or os.curdir)) != folder]


def run_script(command: str, argv: Optional[Sequence[str]] = None) -> int:
    """What each `scripts/<command>.py` calls: `sys.argv[1:]` as the bootstrapper passed it."""
    defer_unused_imports()
    _drop_script_folder()
    return run(command, list(sys.argv[1:] if argv is None else argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`!py -m pykd_ext COMMAND ARGS...`: the first token names the command."""
    defer_unused_imports()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        from pykd_ext.commands import COMMANDS
        sys.stdout.write("usage: !py -m pykd_ext COMMAND [ARGS...]\ncommands: %s\n" % " ".join(sorted(COMMANDS)))
        return 0 if args else 2
    return run(args[0], args[1:], prog="!py -m pykd_ext %s" % args[0], link_prefix="!py -m pykd_ext ")
