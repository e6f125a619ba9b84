"""The facts moved into `targets/arch.py` (issue 11: architectures as data) are complete and true.

Independent sources: winnt.h's CONTEXT offsets (AMD64 Rip +0xf8, Rsp +0x98; x86 Eip +0xb8,
Esp +0xc4), the PE/COFF machine types (0x8664 AMD64, 0x14c i386), the real user dumps' own memory
lists (every region a process holds lies in its architecture's user space; a 64-bit process holds
memory above the 32-bit limit), and the shipped layout registry's build ids.
"""
import struct

import pytest

from pykd_ext.kernel.wow64 import guest_arch
from pykd_ext.layouts import isf_check
from pykd_ext.layouts.registry import list_builds
from pykd_ext.targets.arch import (ARCHES, DEFAULT_ARCH, X64, X86, Arch, arch_named,
                                   decodable_arches, layout_build_id)
from pykd_ext.targets.opener import open_target

REAL = "/work/shared/real/user-dumps/"


def test_every_decoded_architecture_states_its_facts() -> None:
    decoded = decodable_arches()
    assert X64 in decoded and X86 in decoded
    for arch in decoded:
        # the CONTEXT's program counter and stack pointer are registers its layout decodes
        assert arch.instruction_pointer in arch.context.registers, arch.name
        assert arch.stack_pointer in arch.context.registers, arch.name
        if arch.compat_arch is not None:
            guest = arch_named(arch.compat_arch)
            assert guest is not None and guest in decoded and guest.pointer_size < arch.pointer_size
        if arch.paging_modes:          # read from memory: user and kernel halves are stated
            assert all(mode.pointer_size == arch.pointer_size for mode in arch.paging_modes)
            assert arch.highest_user_address is not None and arch.kernel_start is not None
            assert arch.highest_user_address < arch.kernel_start < arch.address_limit
    assert len({arch.name for arch in ARCHES}) == len(ARCHES)


@pytest.mark.parametrize("arch,ip_at,sp_at", [(X64, 0xF8, 0x98), (X86, 0xB8, 0xC4)], ids=["x64", "x86"])
def test_context_registers_at_winnt_offsets(arch: Arch, ip_at: int, sp_at: int) -> None:
    record = bytearray(arch.context.size)
    fmt = "<Q" if arch.pointer_size == 8 else "<I"
    struct.pack_into(fmt, record, ip_at, 0x7712345)
    struct.pack_into(fmt, record, sp_at, 0x12FF00)
    assert arch.context_registers(arch.context.decode(bytes(record))) == (0x7712345, 0x12FF00)
    assert arch.context_registers({}) is None and arch.context_registers(None) is None


@pytest.mark.parametrize("name,arch", [
    ("win10-17134-wow64-fullmem.dmp", X64), ("win10-17134-x64-userdu64.dmp", X64),
    ("win7-7600-wow64-ascii-read-av.mdmp", X86)])
def test_real_user_memory_lies_in_user_space(name: str, arch: Arch) -> None:
    target = open_target(REAL + name)
    assert target.info().arch == arch.name
    regions = list(target.kernel.regions())
    assert regions
    for start, size in regions:
        assert arch.is_user_address(start) and arch.is_user_address(start + size - 1), hex(start)
    teb = [t.get("teb") for t in (target.info().extra or {}).get("threads") or [] if t.get("teb")]
    assert teb and all(arch.is_user_address(a) for a in teb)
    if arch is X64 and "userdu64" in name:
        # a native 64-bit process holds memory beyond the 32-bit user space
        assert any(not X86.is_user_address(start) for start, _ in regions)


def test_shipped_build_ids_follow_the_arch_rule() -> None:
    entries = [e for e in list_builds() if e.version]      # (GUID-keyed user tables have none)
    assert {e.arch for e in entries} >= {"x64", "x86"}
    for entry in entries:
        assert entry.build_id == layout_build_id(entry.version, entry.arch), entry.build_id
    assert layout_build_id("10.0.19041.1288", DEFAULT_ARCH.name) == "10.0.19041.1288"


def test_isf_checks_take_the_arch_data() -> None:
    assert set(isf_check.ARCHES) == {arch.name for arch in decodable_arches()}
    assert isf_check.MACHINE_ARCH[0x8664] == "x64" and isf_check.MACHINE_ARCH[0x14C] == "x86"


def test_wow64_guest_is_the_compat_architecture() -> None:
    class _Layouts:
        arch = "x64"
    assert guest_arch(_Layouts()) is X86
    assert guest_arch(None) is X86
