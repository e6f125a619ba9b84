"""The target of every virtual-only source (triage minidumps, user minidumps, USERDU64 dumps).

Why: these formats have no page tables and no physical memory; what they give the rest of
pykd-ext is one sparse address space and the facts the file states.  One small class serves them
all so the contract (`physical` is None, `process_space` returns the same space, `close` unmaps)
is written once.
"""
from typing import Any, Dict, List, Optional

from pykd_ext.errors import DumpFormatError, TargetError
from pykd_ext.memory.sparse import SparseAddressSpace
from pykd_ext.targets.base import Target, TargetDescription, TargetInfo


class VirtualTarget(Target):
    """A target made of one `SparseAddressSpace` over a read-only mapped file."""

    def __init__(self, path: str, mapping: Any, space: SparseAddressSpace, info: TargetInfo) -> None:
        self._path = path
        self._mapping = mapping          # an mmap or a FileMap; closed by close()
        self._space: Optional[SparseAddressSpace] = space
        self._info = info

    @property
    def kernel(self) -> SparseAddressSpace:
        """The one address space (kernel VAs for triage dumps, the process for user dumps)."""
        if self._space is None:
            raise TargetError("target is closed", self._path)
        return self._space

    def process_space(self, directory_table_base: int) -> SparseAddressSpace:
        """Virtual-only sources have one space whatever the DTB."""
        return self.kernel

    def info(self) -> TargetInfo:
        return self._info

    def describe(self) -> TargetDescription:
        return TargetDescription("file", self._path)

    def close(self) -> None:
        self._space = None
        mapping, self._mapping = self._mapping, None
        if mapping is not None:
            try:
                mapping.close()
            except (BufferError, ValueError):
                pass        # views still held by callers keep the mapping until they are dropped


class FileReader:
    """What a reader of one of these files keeps while it parses: the mapping, the facts and
    notes for `info()`, and typed errors naming the format."""

    #: the format's name at the start of every error message ("minidump: ...")
    format_name = "file"

    def __init__(self, path: str, fmap: Any) -> None:
        self.path = path
        self.fmap = fmap
        self.size: int = fmap.size
        self.notes: List[str] = []
        self.extra: Dict[str, Any] = {}

    def fail(self, message: str) -> DumpFormatError:
        return DumpFormatError("%s: %s" % (self.format_name, message), self.path)
