"""Mutation fuzz over every command that reads a target (issue 10, "Done when").

Each run copies nothing: it patches a few bytes of a private copy of one dump (the sample dump and
every real dump in `shared/real`), runs one command in-process through
`pykd_ext.cli.run_command(argv, out=...)`, and puts the bytes back. A run must end with exit 0 or 2
(a typed error, one line) within a time bound (20 CPU seconds, setitimer); an escaping exception
(a traceback, exit 1), another status, or a run over the bound is a failure, reported with what
reproduces it.

Where the bytes go (the "most useful" place first):
- `object`: inside the file bytes of the kernel objects the commands read (EPROCESS, ETHREAD, their
  list links, tokens, jobs, handle-table entries, PEBs, TEBs, loader entries, list heads). They are
  found from a clean run: every address the commands report (`--format json`) is read through the
  target's own address space (`target.kernel`, `target.process_space(dtb)`), and those bytes are
  located in the file (kept only when they occur exactly once). Each command line mutates the
  objects its own clean run reported;
- `paging`: the page-table entries (PML4E ... PTE) that translate those objects, from the address
  space's own `walk` (kernel dumps);
- `header`: the dump header (PAGEDU64/PAGEDUMP header, the minidump header and stream directory);
- `descriptors`: what says where memory is: the bitmap dump's summary header and bitmap, the full
  dump's physical-memory runs, the triage block, the minidump's memory lists, thread and module lists;
- `anywhere`: a uniform offset in the file.
The format facts come from the readers' declarative layouts (`pykd_ext.targets.dumpheader`,
`pykd_ext.targets.minidump`), not from offsets typed here.

Seeded and reproducible: run i of seed S draws everything from `Random("S:i")`, so

    python tests/hostile/test_fuzz_commands.py --runs 5000 [--seed S] [--timeout 20] [--dump NAME]
    python tests/hostile/test_fuzz_commands.py --seed S --run I      # replays one run, traceback shown

(a replay needs the same `--dump` choice as its campaign: the dumps' plans decide what run I does;
each finding prints its replay line). The bounded CI test runs `CI_RUNS` runs (marked slow).
"""
import argparse
import contextlib
import io
import json
import mmap
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "win10-19041-standard.dmp"
SHARED = Path(os.environ.get("PYKD_EXT_SHARED", str(REPO.parent / "shared"))).resolve()
REAL = SHARED / "real"

#: commands that read no target (no dump to mutate for them), and why
NO_TARGET = {"structs": "shipped layouts only", "windbg-setup": "writes scripts, reads no target"}
#: statuses a run may end with (README "Exit codes"): 0 records printed, 1 nothing matched (a
#: mutated dump may hold no match), 2 a typed error (bad input: one line on stderr)
ACCEPTED_STATUS = (0, 1, 2)
#: output formats a mutated run renders with (text is the one most likely to meet raw data)
FORMATS = ("text", "text", "text", "json", "jsonl", "table", "csv")
CI_RUNS = 500
CI_SEED = 20261203
#: the wall-clock backstop of a run, in multiples of its CPU-time bound
WALL_FACTOR = 6
#: a mutated run may grow the process by this much address space before MemoryError stops it
MEMORY_HEADROOM = 3 << 30


class RunTimeout(BaseException):
    """Raised by the per-run alarm; a BaseException so no `except Exception` in the code swallows it."""


# ------------------------------------------------------------------------------------------------
# running one command


class _Sink(io.StringIO):
    """Keeps only a checksum of what a command writes (a mutated count may print a lot)."""

    chars = 0
    crc = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        self.crc = zlib.crc32(text.encode("utf-8", "surrogatepass"), self.crc)
        return len(text)


@dataclass
class Outcome:
    status: str                   # "ok", "crash", "timeout", "status" (an exit status not accepted)
    code: Optional[int]
    seconds: float
    detail: str = ""              # exception type, message and innermost frames
    where: str = ""               # innermost frame in pykd_ext (file:line), to group crashes
    chars: int = -1               # characters written to stdout
    crc: int = -1                 # and their checksum


def _innermost_frame(tb: Any) -> str:
    frames = [f for f in traceback.extract_tb(tb) if "pykd_ext" in f.filename]
    if not frames:
        return "?"
    last = frames[-1]
    return "%s:%d" % (last.filename.split("pykd_ext" + os.sep, 1)[-1], last.lineno)


@contextlib.contextmanager
def _bounded(timeout: float) -> Iterator[None]:
    """Alarms (setitimer, main thread) and an address-space cap around one run.

    The bound is CPU time (ITIMER_PROF: user + system of this process), so a machine busy with
    other work does not turn a slow run into a timeout; a wall-clock alarm at `WALL_FACTOR` times
    the bound still ends a run that waits without computing (a lock, a blocking read)."""
    limits = None
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as fh:
            current = int(fh.read().split()[0]) * mmap.PAGESIZE
        cap = current + MEMORY_HEADROOM
        if hard == resource.RLIM_INFINITY or cap < hard:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
            limits = (resource, soft, hard)
    except (ImportError, OSError, ValueError):
        limits = None

    def on_alarm(signum: int, frame: Any) -> None:
        raise RunTimeout("%s time" % ("CPU" if signum == signal.SIGPROF else "wall-clock"))

    previous = (signal.signal(signal.SIGPROF, on_alarm), signal.signal(signal.SIGALRM, on_alarm))
    signal.setitimer(signal.ITIMER_PROF, timeout)
    signal.setitimer(signal.ITIMER_REAL, timeout * WALL_FACTOR)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])
        if limits is not None:
            limits[0].setrlimit(limits[0].RLIMIT_AS, (limits[1], limits[2]))


