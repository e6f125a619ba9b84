"""Why a piece of memory cannot be read: typed answers instead of `None`.

A translation or read that fails produces a `Fault`. Decoders show `fault.marker` in place of the
value ("not in dump", "paged out", ...), so one unreadable page never fails a whole command.
"""
from typing import Optional

# Reasons, as short stable strings (they appear in JSON output).
NOT_IN_DUMP = "not in dump"          # translation fine (or physical address), page not captured
PAGED_OUT = "paged out"              # PTE points into a pagefile
PROTOTYPE = "prototype PTE"          # shared/section page via a prototype PTE, not resolved
DEMAND_ZERO = "demand zero"          # never touched: no data anywhere
INVALID = "invalid address"          # not canonical, or a page-table entry is not valid
NO_PHYSICAL = "no physical memory"   # a virtual-only target (triage/minidump) was asked for physical
UNAVAILABLE = "unavailable"          # the backend refused (e.g. pykd MemoryException)


class Fault:
    """One reason a virtual or physical address cannot be read."""

    __slots__ = ("reason", "address", "level", "pte", "pagefile", "pagefile_offset")

    def __init__(self, reason: str, address: int, level: Optional[str] = None,
                 pte: Optional[int] = None, pagefile: Optional[int] = None,
                 pagefile_offset: Optional[int] = None) -> None:
        self.reason = reason
        self.address = address
        self.level = level                  # paging level where translation stopped ("PML4E", "PDPTE", "PDE", "PTE")
        self.pte = pte                      # raw entry value at that level, when known
        self.pagefile = pagefile            # pagefile number for PAGED_OUT, when the PTE has it
        self.pagefile_offset = pagefile_offset

    @property
    def marker(self) -> str:
        """What a renderer shows in place of the value."""
        return "<%s>" % self.reason

    def to_dict(self) -> dict:
        out = {"reason": self.reason, "address": self.address}
        for key in ("level", "pte", "pagefile", "pagefile_offset"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def __str__(self) -> str:
        text = "%s at 0x%x" % (self.reason, self.address)
        if self.level:
            text += " (%s" % self.level
            if self.pte is not None:
                text += " 0x%x" % self.pte
            text += ")"
        if self.pagefile_offset is not None:
            text += " pagefile %d offset 0x%x" % (self.pagefile or 0, self.pagefile_offset)
        return text

    def __repr__(self) -> str:
        return "Fault(%s)" % self
