"""The crash context's registers and the stack walk follow the dump's architecture (issue 11:
architectures as data, `Arch.context_registers` / `Arch.pdata_unwind`).

Independent sources: winnt.h's CONTEXT layouts (ARM64_NT_CONTEXT Sp +0x100, Pc +0x108; x86
CONTEXT Eip +0xb8, Esp +0xc4; AMD64 Rip +0xf8, Rsp +0x98) read straight from the bytes of the real
ARM64 triage dump's DUMP_HEADER64 `ContextRecord` (+0x348, mindumpdef.h) and from planted records;
x64 `.pdata` unwind codes mean nothing on ARM64 (Microsoft Learn, "ARM64 exception handling").
"""
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest

from pykd_ext.kernel.context import context_for
from pykd_ext.kernel.crash_context import header_context
from pykd_ext.kernel.stack import crash_stack, stack_for
from pykd_ext.session import Session
from pykd_ext.targets.arch import ARCHES, X64, X86

HEADER_CONTEXT_RECORD = 0x348           # DUMP_HEADER64.ContextRecord


def test_arm64_crash_stack_starts_at_the_headers_pc_and_does_not_unwind_x64_pdata(real_dir: Path) -> None:
    path = real_dir / "kernel-triage" / "win11-22000-arm64-triage.dmp"
    with open(str(path), "rb") as f:
        header = f.read(0x2000)
    sp, pc = struct.unpack_from("<QQ", header, HEADER_CONTEXT_RECORD + 0x100)
    ctx = context_for(Session(target_path=str(path)))
    assert header_context(ctx) == (pc, sp)
    frames = crash_stack(ctx)
    assert frames[0].method == "context" and frames[0].address == pc
    assert frames[0].module is not None             # the pc lies in a loaded module
    assert not [f for f in frames if f.method == "unwind"]
    assert all(f.slot >= sp for f in frames[1:])
    system_thread = ctx.info.extra["thread"]
    how = stack_for(ctx, SimpleNamespace(address=system_thread, field=lambda _p: None)).how
    assert "(pc 0x%x)" % pc in how and "from sp 0x%x" % sp in how


@pytest.mark.parametrize("arch,ip_at,sp_at", [(X64, 0xF8, 0x98), (X86, 0xB8, 0xC4)], ids=["x64", "x86"])
def test_header_context_reads_the_architectures_registers(arch, ip_at: int, sp_at: int) -> None:
    record = bytearray(arch.context.size)
    fmt = "<Q" if arch.pointer_size == 8 else "<I"
    struct.pack_into(fmt, record, ip_at, 0x8123456)
    struct.pack_into(fmt, record, sp_at, 0x8F00F00)
    ctx = SimpleNamespace(info=SimpleNamespace(arch=arch.name, extra={}),
                          target=SimpleNamespace(header=SimpleNamespace(context_bytes=bytes(record))))
    assert header_context(ctx) == (0x8123456, 0x8F00F00)
    ctx.info.arch = "no such architecture"
    assert header_context(ctx) is None


def test_only_x64_unwinds_with_pdata() -> None:
    assert [arch.name for arch in ARCHES if arch.pdata_unwind] == [X64.name]
