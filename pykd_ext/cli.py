"""The `pykd-ext` command line: parse, run one command, render its Result, map errors to exit 2.

Errors a user can cause print one line `pykd-ext: <path>: <what is wrong>` and exit with 2; a
bug still shows its traceback (so it gets reported), exit 1.
"""
import argparse
import importlib
import sys
from typing import List, Optional

from pykd_ext.commands import COMMANDS
from pykd_ext.errors import PykdExtError
from pykd_ext.render.renderers import FORMATS, render

PROG = "pykd-ext"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
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
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Windows processes and threads as they look in kernel memory.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = _common_options()
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module_name)
    return parser


def run_command(argv: List[str], out=None) -> int:
    """Run one command line; return the exit code. Used by main(), the scripts and tests."""
    out = out if out is not None else sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    from pykd_ext.progress import Progress
    from pykd_ext.session import Session
    if args.quiet:
        Progress.enabled_default = False
    if getattr(args, "engine", "file") == "pykd":    # H11: pykd.loadDump()/closeDump() session
        from pykd_ext.windbg.session import PykdSession
        session: Session = PykdSession(dump_path=args.target, symbols=args.symbols,
                                       build=getattr(args, "build", None), quiet=args.quiet)
    else:
        session = Session(target_path=args.target, symbols=args.symbols,
                          build=getattr(args, "build", None), quiet=args.quiet)
    try:
        module = importlib.import_module(args._module)
        result = module.run(session, args)
        for line in render(result, args.format):
            out.write(line + "\n")
        if args.format in ("text", "table"):
            for note in result.notes:
                sys.stderr.write("note: %s\n" % note)
    except PykdExtError as err:
        if err.path is None and args.target:
            err.path = args.target
        sys.stderr.write("%s: %s\n" % (PROG, err.one_line()))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % PROG)
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
