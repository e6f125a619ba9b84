"""A process's Virtual Address Descriptors (`_EPROCESS.VadRoot`), like WinDbg's `!vad`.

Why: the VAD tree is the process's own map of its address space: each node is a reserved range
(start and end VPN), its commit charge, protection, whether it is private memory or a mapped
view, and for a mapped view the section behind it (`_MMVAD.Subsection` -> `_SUBSECTION.ControlArea`
-> `_CONTROL_AREA.FilePointer`, an `_EX_FAST_REF` to the `_FILE_OBJECT` whose `FileName` names
the file; `_CONTROL_AREA.u.Flags.Image` says it is an image view).

Every difference between builds is the layout's: Windows 7 keeps an `_MM_AVL_TABLE` whose
`BalancedRoot.RightChild` is the root and nodes link by `LeftChild`/`RightChild` with 64-bit
`StartingVpn`/`EndingVpn` and the commit charge in `u.VadFlags`; Windows 8.1+ keep an
`_RTL_AVL_TREE` (`Root`), nodes are `_RTL_BALANCED_NODE`s (`VadNode.Left`/`Right`) with 32-bit
VPNs plus `StartingVpnHigh`/`EndingVpnHigh`, and the commit charge in `u1.VadFlags1`
(plus `CommitChargeHigh` above the field's width). Flag bit positions come from the layouts.

The protection is an index into the kernel's `MmProtectToValue[]` table (one ULONG per index,
`2**bit_length(Protection)` of them; WRK `mi.h`), read from the dump's own kernel image, whose
values are winnt.h `PAGE_*` flags (the names below, from winnt.h). When the table is not in the
dump, the index alone is shown, with a note.

The walk is in-order (ascending addresses), iterative (no recursion), bounded (`MAX_VADS`),
cycle-safe, and charged to the command's work budget.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.view import StructView, read_field
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: nodes walked per process at most (a large process has a few thousand VADs)
MAX_VADS = 200000
#: bytes of one `MmProtectToValue` entry: the WRK declares `ULONG MmProtectToValue[32]` (mi.h)
PROTECT_ENTRY_SIZE = 4
#: winnt.h memory protection constants, in the order `!vad`/Volatility name them
PAGE_FLAGS: Tuple[Tuple[str, int], ...] = (
    ("PAGE_NOACCESS", 0x01), ("PAGE_READONLY", 0x02), ("PAGE_READWRITE", 0x04),
    ("PAGE_WRITECOPY", 0x08), ("PAGE_EXECUTE", 0x10), ("PAGE_EXECUTE_READ", 0x20),
    ("PAGE_EXECUTE_READWRITE", 0x40), ("PAGE_EXECUTE_WRITECOPY", 0x80), ("PAGE_GUARD", 0x100),
    ("PAGE_NOCACHE", 0x200), ("PAGE_WRITECOMBINE", 0x400),
)
#: the PAGE_* flags that allow execution (the `malfind` question: executable private memory)
EXECUTE_FLAGS = 0x10 | 0x20 | 0x40 | 0x80


class VadShape:
    """Where this build keeps each VAD fact (member paths of `_MMVAD_SHORT`/`_MMVAD`), or None."""

    def __init__(self, ctx: "KernelContext") -> None:
        short = ctx.layouts.type("_MMVAD_SHORT")
        self.short = short
        self.long = ctx.layouts.type("_MMVAD") if ctx.layouts.has_type("_MMVAD") else None
        if short.has_field("VadNode.Left"):
            self.left, self.right = "VadNode.Left", "VadNode.Right"
        else:
            self.left, self.right = "LeftChild", "RightChild"
        self.vpn_high = short.has_field("StartingVpnHigh")
        self.commit = "u1.VadFlags1.CommitCharge" if short.has_field("u1.VadFlags1.CommitCharge") \
            else "u.VadFlags.CommitCharge"
        self.commit_bits = short.field(self.commit).bit_length or 0
        self.mem_commit = "u1.VadFlags1.MemCommit" if short.has_field("u1.VadFlags1.MemCommit") \
            else ("u.VadFlags.MemCommit" if short.has_field("u.VadFlags.MemCommit") else None)
        self.protection_bits = short.field("u.VadFlags.Protection").bit_length or 0
        prefix = "Core." if self.long is not None and self.long.has_field("Core") else ""
        self.subsection_offset = self.long.offset("Subsection") if self.long is not None and \
            self.long.has_field("Subsection") else None
        self.long_prefix = prefix


def vad_root(ctx: "KernelContext", process: int) -> Any:
    """The root VAD node of the process (0 when it has none), or the Fault."""
    eprocess = ctx.layouts.type("_EPROCESS")
    if eprocess.has_field("VadRoot.Root"):
        return read_field(ctx.space, eprocess, process, "VadRoot.Root")
    if eprocess.has_field("VadRoot.BalancedRoot.RightChild"):       # Windows 7: _MM_AVL_TABLE
        return read_field(ctx.space, eprocess, process, "VadRoot.BalancedRoot.RightChild")
    return None


def protect_values(ctx: "KernelContext", shape: VadShape) -> Optional[List[int]]:
    """`MmProtectToValue[]` as the dump holds it, or None when it is not readable."""
    cached: Any = getattr(ctx, "_protect_values", False)
    if cached is not False:
        return cast(Optional[List[int]], cached)
    values: Optional[List[int]] = None
    address = ctx.global_address("MmProtectToValue")
    count = 1 << shape.protection_bits
    if address is not None and count:
        try:
            raw = ctx.space.read(address, count * PROTECT_ENTRY_SIZE)
            values = [int.from_bytes(raw[i:i + PROTECT_ENTRY_SIZE], "little")
                      for i in range(0, len(raw), PROTECT_ENTRY_SIZE)]
        except MemoryReadError:
            values = None
    ctx._protect_values = values
    return values


def protection_text(value: Optional[int]) -> Optional[str]:
    """`PAGE_EXECUTE_READWRITE|PAGE_GUARD` for a PAGE_* value (None when unknown)."""
    if value is None:
        return None
    names = [name for name, mask in PAGE_FLAGS if value & mask]
    return "|".join(names) if names else "0x%x" % value


class VadWalk:
    """The VADs of one process (records in ascending address order) and how the walk ended."""

    def __init__(self) -> None:
        self.vads: List[Dict[str, Any]] = []
        self.notes: List[str] = []


def walk_vads(ctx: "KernelContext", process: int, name: Any = None) -> VadWalk:
    """Every VAD of the `_EPROCESS` at `process`, in order (see the module docstring)."""
    result = VadWalk()
    who = "process 0x%x%s" % (process, (" (%s)" % name) if isinstance(name, str) else "")
    if not ctx.has("_MMVAD_SHORT"):
        result.notes.append("this build's layouts have no _MMVAD_SHORT: VADs cannot be decoded")
        return result
    shape = VadShape(ctx)
    root = vad_root(ctx, process)
    if isinstance(root, Fault):
        result.notes.append("%s: VadRoot not in the dump (%s)" % (who, root))
        return result
    if not isinstance(root, int) or not root:
        return result
    table = protect_values(ctx, shape)
    if table is None:
        result.notes.append("MmProtectToValue is not in the dump: protection is shown as the index")
    budget = ctx.budget
    seen: Set[int] = set()
    stack: List[Tuple[int, int]] = []              # (node, depth in the tree: WinDbg's Level)
    node: Optional[int] = root
    depth = 0
    while stack or node:
        while node:
            if node in seen:
                result.notes.append("%s: the VAD tree comes back to 0x%x (a cycle): walk stopped" % (who, node))
                return result
            if len(seen) >= MAX_VADS:
                result.notes.append("%s: more than %d VADs: walk stopped" % (who, MAX_VADS))
                return result
            if budget is not None and not budget.take_entry():
                return result
            seen.add(node)
            stack.append((node, depth))
            left = read_field(ctx.space, shape.short, node, shape.left)
            if isinstance(left, Fault):
                result.notes.append("%s: VAD 0x%x is not in the dump (%s)" % (who, node, left))
                stack.pop()
                node = None
                break
            node = left if isinstance(left, int) else None
            depth += 1
        if not stack:
            break
        current, level = stack.pop()
        record, right = _decode(ctx, shape, current, table)
        record["level"] = level
        result.vads.append(record)
        node = right if isinstance(right, int) else None
        depth = level + 1
    return result


def _decode(ctx: "KernelContext", shape: VadShape, address: int, table: Optional[List[int]]
            ) -> Tuple[Dict[str, Any], Any]:
    view = StructView(ctx.space, shape.short, address)
    start_vpn, end_vpn = view["StartingVpn"], view["EndingVpn"]
    if shape.vpn_high and isinstance(start_vpn, int) and isinstance(end_vpn, int):
        high_s, high_e = view["StartingVpnHigh"], view["EndingVpnHigh"]
        start_vpn |= (high_s if isinstance(high_s, int) else 0) << 32
        end_vpn |= (high_e if isinstance(high_e, int) else 0) << 32
    commit = view[shape.commit]
    if isinstance(commit, int) and view.has("CommitChargeHigh"):
        high = view["CommitChargeHigh"]
        commit |= (high if isinstance(high, int) else 0) << shape.commit_bits
    private = view["u.VadFlags.PrivateMemory"]
    protection = view["u.VadFlags.Protection"]
    value = table[protection] if table is not None and isinstance(protection, int) \
        and protection < len(table) else None
    rec: Dict[str, Any] = {
        "vad": address,
        "start": (start_vpn << 12) if isinstance(start_vpn, int) else start_vpn,
        "end": (((end_vpn + 1) << 12) - 1) if isinstance(end_vpn, int) else end_vpn,
        "start_vpn": start_vpn, "end_vpn": end_vpn, "commit": commit,
        "protection_index": protection, "protection_value": value,
        "protection": protection_text(value) if value is not None else None,
        "executable": bool(value & EXECUTE_FLAGS) if value is not None else None,
        "vad_type": view["u.VadFlags.VadType"],
        "mem_commit": view[shape.mem_commit] if shape.mem_commit else None,
        "private": bool(private) if isinstance(private, int) else private,
        "kind": None, "control_area": None, "file_object": None, "file_name": None,
    }
    if private == 0:
        rec.update(_mapped(ctx, shape, address))
    elif private == 1:
        rec["kind"] = "private"
    return rec, view[shape.right]


def _mapped(ctx: "KernelContext", shape: VadShape, address: int) -> Dict[str, Any]:
    """The section behind a mapped view: control area, file object, file name, image or not."""
    out: Dict[str, Any] = {"kind": "mapped"}
    if shape.long is None or shape.subsection_offset is None or not ctx.has("_SUBSECTION", "ControlArea"):
        return out
    subsection = read_field(ctx.space, shape.long, address, "Subsection")
    if not isinstance(subsection, int) or not subsection:
        return out
    area = read_field(ctx.space, ctx.layouts.type("_SUBSECTION"), subsection, "ControlArea")
    if not isinstance(area, int) or not area:
        return out
    out["control_area"] = area
    ca = StructView(ctx.space, ctx.layouts.type("_CONTROL_AREA"), area)
    image = ca.get("u.Flags.Image")
    if image == 1:
        out["kind"] = "image"
    pointer = ca.get("FilePointer.Object")
    if isinstance(pointer, int) and pointer:
        file_object = pointer & ctx.fast_ref_mask
        out["file_object"] = file_object
        if ctx.has("_FILE_OBJECT", "FileName"):
            out["file_name"] = ctx.read_unicode(ctx.view("_FILE_OBJECT", file_object), "FileName")
    return out


def cross_view(vads: List[Dict[str, Any]], modules: List[Dict[str, Any]]) -> Dict[str, Any]:
    """What a responder asks of the VADs beside the PEB's loader lists (each VAD record gains
    `loader_module`: the loaded module whose base is the start of its image view, or None):

    - `image_vads_not_on_loader_lists`: image views no loader entry names (an unlinked or
      manually mapped image);
    - `loader_modules_without_image_vad`: loader entries with no image view at their base
      (a forged or stale entry, or a VAD the dump lacks);
    - `executable_private`: private memory whose protection allows execution (the `malfind`
      question: shellcode, JIT, unpacked code).

    Without any loader-list module (the PEB's pages not in the dump) the first two are None:
    there is nothing to compare with."""
    by_base: Dict[int, Dict[str, Any]] = {}
    for module in modules:
        base = module.get("base")
        if isinstance(base, int) and base:
            by_base.setdefault(base, module)
    image_starts = set()
    unlisted: List[Dict[str, Any]] = []
    executable: List[Dict[str, Any]] = []
    for vad in vads:
        if vad.get("kind") == "image":
            start = vad.get("start")
            found = by_base.get(start) if isinstance(start, int) else None
            vad["loader_module"] = found.get("name") if found is not None else None
            image_starts.add(vad.get("start"))
            if found is None:
                unlisted.append({"vad": vad["vad"], "start": vad["start"], "end": vad["end"],
                                 "file_name": vad.get("file_name")})
        else:
            vad["loader_module"] = None
        if vad.get("private") is True and vad.get("executable") is True:
            executable.append({"vad": vad["vad"], "start": vad["start"], "end": vad["end"],
                               "protection": vad.get("protection"), "commit": vad.get("commit")})
    missing = [{"base": base, "name": module.get("name"), "path": module.get("path")}
               for base, module in sorted(by_base.items()) if base not in image_starts]
    if not by_base:          # the loader lists were not readable: nothing to compare with
        return {"image_vads_not_on_loader_lists": None, "loader_modules_without_image_vad": None,
                "executable_private": executable, "modules_compared": 0}
    return {"image_vads_not_on_loader_lists": unlisted, "loader_modules_without_image_vad": missing,
            "executable_private": executable, "modules_compared": len(by_base)}


__all__ = ["MAX_VADS", "PAGE_FLAGS", "VadWalk", "cross_view", "protection_text", "vad_root", "walk_vads"]
