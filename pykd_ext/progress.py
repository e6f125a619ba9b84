"""Progress for long work, on stderr; silent when stderr is not a TTY or with --quiet.

Why a delay: most commands finish in well under a second, and a progress line that flashes and
vanishes is noise. A line appears only once the work has run for `delay` seconds, is redrawn at
most five times a second, and is wiped (`clear`) before anything else is printed to the terminal.
"""
import sys
import time
from typing import Any, Optional

#: seconds between redraws
REDRAW_INTERVAL = 0.2


class Progress:
    """`with Progress("walking processes", total=n) as p: p.step()`; cheap when disabled."""

    enabled_default: Optional[bool] = None   # None: on when the stream is a TTY
    #: seconds of work before the first line is drawn
    delay_default = 1.0

    def __init__(self, label: str, total: Optional[int] = None, enabled: Optional[bool] = None,
                 stream: Any = None, delay: Optional[float] = None, unit: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = Progress.enabled_default
        if enabled is None:
            enabled = _isatty(self.stream)
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = bool(enabled)
        self.done = 0
        self._drawn = 0                    # length of the line on screen (0: nothing shown)
        self._next = time.monotonic() + (Progress.delay_default if delay is None else delay)

    @property
    def shown(self) -> bool:
        return self._drawn > 0

    def step(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REDRAW_INTERVAL
        text = "%s: %d" % (self.label, self.done)
        if self.total:
            text += "/%d" % self.total
        if self.unit:
            text += " " + self.unit
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def clear(self) -> None:
        """Wipe the line (before other output reaches the terminal); a later step redraws it."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def close(self) -> None:
        """Wipe the line and draw no more."""
        self.clear()
        self.enabled = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):      # no isatty, or a closed stream
        return False
