"""Which instruction set the code at an address is in: a WoW64 dump holds x86 and x64 code.

Why: a 64-bit user dump of a 32-bit program (WoW64) maps the program's PE32 images, 32-bit
ntdll and kernel32 beside the 64-bit ntdll and wow64*.dll; decoding 32-bit code as x64 turns
`inc eax` (0x40) into a REX prefix and `call dword ptr [abs]` into a RIP-relative call, so `u`
would show wrong instructions that look plausible. The mode is stated by the dump itself:
1. the module holding the address: its PE header's `Machine` (IMAGE_FILE_MACHINE_I386 0x14c ->
   x86; the machine types are `targets.arch`'s, from the PE/COFF specification);
2. else a thread whose saved context is at that address: a 32-bit CONTEXT record (the minidump
   stores x86 CONTEXTs for WoW64 threads dumped through the 32-bit view), or an x64 CONTEXT whose
   `SegCs` is the 32-bit compatibility-mode user code selector. x64 Windows' user code
   selectors are KGDT64_R3_CMCODE (0x20) and KGDT64_R3_CODE (0x30) with RPL 3, i.e. 0x23 (32-bit)
   and 0x33 (64-bit) (ReactOS `sdk/include/ndk/amd64/ketypes.h`; Windows Internals 7th ed.,
   part 1, ch. 3 "WoW64").
Otherwise the target's own architecture. Only x64 targets have a second mode (`Arch.compat_arch`).
"""
from typing import Any, Optional, Tuple

from pykd_ext.errors import PykdExtError

#: x64 Windows' 32-bit (compatibility mode) user code selector: KGDT64_R3_CMCODE | RPL 3 (see above)
WOW64_USER_CS = 0x20 | 3


def code_arch(target: Any, address: int) -> Tuple[str, Optional[str]]:
    """(architecture to decode `address` with, why when it is not the target's own)."""
    from pykd_ext.targets.arch import arch_for_machine, arch_named
    info = target.info()
    native = info.arch or "x64"
    arch = arch_named(native)
    compat = getattr(arch, "compat_arch", None) if arch is not None else None
    if not compat:
        return native, None
    extra = info.extra or {}
    for module in extra.get("modules") or ():
        base, size = module.get("base"), module.get("size")
        if not isinstance(base, int) or not isinstance(size, int) or not base <= address < base + size:
            continue
        try:
            machine = target.pe_image(base).machine
        except (PykdExtError, ValueError):
            break                        # headers not in the dump: ask the threads
        found = arch_for_machine(machine)
        if found is not None and found.name == compat:
            return compat, "%s is a 32-bit (%s) image" % (module.get("name") or "the module", compat)
        return native, None
    for thread in extra.get("threads") or ():
        registers = thread.get("context") or {}
        if thread.get("context_arch") == compat and registers.get("eip") == address:
            return compat, "thread %s's saved context is a 32-bit (%s) one at this address" % (
                thread.get("id"), compat)
        if registers.get("rip") == address and registers.get("segcs") == WOW64_USER_CS:
            return compat, "thread %s runs 32-bit code here (CS 0x%x)" % (thread.get("id"), WOW64_USER_CS)
    return native, None


__all__ = ["WOW64_USER_CS", "code_arch"]
