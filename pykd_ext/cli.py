"""The `pykd-ext` command line: parse, run one command, render its Result, map the outcome to an exit code.

Exit codes, one rule for every command (README "Exit codes", docs/cli.md), decided here only:
0 = at least one record printed; 1 = nothing matched (no record, or what the user named is not in
the target: `NotFoundError`); 2 = bad input (usage, unreadable target, unknown build: one line
`pykd-ext: <path>: <what is wrong>`); 130 = interrupted; 3 = a bug (`main` prints the traceback
so it gets reported).
"""
from pykd_ext.startup import defer_unused_imports

defer_unused_imports()      # first: the imports below bring in dataclasses (pykd_ext/startup.py)

import argparse  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence, Tuple  # noqa: E402

from pykd_ext.commands import COMMANDS, summary  # noqa: E402
from pykd_ext.errors import PykdExtError  # noqa: E402
from pykd_ext.render.renderers import FORMATS  # noqa: E402

PROG = "pykd-ext"
#: exit codes, the same for every command (see the module docstring)
EXIT_FOUND, EXIT_NOTHING_MATCHED, EXIT_BAD_INPUT, EXIT_BUG = 0, 1, 2, 3


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, sized without `shutil`.

    Why: argparse builds a formatter for every `add_argument` and sizes it with
    `shutil.get_terminal_size()`; importing `shutil` (and with it bz2/lzma) is a few ms of every
    command's start-up, paid again by each `!py` command. Same rule: $COLUMNS, else the terminal.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, formatter_class=_HelpFormatter)
    common.add_argument("--target", "-t", metavar="PATH",
                        help="dump or raw memory image to read; a running VM as qemu:QMP_SOCKET[?ram=PATH] "
                             "or live:RAW_FILE (docs/live-vm.md)")
    common.add_argument("--pause", action="store_true",
                        help="qemu: targets: hold the guest stopped while the command runs (QMP stop/cont)")
    common.add_argument("--format", "-f", choices=FORMATS, default="text",
                        help="output format (default: text, WinDbg-shaped)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    # issue 12: colour for names, PIDs, addresses and markers on a terminal (render/colour.py)
    common.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"), default="auto",
                        help="colour text output: auto (a terminal, unless NO_COLOR is set), always, never")
    # issue 12: WinDbg reads bare numbers as hex (`ethread 60` is 0x60); `0n60` is decimal
    common.add_argument("--radix", type=int, choices=(8, 10, 16), default=None, metavar="{16,10,8}",
                        help="radix of bare numbers in arguments (default 16, like WinDbg; "
                             "0x/0n/0y prefixes always work)")
    common.add_argument("--symbols", metavar="ISF",
                        help="use this ISF symbol table (.json/.json.xz) instead of the shipped layouts")
    # H9 (issue 15): a partial layout proven by the dump itself (also used when no layout fits)
    common.add_argument("--layout", dest="layout_mode", choices=("auto", "inferred"), default="auto",
                        help="auto (default: the shipped layout of the target's build, inferred when none "
                             "fits) or inferred (offsets proven by the dump itself: KDBG, known objects, "
                             "kernel getters, kphdyn)")
    # issue 16: a kernel without layouts gets its PDB the way WinDbg does (pykd_ext/symbols/auto.py)
    common.add_argument("--fetch-symbols", dest="fetch_symbols", action="store_true",
                        help="when the target's kernel has no layout, fetch its PDB from the symbol "
                             "path, import it and go on (also on when --symbol-path or _NT_SYMBOL_PATH is set)")
    common.add_argument("--symbol-path", dest="symbol_path", default=None, metavar="PATH",
                        help="symbol path in WinDbg syntax (srv*CACHE*URL;DIR); default: _NT_SYMBOL_PATH, "
                             "else srv*<cache>*https://msdl.microsoft.com/download/symbols")
    # H11 (issue 6): `--engine pykd` lets DbgEng read the dump through pykd (Windows batch use)
    common.add_argument("--engine", choices=("file", "pykd"), default="file",
                        help="who reads the target: our readers (file, default) or DbgEng via pykd")
    # issue 10: one work budget for all walks of a command (a hostile dump cannot eat the machine);
    # when it runs out the command prints what it decoded and a note names the option to raise
    from pykd_ext.kernel import budget
    for option, default, what in (
            ("--max-entries", budget.DEFAULT_MAX_ENTRIES, "list/table entries visited"),
            ("--max-pages", budget.DEFAULT_MAX_PAGES, "handle-table pages read"),
            ("--max-bytes", budget.DEFAULT_MAX_BYTES, "bytes of strings and environment blocks read")):
        common.add_argument(option, type=_positive_int, metavar="N", default=None,
                            help="work budget: at most N %s (default %s)" % (what, format(default, ",")))
    return common


