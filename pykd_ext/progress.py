"""Progress for long work, on stderr; silent when stderr is not a TTY or with --quiet."""
import sys
import time
from typing import Optional


class Progress:
    """`with Progress("walking processes", total=n) as p: p.step()`; cheap when disabled."""

    enabled_default: Optional[bool] = None   # set by the CLI (--quiet → False)

    def __init__(self, label: str, total: Optional[int] = None, enabled: Optional[bool] = None) -> None:
        if enabled is None:
            enabled = Progress.enabled_default
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = 0
        self._last = 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        if self.total:
            sys.stderr.write("\r%s: %d/%d" % (self.label, self.done, self.total))
        else:
            sys.stderr.write("\r%s: %d" % (self.label, self.done))
        sys.stderr.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r" + " " * (len(self.label) + 24) + "\r")
            sys.stderr.flush()
