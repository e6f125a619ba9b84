"""`pykd-ext watch COMMAND [ARGS] --target T [--interval S] [--count N]`: re-run a command, show what changed.

Why: on a live VM (`--target qemu:...`, `live:PATH`) or a raw image another process rewrites, a
class wants to see processes and threads appear and exit and fields move (thread state, wait
reason, priority, handle counts) while the guest runs. `watch` runs the named command through its
own module, exactly as the CLI would, takes its `Result` records (never its text), and diffs each
run against the previous one with `live.changes` (records keyed by a stable identity: address+TID
for threads, address+PID for processes...).

Output: on a terminal with `--format text`, a full-screen table (rich's `Live`, the `[live]`
extra) with changed cells highlighted and the latest changes below it; otherwise one escaped line
per change (`[refresh] +|-|~ kind identity (name): field old -> new`), or with `--format jsonl`
one object per change: `{"change": added|removed|changed, "record": ..., "fields": {name: [old,
new]}, "identity": ..., "refresh": N}`. The first run is the baseline (no changes printed); a
status line per refresh goes to stderr unless `--quiet`. `--count N` stops after N runs; Ctrl-C
stops cleanly (exit 0). `--ignore kernel_time,user_time,context_switches` leaves out fields
that move all the time on a running guest.

Each run is a fresh command invocation with the same work budget options (`--max-entries`...).
A live target (`Target.live`) with a `refresh()` is kept open and refreshed between runs (caches
dropped); any other target is re-opened for every run, so a file rewritten under us is read anew.
"""
import argparse
import sys
import time
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from pykd_ext.commands import COMMANDS
from pykd_ext.errors import PykdExtError
from pykd_ext.live.changes import Change, Snapshot, diff
from pykd_ext.live.watch_view import change_line
from pykd_ext.render.grid import Column, Result, Row
from pykd_ext.session import Session

HELP = "re-run a command and show what changed: processes/threads that appeared or exited, fields that moved"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'watch --interval 2 ps -t live.raw',
    'watch --count 5 threads lsass.exe -t live.raw',
]

#: Commands `watch` re-runs: those that read one target's memory into records. An allow list:
#: a new command (`lab vm` starts a VM, `batch` walks folders) is not re-run in a loop by accident.
WATCHABLE = ("info", "ps", "pstree", "eproc", "threads", "ethread", "psxview", "token", "handles",
             "job", "peb", "teb", "modules", "lm", "drivers", "dt", "u")
DEFAULT_INTERVAL = 1.0

