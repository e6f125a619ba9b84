"""Find a symbol file along a symbol path, the way WinDbg does, downloading into its stores.

Order: each path entry in turn; for a server chain, its downstream stores (nearest first), then
the server itself (`name/index/name`, then the CAB form `name/index/name_`), and a file got from
the server is written, uncompressed, into every downstream store of the chain (SymSrv's
behaviour), so WinDbg finds it there too. A plain directory is searched for the file itself
(`dir/name`, `dir/<ext>/name`, `dir/symbols/<ext>/name`) and as a store.

Every file found is checked before it is used: a PDB must carry the GUID and age asked for, an
image the TimeDateStamp and SizeOfImage; a file that does not is skipped (in a local directory)
or deleted (just downloaded), never handed to the layout code as the one asked for.

Offline: with `offline=True` no server is asked; only local directories and stores are searched.
"""
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from pykd_ext.errors import LayoutError, NotFoundError, PykdExtError
from pykd_ext.symbols import cab
from pykd_ext.symbols.download import (DEFAULT_MAX_SIZE, DEFAULT_RETRIES, DEFAULT_TIMEOUT,
                                       NotOnServer, download)
from pykd_ext.symbols.path import SymbolPath, is_url
from pykd_ext.symbols.store import (SymbolStoreError, check_file_name, compressed_name, find_local,
                                    image_index, pdb_index, relative_path, store_path, write_atomic)

#: a check of a found file: None when it is the one asked for, else why not
Verifier = Callable[[str], Optional[str]]


@dataclass
class FetchOptions:
    """How far a symbol fetch may go: offline or not, per-request timeout, retries, the size cap,
    progress."""

    offline: bool = False
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    max_size: int = DEFAULT_MAX_SIZE
    progress: Optional[bool] = None        # None: on a TTY


@dataclass
class Found:
    """A symbol file that was found: its local path, where it came from, whether it was downloaded
    now."""

    path: str
    source: str                            # where it came from (a directory, a store, a URL)
    downloaded: bool = False
    notes: List[str] = field(default_factory=list)


def pdb_verifier(guid: str, age: int) -> Verifier:
    """Accept a PDB whose GUID is `guid` and whose DBI or info-stream age is `age`."""
    want = guid.strip("{}").replace("-", "").upper()

    def check(path: str) -> Optional[str]:
        from pykd_ext.layouts.pdb import read_pdb_identity
        try:
            ident = read_pdb_identity(path)
        except LayoutError as err:
            return err.message
        if ident.guid != want or age not in (ident.age, ident.info_age):
            return "it is PDB %s age %d, not %s age %d" % (ident.guid, ident.age, want, age)
        return None
    return check


def image_verifier(timestamp: int, size_of_image: int) -> Verifier:
    """Accept a PE file whose TimeDateStamp and SizeOfImage are the ones asked for."""
    def check(path: str) -> Optional[str]:
        from pykd_ext.errors import DumpFormatError
        from pykd_ext.targets.pe import parse_pe_headers
        try:
            with open(path, "rb") as fh:
                info = parse_pe_headers(fh.read(1 << 26), mapped=False)
        except (OSError, DumpFormatError) as err:
            return "not a PE image: %s" % err
        if (info.timestamp, info.size_of_image) != (timestamp, size_of_image):
            return "it is image %08X%x" % (info.timestamp, info.size_of_image)
        return None
    return check


def _copy_into(stores: List[str], name: str, index: str, source: str, notes: List[str]) -> None:
    for store in stores:
        dest = store_path(store, name, index)
        if os.path.isfile(dest):
            continue
        try:
            with open(source, "rb") as fh:
                write_atomic(dest, iter(lambda: fh.read(1 << 20), b""))
        except (OSError, PykdExtError) as err:
            notes.append("could not copy into store %s: %s" % (store, err))


def _flat_candidates(directory: str, name: str) -> List[str]:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    out = [os.path.join(directory, name)]
    if ext:
        out += [os.path.join(directory, ext, name), os.path.join(directory, "symbols", ext, name)]
    return out


