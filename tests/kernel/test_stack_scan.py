"""Stack frames as module+offset without symbols (issue 12 "Stacks", issue 13's blame input).

Ground truth from the real triage dumps (`shared/real/README.md`): the 19041 dump's exception
address is amdppm.sys+0x334c; the analyst who published the 17763 dump blamed winhvr.sys, which
is the first non-kernel module on its crashing thread's stack.
"""
from pathlib import Path

import pytest

from pykd_ext.kernel.context import context_for
from pykd_ext.kernel.stack import HEADER_PAGE, ModuleMap, crash_stack, scan_stack
from pykd_ext.session import Session


def _frames(real_dir: Path, name: str):
    session = Session(target_path=str(real_dir / "kernel-triage" / name))
    ctx = context_for(session)
    return ctx, crash_stack(ctx)


def test_19041_frame0_is_the_exception_address(real_dir: Path) -> None:
    ctx, frames = _frames(real_dir, "win10-19041-x64-triage.dmp")
    assert frames[0].method == "context"
    assert frames[0].address == ctx.info.bugcheck_parameters[1]     # 0x1000007E: P2 = address
    assert (frames[0].module, frames[0].offset, frames[0].symbol) == ("amdppm.sys", 0x334c, "amdppm+0x334c")


def test_17763_first_driver_on_the_stack_is_winhvr(real_dir: Path) -> None:
    _ctx, frames = _frames(real_dir, "win10-17763-x64-triage.dmp")
    drivers = [f.module for f in frames[1:] if f.module and f.module.lower() != "ntoskrnl.exe"]
    assert drivers[0] == "winhvr.sys"


@pytest.mark.parametrize("name", ["win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp"])
def test_scan_frames_lie_in_the_saved_stack_and_in_modules(real_dir: Path, name: str) -> None:
    ctx, frames = _frames(real_dir, name)
    base, size = ctx.info.extra["stack"]
    sp = ctx.info.extra["context"]["rsp"]
    scanned = [f for f in frames if f.method == "scan"]
    assert scanned, "the saved stack holds return addresses"
    modules = ModuleMap(ctx.modules())
    for frame in scanned:
        assert sp <= frame.slot < base + size
        assert ctx.space.read_pointer(frame.slot) == frame.address
        name_offset = modules.locate(frame.address)
        assert name_offset == (frame.module, frame.offset) and frame.offset >= HEADER_PAGE
    assert [f.index for f in frames] == list(range(len(frames)))


class _Space:
    """A few bytes of memory: a stack and one module's code page, to check the call test."""

    def __init__(self, blocks):
        self.blocks = blocks

    def read_partial(self, address, size):
        for base, data in self.blocks:
            if base <= address < base + len(data):
                return data[address - base:address - base + size], None
        return b"", None

    def read(self, address, size):
        from pykd_ext.errors import MemoryReadError
        data, _ = self.read_partial(address, size)
        if len(data) != size:
            raise MemoryReadError("not in dump")
        return data


def test_call_verification_and_header_page() -> None:
    code_base = 0xfffff80000010000
    code = bytearray(0x3000)
    code[0x1ffb] = 0xE8                        # call rel32 ending at +0x2000
    code[0x2ffe:0x3000] = b"\xff\xd0"          # call rax ending at +0x3000 - never a return site
    stack = (0x10 + 0x2000 + code_base).to_bytes(8, "little")   # +0x2010: no call before it
    stack = (code_base + 0x2000).to_bytes(8, "little") + stack + (code_base + 0x10).to_bytes(8, "little")
    space = _Space([(0xffff000000001000, stack), (code_base, bytes(code))])
    modules = ModuleMap([(code_base, 0x3000, "drv.sys")])
    frames = scan_stack(space, modules, 0xffff000000001000, 0xffff000000001000 + len(stack))
    assert [(f.offset, f.call_verified) for f in frames] == [(0x2000, True), (0x2010, False)]
