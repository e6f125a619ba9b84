"""`--target live:PATH`: a raw physical image that changes while we read it.

A VMware `.vmem` of a running VM, or a QEMU RAM file with no QMP socket to ask: read like a raw
image (the kernel's DTB and image are found the same way, `targets.rawimage.RawImageTarget`), but
- pages are read with `os.pread`, never mapped (`ramfile.PreadPhysicalMemory`): the file's owner
  may truncate it, and a mapped page past the new end would kill us with SIGBUS;
- `refresh()` drops every cached translation and page and re-reads the file's size, so the next
  read sees the guest's memory as it is now;
- `?lowmem=SIZE` says where QEMU split the file (q35: 2 GiB when the guest has more than 2.75 GiB;
  pc/i440fx: 3 GiB or 3.5 GiB): the bytes past SIZE are guest-physical memory from 4 GiB.
"""
from typing import Optional

from pykd_ext.live.locator import parse_size, split_locator
from pykd_ext.live.ramfile import PreadPhysicalMemory
from pykd_ext.targets.base import TargetDescription
from pykd_ext.targets.rawimage import RawImageTarget

OPTIONS = ("lowmem",)


class LiveFileTarget(RawImageTarget):
    """A raw image whose memory changes: pread pages, caches dropped on `refresh()`."""

    live = True

    def refresh(self) -> None:
        """Make later reads see the file as it is now (translations, pages, size). `info()`'s
        kernel facts are kept (the kernel does not move) unless the file's size changed."""
        kept = self._info
        runs = self._physical.runs()
        self.drop_caches()
        if self._physical.runs() == runs:
            self._info = kept


def open_live_file(path: str, lowmem: Optional[int] = None) -> LiveFileTarget:
    """Open a changing raw image; `lowmem`: bytes of the file below the 4 GiB split."""
    source = PreadPhysicalMemory(path, lowmem)
    try:
        options = (("lowmem", str(lowmem)),) if lowmem is not None else ()
        size = sum(length for _, _, length in source.segments)
        return LiveFileTarget(source, TargetDescription("live", path, options), path, "live raw",
                              facts={"ram_bytes": size, "segments": source.segments})
    except BaseException:
        source.close()
        raise


def open_live_locator(text: str) -> LiveFileTarget:
    """`PATH[?lowmem=SIZE]` (the part after `live:`)."""
    path, options = split_locator(text, OPTIONS)
    lowmem = parse_size(options["lowmem"], "lowmem") if "lowmem" in options else None
    return open_live_file(path, lowmem)
