"""How much RAM a forged machine declares: sized from its scenario, not a fixed constant.

Why: the forge hands out physical frames with a bump allocator over the machine's memory map
(`physmem.PhysicalImage`); a map too small for the scenario fails half-way ("memory map has no
room"), and a benchmark machine (10,000 processes, 200,000 threads) needs gigabytes where the
standard scenario needs 20 MiB. Declared RAM costs nothing until a frame is written (frames are
not materialised, and a bitmap dump stores one bit per frame), so the estimate errs on the large
side: every kind of object the scenario builder writes is counted by the size its layout states
(and as the forge's pool packs it: a block never straddles a page), with a generous allowance
where the amount depends on strings and lists (tokens, loader data, environments); the sum gets
half again as margin and is rounded up to a power of two. 256 MiB is the floor (the standard
scenario and the shipped samples keep their memory map).

What is counted (see `kernel_objects._Builder`, `security_objects`, `user_objects`):
- the kernel image's frames and a fixed share for page tables, object types, processors;
- per process: its pool blocks (`_EPROCESS`, `_TOKEN` with its SIDs and privileges, the
  `_HANDLE_TABLE` and its entry and pointer pages for the planted handle count), and for a user
  process its own page tables, PEB, process parameters, environment and loader data;
- per thread: its pool blocks (`_ETHREAD`, dispatcher objects it waits on, `_KAFFINITY_EX`
  where the build keeps affinity out of line) and its TEB pages (twice for WoW64: TEB32);
- `PspCidTable`'s entry pages (one entry per process and thread) and pointer pages.
"""
from typing import Any

from pykd_ext.forge.physmem import pc_memory_map
from pykd_ext.forge.scenario import ScenarioSpec
from pykd_ext.memory.space import PAGE_SIZE

#: The smallest machine the forge declares (what the standard scenario has always had).
MIN_RAM_BYTES = 0x10000000
#: Fixed share besides the kernel image: kernel page tables, KUSER_SHARED_DATA, object types,
#: sessions, processors, the low stub, and the pool arena's last partly used chunk.
FIXED_BYTES = 0x1000000
#: Allowances where the size depends on strings and lists rather than one structure
#: (upper bounds of what the builder writes today, in bytes):
TOKEN_EXTRA_BYTES = 0x1000        # SIDs, groups, privileges, default DACL of a full token
DISPATCHER_OBJECT_BYTES = 0x100   # one _KEVENT/_KQUEUE/_KTIMER... with its pool header
USER_PROCESS_BYTES = 48 * PAGE_SIZE   # page tables, PEB, parameters, environment, loader data
#: Everything above is multiplied by this before rounding up (slack for what grows later).
MARGIN = 1.5


def _pool_block(facts: Any, type_name: str) -> int:
    """Bytes of one pool allocation of an executive object: pool header, object header, body."""
    return (facts.size("_POOL_HEADER") + facts.offset("_OBJECT_HEADER", "Body")
            + facts.size(type_name))


def _pool_bytes(block: int) -> float:
    """What one pool block really takes: the forge's pool never lets a block of up to a page
    straddle pages (`kernel_memory.Arena`), so a page holds PAGE // block of them."""
    if block > PAGE_SIZE:
        return float(-(-block // PAGE_SIZE) * PAGE_SIZE)
    return PAGE_SIZE / (PAGE_SIZE // max(block, 16))


def _table_pages(entries: int, per_page: int) -> int:
    """Entry pages plus pointer pages of a handle table holding `entries` handles (the first
    entry of each page is never handed out)."""
    pages = -(-(entries + 1) // (per_page - 1))
    return pages + (0 if pages <= 1 else 2 + pages // (PAGE_SIZE // 8))


def scenario_ram_bytes(spec: ScenarioSpec, facts: Any, image_bytes: int) -> int:
    """Bytes of RAM (the span given to `pc_memory_map`) for `spec` on the build of `facts`
    (`kernel_memory.BuildFacts`), whose kernel image is `image_bytes` long."""
    per_entry_page = PAGE_SIZE // facts.size("_HANDLE_TABLE_ENTRY")
    teb_pages = -(-facts.size("_TEB") // PAGE_SIZE) if facts.has_type("_TEB") else 2
    affinity = 0 if facts.has("_ETHREAD", "Tcb.Affinity.Mask") else 2 * facts.size("_KAFFINITY_EX")
    thread_bytes = _pool_bytes(_pool_block(facts, "_ETHREAD")) + affinity
    process_bytes = (_pool_bytes(_pool_block(facts, "_EPROCESS"))
                     + _pool_bytes(_pool_block(facts, "_TOKEN")) + TOKEN_EXTRA_BYTES
                     + _pool_bytes(facts.size("_HANDLE_TABLE") + facts.size("_POOL_HEADER")))
    total = float(image_bytes + FIXED_BYTES)
    cids = 0
    for proc in spec.processes:
        threads = len(proc.threads)
        cids += 1 + threads
        total += process_bytes + threads * thread_bytes
        total += sum(len(t.wait_objects) for t in proc.threads) * DISPATCHER_OBJECT_BYTES
        total += _table_pages(max(proc.handles, 1), per_entry_page) * PAGE_SIZE
        if proc.user_mode and not proc.system:
            total += USER_PROCESS_BYTES
            tebs = sum(1 for t in proc.threads if t.teb)
            total += tebs * teb_pages * PAGE_SIZE * (2 if proc.wow64 else 1)
    total += _table_pages(cids, per_entry_page) * PAGE_SIZE
    need = int(total * MARGIN)
    size = MIN_RAM_BYTES
    while ram_in(size) < need:
        size *= 2
    return size


def ram_in(span_bytes: int) -> int:
    """Bytes of RAM `pc_memory_map(span_bytes)` holds (the PCI hole is not RAM)."""
    return sum(count for _first, count in pc_memory_map(span_bytes)) * PAGE_SIZE


__all__ = ["MIN_RAM_BYTES", "ram_in", "scenario_ram_bytes"]
