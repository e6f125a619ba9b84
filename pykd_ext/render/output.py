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


def write_result(result: Result, fmt: str, out: Any, err: Any = None, quiet: bool = False,
                 color: str = "auto") -> None:
    """Render `result` in `fmt` to `out` line by line; then its notes to `err` (text/table).
    Text and tables are coloured on a terminal (`render/colour.py`; `color` auto|always|never)."""
    err = err if err is not None else sys.stderr
    paint = None
    if fmt in NOTES_ON_STDERR and color != "never":
        from pykd_ext.render import colour
        if colour.wanted(out, color):
            paint = colour.colour_line
    progress = Progress(result.command, stream=err, enabled=False if quiet else None, unit="records")
    if progress.enabled:
        result.on_record = progress.step
    out_is_terminal = _isatty(out)
    write = out.write
    try:
        for line in render_lines(result, fmt):
            if out_is_terminal and progress.enabled:
                progress.close()        # the output itself now shows that work goes on
            write((paint(line) if paint is not None else line) + "\n")
    finally:
        progress.close()
        result.on_record = None
    if fmt in NOTES_ON_STDERR:
        write_notes(result.notes, err, color)


def write_notes(notes: Iterable[str], err: Any = None, color: str = "never") -> None:
    err = err if err is not None else sys.stderr
    paint = None
    if color != "never":
        from pykd_ext.render import colour
        if colour.wanted(err, color):
            paint = colour.colour_note
    for note in notes:
        label = paint("note:") if paint is not None else "note:"
        err.write("%s %s\n" % (label, escape_text(note)))


def write_error(prog: str, message: str, err: Any = None) -> None:
    """`prog: message` on stderr (the message may quote the dump: escaped)."""
    (err if err is not None else sys.stderr).write("%s: %s\n" % (prog, escape_text(message)))


def _isatty(stream: Optional[Any]) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False