def run_bounded(argv: List[str], timeout: float, show_traceback: bool = False) -> Outcome:
    """One command line in-process: its status, or what escaped, within `timeout` CPU seconds."""
    from pykd_ext.cli import run_command
    sink = _Sink()
    err = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), _bounded(timeout):
            try:
                code = run_command(list(argv), out=sink)
            except SystemExit as stop:            # argparse: a usage error or --help
                code = stop.code if isinstance(stop.code, int) else 2
    except RunTimeout as stop:                    # where the alarm found it says what was looping
        frames = traceback.format_tb(stop.__traceback__)
        if show_traceback:
            sys.stderr.write("".join(frames))
        return Outcome("timeout", None, time.perf_counter() - start,
                       "over the bound (%.0f s of %s), in:\n%s" % (
                           timeout * (1 if "CPU" in str(stop) else WALL_FACTOR), stop, "".join(frames[-3:]).rstrip()),
                       _innermost_frame(stop.__traceback__))
    except BaseException as exc:                  # noqa: BLE001 - anything escaping is the finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = exc.__traceback__
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        if show_traceback:
            sys.stderr.write(text)
        lines = text.rstrip().splitlines()
        return Outcome("crash", None, time.perf_counter() - start, "\n".join(lines[-6:]),
                       _innermost_frame(tb))
    seconds = time.perf_counter() - start
    if code not in ACCEPTED_STATUS:
        return Outcome("status", code, seconds, err.getvalue()[-500:])
    return Outcome("ok", code, seconds, chars=sink.chars, crc=sink.crc)


# ------------------------------------------------------------------------------------------------
# what to mutate in each dump


@dataclass
class Region:
    start: int                    # file offset
    end: int
    label: str


@dataclass
class DumpPlan:
    """One dump's private copy, the command lines to run on it, and its mutation regions."""

    name: str
    path: str
    argvs: List[List[str]]
    regions: Dict[str, List[Region]] = field(default_factory=dict)
    #: per command line: the object regions of what its clean run reported (its own objects)
    argv_regions: List[List[Region]] = field(default_factory=list)
    #: per command line: the page-table entries that translate those objects (kernel dumps)
    argv_paging: List[List[Region]] = field(default_factory=list)
    addresses: List[int] = field(default_factory=list)      # object addresses (pointer values)
    size: int = 0
    clean: Dict[Tuple[str, ...], Outcome] = field(default_factory=dict)   # argv -> clean run


def _field_offset(struct: Any, name: str) -> int:
    """Offset of a named member of a fixed-size construct Struct (the readers' own declaration)."""
    offset = 0
    for sub in struct.subcons:
        if getattr(sub, "name", None) == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def format_regions(data: bytes) -> Dict[str, List[Region]]:
    """Header and memory-descriptor regions of a dump, from the readers' declarative layouts."""
    from pykd_ext.targets import dumpheader as dh
    size = len(data)
    header: List[Region] = []
    descriptors: List[Region] = []
    if data[:8] in (dh.CONTAINER64, dh.CONTAINER32):
        wide = data[:8] == dh.CONTAINER64
        header_size = dh.HEADER64_SIZE if wide else dh.HEADER32_SIZE
        header.append(Region(0, min(size, header_size), "dump header"))
        layout = dh.DUMP_HEADER64 if wide else dh.DUMP_HEADER32
        for name in ("PhysicalMemoryBlock", "PhysicalMemoryBlockBuffer"):
            try:
                runs_at = _field_offset(layout, name)
            except KeyError:
                continue
            descriptors.append(Region(runs_at, runs_at + dh.DMP_PHYSICAL_MEMORY_BLOCK_SIZE, "physical memory runs"))
            break
        type_at = dh.DUMP_TYPE_OFFSET64 if wide else dh.DUMP_TYPE_OFFSET32
        dump_type = int.from_bytes(data[type_at:type_at + 4], "little")
        body = dh.BODY_KINDS.get(dump_type)
        if body == dh.BODY_BITMAP and size > header_size + dh.SUMMARY_DUMP_SIZE:
            summary = dh.SUMMARY_DUMP.parse(data[header_size:header_size + dh.SUMMARY_DUMP_SIZE])
            first_page = int(summary.FirstPage)
            end = first_page if header_size < first_page <= size else min(size, header_size + 0x1000)
            descriptors.append(Region(header_size, end, "bitmap summary and bitmap"))
        elif body in (dh.BODY_TRIAGE, dh.BODY_RDMP):
            descriptors.append(Region(header_size, min(size, header_size + 0x1000), "%s block" % body))
    elif data[:4] == b"MDMP":
        from pykd_ext.targets import minidump as md
        head = md.MINIDUMP_HEADER.parse(data[:md.MINIDUMP_HEADER_SIZE])
        header.append(Region(0, md.MINIDUMP_HEADER_SIZE, "minidump header"))
        rva, count = int(head.StreamDirectoryRva), min(int(head.NumberOfStreams), md.MAX_STREAMS)
        if rva + count * md.MINIDUMP_DIRECTORY_SIZE <= size:
            header.append(Region(rva, rva + count * md.MINIDUMP_DIRECTORY_SIZE, "stream directory"))
            wanted = {md.THREAD_LIST, md.MODULE_LIST, md.MEMORY_LIST, md.MEMORY64_LIST,
                      md.SYSTEM_INFO, md.MISC_INFO, md.THREAD_INFO_LIST, md.HANDLE_DATA}
            for i in range(count):
                at = rva + i * md.MINIDUMP_DIRECTORY_SIZE
                entry = md.MINIDUMP_DIRECTORY.parse(data[at:at + md.MINIDUMP_DIRECTORY_SIZE])
                start, length = int(entry.Location.Rva), int(entry.Location.DataSize)
                if entry.StreamType in wanted and length and start + min(length, 0x2000) <= size:
                    descriptors.append(Region(start, start + min(length, 0x2000),
                                              md.STREAM_NAMES.get(entry.StreamType, str(entry.StreamType))))
    else:
        header.append(Region(0, min(size, 0x2000), "file start"))
    return {"header": header, "descriptors": descriptors}


