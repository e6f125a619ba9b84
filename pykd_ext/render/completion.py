"""Shell completion scripts (bash, zsh, fish) written from the command registry and the parsers.

Why generated, not hand-written: every command's options live in its own `add_arguments`; a
script written once would rot as commands are added. `pykd-ext completion SHELL` builds each
command's parser (the only time every command module is imported) and writes what the shell
needs: command names (with their one-line summaries for fish), each command's options, the
options that take a file (completed as paths) and the choices of options that have them.

zsh runs the bash function through zsh's own `bashcompinit` (the documented bridge), so both
shells complete from one definition. Every word written is checked against a plain pattern
(`WORD`): nothing from outside the registry can shape the scripts.
"""
import argparse
import re
from typing import Dict, List, NamedTuple, Sequence

#: what may appear as a word in a completion script
WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=+-]*$|^--?[A-Za-z0-9][A-Za-z0-9_-]*$")
#: options whose value is a path (completed by the shell's file completion)
FILE_OPTIONS = ("--target", "-t", "--symbols", "--isf", "--report", "--out", "--svg", "--dot", "--png",
                "--write", "--db", "--ram")
SHELLS = ("bash", "zsh", "fish")


class CommandSpec(NamedTuple):
    name: str
    summary: str
    options: List[str]                 # every option string
    takes_value: List[str]             # options followed by a value
    choices: Dict[str, List[str]]      # option -> its choices
    actions: List[str]                 # positional choices (sub-actions: `structs list`)


def _word(text: str) -> str:
    if not WORD.match(text):
        raise ValueError("not a completion word: %r" % text)
    return text


def spec_of(name: str, summary: str, parser: argparse.ArgumentParser) -> CommandSpec:
    """What completion needs of one parser (argparse's actions: it has no public list)."""
    options: List[str] = []
    takes: List[str] = []
    choices: Dict[str, List[str]] = {}
    actions: List[str] = []
    for action in parser._actions:                       # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):   # noqa: SLF001
            actions.extend(_word(a) for a in action.choices)
            continue
        if not action.option_strings:
            if action.choices:
                actions.extend(_word(str(c)) for c in action.choices)
            continue
        for option in action.option_strings:
            options.append(_word(option))
            if action.nargs != 0:
                takes.append(option)
                if action.choices:
                    choices[option] = [_word(str(c)) for c in action.choices]
    return CommandSpec(_word(name), " ".join(summary.split()), options, takes, choices, actions)


def bash_script(prog: str, globals_spec: CommandSpec, commands: Sequence[CommandSpec]) -> str:
    func = "_" + re.sub(r"[^A-Za-z0-9_]", "_", prog)
    value_options = sorted(set(globals_spec.takes_value).union(*(c.takes_value for c in commands)))
    file_options = sorted(o for o in value_options if o in FILE_OPTIONS)
    lines = [
        "# %s completion for bash (and zsh through bashcompinit); made by `%s completion bash`" % (prog, prog),
        "%s() {" % func,
        "    # zsh (bashcompinit): split $words like bash does; bash never runs setopt",
        "    [[ -n ${ZSH_VERSION-} ]] && setopt localoptions shwordsplit",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i skip="" w words=""',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for (( i=1; i<COMP_CWORD; i++ )); do",
        '        if [[ -n $skip ]]; then skip=""; continue; fi',
        '        case "${COMP_WORDS[i]}" in',
        "            %s) skip=1 ;;" % "|".join(value_options),
        "            -*) ;;",
        '            *) cmd="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$prev" in',
        '        %s) COMPREPLY=( $(compgen -f -- "$cur") ); return 0 ;;' % "|".join(file_options),
    ]
    seen = set(file_options)
    for spec in [globals_spec] + list(commands):
        for option, values in sorted(spec.choices.items()):
            if option not in seen:
                seen.add(option)
                lines.append('        %s) words="%s" ;;' % (option, " ".join(values)))
    lines += ["    esac",
              '    [[ -z $words ]] && case "$cmd" in',
              '        "") words="%s %s" ;;' % (" ".join(c.name for c in commands), " ".join(globals_spec.options))]
    for spec in commands:
        words = spec.actions + [o for o in spec.options if o not in ("-h",)]
        lines.append('        %s) words="%s" ;;' % (spec.name, " ".join(words)))
    lines += ["    esac",
              "    COMPREPLY=()     # filtered here: zsh's compgen emulation does not filter -W",
              '    for w in $words; do [[ $w == "$cur"* ]] && COMPREPLY+=("$w"); done',
              "    return 0",
              "}",
              "complete -o default -F %s %s" % (func, prog), ""]
    return "\n".join(lines)


def zsh_script(prog: str, globals_spec: CommandSpec, commands: Sequence[CommandSpec]) -> str:
    return "\n".join([
        "# %s completion for zsh; made by `%s completion zsh`" % (prog, prog),
        "autoload -U +X compinit && compinit -u",
        "autoload -U +X bashcompinit && bashcompinit",
        bash_script(prog, globals_spec, commands)])


def _fish_quote(text: str) -> str:
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")


def fish_script(prog: str, globals_spec: CommandSpec, commands: Sequence[CommandSpec]) -> str:
    names = " ".join(c.name for c in commands)
    lines = ["# %s completion for fish; made by `%s completion fish`" % (prog, prog),
             "complete -c %s -f" % prog]
    for spec in commands:
        lines.append("complete -c %s -n '__fish_use_subcommand' -a %s -d %s"
                     % (prog, spec.name, _fish_quote(spec.summary[:80])))
    for spec in [globals_spec] + list(commands):
        condition = ("'not __fish_seen_subcommand_from %s'" % names if spec is globals_spec
                     else "'__fish_seen_subcommand_from %s'" % spec.name)
        if spec.actions:
            lines.append("complete -c %s -n %s -a %s" % (prog, condition, _fish_quote(" ".join(spec.actions))))
        for option in spec.options:
            if option in ("-h", "--help"):
                continue
            flag = "-l %s" % option[2:] if option.startswith("--") else "-s %s" % option[1:]
            extra = ""
            if option in spec.choices:
                extra = " -x -a %s" % _fish_quote(" ".join(spec.choices[option]))
            elif option in FILE_OPTIONS:
                extra = " -r -F"
            elif option in spec.takes_value:
                extra = " -x"
            lines.append("complete -c %s -n %s %s%s" % (prog, condition, flag, extra))
    return "\n".join(lines) + "\n"


WRITERS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
