"""A symbol store served over HTTP on loopback (127.0.0.1, a free port), for fetch tests.

The server maps URL paths to files under a directory (the store), and lets a test script
misbehaviour per path: a status code, a truncated body, a body larger than announced, a hang
(bounded, so the server always stops). Every request is logged, so a test can prove that a
second lookup was answered from the cache without asking the server.
"""
import http.server
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from tests.pdbfile.toolchain import SRC, build_pdb


@dataclass
class StoreServer:
    root: Path
    url: str = ""
    requests: List[str] = field(default_factory=list)
    #: path -> ("status", code) | ("truncate", bytes) | ("hang", seconds) | ("flaky", failures)
    #: | ("redirect", location)
    faults: Dict[str, Tuple[str, object]] = field(default_factory=dict)

    def put(self, rel: str, data: bytes) -> Path:
        path = self.root.joinpath(*rel.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


def _handler(server: StoreServer) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:      # quiet test output
            pass

        def _error(self, code: int) -> None:
            try:
                self.send_error(code)
            except (BrokenPipeError, ConnectionResetError):
                pass                                        # the client timed out and left

        def do_GET(self) -> None:                           # noqa: N802 - http.server's name
            server.requests.append(self.path)
            fault = server.faults.get(self.path)
            if fault and fault[0] == "status":
                self._error(int(fault[1]))
                return
            if fault and fault[0] == "flaky" and int(fault[1]) > 0:
                server.faults[self.path] = ("flaky", int(fault[1]) - 1)
                self._error(503)
                return
            if fault and fault[0] == "redirect":
                self.send_response(302)
                self.send_header("Location", str(fault[1]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if fault and fault[0] == "hang":
                time.sleep(float(fault[1]))                 # bounded: the test chose it
            # URL /symbols/<rel> -> <root>/<rel> (root is the store behind the /symbols prefix)
            parts = [p for p in self.path.split("/") if p]
            target = server.root.joinpath(*parts[1:]) if parts[:1] == ["symbols"] else server.root / "-"
            if not target.is_file():
                self._error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault and fault[0] == "truncate":
                data = data[:int(fault[1])]
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass                                        # the client gave up (size limit)
            if fault and fault[0] == "truncate":
                self.close_connection = True

    return Handler


@pytest.fixture
def store_server(tmp_path: Path) -> Iterator[StoreServer]:
    root = tmp_path / "served-store"
    root.mkdir()
    state = StoreServer(root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = "http://127.0.0.1:%d/symbols" % httpd.server_address[1]
    state.root = root / "symbols"
    state.root.mkdir()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A real x64 PDB and the executable whose RSDS record names it (clang-cl + lld-link),
    and a second PDB (x86 C++) for "wrong file" cases."""
    out = tmp_path_factory.mktemp("symbols-pdbs")
    pdb = build_pdb(SRC / "layouts.c", "x64", out)
    other = build_pdb(SRC / "classes.cpp", "x86", out)
    return {"pdb": pdb, "exe": pdb.with_suffix(".exe"), "other": other}


@pytest.fixture
def no_symbol_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No _NT_SYMBOL_PATH from the machine; the default cache in the test's own directory."""
    for var in ("_NT_SYMBOL_PATH", "_NT_ALT_SYMBOL_PATH"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "default-cache"
    monkeypatch.setenv("PYKD_EXT_SYMBOL_CACHE", str(cache))
    return cache


def gcab(out: Path, member: Path, compress: bool = True) -> Path:
    """A cabinet made by GNOME's gcab (an independent CAB writer), holding one file."""
    import subprocess
    args = ["gcab", "-c", "-n"] + (["-z"] if compress else []) + [str(out), str(member)]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    assert out.stat().st_size > 0 and os.access(out, os.R_OK)
    return out
