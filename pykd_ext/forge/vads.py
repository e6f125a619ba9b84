"""VAD trees in forged dumps (`ProcessSpec.vads`), laid out as each build's kernel keeps them.

Why: `vad` needs dumps whose address-space descriptors are known. A VAD is given as plain data
(`{"start", "size", "protection", "private", "commit", "image", "file", "vad_type"}`: `protection`
is the MM protection index, `file` an NT path); this module allocates each node from nonpaged
pool with the tag Windows uses (`VadS` for a short, private VAD, `Vad ` for a long one: pooltag.txt;
Volatility 3 chooses `_MMVAD_SHORT`/`_MMVAD` by it), stores the range as VPNs (plus the
`StartingVpnHigh` byte where the build has it), the flags at the layout's bit positions, and for
mapped views a subsection -> control area -> file object chain (`FilePointer` is an
`_EX_FAST_REF`: a reference count is left in its low bits). The nodes form a balanced binary
search tree by address, rooted at `_EPROCESS.VadRoot.Root` (Windows 8.1+) or
`VadRoot.BalancedRoot.RightChild` (Windows 7's `_MM_AVL_TABLE`). The kernel's
`MmProtectToValue[32]` table (WRK `mi.h`: the eight base protections, then the same with
NOCACHE, GUARD and WRITECOMBINE) is written to its symbol. Nothing is written for a scenario
without VADs. `"start": "image"` places a VAD at the process's exe (the PEB's ImageBaseAddress
the forge chose).
"""
from typing import Any, Dict, List, Optional, Tuple

#: winnt.h PAGE_* values in MM protection-index order (WRK mi.h MmProtectToValue, first row)
_BASE = (0x01, 0x02, 0x10, 0x20, 0x04, 0x08, 0x40, 0x80)
#: the modifier of each row of eight: none, PAGE_NOCACHE, PAGE_GUARD, PAGE_WRITECOMBINE
_ROWS = (0, 0x200, 0x100, 0x400)


def protect_to_value() -> List[int]:
    """The 32 entries of MmProtectToValue (index 0 of each row is PAGE_NOACCESS alone)."""
    return [(_BASE[j] | _ROWS[i]) if j else _BASE[0] for i in range(len(_ROWS)) for j in range(8)]


def plant_vads(builder: Any) -> None:
    """The hook `kernel_objects._Builder.build` calls: every process's `vads`."""
    spec = builder.spec
    if not any(getattr(p, "vads", None) for p in spec.processes):
        return
    facts, mem = builder.facts, builder.mem
    if facts.has_symbol("MmProtectToValue"):
        table = protect_to_value()
        mem.write(builder.sym("MmProtectToValue"), b"".join(v.to_bytes(4, "little") for v in table))
        builder.planted.globals["MmProtectToValue"] = builder.sym("MmProtectToValue")
    for proc in spec.processes:
        if not getattr(proc, "vads", None) or proc.pid not in builder.eprocess:
            continue
        # `"start": "image"`: the process's own exe, wherever the forge put its image
        vads = [dict(v, start=builder.image_bases[proc.pid]) if v["start"] == "image" else v for v in proc.vads]
        nodes = [_plant_node(builder, vad) for vad in sorted(vads, key=lambda v: v["start"])]
        record = builder.planted.process(proc.pid)
        record["vads"] = [n["record"] for n in nodes]
        _link_tree(builder, builder.eprocess[proc.pid], [n["address"] for n in nodes])