def _json_numbers(value: Any) -> Iterator[int]:
    """Every integer in a JSON document, hex strings ("0x...") included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            yield item
        elif isinstance(item, str) and re.fullmatch(r"0x[0-9a-fA-F]{4,16}", item):
            yield int(item, 16)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _records(text: str) -> Tuple[List[Dict[str, Any]], List[int]]:
    """(records, every number) of a command's JSON output."""
    try:
        doc = json.loads(text)
    except ValueError:
        return [], []
    records = doc.get("records", []) if isinstance(doc, dict) else []
    return [r for r in records if isinstance(r, dict)], list(_json_numbers(doc))


def _clean_json(path: str, argv: List[str]) -> Tuple[Optional[int], str]:
    from pykd_ext.cli import run_command
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = run_command(list(argv) + ["--target", path, "--format", "json", "--quiet"], out=out)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 2
    except Exception:                              # noqa: BLE001 - a clean dump's own failure
        return None, ""
    return code, out.getvalue()


def _hexarg(value: Any) -> Optional[str]:
    if isinstance(value, str) and value.startswith("0x"):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return "0x%x" % value
    return None


def command_lines(names: Sequence[str], processes: List[Dict[str, Any]],
                  threads: List[Dict[str, Any]]) -> List[List[str]]:
    """Command lines for every target-reading command: bare, and on a few processes/threads the
    clean run found (hex with 0x: read the same under a decimal or a WinDbg hex default)."""
    argvs: List[List[str]] = []
    chosen: List[Dict[str, Any]] = processes[:1]               # System (or a user dump's process)
    for wanted in (lambda r: r.get("name") == "lsass.exe", lambda r: bool(r.get("job")),
                   lambda r: bool(r.get("wow64")), lambda r: r.get("name") == "explorer.exe"):
        match = next((r for r in processes if wanted(r) and r not in chosen), None)
        if match is not None:
            chosen.append(match)
    pids = [p for p in (_hexarg(r.get("pid")) for r in chosen) if p]
    paddrs = [a for a in (_hexarg(r.get("address")) for r in chosen[:2]) if a]
    taddrs = [a for a in (_hexarg(r.get("address")) for r in threads[:3]) if a]
    tids = [t for t in (_hexarg(r.get("tid")) for r in threads[:2]) if t]
    per_process = {"eproc": [["-v"]], "threads": [[]], "token": [[]], "handles": [[]], "job": [[]],
                   "peb": [[]], "modules": [[]], "diagram": [[]]}      # H7: diagram prints DOT
    extra = {"info": [["--runs"]], "handles": [["--all"], ["--kernel"], ["--cid"]], "peb": [["--all"]],
             "ps": [["lsass.exe", "System"]],
             "watch": [["threads", "--count", "2", "--interval", "0"]]}   # H7: two runs, diffed
    for name in names:
        argvs.append([name])
        for more in extra.get(name, []):
            argvs.append([name] + more)
        for pid in pids:
            for more in per_process.get(name, []):
                argvs.append([name, pid] + more)
        if name == "eproc":
            argvs.extend([["eproc", a] for a in paddrs])
        if name in ("ethread",):
            argvs.extend([["ethread", a] for a in taddrs] + [["ethread", t] for t in tids])
        if name == "token":
            argvs.extend([["token", "--thread", a] for a in taddrs[:1]])
        if name == "teb":
            argvs.extend([["teb", t] for t in tids] + [["teb", "-p", p] for p in pids[:1]])
        if name == "dt":
            argvs[-1:] = [["dt", "_EPROCESS", a] for a in paddrs[:1]] + [["dt", "_KTHREAD", a] for a in taddrs[:1]]
    return [a for a in argvs if a != ["dt"]]