COLUMNS = [Column("refresh", "Refresh", "int"), Column("change", "Change"),
           Column("identity", "Identity"), Column("fields", "Fields")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=_seconds, default=None, metavar="S",
                        help="seconds between runs (default %.1f)" % DEFAULT_INTERVAL)
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="stop after N runs, the baseline included (default: until Ctrl-C)")
    parser.add_argument("--ignore", metavar="FIELD[,FIELD]", action="append", default=None,
                        help="record fields not compared (e.g. kernel_time,user_time,context_switches "
                             "on a running guest)")
    parser.add_argument("watched", metavar="COMMAND", help="the command to re-run (ps, threads, handles, ...)")
    parser.add_argument("watched_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="its arguments and options (the global options may stand here too)")
    # The options this parser knows (the global ones and ours) parse the ARGS too: kept here so
    # that `run` builds the watched command's parser from them (no import of the CLI above us).
    parser.set_defaults(_watch_options=[a for a in parser._actions          # noqa: SLF001
                                        if a.option_strings and a.dest != "help"])


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds: %r" % text) from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError("interval out of range (0..86400 s): %r" % text)
    return value


def watched_arguments(args: argparse.Namespace) -> Tuple[Any, argparse.Namespace]:
    """(the watched command's module, its parsed arguments). Options given before COMMAND are the
    defaults of the ones after it; usage errors exit 2 through argparse, as for any command."""
    import importlib
    name = args.watched
    if name not in COMMANDS or name not in WATCHABLE:
        watchable = sorted(n for n in COMMANDS if n in WATCHABLE)
        raise PykdExtError("watch: %r is not a command watch can re-run (one of: %s)"
                           % (name, ", ".join(watchable)))
    module = importlib.import_module(COMMANDS[name])
    inner = argparse.ArgumentParser(prog="pykd-ext watch %s" % name, description=getattr(module, "HELP", None))
    for action in getattr(args, "_watch_options", []):
        inner._add_action(action)                                            # noqa: SLF001
    module.add_arguments(inner)
    inner.set_defaults(**{a.dest: getattr(args, a.dest) for a in getattr(args, "_watch_options", [])
                          if hasattr(args, a.dest)})
    return module, inner.parse_args(list(args.watched_args or []))


class Runner:
    """Runs the watched command once per `run()` against a target read anew each time."""

    def __init__(self, module: Any, args: argparse.Namespace) -> None:
        self.module = module
        self.args = args
        self.kept: Any = None               # a live target kept open between runs
        self.layouts: Any = None
        self.notes: List[str] = []

    def _session(self) -> Session:
        args = self.args
        kept = self.kept
        if kept is not None:
            session = Session(target_factory=lambda: kept, symbols=args.symbols, quiet=True)
            session._layouts = self.layouts                                  # noqa: SLF001
        else:
            session = Session(target_path=args.target, symbols=args.symbols, quiet=True)
        # the same budget every run; symbol options as the CLI passes them (issue 16)
        for name in ("max_entries", "max_pages", "max_bytes", "fetch_symbols", "symbol_path"):
            if hasattr(args, name):
                setattr(session, name, getattr(args, name))
        return session

    def run(self) -> Result:
        """One run: its Result, records decoded (materialized) before the target is let go."""
        if self.kept is not None:
            self.kept.refresh()
        session = self._session()
        try:
            radix = getattr(self.args, "radix", None)
            if radix:                            # `--radix` given after COMMAND (issue 12)
                from pykd_ext.kernel.numbers import using_radix
                with using_radix(radix):
                    result = self.module.run(session, self.args)
                    result.materialize()
            else:
                result = self.module.run(session, self.args)
                result.materialize()
            for note in result.notes:
                if note not in self.notes:
                    self.notes.append(note)
            if self.kept is None and session.has_target:
                target = session.target
                if getattr(target, "live", False) and callable(getattr(target, "refresh", None)):
                    self.kept, self.layouts = target, session.layouts       # keep it: refreshed next time
        finally:
            if self.kept is None or session._target is not self.kept:       # noqa: SLF001
                session.close()
        return result

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
            self.kept = None


def _status(refresh: int, snapshot: Snapshot, changes: List[Change], quiet: bool) -> None:
    if quiet:
        return
    sys.stderr.write("watch: refresh %d: %d records, %d changes\n" % (refresh, len(snapshot), len(changes)))
    sys.stderr.flush()


class StopOnInterrupt:
    """Ctrl-C ends the watch loop at its next check, wherever the signal lands (decoding, sleeping,
    or the CLI writing a line): the first SIGINT only sets `stopped`, so the output so far is
    complete and the exit status 0; a second one interrupts at once (KeyboardInterrupt). Only in
    the main thread (where Python delivers signals); elsewhere Ctrl-C behaves as usual."""

    def __init__(self) -> None:
        self.stopped = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "StopOnInterrupt":
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            import signal
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking within 0.1 s of a Ctrl-C."""
        deadline = time.monotonic() + seconds
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))


def refreshes(runner: Runner, interval: float, count: Optional[int], ignore: Sequence[str] = ()
              ) -> Iterator[Tuple[int, Snapshot, List[Change], Result]]:
    """Run, diff, hand out, sleep - `count` times or until Ctrl-C (a clean stop, no traceback).
    Each item: (refresh number from 1, the run's snapshot, changes since the previous run (none
    for the baseline), the run's Result). The target is let go when the loop ends."""
    previous: Optional[Snapshot] = None
    refresh = 0
    try:
        with StopOnInterrupt() as stop:
            while (count is None or refresh < count) and not stop.stopped:
                refresh += 1
                started = time.monotonic()
                result = runner.run()
                if stop.stopped:                 # Ctrl-C while decoding: stop, report nothing more
                    break
                snapshot = Snapshot(result.records)
                changes = diff(previous, snapshot, ignore) if previous is not None else []
                yield refresh, snapshot, changes, result
                previous = snapshot
                if count is not None and refresh >= count:
                    break
                stop.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:                    # the second Ctrl-C
        return
    finally:
        runner.close()


def run(session: Any, args: argparse.Namespace) -> Result:
    session.close()                      # every run opens its own session (see Runner)
    module, inner = watched_arguments(args)
    # the CLI renders with the outer namespace: options given after COMMAND count there too
    for name in ("format", "quiet", "target"):
        setattr(args, name, getattr(inner, name, getattr(args, name, None)))
    if not inner.target:
        raise PykdExtError("watch needs --target (a dump, raw image, live:PATH or qemu:SOCKET)")
    interval = inner.interval if inner.interval is not None else DEFAULT_INTERVAL
    count = inner.count
    if count is not None and count <= 0:
        raise PykdExtError("watch: --count must be positive (%d)" % count)
    ignore = [name.strip() for item in (inner.ignore or []) for name in item.split(",") if name.strip()]
    runner = Runner(module, inner)
    full_screen = inner.format == "text" and _isatty(sys.stdout)
    if full_screen:
        _need_rich()
        args.quiet = True                # no progress line under the full-screen view

    def rows() -> Iterator[Row]:
        """Each refresh's changes as soon as it is diffed: a pipe sees them before the next sleep."""
        if full_screen:
            _full_screen(runner, args.watched, interval, count, ignore)
        else:
            for refresh, snapshot, changes, _result in refreshes(runner, interval, count, ignore):
                _status(refresh, snapshot, changes, inner.quiet)
                for change in changes:
                    yield Row(change.to_json(args.watched, refresh), [change_line(change, refresh)])
                sys.stdout.flush()
        # a clean stop (count reached, Ctrl-C) is success even when nothing changed: "nothing
        # moved" is an answer, not the "nothing matched" of exit status 1
        result.record_count = max(result.record_count, 1)

    result = Result("watch", COLUMNS, rows=rows(), notes=runner.notes,
                    meta={"watched": args.watched, "interval": interval, "count": count})
    return result


def _need_rich() -> None:
    import importlib.util
    if importlib.util.find_spec("rich") is None:              # the [live] extra
        raise PykdExtError("watch's terminal view needs rich: pip install 'pykd-ext[live]' "
                           "(or pipe the output, or --format jsonl)")


def _full_screen(runner: Runner, command: str, interval: float, count: Optional[int],
                 ignore: Sequence[str]) -> None:
    """The terminal view: rich's Live on the alternate screen, left when the loop ends."""
    from pykd_ext.live.watch_view import LiveView
    view: Optional[LiveView] = None
    try:
        for refresh, snapshot, changes, result in refreshes(runner, interval, count, ignore):
            if view is None:
                view = LiveView(command, result.columns).__enter__()
            view.update(refresh, snapshot.records, changes,
                        "%d records, %d changes" % (len(snapshot), len(changes)))
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.__exit__(None, None, None)
            for line in view.recent:             # the alternate screen is gone: keep the last changes
                sys.stdout.write(line + "\n")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False