def _plant_node(builder: Any, vad: Dict[str, Any]) -> Dict[str, Any]:
    facts, mem = builder.facts, builder.mem
    private = bool(vad.get("private", True))
    body = "_MMVAD_SHORT" if private else "_MMVAD"
    node = builder.pool_object(b"VadS" if private else b"Vad ", body, None)
    start, size = vad["start"], vad["size"]
    start_vpn, end_vpn = start >> 12, (start + size - 1) >> 12
    put = mem.put
    if facts.has("_MMVAD_SHORT", "StartingVpnHigh"):
        bits = 8 * facts.field("_MMVAD_SHORT", "StartingVpn").size
        low = (1 << bits) - 1
        put("_MMVAD_SHORT", node, "StartingVpn", start_vpn & low)
        put("_MMVAD_SHORT", node, "EndingVpn", end_vpn & low)
        put("_MMVAD_SHORT", node, "StartingVpnHigh", start_vpn >> bits)
        put("_MMVAD_SHORT", node, "EndingVpnHigh", end_vpn >> bits)
    else:
        put("_MMVAD_SHORT", node, "StartingVpn", start_vpn)
        put("_MMVAD_SHORT", node, "EndingVpn", end_vpn)
    commit = int(vad.get("commit", 0))
    if facts.has("_MMVAD_SHORT", "u1.VadFlags1.CommitCharge"):
        put("_MMVAD_SHORT", node, "u1.VadFlags1.CommitCharge", commit)
        mem.put_if("_MMVAD_SHORT", node, "u1.VadFlags1.MemCommit", int(commit > 0))
    else:
        put("_MMVAD_SHORT", node, "u.VadFlags.CommitCharge", commit)
        mem.put_if("_MMVAD_SHORT", node, "u.VadFlags.MemCommit", int(commit > 0))
    put("_MMVAD_SHORT", node, "u.VadFlags.Protection", int(vad["protection"]))
    put("_MMVAD_SHORT", node, "u.VadFlags.PrivateMemory", int(private))
    put("_MMVAD_SHORT", node, "u.VadFlags.VadType", int(vad.get("vad_type", 0)))
    record: Dict[str, Any] = {"vad": node, "start": start, "end": start + size - 1, "commit": commit,
                              "protection_index": int(vad["protection"]),
                              "protection_value": protect_to_value()[int(vad["protection"])],
                              "private": private, "vad_type": int(vad.get("vad_type", 0)),
                              "kind": "private" if private else ("image" if vad.get("image") else "mapped"),
                              "file_name": None, "file_object": None, "control_area": None}
    if not private:
        subsection = builder.raw_block("_SUBSECTION")
        area = builder.pool_object(b"MmCa", "_CONTROL_AREA", None)
        put("_MMVAD", node, "Subsection", subsection)
        put("_SUBSECTION", subsection, "ControlArea", area)
        put("_CONTROL_AREA", area, "u.Flags.Image", int(bool(vad.get("image"))))
        put("_CONTROL_AREA", area, "u.Flags.File", int(bool(vad.get("file"))))
        record["control_area"] = area
        if vad.get("file"):
            file_object = builder.pool_object(b"File", "_FILE_OBJECT", None)
            text = str(vad["file"])
            buffer = builder.pool.alloc(2 * len(text) + 2, 8)
            mem.unicode_string("_FILE_OBJECT", file_object, "FileName", text, buffer)
            put("_CONTROL_AREA", area, "FilePointer.Object", file_object | 1)   # a reference count
            record.update(file_object=file_object, file_name=text)
    return {"address": node, "record": record}


def _link_tree(builder: Any, eprocess: int, nodes: List[int]) -> None:
    """A balanced binary search tree of `nodes` (sorted by address), rooted in VadRoot."""
    facts, mem = builder.facts, builder.mem
    if facts.has("_MMVAD_SHORT", "VadNode.Left"):
        left, right = "VadNode.Left", "VadNode.Right"
    else:
        left, right = "LeftChild", "RightChild"
    # iterative: (low, high, parent slot writer) ranges of the sorted list
    root: Optional[int] = None
    work: List[Tuple[int, int, Optional[int], str]] = [(0, len(nodes), None, "")]
    while work:
        low, high, parent, side = work.pop()
        if low >= high:
            continue
        middle = (low + high) // 2
        node = nodes[middle]
        if parent is None:
            root = node
        else:
            mem.put("_MMVAD_SHORT", parent, side, node)
        work.append((low, middle, node, left))
        work.append((middle + 1, high, node, right))
    if facts.has("_EPROCESS", "VadRoot.Root"):
        mem.put("_EPROCESS", eprocess, "VadRoot.Root", root or 0)
        mem.put_if("_EPROCESS", eprocess, "VadCount", len(nodes))
    else:
        mem.put("_EPROCESS", eprocess, "VadRoot.BalancedRoot.RightChild", root or 0)
        mem.put_if("_EPROCESS", eprocess, "VadRoot.NumberGenericTableElements", len(nodes))


__all__ = ["plant_vads", "protect_to_value"]
