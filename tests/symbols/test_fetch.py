"""Fetching PDBs from a symbol store served on loopback, the way WinDbg does.

The PDBs and executables are clang-cl/lld-link output; their identity (RSDS GUID and age,
TimeDateStamp, SizeOfImage) is read by `pefile`, independently of our readers.
"""
import io
import os
import time
from pathlib import Path
from typing import Dict, Tuple

import pefile
import pytest

from pykd_ext.cli import run_command
from pykd_ext.errors import LayoutError, NotFoundError
from pykd_ext.layouts.pdb import convert_pdb
from pykd_ext.symbols.download import DownloadError
from pykd_ext.symbols.fetch import FetchOptions, fetch_pdb
from pykd_ext.symbols.for_target import fetch_kernel_pdb
from pykd_ext.symbols.path import parse_symbol_path

from tests.symbols.conftest import StoreServer, gcab

FAST = FetchOptions(timeout=2.0, retries=1, progress=False)


def rsds(exe: Path) -> Tuple[str, str, int]:
    """(pdb file name, GUID, age) of an executable, as pefile reads its debug directory."""
    pe = pefile.PE(str(exe), fast_load=False)
    entry = next(d.entry for d in pe.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2)
    name = entry.PdbFileName.rstrip(b"\x00").decode().replace("\\", "/").rsplit("/", 1)[-1]
    guid = entry.Signature_String[:32]
    return name, guid, entry.Age


def image_identity(exe: Path) -> Tuple[int, int]:
    pe = pefile.PE(str(exe), fast_load=True)
    return pe.FILE_HEADER.TimeDateStamp, pe.OPTIONAL_HEADER.SizeOfImage


def pdb_files(folder: Path) -> list:
    return [p for p in folder.rglob("*.pdb") if p.is_file()]


def no_partial_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(".pykd-ext-")]