def _positive_int(text: str) -> int:
    """argparse type of the budget options: a positive integer (0x prefix allowed)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive: %r" % text)
    return value


def _version() -> str:
    from pykd_ext.version import __version__
    return "%s %s" % (PROG, __version__)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: global options, `--version`, and the commands listed from the registry.

    No command module is imported for it (their summaries come from `commands.SUMMARIES`); it
    parses only command lines without a known command (`--help`, `--version`, usage errors).
    A command line naming a command is parsed by `command_parser` (see `parse_args`).
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="Windows processes and threads as they look in kernel memory.",
        parents=[_common_options()], formatter_class=_HelpFormatter,
        epilog="The options above may come before or after COMMAND (`%s --target X ps` or "
               "`%s ps --target X`). `%s COMMAND --help` shows a command's own options."
               % (PROG, PROG, PROG))
    parser.add_argument("--version", "-V", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        sub.add_parser(name, help=summary(name), add_help=False)
    return parser


class _CommandHelpFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """A command's help: its examples epilog keeps its lines (one command line each)."""


def examples_epilog(module: Any) -> Optional[str]:
    """`examples:` and the module's EXAMPLES (command lines), shown at the end of `--help`."""
    examples = list(getattr(module, "EXAMPLES", None) or [])
    if not examples:
        return None
    return "examples:\n" + "\n".join("  " + (line if PROG + " " in line else "%s %s" % (PROG, line))
                                       for line in examples)


def command_parser(name: str, common: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    """The parser of one command: the global options plus the command's own (imports its module)."""
    module_name = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="%s %s" % (PROG, name), description=getattr(module, "HELP", None),
                                     parents=[common if common is not None else _common_options()],
                                     formatter_class=_CommandHelpFormatter, epilog=examples_epilog(module))
    module.add_arguments(parser)
    _hide_unused_globals(parser, getattr(module, "UNUSED_GLOBALS", ()))
    parser.set_defaults(command=name, _module=module_name)
    return parser


def _hide_unused_globals(parser: argparse.ArgumentParser, unused: Sequence[str]) -> None:
    """Leave the global options a command does not use out of its --help (and usage line)."""
    parsers = [parser]
    for action in parser._actions:                          # noqa: SLF001 - argparse has no public list
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - `structs list`, ...
            parsers.extend(action.choices.values())
    for each in parsers:
        for action in each._actions:                        # noqa: SLF001
            if any(option in unused for option in action.option_strings):
                action.help = argparse.SUPPRESS


