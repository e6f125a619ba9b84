"""`pykd-ext completion bash|zsh|fish`: print a shell completion script (render/completion.py).

Install it the usual way for each shell, e.g. `pykd-ext completion bash > ~/.local/share/bash-completion/completions/pykd-ext`,
`pykd-ext completion fish > ~/.config/fish/completions/pykd-ext.fish`, or for zsh a file named
`_pykd-ext` on $fpath (or `source <(pykd-ext completion zsh)` in ~/.zshrc).
"""
import argparse
from typing import Any, Iterable

from pykd_ext.commands import TARGET_OPTIONS
from pykd_ext.render.grid import Column, Result

HELP = "print a shell completion script (bash, zsh, fish): commands, options, file and choice values"
#: global options this command does not read (left out of its --help: pykd_ext/cli.py)
UNUSED_GLOBALS = TARGET_OPTIONS
EXAMPLES = [
    "completion bash > ~/.local/share/bash-completion/completions/pykd-ext",
    "completion fish > ~/.config/fish/completions/pykd-ext.fish",
    "source <(pykd-ext completion zsh)        # in ~/.zshrc",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pykd_ext.render.completion import SHELLS
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")


def run(session: Any, args: argparse.Namespace) -> Result:
    from pykd_ext import cli
    from pykd_ext.commands import COMMANDS, summary
    from pykd_ext.render.completion import WRITERS, spec_of
    common = cli._common_options()                          # noqa: SLF001 - the CLI's own global options
    globals_spec = spec_of("pykd-ext", "", common)
    specs = [spec_of(name, summary(name), cli.command_parser(name, common)) for name in COMMANDS]
    script = WRITERS[args.shell](cli.PROG, globals_spec, specs)

    def text(result: Result) -> Iterable[str]:
        yield from script.rstrip("\n").split("\n")     # one line each: the sink escapes controls

    return Result(command="completion", columns=[Column("shell"), Column("script")],
                  records=[{"shell": args.shell, "script": script}], text=text)
