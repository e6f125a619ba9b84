"""The one target interface: what every source of Windows memory gives the rest of pykd-ext.

A `Target` is a crash dump, a raw image, a triage or user-mode minidump, a pykd session or a live
VM. Walkers only ever see:
- `kernel`: the kernel's virtual address space (`AddressSpace`);
- `process_space(dtb)`: another address space (user memory of a process), when the source has
  page tables; virtual-only sources return the one space they have;
- `physical`: physical memory, or None for virtual-only sources;
- `info()`: the facts the source itself states (header, KDBG, ...), as `TargetInfo`;
- `describe()`: a `TargetDescription` from which a worker process re-opens the same target
  (`opener.open_description`);
- `pe_image(base)` / `kernel_image()`: the PE headers of an image in kernel memory, parsed once
  (the kernel's is wanted by `info()`, the layout choice and the type-table scan);
- `drop_caches()`: called between commands on live targets;
- `refresh()`: later reads see memory as it is now (a no-op for dumps; live VMs drop caches).
How a file becomes a `Target` is `opener.open_target(path)` (a registry of `opener.Opener`s).
"""
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.memory.space import AddressSpace, PhysicalSource
from pykd_ext.targets.pe import CodeViewInfo, PeInfo, read_pe_info


class TargetDescription(NamedTuple):
    """Enough to re-open a target in another process (batch workers): a kind and a locator."""

    kind: str           # "file" (any dump/image, format detected on open), "pykd", "live", ...
    locator: str        # a path for files
    options: Tuple[Tuple[str, str], ...] = ()


@dataclass
class TargetInfo:
    """What a target says about itself. Fields a format does not carry stay None.

    Field names are the JSON keys of `pykd-ext info --format json`.
    """

    path: Optional[str] = None
    container: str = ""                   # "PAGEDU64", "PAGEDUMP", "MDMP", "USERDU64", "raw", "pykd"
    dump_type: Optional[str] = None       # "full", "bitmap", "kernel summary", "triage", ...
    dump_type_code: Optional[int] = None  # DUMP_HEADER64.DumpType as stored
    arch: str = "x64"                     # `arch.Arch.name`: "x64" or "x86"
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
        return asdict(self)

    def add_kernel_image(self, pe: PeInfo) -> None:
        """What the kernel's PE headers state: timestamp, size, file version, PDB identity."""
        self.extra["kernel_timestamp"] = pe.timestamp
        self.extra["kernel_size_of_image"] = pe.size_of_image
        version = pe.file_version
        if version is not None:
            self.extra["kernel_file_version"] = version
        self.add_pdb(pe.debug_codeview)

    def add_pdb(self, cv: Optional[CodeViewInfo]) -> None:
        """The kernel PDB's name, GUID and age (from a CodeView record)."""
        if cv is not None:
            self.extra["pdb_name"] = cv.pdb_name
            self.extra["pdb_guid"] = cv.guid
            self.extra["pdb_age"] = cv.age


class Target(ABC):
    """A source of Windows memory; see the module docstring for the contract."""

    #: True when memory can change between commands (live VM, live kernel debugging).
    live = False

    @property
    @abstractmethod
    def kernel(self) -> AddressSpace:
        """The kernel's (or, for user dumps, the process's) virtual address space."""

    @property
    def physical(self) -> Optional[PhysicalSource]:
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

    def debugger_symbol(self, name: str) -> Optional[int]:
        """The address of kernel global `name` as a debugger attached to this target knows it
        (its loaded symbols), None when there is no debugger: files state globals through their
        header and KDBG instead (`kernel.context.KernelContext.resolve_global`)."""
        del name
        return None

    def pe_image(self, base: int) -> PeInfo:
        """The PE headers of the image mapped at `base` in kernel memory, parsed once (kept in
        the kernel space's memo, see `pe.read_pe_info`). Raises like `read_pe_info`."""
        return read_pe_info(self.kernel, base)

    def kernel_image(self) -> Optional[PeInfo]:
        """The kernel's PE headers (at `info().kernel_base`), None when unknown or unreadable."""
        base = self.info().kernel_base
        if not base:
            return None
        try:
            return self.pe_image(base)
        except PykdExtError:
            return None

    def drop_caches(self) -> None:
        """Forget cached pages and translations (between commands on live targets)."""
        self.kernel.drop_caches()
        if self.physical is not None:
            self.physical.drop_caches()

    def refresh(self) -> None:
        """Make later reads see memory as it is now (live targets: `live.qemu`, `live.livefile`
        drop their caches and re-read what may have changed). A dump does not change: nothing
        to do. `watch` calls this between runs."""

    def close(self) -> None:
        """Release files and mappings."""

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
