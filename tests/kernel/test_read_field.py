"""`view.read_field` (one field, only its bytes) decodes what was planted, equals `StructView`'s
decoding of the same field (the one accessor), and returns a Fault for memory not in the dump.

Expected values are the planted world's (tests/kernel/planted.py: PIDs, thread ids, owning
process addresses), on every build the kernel tests cover.
"""
from typing import Any

from pykd_ext.kernel.context import context_for
from pykd_ext.kernel.view import StructView, read_field
from pykd_ext.memory.faults import Fault
from pykd_ext.session import Session


def test_read_field_decodes_planted_values(world: Any) -> None:
    ctx = context_for(Session(world.path))
    space = ctx.space
    eprocess, ethread = ctx.layouts.type("_EPROCESS"), ctx.layouts.type("_ETHREAD")
    owner = "Tcb.Process" if ethread.has_field("Tcb.Process") else "Tcb.ApcState.Process"
    checked = 0
    for spec in world.specs:
        if spec.pid not in world.process_va:
            continue
        ep = world.process_va[spec.pid]
        assert read_field(space, eprocess, ep, "UniqueProcessId") == spec.pid
        view = StructView(space, eprocess, ep)
        assert read_field(space, eprocess, ep, "Pcb.DirectoryTableBase") == \
            view["Pcb.DirectoryTableBase"]
        for t in spec.threads:
            et = world.thread_va.get(t.tid)
            if et is None:
                continue
            assert read_field(space, ethread, et, "Cid.UniqueThread") == t.tid
            assert read_field(space, ethread, et, owner) == ep
            checked += 1
    assert checked >= 3
    # the first 64 KiB are never mapped on Windows: the walker's Fault, not an exception
    missing = read_field(space, eprocess, 0x1000, "UniqueProcessId")
    assert isinstance(missing, Fault)
