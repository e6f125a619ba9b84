"""Registry key handles: the full key path behind a `Key` object (`\\REGISTRY\\MACHINE\\...`).

Why its own module: a Key object body (`_CM_KEY_BODY`) carries no object-manager name; the path
lives in the configuration manager's cache. `KeyControlBlock` points at the key's
`_CM_KEY_CONTROL_BLOCK` (KCB); each KCB has a `NameBlock` (`_CM_NAME_CONTROL_BLOCK`: `Compressed`
flag, `NameLength` in bytes, `Name` inline, 8-bit when compressed else UTF-16) and a `ParentKcb`,
up to the root KCB `REGISTRY` whose parent is NULL. WinDbg's `!handle` shows the chain joined root
first with a leading backslash; so do we. Source: Windows Internals 7th ed., Part 2, ch. 10
"Registry internals / Key control blocks"; ReactOS `ntoskrnl/config/cmkcbncb.c`.

Since Windows 10 1607 a hive mounted under a link key gets two KCBs: the link key in the parent
hive (flagged `KEY_HIVE_EXIT`) and the hive's root key (flagged `KEY_HIVE_ENTRY`, named after the
hive's root cell, e.g. `CMI-CreateHive{...}`). The user-visible path names the link only, so an
entry KCB whose parent is an exit KCB contributes no piece (Volatility 3 skips the same KCB).
The two flag values are the hive-format key-node flags the KCB's `Flags` copies (ReactOS
`cmdata.h` KEY_HIVE_EXIT 0x2 / KEY_HIVE_ENTRY 0x4); every offset and bit comes from the layout.

The walk is bounded (`MAX_KEY_DEPTH`) and cycle-safe; an unreadable KCB or name gives a partial
path with `UNREADABLE_PIECE` where the piece would be, never an exception.
"""
from typing import TYPE_CHECKING, Any, List, Optional, Set, Union, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.budget import BUDGET_CUT
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: Registry paths are at most 512 levels in theory; real KCB chains are a dozen deep.
MAX_KEY_DEPTH = 64
#: `_CM_KEY_CONTROL_BLOCK.Flags` bits (hive-format CM_KEY_NODE flags, ReactOS cmdata.h).
KEY_HIVE_EXIT = 0x0002
KEY_HIVE_ENTRY = 0x0004
#: What stands in the path for a piece that could not be read (or past a loop / the depth bound).
UNREADABLE_PIECE = "<?>"
KEY_TYPES = ("_CM_KEY_BODY", "_CM_KEY_CONTROL_BLOCK", "_CM_NAME_CONTROL_BLOCK")


class KeyPath:
    """The pieces of one key's path, root first, and whether the chain was read to the root."""

    __slots__ = ("pieces", "complete", "rooted", "fault", "problem", "kcb")

    def __init__(self) -> None:
        self.pieces: List[str] = []
        self.complete = False
        self.rooted = False                     # the walk reached the root KCB
        self.fault: Optional[Fault] = None
        self.problem: Optional[str] = None      # "unreadable", "cycle", "too deep", BUDGET_CUT
        self.kcb: Optional[int] = None

    @property
    def text(self) -> str:
        """`\\REGISTRY\\MACHINE\\...`; an unreadable piece or the cut-off part above a loop is
        marked with `UNREADABLE_PIECE` (e.g. `<?>\\SOFTWARE\\Microsoft`)."""
        joined = "\\".join(self.pieces)
        return "\\" + joined if self.rooted else joined

    def to_dict(self) -> Any:
        return {"key_path": self.text, "kcb": self.kcb, "complete": self.complete,
                "problem": self.problem, "fault": self.fault}


def key_layouts_present(layouts: Any) -> bool:
    """Whether the build's layouts describe the key cache (types-only builds may not)."""
    return all(layouts.has_type(name) for name in KEY_TYPES)


def _name_of(ctx: "KernelContext", block: int) -> Any:
    """The name in the `_CM_NAME_CONTROL_BLOCK` at `block`, or the Fault that stopped it."""
    ncb = ctx.view("_CM_NAME_CONTROL_BLOCK", block)
    # Compressed is a bit, NameLength a USHORT: an int or the Fault that stopped the read
    compressed = cast(Union[int, Fault], ncb["Compressed"])
    length = cast(Union[int, Fault], ncb["NameLength"])
    if isinstance(compressed, Fault):
        return compressed
    if isinstance(length, Fault):
        return length
    if not length:
        return ""
    try:
        data = ctx.space.read(ncb.address_of("Name"), int(length))
    except MemoryReadError as err:
        return err.fault
    if compressed:
        return data.decode("latin-1")
    return data[:len(data) & ~1].decode("utf-16-le", errors="replace")


def key_path(ctx: "KernelContext", body: int, max_depth: int = MAX_KEY_DEPTH) -> KeyPath:
    """The path of the key whose `_CM_KEY_BODY` is at `body` (never raises for bad memory)."""
    path = KeyPath()
    kcb = cast(Union[int, Fault], ctx.view("_CM_KEY_BODY", body)["KeyControlBlock"])   # a pointer
    if isinstance(kcb, Fault) or not kcb:
        path.fault = kcb if isinstance(kcb, Fault) else None
        path.problem = "unreadable" if isinstance(kcb, Fault) else "no key control block"
        path.pieces = [UNREADABLE_PIECE]
        return path
    path.kcb = kcb
    reversed_pieces: List[str] = []
    seen: Set[int] = set()
    has_flags = ctx.layouts.type("_CM_KEY_CONTROL_BLOCK").has_field("Flags")
    current = int(kcb)
    reached_root = False
    budget = getattr(ctx, "budget", None)
    while True:
        if current in seen:
            path.problem = "cycle"
            break
        if len(seen) >= max_depth:
            path.problem = "too deep"
            break
        if budget is not None and not budget.take_entry():
            path.problem = BUDGET_CUT
            break
        seen.add(current)
        view = ctx.view("_CM_KEY_CONTROL_BLOCK", current)
        parent = view["ParentKcb"]
        block = view["NameBlock"]
        flags = view["Flags"] if has_flags else 0
        if isinstance(parent, Fault):
            path.fault = parent
            path.problem = "unreadable"
            break
        skip = False
        if isinstance(flags, int) and flags & KEY_HIVE_ENTRY and parent and has_flags:
            parent_flags = ctx.view("_CM_KEY_CONTROL_BLOCK", int(parent))["Flags"]
            skip = isinstance(parent_flags, int) and bool(parent_flags & KEY_HIVE_EXIT)
        if not skip:
            name = _name_of(ctx, int(block)) if isinstance(block, int) and block else block
            if isinstance(name, str):
                reversed_pieces.append(name)
            else:
                if path.fault is None:
                    path.fault = name if isinstance(name, Fault) else None
                path.problem = "unreadable"
                reversed_pieces.append(UNREADABLE_PIECE)
        if not parent:
            reached_root = True
            break
        current = int(parent)
    if not reached_root and (not reversed_pieces or reversed_pieces[-1] != UNREADABLE_PIECE):
        reversed_pieces.append(UNREADABLE_PIECE)          # the part above where the walk stopped
    path.pieces = list(reversed(reversed_pieces))
    path.rooted = reached_root
    path.complete = reached_root and path.problem is None
    return path


__all__ = ["KEY_HIVE_ENTRY", "KEY_HIVE_EXIT", "KeyPath", "MAX_KEY_DEPTH", "UNREADABLE_PIECE",
           "key_layouts_present", "key_path"]