def target_commands() -> List[str]:
    from pykd_ext.commands import COMMANDS
    return [name for name in COMMANDS if name not in NO_TARGET]


def _locate(data: bytes, chunk: bytes) -> int:
    """File offset of chunk when it occurs exactly once (else -1)."""
    at = data.find(chunk)
    if at < 0 or data.find(chunk, at + 1) >= 0:
        return -1
    return at


def _plausible_address(value: int) -> bool:
    """A user or kernel address of x64 (canonical) or x86, not a count, time or flag word."""
    return 0x10000 <= value < 0x800000000000 or 0xFFFF800000000000 <= value < 1 << 64


class ObjectLocator:
    """Where in the file the objects at given addresses are: each address is read through the
    target's own address spaces (kernel, then each process's) and its page located in the file
    (one search per page, kept only when the bytes occur exactly once)."""

    def __init__(self, path: str, dtbs: Sequence[int], data: bytes) -> None:
        from pykd_ext.errors import PykdExtError
        from pykd_ext.targets.opener import open_target
        self.data = data
        self.target: Any = None
        self.spaces: List[Any] = []
        self.page_base: Dict[Tuple[int, int], Optional[int]] = {}    # (space, VA page) -> offset
        self.found: Dict[int, Region] = {}
        self.table_base: Dict[int, Optional[int]] = {}               # table page -> offset
        self.entries: Dict[int, Region] = {}
        try:
            self.target = open_target(path)
        except PykdExtError:
            return
        self.spaces.append(self.target.kernel)
        for dtb in dtbs[:32]:
            try:
                self.spaces.append(self.target.process_space(dtb))
            except (PykdExtError, ValueError):
                continue

    def regions(self, numbers: Sequence[int], limit: int = 300) -> List[Region]:
        """Regions of the objects at these numbers that are addresses (an even spread of at most
        `limit` of them, the same every time)."""
        candidates = sorted({a for a in numbers if _plausible_address(a)})
        if len(candidates) > limit:
            candidates = [candidates[i * len(candidates) // limit] for i in range(limit)]
        out: Dict[int, Region] = {}
        for address in candidates:
            region = self._region(address)
            if region is not None:
                out.setdefault(region.start, region)
        return [out[k] for k in sorted(out)]

    def paging(self, numbers: Sequence[int], limit: int = 60) -> List[Region]:
        """Regions around the page-table entries (PML4E ... PTE) that translate these addresses,
        from the address space's own walk (kernel dumps and raw images; none for minidumps)."""
        physical = getattr(self.target, "physical", None) if self.target is not None else None
        if physical is None:
            return []
        candidates = sorted({a for a in numbers if _plausible_address(a)})
        if len(candidates) > limit:
            candidates = [candidates[i * len(candidates) // limit] for i in range(limit)]
        out: Dict[int, Region] = {}
        for address in candidates:
            for space in self.spaces[:1] if address >= 0xFFFF800000000000 else self.spaces[1:4]:
                walk = getattr(space, "walk", None)
                if walk is None:
                    continue
                try:
                    steps = walk(address).steps
                except Exception:                           # noqa: BLE001 - a clean walk that fails is not ours to judge
                    continue
                for step in steps:
                    base = self._table_in_file(physical, step.table & ~0xFFF)
                    if base is None:
                        continue
                    at = base + (step.entry_address & 0xFFF)
                    start, end = max(base, at - 0x20), min(base + 0x1000, at + 0x28)
                    region = self.entries.setdefault(start, Region(start, end, "%s of 0x%x" % (step.level, address)))
                    out.setdefault(region.start, region)
                if steps:
                    break
        return [out[k] for k in sorted(out)]

    def _table_in_file(self, physical: Any, table: int) -> Optional[int]:
        if table not in self.table_base:
            self.table_base[table] = _page_in_file(_PhysicalReader(physical), table, self.data)
        return self.table_base[table]

    def _region(self, address: int) -> Optional[Region]:
        in_page = address & 0xFFF
        for number, space in enumerate(self.spaces):
            if number and address >= 0xFFFF800000000000:
                return None                                  # kernel addresses: the kernel space only
            key = (number, address >> 12)
            if key not in self.page_base:
                self.page_base[key] = _page_in_file(space, address, self.data)
            base = self.page_base[key]
            if base is None:
                continue
            before = min(0x30, in_page)                      # an object header precedes its body
            start = base + in_page - before
            end = min(len(self.data), base + min(0x1000, in_page + 0xA00))
            if start < 0 or end <= start:
                return None
            return self.found.setdefault(start, Region(start, end, "object at 0x%x" % address))
        return None

    def close(self) -> None:
        if self.target is not None:
            self.target.close()


class _PhysicalReader:
    """`read_partial` over physical memory, for locating page-table pages in the file."""

    def __init__(self, physical: Any) -> None:
        self.physical = physical

    def read_partial(self, address: int, size: int) -> Tuple[bytes, Any]:
        from pykd_ext.errors import PykdExtError
        try:
            return bytes(self.physical.read(address, size)), None
        except PykdExtError as err:
            return b"", err


def _page_in_file(space: Any, address: int, data: bytes) -> Optional[int]:
    """File offset of the page holding address: its most varied 64-byte pieces are searched for
    in the file until one occurs there exactly once."""
    from pykd_ext.errors import PykdExtError
    page = address & ~0xFFF
    try:
        content, _fault = space.read_partial(page, 0x1000)
    except (PykdExtError, ValueError, OverflowError):
        content = b""
    content = bytes(content)
    if len(content) < 64:                                    # the page's start is not readable
        try:
            content, _fault = space.read_partial(address, min(64, page + 0x1000 - address))
        except (PykdExtError, ValueError, OverflowError):
            return None
        content = bytes(content)
        if len(content) < 32 or len(set(content)) < 12:
            return None
        at = _locate(data, content)
        return at - (address - page) if at >= 0 else None
    pieces = sorted(range(0, len(content) - 63, 0x40), key=lambda o: (-len(set(content[o:o + 64])), o))
    for offset in pieces[:8]:
        piece = content[offset:offset + 64]
        if len(set(piece)) < 12:
            break
        at = _locate(data, piece)
        if at >= 0:
            return at - offset
    return None


def prepare(name: str, source: Path, workdir: Path) -> DumpPlan:
    """Copy one dump into workdir; find its command lines (those that work on the clean copy) and,
    from what each reports, the file regions of its objects."""
    copy = workdir / name
    shutil.copyfile(str(source), str(copy))
    os.chmod(str(copy), 0o600)
    path = str(copy)
    data = copy.read_bytes()
    found: Dict[str, List[Dict[str, Any]]] = {}
    pointers: Set[int] = set()
    for argv in (["ps"], ["threads"]):
        code, text = _clean_json(path, argv)
        if code == 0:
            records, values = _records(text)
            found[argv[0]] = records
            pointers.update(n for n in values if _plausible_address(n) and n & 7 == 0)
    processes = found.get("ps", [])
    dtbs = [int(r["dtb"]) for r in processes if isinstance(r.get("dtb"), int) and r.get("dtb")]
    plan = DumpPlan(name, path, [])
    plan.size = len(data)
    plan.regions = format_regions(data)
    locator = ObjectLocator(path, dtbs, data)
    try:
        for argv in command_lines(target_commands(), processes, found.get("threads", [])):
            code, text = _clean_json(path, argv)
            if code != 0:
                continue
            numbers = _records(text)[1]
            plan.argvs.append(argv)
            plan.argv_regions.append(locator.regions(numbers))
            plan.argv_paging.append(locator.paging(numbers))
    finally:
        locator.close()
    if not plan.argvs:                       # nothing works on it: its reader still meets the mutations
        plan.argvs, plan.argv_regions, plan.argv_paging = [["info"]], [[]], [[]]
    plan.regions["object"] = [locator.found[k] for k in sorted(locator.found)]
    plan.regions["paging"] = [locator.entries[k] for k in sorted(locator.entries)]
    plan.addresses = sorted(pointers)
    return plan


def default_dumps() -> List[Tuple[str, Path]]:
    """The sample dump and every real dump in shared/real (the PDB and READMEs are not dumps)."""
    dumps = [("sample-" + SAMPLE.name, SAMPLE)]
    for path in sorted(REAL.glob("*/*")):
        if path.is_file() and path.suffix.lower() in (".dmp", ".mdmp"):
            dumps.append(("%s-%s" % (path.parent.name, path.name), path))
    return dumps


# ------------------------------------------------------------------------------------------------
# mutations

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x1000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF, 0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF,
               0xFFFF800000000000, 0xFFFFF80000000000, 0x00007FFFFFFFFFFF)


def _value_bytes(rng: random.Random, plan: DumpPlan, width: int) -> bytes:
    roll = rng.random()
    if roll < 0.45 and plan.addresses and width == 8:
        value = rng.choice(plan.addresses) + rng.choice((0, 0, 0, 8, 0x10, -8, 0x30, -0x30, 1))
    elif roll < 0.85:
        value = rng.choice(INTERESTING)
    else:
        value = rng.getrandbits(width * 8)
    return (value & ((1 << (width * 8)) - 1)).to_bytes(width, "little")


def mutate(rng: random.Random, plan: DumpPlan, data: bytes, objects: Sequence[Region],
           paging: Sequence[Region] = ()) -> Tuple[str, List[Tuple[int, bytes]]]:
    """(region label, [(file offset, new bytes)]) of one mutation; the file is not touched here.
    `objects`, `paging`: the regions of the command about to run (its own objects, most useful)."""
    regions = dict(plan.regions, object=list(objects) or plan.regions.get("object", []),
                   paging=list(paging) or plan.regions.get("paging", []))
    kinds = [k for k, w in (("object", 6), ("paging", 2), ("header", 2), ("descriptors", 2), ("anywhere", 1))
             for _ in range(w) if k == "anywhere" or regions.get(k)]
    kind = rng.choice(kinds)
    if kind == "anywhere":
        region = Region(0, plan.size, "anywhere")
    else:
        region = rng.choice(regions[kind])
    patches: List[Tuple[int, bytes]] = []
    # an object spans ~2.5 KB of which a command reads a few dozen fields: more writes there
    count = rng.randint(2, 8) if kind == "object" else rng.choice((1, 1, 1, 2, 3, 4))
    for _ in range(count):
        span = max(1, region.end - region.start)
        op = rng.random()
        if op < 0.45:                                       # an aligned pointer or count
            width = 8 if rng.random() < 0.7 else 4
            at = region.start + (rng.randrange(span) // width) * width
            patches.append((at, _value_bytes(rng, plan, width)))
        elif op < 0.65:                                     # random bytes
            at = region.start + rng.randrange(span)
            patches.append((at, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))))
        elif op < 0.85:                                     # flip bits
            at = region.start + rng.randrange(span)
            old = data[at] if at < len(data) else 0
            patches.append((at, bytes([old ^ (1 << rng.randrange(8))])))
        elif op < 0.93:                                     # zero a run
            at = region.start + rng.randrange(span)
            patches.append((at, bytes(rng.randint(8, 64))))
        else:                                               # copy bytes from elsewhere in the region
            length = rng.randint(8, 64)
            src = region.start + rng.randrange(span)
            at = region.start + rng.randrange(span)
            patches.append((at, data[src:src + length]))
    patches = [(at, new[:max(0, plan.size - at)]) for at, new in patches if at < plan.size]
    return "%s (%s)" % (kind, region.label), [(at, new) for at, new in patches if new]


@contextlib.contextmanager
def patched(path: str, patches: Sequence[Tuple[int, bytes]]) -> Iterator[None]:
    """Write the patches into the private copy, and put the old bytes back afterwards."""
    saved: List[Tuple[int, bytes]] = []
    with open(path, "r+b") as fh:
        for at, new in patches:
            fh.seek(at)
            saved.append((at, fh.read(len(new))))
            fh.seek(at)
            fh.write(new)
    try:
        yield
    finally:
        with open(path, "r+b") as fh:
            for at, old in reversed(saved):
                fh.seek(at)
                fh.write(old)


# ------------------------------------------------------------------------------------------------
# the campaign


@dataclass
class Finding:
    run: int
    dump: str
    argv: List[str]
    mutation: str
    patches: List[Tuple[int, bytes]]
    outcome: Outcome
    changed: bool = False         # the status or output differs from the clean run's
    replay_args: str = ""         # the --dump options of the campaign (they change the plans)

    def reproduce(self, seed: int) -> str:
        return "python tests/hostile/test_fuzz_commands.py --seed %d --run %d%s" % (seed, self.run, self.replay_args)

    def describe(self, seed: int) -> str:
        """The failure, the mutation and the command, and the line that replays it."""
        patches = ", ".join("0x%x <- %s" % (at, new.hex()) for at, new in self.patches)
        return ("%s run %d: %s %s on %s; mutation %s: %s\n  %s\n  reproduce: %s"
                % (self.outcome.status, self.run, "pykd-ext", " ".join(self.argv), self.dump, self.mutation,
                   patches, self.outcome.detail.replace("\n", "\n  "), self.reproduce(seed)))


@dataclass
class Campaign:
    seed: int
    runs: int = 0
    skipped: int = 0
    ok: int = 0
    typed_errors: int = 0
    changed: int = 0
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0
    slowest: List[Tuple[float, int, str]] = field(default_factory=list)

    def counts(self) -> Dict[str, int]:
        kinds = [f.outcome.status for f in self.findings]
        return {"crashes": kinds.count("crash"), "timeouts": kinds.count("timeout"),
                "bad_status": kinds.count("status")}


class Fuzzer:
    """The dumps' plans (made once) and the seeded runs over them."""

    def __init__(self, workdir: Path, dumps: Optional[List[Tuple[str, Path]]] = None,
                 timeout: float = 20.0, log: Callable[[str], None] = lambda text: None,
                 replay_args: str = "") -> None:
        self.workdir = workdir
        self.replay_args = replay_args
        self.timeout = timeout
        self.log = log
        self.plans: List[DumpPlan] = []
        for name, source in (dumps if dumps is not None else default_dumps()):
            started = time.perf_counter()
            plan = prepare(name, source, workdir)
            self.plans.append(plan)
            log("prepared %s: %d command lines, %d object regions, %d page-table entries, "
                "%d header/descriptor regions (%.1f s)"
                % (name, len(plan.argvs), len(plan.regions["object"]), len(plan.regions["paging"]),
                   len(plan.regions["header"]) + len(plan.regions["descriptors"]), time.perf_counter() - started))
        self._data: Dict[str, bytes] = {p.path: Path(p.path).read_bytes() for p in self.plans}

    def choose(self, seed: int, run: int) -> Tuple[DumpPlan, List[str], str, List[Tuple[int, bytes]]]:
        rng = random.Random("%d:%d" % (seed, run))
        weights = [4.0 if p.name.startswith("sample-") else 1.0 for p in self.plans]
        plan = rng.choices(self.plans, weights)[0]
        index = rng.randrange(len(plan.argvs))
        argv = plan.argvs[index] + ["--target", plan.path, "--format", rng.choice(FORMATS), "--quiet"]
        label, patches = mutate(rng, plan, self._data[plan.path], plan.argv_regions[index],
                                plan.argv_paging[index])
        return plan, argv, label, patches

    def clean_run(self, plan: DumpPlan, argv: List[str]) -> Outcome:
        """The same command line on the unmutated copy (cached): a line that fails there is not
        run mutated (prepare() keeps the lines that work), and its output size tells whether a
        mutation changed anything."""
        key = tuple(argv)
        if key not in plan.clean:
            plan.clean[key] = run_bounded(argv, self.timeout)
        return plan.clean[key]

    def run_one(self, seed: int, run: int, show_traceback: bool = False) -> Optional[Finding]:
        """Run i of a seed (its outcome says whether it passed); None when skipped."""
        plan, argv, label, patches = self.choose(seed, run)
        clean = self.clean_run(plan, argv)
        if clean.status != "ok":
            return None
        with patched(plan.path, patches):
            outcome = run_bounded(argv, self.timeout, show_traceback)
        argv_shown = [a if a != plan.path else "<%s>" % plan.name for a in argv]
        finding = Finding(run, plan.name, argv_shown, label, patches, outcome, replay_args=self.replay_args)
        finding.changed = (outcome.code, outcome.chars, outcome.crc) != (clean.code, clean.chars, clean.crc)
        return finding

    def campaign(self, seed: int, runs: int, first: int = 0) -> Campaign:
        result = Campaign(seed)
        started = time.perf_counter()
        for run in range(first, first + runs):
            finding = self.run_one(seed, run)
            if finding is None:
                result.skipped += 1
                continue
            result.runs += 1
            seconds = finding.outcome.seconds
            result.slowest = sorted(result.slowest + [(seconds, run, " ".join(finding.argv[:3]))],
                                    reverse=True)[:5]
            result.changed += finding.changed
            if finding.outcome.status == "ok":
                result.ok += 1
                result.typed_errors += finding.outcome.code == 2
                continue
            result.findings.append(finding)
            self.log(finding.describe(seed))
        result.seconds = time.perf_counter() - started
        return result


def summary(campaign: Campaign) -> str:
    counts = campaign.counts()
    lines = ["seed %d: %d runs (%d skipped: the command fails on the clean copy), %d ok (%d ended "
             "with a typed error, exit 2; %d changed the output), %d crashes, %d timeouts, "
             "%d other statuses, %.1f s"
             % (campaign.seed, campaign.runs, campaign.skipped, campaign.ok, campaign.typed_errors,
                campaign.changed, counts["crashes"], counts["timeouts"], counts["bad_status"],
                campaign.seconds)]
    groups: Dict[str, List[Finding]] = {}
    for finding in campaign.findings:
        groups.setdefault("%s at %s" % (finding.outcome.status, finding.outcome.where or "?"), []).append(finding)
    for where, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = items[0]
        last_line = first.outcome.detail.strip().splitlines()[-1] if first.outcome.detail.strip() else ""
        lines.append("  %3d x %s: %s (first: run %d, %s on %s)"
                     % (len(items), where, last_line, first.run, " ".join(first.argv[:2]), first.dump))
    if campaign.slowest:
        lines.append("  slowest runs: " + ", ".join("%.2f s (run %d: %s)" % s for s in campaign.slowest))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the tests


def test_every_target_command_is_fuzzed() -> None:
    """Every registered command is either fuzzed or named here as reading no target."""
    from pykd_ext.commands import COMMANDS
    assert set(NO_TARGET) <= set(COMMANDS)
    lines = command_lines(target_commands(), [{"pid": 4, "address": 0xFFFF800000001000}],
                          [{"tid": 8, "address": 0xFFFF800000002000}])
    assert {argv[0] for argv in lines} == set(COMMANDS) - set(NO_TARGET)


def test_mutation_regions_come_from_the_readers_layouts(tmp_path: Path) -> None:
    """The regions are where the format says: the sample's bitmap starts right after its header."""
    from pykd_ext.targets import dumpheader as dh
    data = SAMPLE.read_bytes()
    regions = format_regions(data)
    assert regions["header"][0].start == 0 and regions["header"][0].end == dh.HEADER64_SIZE
    bitmap = [r for r in regions["descriptors"] if "bitmap" in r.label]
    assert bitmap and bitmap[0].start == dh.HEADER64_SIZE
    assert data[bitmap[0].start:bitmap[0].start + 4] in (dh.SUMMARY_SIGNATURE, dh.FULL_SIGNATURE)


def test_patches_are_undone(tmp_path: Path) -> None:
    copy = tmp_path / "copy.dmp"
    shutil.copyfile(str(SAMPLE), str(copy))
    before = copy.read_bytes()
    with patched(str(copy), [(0x10, b"\xff" * 8), (0x2000, b"\0" * 16), (0x12, b"ab")]):
        assert copy.read_bytes() != before
    assert copy.read_bytes() == before
    assert SAMPLE.read_bytes() == before                  # the shipped sample is never written


def test_the_harness_sees_crashes_timeouts_and_memory_blowups(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that raises, one that never ends and one that allocates without bound are each
    reported (and the address-space cap is lifted afterwards)."""
    import resource
    from pykd_ext.commands import info

    argv = ["info", "--target", str(SAMPLE), "--quiet"]
    limits = resource.getrlimit(resource.RLIMIT_AS)
    assert run_bounded(argv, 20.0).status == "ok"

    def raises(session: Any, args: Any) -> Any:
        return {}["missing"]
    monkeypatch.setattr(info, "run", raises)
    outcome = run_bounded(argv, 20.0)
    assert outcome.status == "crash" and "KeyError" in outcome.detail

    def spins(session: Any, args: Any) -> Any:
        while True:
            pass
    monkeypatch.setattr(info, "run", spins)
    started = time.perf_counter()
    outcome = run_bounded(argv, 0.5)              # CPU time (or, on a crowded machine, the wall clock)
    assert outcome.status == "timeout" and time.perf_counter() - started < 0.5 * WALL_FACTOR + 5

    def waits(session: Any, args: Any) -> Any:
        time.sleep(60)
    monkeypatch.setattr(info, "run", waits)
    started = time.perf_counter()
    outcome = run_bounded(argv, 0.2)
    assert outcome.status == "timeout" and "wall-clock" in outcome.detail
    assert time.perf_counter() - started < 0.2 * WALL_FACTOR + 5

    def hoards(session: Any, args: Any) -> Any:
        return bytearray(MEMORY_HEADROOM + (1 << 30))
    monkeypatch.setattr(info, "run", hoards)
    outcome = run_bounded(argv, 20.0)
    assert outcome.status == "crash" and "MemoryError" in outcome.detail
    assert resource.getrlimit(resource.RLIMIT_AS) == limits


@pytest.mark.slow
def test_mutation_fuzz_over_all_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI_RUNS seeded runs over the sample and the real dumps: never a traceback, never over the
    time bound. A failure prints each run's mutation, command and the line that replays it."""
    assert REAL.is_dir(), "real dumps not found at %s (set PYKD_EXT_SHARED)" % REAL
    monkeypatch.setenv("PYKD_EXT_HOME", str(tmp_path / "pykd-ext-home"))   # never the user's store
    fuzzer = Fuzzer(tmp_path)
    plans = {p.name: p for p in fuzzer.plans}
    sample = plans["sample-" + SAMPLE.name]
    assert len(sample.regions["object"]) >= 40, "object pages of the sample not found"
    assert sample.regions["paging"], "page-table entries of the sample not found"
    assert len(plans) == len(default_dumps()) >= 10
    campaign = fuzzer.campaign(CI_SEED, CI_RUNS)
    report = summary(campaign) + "\n" + "\n".join(f.describe(CI_SEED) for f in campaign.findings)
    print(report)
    assert campaign.runs >= CI_RUNS // 2, report
    assert not campaign.findings, report


# ------------------------------------------------------------------------------------------------
# the long run


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Mutation fuzz of every pykd-ext command over dumps.")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--first", type=int, default=0, help="number of the first run (resume a seed)")
    ap.add_argument("--run", type=int, default=None, help="replay this one run of --seed, with its traceback")
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="CPU seconds per run (default 20; wall clock: %d times that)" % WALL_FACTOR)
    ap.add_argument("--dump", action="append", default=None,
                    help="only dumps whose name contains this (repeatable)")
    ap.add_argument("--workdir", default=None, help="keep the private copies here (default: a temporary folder)")
    opts = ap.parse_args(argv)
    seed = opts.seed if opts.seed is not None else int(time.time()) % 1000000
    dumps = default_dumps()
    if opts.dump:
        dumps = [d for d in dumps if any(part in d[0] for part in opts.dump)]
    import tempfile
    workdir = Path(opts.workdir or tempfile.mkdtemp(prefix="pykd-ext-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["PYKD_EXT_HOME"] = str(workdir / "pykd-ext-home")   # never the user's layout store
    try:
        fuzzer = Fuzzer(workdir, dumps, opts.timeout, log=lambda text: print(text, flush=True),
                        replay_args="".join(" --dump %s" % part for part in opts.dump or []))
        if opts.run is not None:
            plan, run_argv, label, patches = fuzzer.choose(seed, opts.run)
            print("run %d: pykd-ext %s\nmutation %s: %s" % (opts.run, " ".join(run_argv), label,
                                                           ", ".join("0x%x <- %s" % (a, n.hex()) for a, n in patches)))
            finding = fuzzer.run_one(seed, opts.run, show_traceback=True)
            print("skipped: the command fails on the clean copy" if finding is None
                  else "%s (%.2f s)" % (finding.outcome.status, finding.outcome.seconds))
            return 0 if finding is None or finding.outcome.status == "ok" else 1
        print("seed %d, %d runs from run %d, timeout %.0f s" % (seed, opts.runs, opts.first, opts.timeout), flush=True)
        campaign = fuzzer.campaign(seed, opts.runs, opts.first)
        print(summary(campaign))
        counts = campaign.counts()
        print("runs: %d  crashes: %d  timeouts: %d" % (campaign.runs, counts["crashes"], counts["timeouts"]))
        return 1 if campaign.findings else 0
    finally:
        if opts.workdir is None:
            shutil.rmtree(str(workdir), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
