"""The `pykd-ext` command line: parse, run one command, render its Result, map errors to exit 2.

Errors a user can cause print one line `pykd-ext: <path>: <what is wrong>` and exit with 2; a
bug still shows its traceback (so it gets reported), exit 1.
"""
import argparse
import importlib
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from pykd_ext.commands import COMMANDS, summary
from pykd_ext.errors import PykdExtError
from pykd_ext.render.renderers import FORMATS, render

PROG = "pykd-ext"


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
                        help="dump or raw memory image to read")
    common.add_argument("--format", "-f", choices=FORMATS, default="text",
                        help="output format (default: text, WinDbg-shaped)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    common.add_argument("--symbols", metavar="ISF",
                        help="use this ISF symbol table (.json/.json.xz) instead of the shipped layouts")
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


def command_parser(name: str, common: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    """The parser of one command: the global options plus the command's own (imports its module)."""
    module_name = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="%s %s" % (PROG, name), description=getattr(module, "HELP", None),
                                     parents=[common if common is not None else _common_options()],
                                     formatter_class=_HelpFormatter)
    module.add_arguments(parser)
    parser.set_defaults(command=name, _module=module_name)
    return parser


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
    return command_parser(name, common).parse_args(before + after)


def run_command(argv: List[str], out=None) -> int:
    """Run one command line; return the exit code. Used by main(), the scripts and tests."""
    out = out if out is not None else sys.stdout
    args = parse_args(argv)
    from pykd_ext.render.output import write_error, write_result
    from pykd_ext.session import Session
    if getattr(args, "engine", "file") == "pykd":    # H11: pykd.loadDump()/closeDump() session
        from pykd_ext.windbg.session import PykdSession
        session: Session = PykdSession(dump_path=args.target, symbols=args.symbols,
                                       build=getattr(args, "build", None), quiet=args.quiet)
    else:
        session = Session(target_path=args.target, symbols=args.symbols,
                          build=getattr(args, "build", None), quiet=args.quiet)
    for name in ("max_entries", "max_pages", "max_bytes"):     # read by kernel.budget.budget_for
        setattr(session, name, getattr(args, name, None))
    try:
        module = importlib.import_module(args._module)
        result = module.run(session, args)
        # streamed: each line is written as its record is decoded; notes after the records
        write_result(result, args.format, out, sys.stderr, quiet=args.quiet)
    except PykdExtError as err:
        if err.path is None and args.target:
            err.path = args.target
        write_error(PROG, err.one_line())
        return 2
    except KeyboardInterrupt:
        write_error(PROG, "interrupted")
        return 130
    except BrokenPipeError:
        return 0
    finally:
        session.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_command(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
