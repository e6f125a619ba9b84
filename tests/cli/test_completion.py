"""`pykd-ext completion bash|zsh|fish` (issue 12): the shells themselves complete from the scripts.

Each script is loaded by the real shell (Debian's bash, zsh with its bashcompinit bridge, fish)
and asked what it completes; the expected words come from the command registry and the
command's own argparse parser.
"""
import io
import subprocess
from pathlib import Path
from typing import List

import pytest

from pykd_ext.cli import command_parser, run_command
from pykd_ext.commands import COMMANDS


def _script(shell: str, tmp_path: Path) -> Path:
    out = io.StringIO()
    assert run_command(["completion", shell], out=out) == 0
    path = tmp_path / ("pykd-ext." + shell)
    path.write_text(out.getvalue())
    return path


def _bash_like(shell: List[str], script: Path, words: List[str], prelude: str = "") -> List[str]:
    array = " ".join("'%s'" % w for w in words)
    code = ("source '%s'; %s COMP_WORDS=(%s); COMP_CWORD=%d; _pykd_ext; printf '%%s\\n' \"${COMPREPLY[@]}\""
            % (script, prelude, array, len(words) - 1))
    proc = subprocess.run(shell + ["-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sorted(w for w in proc.stdout.split("\n") if w)


def _options(name: str) -> List[str]:
    return [o for a in command_parser(name)._actions for o in a.option_strings]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_bash_and_zsh_complete_commands_options_and_choices(shell: str, tmp_path: Path) -> None:
    script = _script(shell, tmp_path)
    run = ["bash"] if shell == "bash" else ["zsh", "-f"]
    prelude = "" if shell == "bash" else "setopt ksharrays;"      # what zsh's _bash_complete sets
    if shell == "zsh":
        proc = subprocess.run(["zsh", "-f", "-c", "source '%s'; print -r -- ${_comps[pykd-ext]}" % script],
                              capture_output=True, text=True, timeout=60)
        assert "-F _pykd_ext" in proc.stdout, proc.stderr        # registered with zsh's completion
    assert _bash_like(run, script, ["pykd-ext", "--target", "x.dmp", "e"], prelude) == \
        sorted(c for c in COMMANDS if c.startswith("e"))
    assert _bash_like(run, script, ["pykd-ext", "handles", "--"], prelude) == \
        sorted(o for o in _options("handles") if o.startswith("--"))
    assert _bash_like(run, script, ["pykd-ext", "ps", "--format", "j"], prelude) == ["json", "jsonl"]
    actions = [w for w in _bash_like(run, script, ["pykd-ext", "structs", ""], prelude) if not w.startswith("-")]
    assert actions == sorted(["diff", "export", "history", "import", "list"])


def test_fish_completes_commands_with_summaries_and_options(tmp_path: Path) -> None:
    script = _script("fish", tmp_path)

    def complete(line: str) -> List[str]:
        proc = subprocess.run(["fish", "--no-config", "-c", "source '%s'; complete -C '%s'" % (script, line)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [w for w in proc.stdout.split("\n") if w]

    got = complete("pykd-ext p")
    assert sorted(w.split("\t")[0] for w in got) == sorted(c for c in COMMANDS if c.startswith("p"))
    assert all("\t" in w for w in got)                          # each with its one-line summary
    assert "--no-unloaded" in [w.split("\t")[0] for w in complete("pykd-ext lm --no")]
    assert sorted(complete("pykd-ext ps --format js")) == ["json", "jsonl"]
