"""The one target interface: what every source of Windows memory gives the rest of pykd-ext.

A `Target` is a crash dump, a raw image, a triage or user-mode minidump, a pykd session or a live
VM. Walkers only ever see:
- `kernel`: the kernel's virtual address space (`AddressSpace`);
- `process_space(dtb)`: another address space (user memory of a process), when the source has
  page tables; virtual-only sources return the one space they have;
- `physical`: physical memory, or None for virtual-only sources;
- `info()`: the facts the source itself states (header, KDBG, ...), as `TargetInfo`;
- `describe()`: a `TargetDescription` from which a worker process re-opens the same target;
- `drop_caches()`: called between commands on live targets.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.memory.space import AddressSpace, PhysicalMemory


@dataclass(frozen=True)
class TargetDescription:
    """Enough to re-open a target in another process (batch workers): a kind and a locator."""

    kind: str           # "file" (any dump/image, format detected on open), "pykd", "live", ...
    locator: str        # a path for files
    options: Tuple[Tuple[str, str], ...] = ()

    def open(self) -> "Target":
        from pykd_ext.targets.opener import open_description
        return open_description(self)


@dataclass
class TargetInfo:
    """What a target says about itself. Fields a format does not carry stay None.

    Field names are the JSON keys of `pykd-ext info --format json`.
    """

    path: Optional[str] = None
    container: str = ""                   # "PAGEDU64", "PAGEDUMP", "MDMP", "USERDU64", "raw", "pykd"
    dump_type: Optional[str] = None       # "full", "bitmap", "kernel summary", "triage", ...
    dump_type_code: Optional[int] = None  # DUMP_HEADER64.DumpType as stored
    arch: str = "x64"                     # "x64" or "x86"
    major_version: Optional[int] = None   # 0xF free / 0xC checked in kernel dumps
    build: Optional[int] = None           # NT build number (DUMP_HEADER.MinorVersion)
    processors: Optional[int] = None
    bugcheck_code: Optional[int] = None
    bugcheck_parameters: List[int] = field(default_factory=list)
    directory_table_base: Optional[int] = None
    pfn_database: Optional[int] = None
    ps_active_process_head: Optional[int] = None
    ps_loaded_module_list: Optional[int] = None
    kd_debugger_data_block: Optional[int] = None
    kdbg: Optional[Dict[str, Any]] = None        # decoded KDDEBUGGER_DATA64 (KernBase, ...)
    kernel_base: Optional[int] = None
    physical_runs: List[Tuple[int, int]] = field(default_factory=list)   # (first_pfn, page_count)
    pages_present: Optional[int] = None
    system_time: Optional[int] = None     # FILETIME
    system_uptime: Optional[int] = None
    comment: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)   # format-specific facts
    notes: List[str] = field(default_factory=list)        # what the reader recovered from / skipped

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


class Target(ABC):
    """A source of Windows memory; see the module docstring for the contract."""

    #: True when memory can change between commands (live VM, live kernel debugging).
    live = False

    @property
    @abstractmethod
    def kernel(self) -> AddressSpace:
        """The kernel's (or, for user dumps, the process's) virtual address space."""

    @property
    def physical(self) -> Optional[PhysicalMemory]:
        """Physical memory, or None for virtual-only sources."""
        return None

    def process_space(self, directory_table_base: int) -> AddressSpace:
        """The address space of a DTB (PCID bits masked by the implementation)."""
        return self.kernel

    @abstractmethod
    def info(self) -> TargetInfo:
        """The source's own statements about itself."""

    @abstractmethod
    def describe(self) -> TargetDescription:
        """How to re-open this target elsewhere."""

    def drop_caches(self) -> None:
        """Forget cached pages and translations (between commands on live targets)."""
        self.kernel.drop_caches()
        if self.physical is not None:
            self.physical.drop_caches()

    def close(self) -> None:
        """Release files and mappings."""

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
