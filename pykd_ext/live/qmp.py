"""A minimal QMP client: QEMU's JSON control protocol over a Unix socket.

Why our own (a few dozen lines) rather than `qemu.qmp`: it must run on Python 3.9 inside WinDbg's
`!py` and in the offline CLI without another dependency, and we need four requests: the
`qmp_capabilities` handshake, `human-monitor-command` (HMP `info mtree -f`, `info registers -a`,
`xp`), `qom-list`/`qom-get` (the RAM backend's `mem-path`), and `stop`/`cont`/`query-status`.

Protocol (QEMU docs, "QEMU Machine Protocol Specification", docs/interop/qmp-spec): the server
greets with `{"QMP": {...}}`; the client sends `{"execute": "qmp_capabilities"}`; then each
`{"execute": NAME, "arguments": {...}}` gets one `{"return": ...}` or `{"error": {"class",
"desc"}}`; asynchronous `{"event": ...}` messages may arrive in between and are skipped. One
message per line.

A QMP socket serves one client at a time (a second one waits in the listen backlog), so
`QmpClient` is meant for short use (`with QmpClient(path) as qmp: ...`) and every wait is bounded
by `timeout`: a socket held by someone else gives a typed error, not a hang.
"""
import json
import socket
from typing import Any, Dict, List

from pykd_ext.errors import TargetError

#: seconds to wait for the greeting or an answer
DEFAULT_TIMEOUT = 10.0
#: longest line accepted from the server (HMP `info mtree -f` of a big machine is ~100 KiB)
MAX_LINE = 16 << 20


class QmpError(TargetError):
    """QEMU answered a request with an error (class and description in the message)."""


class QmpClient:
    """One QMP connection: `execute(name, **arguments)`, `hmp(command_line)`; closed on exit."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.greeting: Dict[str, Any] = {}
        family = getattr(socket, "AF_UNIX", None)
        if family is None:
            raise TargetError("QMP over a Unix socket is not available on this system", path)
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
            self._file = self._sock.makefile("rwb")
            self.greeting = self._receive("the QMP greeting (another client holds the socket?)")
            if "QMP" not in self.greeting:
                raise TargetError("not a QMP socket (first message %r)" % _short(self.greeting), path)
            self.execute("qmp_capabilities")
        except OSError as err:
            self.close()
            raise TargetError("cannot talk to QMP: %s" % (err.strerror or err), path) from None
        except BaseException:
            self.close()
            raise

    def _receive(self, what: str) -> Dict[str, Any]:
        """The next message that is not an event."""
        while True:
            try:
                line = self._file.readline(MAX_LINE)
            except socket.timeout:
                raise TargetError("no answer from QEMU within the timeout while waiting for %s"
                                  % what, self.path) from None
            if not line:
                raise TargetError("QEMU closed the QMP connection while we waited for %s" % what,
                                  self.path)
            if not line.endswith(b"\n"):
                raise TargetError("QMP message longer than %d bytes" % MAX_LINE, self.path)
            try:
                message = json.loads(line)
            except ValueError:
                raise TargetError("QMP sent something that is not JSON: %r" % line[:80],
                                  self.path) from None
            if not isinstance(message, dict):
                raise TargetError("QMP sent a non-object message: %r" % line[:80], self.path)
            if "event" in message:
                continue
            return message

    def execute(self, name: str, **arguments: Any) -> Any:
        """Run one QMP command; its `return` value, or QmpError."""
        request: Dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        try:
            self._file.write(json.dumps(request).encode("utf-8") + b"\n")
            self._file.flush()
        except OSError as err:
            raise TargetError("cannot send to QMP: %s" % (err.strerror or err), self.path) from None
        answer = self._receive("the answer to %s" % name)
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise QmpError("QMP %s failed: %s: %s" % (name, error.get("class", "?"),
                                                      error.get("desc", "?")), self.path)
        return answer.get("return")

    def hmp(self, command_line: str) -> str:
        """A human-monitor command's text output (`info mtree -f`, `xp /4gx 0x1000`, ...)."""
        out = self.execute("human-monitor-command", **{"command-line": command_line})
        if not isinstance(out, str):
            raise TargetError("HMP %r returned %r, not text" % (command_line, _short(out)),
                              self.path)
        return out

    def qom_list(self, path: str) -> List[Dict[str, Any]]:
        out = self.execute("qom-list", path=path)
        return [item for item in out if isinstance(item, dict)] if isinstance(out, list) else []

    def qom_get(self, path: str, prop: str) -> Any:
        return self.execute("qom-get", path=path, property=prop)

    def running(self) -> bool:
        """Whether the guest's vCPUs run (`query-status`)."""
        status = self.execute("query-status")
        return bool(isinstance(status, dict) and status.get("running"))

    def close(self) -> None:
        for closer in (getattr(self, "_file", None), self._sock):
            try:
                if closer is not None:
                    closer.close()
            except OSError:
                pass

    def __enter__(self) -> "QmpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
