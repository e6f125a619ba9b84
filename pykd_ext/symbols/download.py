"""HTTP downloads from symbol servers: timeout, retries, a size limit, progress, atomic writes.

Why urllib: it is in the standard library (inside WinDbg's Python nothing else is certain),
honours the usual proxy variables, and follows the redirects Microsoft's server answers with.
Only http and https are fetched, also after a redirect.

Retry policy: a connection error, a timeout, an HTTP 5xx or 429 is retried (bounded count,
growing pause); a 404 (or 403/410) means "not on this server" at once, as SymSrv treats it. A
body larger than the limit, or shorter than its Content-Length, is an error and leaves nothing
behind (the file is written to a temporary name and renamed only when complete).
"""
import http.client
import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Iterator, Optional

from pykd_ext.errors import PykdExtError
from pykd_ext.progress import Progress
from pykd_ext.symbols.store import write_atomic

#: SymSrv's User-Agent form: some symbol servers and proxies answer only symbol-server clients
USER_AGENT = "Microsoft-Symbol-Server/10.0.0.0 (pykd-ext)"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 2
#: a kernel PDB is ~10-30 MiB; 1 GiB is far beyond any symbol file a layout needs
DEFAULT_MAX_SIZE = 1 << 30
CHUNK = 1 << 16
NOT_THERE = (403, 404, 410)


class DownloadError(PykdExtError):
    """A download failed (network, server error, size) after its retries."""


class NotOnServer(PykdExtError):
    """The server answered that it has no such file (404)."""


class _OnlyHttp(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http/https only (never file:, ftp:, ...)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib signature
        if not newurl.lower().startswith(("http://", "https://")):
            raise DownloadError("refusing a redirect to %s" % newurl.split(":", 1)[0] + ":")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_OnlyHttp())


def download(url: str, dest: str, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
             max_size: int = DEFAULT_MAX_SIZE, progress: Optional[bool] = None,
             sleep: Callable[[float], None] = time.sleep) -> int:
    """GET `url` into `dest` atomically; returns the size. NotOnServer for 404, DownloadError
    for everything else that fails after `retries` more attempts."""
    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError("not an http(s) URL: %s" % url)
    attempt = 0
    while True:
        try:
            return _download_once(url, dest, timeout, max_size, progress)
        except NotOnServer:
            raise
        except _Retryable as err:
            attempt += 1
            if attempt > retries:
                raise DownloadError("%s: %s (after %d attempts)" % (url, err, attempt)) from None
            sleep(min(0.5 * (2 ** (attempt - 1)), 8.0))


class _Retryable(Exception):
    pass


def _download_once(url: str, dest: str, timeout: float, max_size: int, progress: Optional[bool]) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = _opener().open(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code in NOT_THERE:
            raise NotOnServer("%s: HTTP %d" % (url, err.code)) from None
        if err.code >= 500 or err.code == 429:
            raise _Retryable("HTTP %d" % err.code) from None
        raise DownloadError("%s: HTTP %d %s" % (url, err.code, err.reason)) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError,
            http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Retryable(str(reason) or type(err).__name__) from None
    with response:
        length_header = response.headers.get("Content-Length")
        expected: Optional[int] = None
        if length_header is not None and length_header.strip().isdigit():
            expected = int(length_header)
            if expected > max_size:
                raise DownloadError("%s: %d bytes, more than the %d accepted" % (url, expected, max_size))
        meter = Progress("downloading %s" % url.rsplit("/", 1)[-1], total=expected, enabled=progress,
                         unit="bytes", delay=0.5)

        def chunks() -> Iterator[bytes]:
            got = 0
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (socket.timeout, ConnectionError, OSError, http.client.HTTPException) as err:
                    raise _Retryable("connection lost after %d bytes: %s"
                                     % (got, type(err).__name__)) from None
                if not chunk:
                    break
                got += len(chunk)
                if got > max_size:
                    raise DownloadError("%s: more than the %d bytes accepted" % (url, max_size))
                meter.step(len(chunk))
                yield chunk
            if expected is not None and got != expected:
                raise _Retryable("truncated: %d of %d bytes" % (got, expected))

        try:
            return write_atomic(dest, chunks())
        finally:
            meter.clear()
