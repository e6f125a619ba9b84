"""Help lists only options that apply (issue 12): commands that read no target leave out the
target options, which they still accept."""
import io

import pytest

from pykd_ext.cli import command_parser, run_command
from pykd_ext.commands import COMMANDS, TARGET_OPTIONS


@pytest.mark.parametrize("name,argv", [("structs", ["structs", "list", "--help"]),
                                       ("completion", ["completion", "--help"]),
                                       ("windbg-setup", ["windbg-setup", "--help"])])
def test_targetless_commands_do_not_list_target_options(name: str, argv: list, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        run_command(argv, out=io.StringIO())
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--format" in text
    for option in TARGET_OPTIONS:
        assert option not in text, (name, option)


def test_commands_that_read_a_target_list_them() -> None:
    text = command_parser("ps").format_help()
    assert "--target" in text and "--max-entries" in text
    assert set(TARGET_OPTIONS) <= {o for a in command_parser("ps")._actions for o in a.option_strings}
    assert "completion" in COMMANDS


def test_hidden_options_are_still_accepted() -> None:
    out = io.StringIO()
    assert run_command(["--target", "whatever.dmp", "structs", "list", "-f", "json"], out=out) == 0
    assert '"records"' in out.getvalue()
