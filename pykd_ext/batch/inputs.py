"""What to analyse: files, folders (recursive), globs and list files, each hashed once.

Why: a support share holds the same minidump under many names (copied per ticket, per machine);
analysing identical content once and giving every path its row is what makes a batch of
thousands cheap and its counts honest. Paths are made absolute (the database key must not depend
on the working directory, or `--resume` from elsewhere would redo everything); what cannot be
found or read is an input problem that becomes an error row, never an exception.
"""
import glob
import hashlib
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

_GLOB_CHARS = ("*", "?", "[")
_CHUNK = 1 << 20


@dataclass
class InputFile:
    """One dump named by a batch run: its size and content hash, or the one-line reason it cannot be
    read."""

    path: str
    size: Optional[int] = None
    sha256: Optional[str] = None
    error: Optional[str] = None        # one line: why it cannot be analysed at all


def read_list(path: str) -> List[str]:
    """Paths of a `--from-list` file: one per line; blank lines and `#` comments skipped."""
    with open(path, "r", encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def discover(arguments: Iterable[str]) -> List[InputFile]:
    """Every file the arguments name, in a stable order, each path once."""
    out: List[InputFile] = []
    seen = set()

    def add(path: str, error: Optional[str] = None) -> None:
        full = os.path.abspath(path)
        if full not in seen:
            seen.add(full)
            out.append(InputFile(full, error=error))

    for argument in arguments:
        if any(c in argument for c in _GLOB_CHARS) and not os.path.exists(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                add(argument, "no file matches this pattern")
            for match in matches:
                if os.path.isdir(match):
                    for found in _walk(match):
                        add(found)
                else:
                    add(match)
        elif os.path.isdir(argument):
            for found in _walk(argument):
                add(found)
        elif os.path.exists(argument):
            add(argument)
        else:
            add(argument, "no such file")
    return out


def _walk(folder: str) -> List[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            found.append(os.path.join(root, name))
    return found


def hash_file(item: InputFile) -> InputFile:
    """Fill `size` and `sha256` (streamed), or `error` when the file cannot be read."""
    if item.error is not None:
        return item
    digest = hashlib.sha256()
    size = 0
    try:
        with open(item.path, "rb") as handle:
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                digest.update(chunk)
    except OSError as err:
        item.error = "cannot read: %s" % (err.strerror or err)
        return item
    item.size = size
    item.sha256 = digest.hexdigest()
    return item


def group_by_content(items: Iterable[InputFile]) -> Tuple[Dict[str, List[InputFile]], List[InputFile]]:
    """(sha256 -> the files holding that content, in input order; files that cannot be read)."""
    groups: Dict[str, List[InputFile]] = {}
    problems: List[InputFile] = []
    for item in items:
        if item.sha256 is None:
            problems.append(item)
        else:
            groups.setdefault(item.sha256, []).append(item)
    return groups, problems
