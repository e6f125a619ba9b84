"""The CLI's sinks: a result's lines to stdout as they are produced, notes and errors to stderr.

One place for what reaches the user's terminal: output lines come from `render_lines` (escaped for
the human formats), every stderr line goes through `escape_text`, and a progress count runs on a
terminal stderr while a stream takes longer than a second (wiped before notes, and for good once
output itself reaches a terminal stdout, which then shows the progress by itself).
"""
import sys
from typing import Any, Iterable, Optional

from pykd_ext.progress import Progress
from pykd_ext.render.escape import escape_text
from pykd_ext.render.grid import Result
from pykd_ext.render.renderers import render_lines

#: formats whose notes go to stderr (JSON carries them in the document)
NOTES_ON_STDERR = ("text", "table")


def write_result(result: Result, fmt: str, out: Any, err: Any = None, quiet: bool = False) -> None:
    """Render `result` in `fmt` to `out` line by line; then its notes to `err` (text/table)."""
    err = err if err is not None else sys.stderr
    progress = Progress(result.command, stream=err, enabled=False if quiet else None, unit="records")
    if progress.enabled:
        result.on_record = progress.step
    out_is_terminal = _isatty(out)
    write = out.write
    try:
        for line in render_lines(result, fmt):
            if out_is_terminal and progress.enabled:
                progress.close()        # the output itself now shows that work goes on
            write(line + "\n")
    finally:
        progress.close()
        result.on_record = None
    if fmt in NOTES_ON_STDERR:
        write_notes(result.notes, err)


def write_notes(notes: Iterable[str], err: Any = None) -> None:
    err = err if err is not None else sys.stderr
    for note in notes:
        err.write("note: %s\n" % escape_text(note))


def write_error(prog: str, message: str, err: Any = None) -> None:
    """`prog: message` on stderr (the message may quote the dump: escaped)."""
    (err if err is not None else sys.stderr).write("%s: %s\n" % (prog, escape_text(message)))


def _isatty(stream: Optional[Any]) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False
