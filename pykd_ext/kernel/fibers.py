"""What a TEB proves about fibers: whether the thread runs them, the current fiber, its FLS data.

Why a module: `ConvertThreadToFiber` (kernelbase) sets the TEB's `SameTebFlags.HasFiberData` bit
and points `NtTib.FiberData` at the fiber it allocates; the first `FlsAlloc` points `FlsData` at
the thread's fiber-local storage. Those three TEB members are in the kernel's symbol data (the
bit's position comes from the build's `_TEB`/`_TEB32` layout). The fiber block itself (its
parameter, stack base/limit, saved CONTEXT, FLS pointer) is a private kernelbase structure that
is NOT in the public kernel symbols: it is never typed by hand here, and the output says so.
Without `HasFiberData`, `NtTib.FiberData` is the union's `Version` (e.g. 0x1E00), not a fiber.
"""
from typing import Any, Dict

from pykd_ext.memory.faults import Fault

#: said in text and JSON wherever a fiber is shown
FIBER_LAYOUT_NOTE = ("the fiber block's layout (stack base/limit, saved context) is kernelbase's "
                     "private structure and is not in the public kernel symbols; shown is what "
                     "the TEB proves")


def fiber_facts(record: Dict[str, Any]) -> Dict[str, Any]:
    """The `fiber` object of a decoded TEB record (`kernel.teb.decode_teb`)."""
    flag = record.get("has_fiber_data")
    runs = flag if isinstance(flag, (bool, Fault)) or flag is None else bool(flag)
    fiber_data = record.get("fiber_data")
    return {
        "runs_fibers": runs,
        "current_fiber": fiber_data if runs is True else None,
        "version_in_fiber_data": fiber_data if runs is False else None,
        "fls_data": record.get("fls_data"),
        "fiber_block_layout": None,
        "note": FIBER_LAYOUT_NOTE,
    }


__all__ = ["FIBER_LAYOUT_NOTE", "fiber_facts"]
