"""Symbol paths in WinDbg's syntax, read as Microsoft's documentation describes them
("Symbol path for Windows debuggers": srv*, cache*, plain directories, `;` separators)."""
import pytest

from pykd_ext.symbols.path import (MICROSOFT_SYMBOL_SERVER, parse_symbol_path,
                                   symbol_path_from_env)

DEFAULT = "/default/store"


def entries(text: str):
    return [(e.kind, e.location, e.caches) for e in parse_symbol_path(text, DEFAULT).entries]


def test_server_with_downstream_store() -> None:
    # the documentation's example: srv*c:\MyServerSymbols*https://msdl.microsoft.com/download/symbols
    assert entries(r"srv*c:\MyServerSymbols*https://msdl.microsoft.com/download/symbols") == [
        ("server", "https://msdl.microsoft.com/download/symbols", [r"c:\MyServerSymbols"])]


def test_chain_of_stores_nearest_first() -> None:
    assert entries(r"SRV*c:\near*\\share\far*https://x.example/s") == [
        ("server", "https://x.example/s", [r"c:\near", r"\\share\far"])]


def test_defaults() -> None:
    # srv*URL caches in the default store; bare srv* is the default store and Microsoft's server
    assert entries("srv*https://x.example/s") == [("server", "https://x.example/s", [DEFAULT])]
    assert entries("srv*") == [("server", MICROSOFT_SYMBOL_SERVER, [DEFAULT])]
    assert entries(r"srv**https://x.example/s") == [("server", "https://x.example/s", [DEFAULT])]


def test_symsrv_long_form_and_local_store() -> None:
    assert entries(r"symsrv*symsrv.dll*c:\cache*https://x.example/s") == [
        ("server", "https://x.example/s", [r"c:\cache"])]
    # a store on a share is searched in place; it needs no downstream store
    assert entries(r"srv*\\server\symbols") == [("server", r"\\server\symbols", [])]


def test_cache_applies_to_the_entries_after_it() -> None:
    got = entries(r"c:\first;cache*c:\cache;srv*https://x.example/s;c:\dir;cache*")
    assert got == [("dir", r"c:\first", []),
                   ("server", "https://x.example/s", [r"c:\cache", DEFAULT]),
                   ("dir", r"c:\dir", [r"c:\cache"])]


def test_blank_and_odd_entries() -> None:
    assert entries("  ;; ;") == []
    assert entries(" /sym/dir ; srv * /c * http://h/s ") == [
        ("dir", "/sym/dir", []), ("server", "http://h/s", ["/c"])]
    assert len(parse_symbol_path(";".join("d%d" % i for i in range(1000)), DEFAULT).entries) == 64


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_NT_SYMBOL_PATH", "srv*/c*http://h/s")
    monkeypatch.setenv("_NT_ALT_SYMBOL_PATH", "/alt")
    got = symbol_path_from_env(default_cache=DEFAULT).entries
    assert [(e.kind, e.location) for e in got] == [("dir", "/alt"), ("server", "http://h/s")]
    assert [e.location for e in symbol_path_from_env("/only", DEFAULT).entries] == ["/only"]
    monkeypatch.delenv("_NT_SYMBOL_PATH")
    monkeypatch.delenv("_NT_ALT_SYMBOL_PATH")
    got = symbol_path_from_env(default_cache=DEFAULT).entries
    assert [(e.location, e.caches) for e in got] == [(MICROSOFT_SYMBOL_SERVER, [DEFAULT])]