def test_fetch_lands_in_a_windbg_cache_then_works_offline(built: Dict[str, Path], store_server: StoreServer,
                                                          tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    index = "%s%X" % (guid, age)
    store_server.put("%s/%s/%s" % (name, index, name), built["pdb"].read_bytes())
    cache = tmp_path / "cache"
    spath = parse_symbol_path("srv*%s*%s" % (cache, store_server.url))
    found = fetch_pdb(spath, name, guid, age, FAST)
    # WinDbg's downstream-store layout: <cache>/<name>/<GUID><AGE>/<name>
    assert Path(found.path) == cache / name / index / name and found.downloaded
    assert Path(found.path).read_bytes() == built["pdb"].read_bytes()
    assert store_server.requests == ["/symbols/%s/%s/%s" % (name, index, name)]
    # from now on: offline, from the cache, no request
    again = fetch_pdb(spath, name, guid, age, FetchOptions(offline=True))
    assert again.path == found.path and not again.downloaded and len(store_server.requests) == 1
    # and usable: the cached PDB converts to layouts
    assert convert_pdb(again.path).isf["user_types"]["packed"]["size"] == 15
    assert no_partial_files(cache)


def test_compressed_pd_underscore(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    index = "%s%X" % (guid, age)
    packed = gcab(tmp_path / (name[:-1] + "_"), built["pdb"])
    store_server.put("%s/%s/%s" % (name, index, name[:-1] + "_"), packed.read_bytes())
    cache = tmp_path / "cache"
    found = fetch_pdb(parse_symbol_path("srv*%s*%s" % (cache, store_server.url)), name, guid, age, FAST)
    # SymSrv's order: the plain file (404 here), then the CAB; stored uncompressed in the cache
    assert [r.rsplit("/", 1)[-1] for r in store_server.requests] == [name, name[:-1] + "_"]
    assert Path(found.path).read_bytes() == built["pdb"].read_bytes()
    assert no_partial_files(cache) and not list(cache.rglob("*.pd_")) and not list(cache.rglob("*.cab"))


def test_not_on_server_lists_what_was_searched(built: Dict[str, Path], store_server: StoreServer,
                                               tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    with pytest.raises(NotFoundError) as info:
        fetch_pdb(parse_symbol_path("%s;srv*%s*%s" % (tmp_path / "nodir", tmp_path / "c", store_server.url)),
                  name, guid, age, FAST)
    line = info.value.one_line()
    assert store_server.url in line and "nodir" in line
    assert len(store_server.requests) == 2                      # .pdb and .pd_, no retries on 404


def test_truncated_response_is_retried_then_refused(built: Dict[str, Path], store_server: StoreServer,
                                                    tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    rel = "%s/%s%X/%s" % (name, guid, age, name)
    store_server.put(rel, built["pdb"].read_bytes())
    store_server.faults["/symbols/" + rel] = ("truncate", 1000)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="truncated: 1000 of"):
        fetch_pdb(parse_symbol_path("srv*%s*%s" % (cache, store_server.url)), name, guid, age, FAST)
    assert len(store_server.requests) == 2                      # first try + 1 retry
    assert not pdb_files(cache) and no_partial_files(cache)


def test_too_large_response(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    store_server.put("%s/%s%X/%s" % (name, guid, age, name), built["pdb"].read_bytes())
    cache = tmp_path / "cache"
    small = FetchOptions(timeout=2.0, retries=1, max_size=4096, progress=False)
    with pytest.raises(DownloadError, match="more than the 4096"):
        fetch_pdb(parse_symbol_path("srv*%s*%s" % (cache, store_server.url)), name, guid, age, small)
    assert len(store_server.requests) == 1 and not pdb_files(cache) and no_partial_files(cache)


def test_hanging_server_times_out(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    rel = "%s/%s%X/%s" % (name, guid, age, name)
    store_server.put(rel, built["pdb"].read_bytes())
    store_server.faults["/symbols/" + rel] = ("hang", 3.0)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="after 2 attempts"):
        fetch_pdb(parse_symbol_path("srv*%s*%s" % (tmp_path / "c", store_server.url)), name, guid, age,
                  FetchOptions(timeout=0.4, retries=1, progress=False))
    assert time.monotonic() - started < 3.0                      # 2 x 0.4 s + one 0.5 s pause


def test_server_errors_are_retried(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    rel = "%s/%s%X/%s" % (name, guid, age, name)
    store_server.put(rel, built["pdb"].read_bytes())
    store_server.faults["/symbols/" + rel] = ("flaky", 1)       # one 503, then the file
    found = fetch_pdb(parse_symbol_path("srv*%s*%s" % (tmp_path / "c", store_server.url)), name, guid, age,
                      FetchOptions(timeout=2.0, retries=2, progress=False))
    assert found.downloaded and len(store_server.requests) == 2


def test_wrong_file_from_server_is_not_kept(built: Dict[str, Path], store_server: StoreServer,
                                            tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    store_server.put("%s/%s%X/%s" % (name, guid, age, name), built["other"].read_bytes())
    cache = tmp_path / "cache"
    with pytest.raises(LayoutError, match="not the one asked for"):
        fetch_pdb(parse_symbol_path("srv*%s*%s" % (cache, store_server.url)), name, guid, age, FAST)
    assert not pdb_files(cache)


def test_chain_fills_every_downstream_store(built: Dict[str, Path], store_server: StoreServer,
                                            tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    index = "%s%X" % (guid, age)
    store_server.put("%s/%s/%s" % (name, index, name), built["pdb"].read_bytes())
    near, far = tmp_path / "near", tmp_path / "far"
    fetch_pdb(parse_symbol_path("srv*%s*%s*%s" % (near, far, store_server.url)), name, guid, age, FAST)
    assert (near / name / index / name).is_file() and (far / name / index / name).is_file()


def test_plain_directory_checks_identity(built: Dict[str, Path], tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / name).write_bytes(built["other"].read_bytes())     # same name, another PDB
    with pytest.raises(NotFoundError, match="skipped: it is PDB"):
        fetch_pdb(parse_symbol_path(str(flat)), name, guid, age, FAST)
    (flat / "pdb").mkdir()
    (flat / "pdb" / name).write_bytes(built["pdb"].read_bytes())
    assert fetch_pdb(parse_symbol_path(str(flat)), name, guid, age, FAST).path == str(flat / "pdb" / name)


def test_kernel_pdb_through_the_image_as_for_a_triage_dump(built: Dict[str, Path], store_server: StoreServer,
                                                           tmp_path: Path) -> None:
    # a triage dump names the kernel only by file name, TimeDateStamp and SizeOfImage
    stamp, size = image_identity(built["exe"])
    name, guid, age = rsds(built["exe"])
    store_server.put("ntoskrnl.exe/%08X%x/ntoskrnl.exe" % (stamp, size), built["exe"].read_bytes())
    store_server.put("%s/%s%X/%s" % (name, guid, age, name), built["pdb"].read_bytes())
    extra = {"drivers": [{"name": "ntoskrnl.exe", "timestamp": stamp, "size": size}]}
    found = fetch_kernel_pdb(extra, parse_symbol_path("srv*%s*%s" % (tmp_path / "c", store_server.url)), FAST)
    assert [Path(f.path).name for f in found] == ["ntoskrnl.exe", name]
    assert Path(found[1].path).read_bytes() == built["pdb"].read_bytes()


def test_cli_fetch_and_offline_reuse(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path,
                                     no_symbol_env: Path) -> None:
    name, guid, age = rsds(built["exe"])
    index = "%s%X" % (guid, age)
    store_server.put("%s/%s/%s" % (name, index, name), built["pdb"].read_bytes())
    cache = tmp_path / "cli-cache"
    dashed = "{%s-%s-%s-%s-%s}" % (guid[:8], guid[8:12], guid[12:16], guid[16:20], guid[20:])
    out = io.StringIO()
    rc = run_command(["symbols", "fetch", "--symbol-path", "srv*%s*%s" % (cache, store_server.url),
                      "--quiet", name, dashed, str(age)], out=out)
    assert rc == 0, out.getvalue()
    assert str(cache / name / index / name) in out.getvalue() and "downloaded from" in out.getvalue()
    out = io.StringIO()
    rc = run_command(["symbols", "fetch", "--offline", name, guid, "0x%x" % age, "--format", "json",
                      "--symbol-path", "srv*%s*%s" % (cache, store_server.url)], out=out)
    assert rc == 0 and '"downloaded": false' in out.getvalue() and len(store_server.requests) == 1


def test_cli_target_asks_for_the_dumps_kernel_pdb(store_server: StoreServer, tmp_path: Path,
                                                  no_symbol_env: Path, capsys: pytest.CaptureFixture) -> None:
    sample = Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp"
    from pykd_ext.targets.opener import open_target
    target = open_target(str(sample))
    try:
        extra = target.info().extra
    finally:
        target.close()
    rc = run_command(["symbols", "fetch", "--target", str(sample), "--quiet", "--retries", "0",
                      "--symbol-path", "srv*%s*%s" % (tmp_path / "c", store_server.url)], out=io.StringIO())
    assert rc == 1                          # not found: exit 1 (README "Exit codes")
    assert store_server.requests[0] == "/symbols/%s/%s%X/%s" % (extra["pdb_name"], extra["pdb_guid"],
                                                                extra["pdb_age"], extra["pdb_name"])
    assert "not found" in capsys.readouterr().err


def test_offline_never_asks(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    with pytest.raises(NotFoundError, match="offline"):
        fetch_pdb(parse_symbol_path("srv*%s*%s" % (tmp_path / "c", store_server.url)), name, guid, age,
                  FetchOptions(offline=True))
    assert store_server.requests == [] and not os.path.exists(tmp_path / "c")


def test_redirects_only_to_http(built: Dict[str, Path], store_server: StoreServer, tmp_path: Path) -> None:
    name, guid, age = rsds(built["exe"])
    rel = "%s/%s%X/%s" % (name, guid, age, name)
    store_server.put("elsewhere/" + rel, built["pdb"].read_bytes())
    # Microsoft's server answers with redirects to blob storage: followed over http(s)
    store_server.faults["/symbols/" + rel] = ("redirect", store_server.url + "/elsewhere/" + rel)
    found = fetch_pdb(parse_symbol_path("srv*%s*%s" % (tmp_path / "c", store_server.url)), name, guid, age, FAST)
    assert found.downloaded and Path(found.path).read_bytes() == built["pdb"].read_bytes()
    # a redirect to a local file or to ftp is refused (urllib refuses file:, we refuse ftp:)
    for location, words in (("file:///etc/passwd", "not allowed"), ("ftp://127.0.0.1/x", "refusing a redirect")):
        store_server.faults["/symbols/" + rel] = ("redirect", location)
        with pytest.raises(DownloadError, match=words):
            fetch_pdb(parse_symbol_path("srv*%s*%s" % (tmp_path / "d", store_server.url)), name, guid, age,
                      FAST)
    assert not pdb_files(tmp_path / "d")
