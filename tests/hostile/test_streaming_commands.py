"""Streamed output (issue 10 "Scale", issue 12 item 9): each big command writes its first record
before it decodes its last, in every format, and `threads` keeps memory flat in the number of
threads.

How it is observed (no timing): the decoding function of each command is wrapped with a counter
(thread records, process records, handle entries, PEB decodings), and the output stream notes
the count each time a record line is written. On a forged machine with 40 processes of 25
threads each, the number of `Thread` objects alive while lines are written is counted through
weak references: it must stay near one process's threads, not grow to all 1,000.
"""
import gc
import io
import re
import weakref
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import pytest

from pykd_ext.cli import run_command

SAMPLE = str(Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp")

#: command, (module, attribute) of what decodes one record, text line that carries a record
CASES = [
    (["threads"], ("pykd_ext.kernel.thread", "Thread.record"), r"^\s+THREAD "),
    (["ps"], ("pykd_ext.kernel.process", "Process.record"), r"^PROCESS "),
    (["pstree"], ("pykd_ext.kernel.process", "Process.record"), r"0x[0-9a-f]{16}:"),
    (["psxview"], ("pykd_ext.kernel.process", "Process.record"), r"^0x[0-9a-f]{16} "),
    (["handles", "--all"], ("pykd_ext.kernel.handles", "HandleDecoder.record"), r": Object: "),
    (["peb", "--all"], ("pykd_ext.commands.peb", "decode_user_process"), r"^PEB at "),
    (["modules"], ("pykd_ext.commands.modules", "decode_user_process"), r"^\s+64 +[0-9a-f]+ "),
]
RECORD_LINE = {"json": r"^    \{", "jsonl": r"^\{", "csv": None}


class Counting:
    """A counter around the function that decodes one record."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return func(*args, **kwargs)
        return counted


class Recorder:
    """An output stream noting, for each line, how many records were decoded when it came."""

    def __init__(self, counter: Counting, probe: Optional[Callable[[], int]] = None) -> None:
        self.counter = counter
        self.probe = probe
        self.lines: List[Tuple[int, str]] = []
        self.alive: List[int] = []
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self.lines.append((self.counter.calls, line))
            if self.probe is not None:
                self.alive.append(self.probe())
        return len(text)

    def flush(self) -> None:
        pass


def _patch(monkeypatch: pytest.MonkeyPatch, where: Tuple[str, str], counter: Counting) -> None:
    import importlib
    module = importlib.import_module(where[0])
    owner: Any = module
    *path, name = where[1].split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, name, counter.wrap(getattr(owner, name)))


@pytest.mark.parametrize("fmt", ["text", "json", "jsonl", "csv"])
@pytest.mark.parametrize("argv,decoder,text_line", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_first_record_is_written_before_the_last_is_decoded(argv: List[str], decoder: Tuple[str, str],
                                                          text_line: str, fmt: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counting()
    _patch(monkeypatch, decoder, counter)
    out = Recorder(counter)
    assert run_command(argv + ["--target", SAMPLE, "--format", fmt, "-q"], out=out) == 0
    pattern = text_line if fmt == "text" else RECORD_LINE[fmt]
    if pattern is None:                                   # csv: every line after the header
        written = out.lines[1:]
    else:
        written = [(n, line) for n, line in out.lines if re.search(pattern, line)]
    total = counter.calls
    assert total > 3 and written, (total, out.lines[:5])
    first_written_after = written[0][0]
    assert first_written_after < total, "%s: every record was decoded before the first was written" % argv
    if argv[0] in ("threads", "ps", "handles"):           # one record line per decoding
        assert first_written_after <= 2 and len(written) == total


@pytest.fixture(scope="module")
def many_threads(tmp_path_factory: pytest.TempPathFactory, isf_dir: Any) -> str:
    """System plus 40 processes of 25 threads each (the forge's bulk scenario)."""
    del isf_dir
    from pykd_ext.forge.kernel_objects import write_scenario_dump
    from pykd_ext.forge.scenario import bulk_scenario
    path = str(tmp_path_factory.mktemp("many-threads") / "threads-40x25.dmp")
    write_scenario_dump(path, bulk_scenario(40, 25), "win10")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_threads_memory_is_flat_in_the_number_of_threads(many_threads: str, fmt: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pykd_ext.kernel import thread as thread_module
    alive: "weakref.WeakSet[Any]" = weakref.WeakSet()
    original_init = thread_module.Thread.__init__

    def tracked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        alive.add(self)

    monkeypatch.setattr(thread_module.Thread, "__init__", tracked_init)
    counter = Counting()
    _patch(monkeypatch, ("pykd_ext.kernel.thread", "Thread.record"), counter)
    gc.collect()
    out = Recorder(counter, probe=lambda: len(alive))
    assert run_command(["threads", "--target", many_threads, "--format", fmt, "-q"], out=out) == 0
    assert counter.calls == 1001                          # 40 x 25 workers' threads + System's one
    # one process's 25 threads (and the next one's, while its listing replaces the last), plus
    # the few the processors' current threads bring - never the 1,001 of the whole machine
    assert max(out.alive) <= 60, max(out.alive)