def split_command_line(argv: Sequence[str], common: argparse.ArgumentParser
                       ) -> Tuple[List[str], Optional[str], List[str]]:
    """(options before the command, the command name or None, everything after it).

    The command is the first token that is neither a global option nor the value one takes, so
    `--target X ps` finds `ps` (Volatility's order) and `ps --target X` works as before.
    """
    takes_value: Dict[str, bool] = {}
    for action in common._actions:                           # noqa: SLF001 - argparse has no public list
        for option in action.option_strings:
            takes_value[option] = action.nargs != 0
    longs = [o for o in takes_value if o.startswith("--")]
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            name = argv[index + 1] if index + 1 < len(argv) else None
            return list(argv[:index]), name, list(argv[index + 2:])
        if not token.startswith("-") or token == "-":
            return list(argv[:index]), token, list(argv[index + 1:])
        if token.startswith("--"):
            option = token.split("=", 1)[0]
            if "=" not in token:
                matches = [o for o in longs if o == option] or [o for o in longs if o.startswith(option)]
                if len(matches) == 1 and takes_value[matches[0]]:
                    index += 1                                # its value
        else:                                                 # -q, -tX, -t X, -qt X
            for position in range(1, len(token)):
                flag = "-" + token[position]
                if takes_value.get(flag):
                    if position == len(token) - 1:
                        index += 1                            # the value is the next token
                    break
        index += 1
    return list(argv), None, []


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse one command line, importing only the module of the command it names.

    Exits through argparse (status 0 for --help/--version, 2 for a usage error) like
    `ArgumentParser.parse_args`. The namespace carries `command` and `_module`.
    """
    common = _common_options()
    before, name, after = split_command_line(argv, common)
    if name is None or name not in COMMANDS or any(t in ("-h", "--help", "--version", "-V") for t in before):
        parser = build_parser()
        parser.parse_args(list(argv))                         # prints help/version/error and exits
        parser.error("a command is required")                 # not reached: argparse exits above
    parser = command_parser(name, common)
    if parser.get_default("_intermixed"):      # `dt TYPE -b B FIELD`: positionals after options
        return parser.parse_intermixed_args(before + after)
    return parser.parse_args(before + after)


def run_command(argv: List[str], out=None) -> int:
    """Run one command line; return the exit code. Used by main(), the scripts and tests."""
    out = out if out is not None else sys.stdout
    args = parse_args(argv)
    if getattr(args, "pause", False) and args.target:     # issue 14: same as `qemu:SOCK?pause`
        from pykd_ext.live.locator import with_pause
        args.target = with_pause(args.target)
    from pykd_ext.render.output import write_error, write_result
    from pykd_ext.session import Session
    if getattr(args, "engine", "file") == "pykd":    # H11: pykd.loadDump()/closeDump() session
        from pykd_ext.windbg.session import PykdSession
        session: Session = PykdSession(dump_path=args.target, symbols=args.symbols,
                                       build=getattr(args, "build", None), quiet=args.quiet)
    else:
        session = Session(target_path=args.target, symbols=args.symbols,
                          build=getattr(args, "build", None), quiet=args.quiet)
    # read by kernel.budget.budget_for and by Session (--fetch-symbols, --symbol-path)
    for name in ("max_entries", "max_pages", "max_bytes", "fetch_symbols", "symbol_path", "layout_mode"):
        setattr(session, name, getattr(args, name, None))
    from pykd_ext.errors import NotFoundError
    from pykd_ext.kernel.numbers import using_radix
    try:
        module = importlib.import_module(args._module)
        with using_radix(getattr(args, "radix", None) or 16):
            result = module.run(session, args)
            # streamed: each line is written as its record is decoded; notes after the records
            write_result(result, args.format, out, sys.stderr, quiet=args.quiet,
                         color=getattr(args, "color", "auto"))
    except NotFoundError as err:           # what the user named is not there: nothing matched
        if err.path is None and args.target:
            err.path = args.target
        write_error(PROG, err.one_line())
        return EXIT_NOTHING_MATCHED
    except PykdExtError as err:
        if err.path is None and args.target:
            err.path = args.target
        write_error(PROG, err.one_line())
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        write_error(PROG, "interrupted")
        return 130
    except BrokenPipeError:
        return 0
    finally:
        session.close()
    return EXIT_FOUND if result.record_count else EXIT_NOTHING_MATCHED


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return run_command(list(sys.argv[1:] if argv is None else argv))
    except Exception:                      # a bug: its traceback (so it gets reported), exit 3
        import traceback
        traceback.print_exc()
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