def find_symbol_file(spath: SymbolPath, name: str, index: str, verify: Verifier,
                     options: Optional[FetchOptions] = None) -> Found:
    """The local path of `name` with store index `index` (see the module docstring).

    NotFoundError when no entry has it (the message lists what was searched)."""
    opts = options or FetchOptions()
    name = check_file_name(name)
    notes: List[str] = []
    searched: List[str] = []

    def accept(path: str, where: str) -> bool:
        why = verify(path)
        if why is None:
            return True
        notes.append("%s: %s skipped: %s" % (where, path, why))
        return False

    for entry in spath.entries:
        for store in entry.caches:
            hit = find_local(store, name, index)
            if hit and accept(hit, "store " + store):
                return Found(hit, "store " + store, notes=notes)
        if entry.kind == "dir":
            searched.append(entry.location)
            for path in _flat_candidates(entry.location, name) + [find_local(entry.location, name, index) or ""]:
                if path and os.path.isfile(path) and accept(path, "directory " + entry.location):
                    _copy_into(entry.caches, name, index, path, notes)
                    return Found(path, "directory " + entry.location, notes=notes)
            continue
        server = entry.location
        searched.append(server)
        if not is_url(server):
            found = _from_local_store(server, name, index, entry.caches, accept, opts, notes)
            if found is not None:
                return found
            continue
        if opts.offline:
            notes.append("offline: %s not asked" % server)
            continue
        found = _from_server(server, name, index, entry.caches, verify, opts, notes)
        if found is not None:
            return found
    raise NotFoundError("%s (%s) not found; searched: %s%s"
                        % (name, index, ", ".join(searched) or "nothing (empty symbol path)",
                           ("; " + "; ".join(notes[:3])) if notes else ""))


def _from_local_store(store: str, name: str, index: str, caches: List[str],
                      accept: Callable[[str, str], bool], opts: FetchOptions,
                      notes: List[str]) -> Optional[Found]:
    hit = find_local(store, name, index)
    if hit and accept(hit, "store " + store):
        _copy_into(caches, name, index, hit, notes)
        return Found(hit, "store " + store, notes=notes)
    packed = find_local(store, compressed_name(name), index)
    if packed:
        dest = store_path(caches[0] if caches else store, name, index)
        _unpack(packed, dest, name, opts.max_size)
        if accept(dest, "store " + store):
            _copy_into(caches[1:], name, index, dest, notes)
            return Found(dest, "store " + store, notes=notes)
        os.unlink(dest)
    return None


def _from_server(server: str, name: str, index: str, caches: List[str], verify: Verifier,
                 opts: FetchOptions, notes: List[str]) -> Optional[Found]:
    if not caches:
        raise SymbolStoreError("no downstream store to download %s into (use srv*DIR*%s)" % (name, server))
    dest = store_path(caches[0], name, index)
    base = server.rstrip("/")
    for file_name in (name, compressed_name(name)):
        url = "%s/%s" % (base, relative_path(name, index, file_name=file_name))
        packed = file_name != name
        target = dest if not packed else _temp_beside(dest)
        try:
            download(url, target, timeout=opts.timeout, retries=opts.retries,
                     max_size=opts.max_size, progress=opts.progress)
        except NotOnServer:
            continue
        if packed:
            try:
                _unpack(target, dest, name, opts.max_size)
            finally:
                _remove(target)
        why = verify(dest)
        if why is not None:
            _remove(dest)
            raise LayoutError("%s sent a file that is not the one asked for: %s" % (url, why))
        _copy_into(caches[1:], name, index, dest, notes)
        return Found(dest, url, downloaded=True, notes=notes)
    notes.append("%s has no %s/%s" % (server, name, index))
    return None


def _temp_beside(dest: str) -> str:
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".pykd-ext-", suffix=".cab", dir=folder)
    os.close(fd)
    return path


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _unpack(cab_path: str, dest: str, name: str, max_size: int) -> None:
    """Unpack a `.pd_`/`.ex_` cabinet's one file into `dest` (atomically, bounded)."""
    with open(cab_path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        parts: List[bytes] = []
        cab.extract(fh, size, parts.append, max_output=max_size, path=cab_path)
    write_atomic(dest, iter(parts))


def fetch_pdb(spath: SymbolPath, name: str, guid: str, age: int,
              options: Optional[FetchOptions] = None) -> Found:
    """A PDB by name, GUID and age (what an RSDS record names)."""
    return find_symbol_file(spath, name, pdb_index(guid, age), pdb_verifier(guid, age), options)


def fetch_image(spath: SymbolPath, name: str, timestamp: int, size_of_image: int,
                options: Optional[FetchOptions] = None) -> Found:
    """An executable image by name, TimeDateStamp and SizeOfImage (what a driver list names)."""
    return find_symbol_file(spath, name, image_index(timestamp, size_of_image),
                            image_verifier(timestamp, size_of_image), options)
