"""Source 3: offsets read from the code of exported kernel getters (`disasm:<export>`).

`PsGetProcessPeb(PEPROCESS)` and its siblings are one-line accessors: the compiler turns each
into a load at a fixed displacement from the first argument register (`mov rax, [rcx+0x550]`
on x64, `ldr x0, [x0, #0x550]` on ARM64) or, for an embedded array, its address (`lea rax,
[rcx+0x5a8]` / `add x0, x0, #0x5a8`). When the kernel image's code is in the dump, capstone
decodes the first instructions at each export (the export directory is read by `targets.pe`);
the displacement of the first access through the argument register, before anything writes
that register, is the member's offset. A getter that dereferences the loaded pointer again
(`PsGetProcessSessionId`: `Session->SessionId`) also gives the second member.

capstone is the `[disasm]` extra: without it this source is skipped with a note.
"""
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.layouts.inferred.evidence import Inference

#: export -> (type, member path candidates (renamed between builds), what the code does with it,
#: the member reached through the loaded pointer, if any)
GETTERS: Dict[str, Tuple[str, Tuple[str, ...], str, Optional[Tuple[str, str]]]] = {
    "PsGetProcessId": ("_EPROCESS", ("UniqueProcessId",), "load", None),
    "PsGetProcessPeb": ("_EPROCESS", ("Peb",), "load", None),
    "PsGetProcessImageFileName": ("_EPROCESS", ("ImageFileName",), "address", None),
    "PsGetProcessInheritedFromUniqueProcessId": ("_EPROCESS", ("InheritedFromUniqueProcessId",), "load", None),
    "PsGetProcessExitStatus": ("_EPROCESS", ("ExitStatus",), "load", None),
    "PsGetProcessJob": ("_EPROCESS", ("Job",), "load", None),
    "PsGetProcessProtection": ("_EPROCESS", ("Protection",), "load", None),
    "PsGetProcessSessionId": ("_EPROCESS", ("Session",), "load", ("_MM_SESSION_SPACE", "SessionId")),
    "PsGetProcessWow64Process": ("_EPROCESS", ("WoW64Process", "Wow64Process"), "load", None),
    "PsGetThreadId": ("_ETHREAD", ("Cid.UniqueThread",), "load", None),
    "PsGetThreadProcessId": ("_ETHREAD", ("Cid.UniqueProcess",), "load", None),
    "PsGetThreadTeb": ("_ETHREAD", ("Tcb.Teb",), "load", None),
}
#: bytes of code read per getter, and instructions decoded
CODE_BYTES = 48
MAX_INSTRUCTIONS = 8


class Access:
    """What the first instructions of a getter do with its argument."""

    def __init__(self, kind: str, displacement: int, second: Optional[int] = None,
                 text: str = "") -> None:
        self.kind = kind                  # "load" or "address"
        self.displacement = displacement
        self.second = second              # displacement of a load through the loaded value
        self.text = text                  # the decoded instructions (for notes and tests)


def _capstone(arch: str) -> Any:
    import capstone                                     # the [disasm] extra
    if arch == "x64":
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    elif arch == "x86":
        md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    elif arch == "arm64":
        md = capstone.Cs(getattr(capstone, "CS_ARCH_ARM64", getattr(capstone, "CS_ARCH_AARCH64", None)),
                         capstone.CS_MODE_ARM)
    else:
        return None
    md.detail = True
    return md


def decode_getter(code: bytes, address: int, arch: str) -> Optional[Access]:
    """The argument access of one getter's code (None when it is not a simple accessor)."""
    md = _capstone(arch)
    if md is None:
        return None
    if arch == "x86":
        return _decode_x86(md, code, address)
    return _decode_x64(md, code, address) if arch == "x64" else _decode_arm64(md, code, address)


def _decode_x86(md: Any, code: bytes, address: int) -> Optional[Access]:
    """32-bit getters are stdcall (NTAPI): the argument is on the stack at [esp+4], or at
    [ebp+8] after the `push ebp; mov ebp, esp` frame; the register it is loaded into is then
    the base of the member access (`mov eax, [esp+4]; mov eax, [eax+0x150]; ret 4`)."""
    from capstone import x86
    frame = False                     # ebp = the entry esp - 4 (after push ebp; mov ebp, esp)
    pushed = 0                        # bytes pushed before the frame
    arg: Optional[int] = None
    found: Optional[Access] = None
    dest: Optional[int] = None
    lines: List[str] = []
    for insn in md.disasm(code, address):
        if len(lines) >= MAX_INSTRUCTIONS:
            break
        lines.append("%s %s" % (insn.mnemonic, insn.op_str))
        if insn.mnemonic in ("ret", "jmp", "call", "int3"):
            break
        ops = insn.operands
        mem = [op for op in ops if op.type == x86.X86_OP_MEM]
        if insn.mnemonic == "push" and not frame:
            pushed += 4
            continue
        if insn.mnemonic == "mov" and len(ops) == 2 and ops[0].type == ops[1].type == x86.X86_OP_REG \
                and ops[0].reg == x86.X86_REG_EBP and ops[1].reg == x86.X86_REG_ESP:
            frame = True
            continue
        if arg is None:
            if insn.mnemonic == "mov" and mem and ops[0].type == x86.X86_OP_REG and mem[0].mem.index == 0:
                base, disp = mem[0].mem.base, mem[0].mem.disp
                if (base == x86.X86_REG_ESP and disp == 4 + pushed and not frame) or \
                        (base == x86.X86_REG_EBP and frame and disp == 4 + pushed):
                    arg = ops[0].reg
            continue
        if found is None:
            if mem and mem[0].mem.base == arg and mem[0].mem.index == 0:
                found = Access("address" if insn.mnemonic == "lea" else "load", mem[0].mem.disp)
                dest = ops[0].reg if ops and ops[0].type == x86.X86_OP_REG else None
                continue
            if arg in insn.regs_access()[1]:
                return None                       # the argument was overwritten first
        elif dest is not None and mem and mem[0].mem.base == dest and mem[0].mem.index == 0 \
                and insn.mnemonic.startswith("mov"):
            found.second = mem[0].mem.disp
            break
    if found is not None:
        found.text = "; ".join(lines)
    return found


def _decode_x64(md: Any, code: bytes, address: int) -> Optional[Access]:
    from capstone import x86
    arg = x86.X86_REG_RCX
    arg_parts = {x86.X86_REG_RCX, x86.X86_REG_ECX, x86.X86_REG_CX, x86.X86_REG_CL, x86.X86_REG_CH}
    found: Optional[Access] = None
    dest: Optional[int] = None
    lines: List[str] = []
    for insn in md.disasm(code, address):
        if len(lines) >= MAX_INSTRUCTIONS:
            break
        lines.append("%s %s" % (insn.mnemonic, insn.op_str))
        if insn.mnemonic in ("ret", "jmp", "call", "int3"):
            break
        mem = [op for op in insn.operands if op.type == x86.X86_OP_MEM]
        if found is None:
            if mem and mem[0].mem.base == arg and mem[0].mem.index == 0:
                kind = "address" if insn.mnemonic == "lea" else "load"
                found = Access(kind, mem[0].mem.disp)
                regs = insn.regs_access()[1]
                dest = regs[0] if regs else None
                continue
            if arg_parts & set(insn.regs_access()[1]):
                return None                       # the argument was overwritten first
        elif dest is not None and mem and mem[0].mem.base == _x64_full(dest) and mem[0].mem.index == 0 \
                and insn.mnemonic.startswith("mov"):
            found.second = mem[0].mem.disp
            break
    if found is not None:
        found.text = "; ".join(lines)
    return found


def _x64_full(reg: int) -> int:
    from capstone import x86
    narrow = {x86.X86_REG_EAX: x86.X86_REG_RAX, x86.X86_REG_AX: x86.X86_REG_RAX, x86.X86_REG_AL: x86.X86_REG_RAX}
    return narrow.get(reg, reg)


def _decode_arm64(md: Any, code: bytes, address: int) -> Optional[Access]:
    import capstone
    arm = getattr(capstone, "arm64", None) or getattr(capstone, "aarch64")
    prefix = "ARM64" if hasattr(arm, "ARM64_REG_X0") else "AARCH64"
    x0 = getattr(arm, prefix + "_REG_X0")
    w0 = getattr(arm, prefix + "_REG_W0")
    op_mem = getattr(arm, prefix + "_OP_MEM")
    op_imm = getattr(arm, prefix + "_OP_IMM")
    found: Optional[Access] = None
    lines: List[str] = []
    for insn in md.disasm(code, address):
        if len(lines) >= MAX_INSTRUCTIONS:
            break
        lines.append("%s %s" % (insn.mnemonic, insn.op_str))
        if insn.mnemonic in ("ret", "b", "bl", "br", "blr", "brk"):
            break
        ops = insn.operands
        mem = [op for op in ops if op.type == op_mem]
        if found is None:
            if insn.mnemonic.startswith("ld") and mem and mem[0].mem.base == x0 and mem[0].mem.index == 0:
                found = Access("load", mem[0].mem.disp)
                continue
            if insn.mnemonic == "add" and len(ops) == 3 and ops[1].reg == x0 and ops[2].type == op_imm:
                found = Access("address", ops[2].imm)
                continue
            if x0 in insn.regs_access()[1] or w0 in insn.regs_access()[1]:
                return None
        elif insn.mnemonic.startswith("ld") and mem and mem[0].mem.base == x0 and mem[0].mem.index == 0:
            found.second = mem[0].mem.disp
            break
    if found is not None:
        found.text = "; ".join(lines)
    return found


def add_getter_evidence(inference: Inference, space: Any, info: Any, donor: Any = None) -> int:
    """Evidence from the kernel's exported getters; returns how many getters were decoded."""
    arch = getattr(info, "arch", None) or "x64"
    base = getattr(info, "kernel_base", None) or (info.kdbg or {}).get("KernBase")
    if not isinstance(base, int) or not base:
        return 0
    try:
        _capstone(arch)
    except ImportError:
        inference.notes.append("capstone is not installed (pip install 'pykd-ext[disasm]'): the kernel's "
                               "getters were not disassembled")
        return 0
    from pykd_ext.targets.pe import read_pe_info
    try:
        pe = read_pe_info(space, base)
    except (MemoryReadError, PykdExtError, ValueError):
        return 0
    if not callable(getattr(pe, "export_rva", None)):
        return 0
    decoded = 0
    missing: List[str] = []
    for name, (type_name, paths, kind, through) in GETTERS.items():
        try:
            rva = pe.export_rva(name)
            # a short getter may end just before a page the dump lacks: what is readable counts
            code = bytes(space.read_partial(base + rva, CODE_BYTES)[0]) if rva else None
        except (MemoryReadError, PykdExtError, ValueError):
            rva, code = None, None
        if not code:
            missing.append(name)
            continue
        access = decode_getter(code, base + int(rva or 0), arch)
        if access is None or access.kind != kind:
            inference.notes.append("disasm: %s is not a simple accessor; not used" % name)
            continue
        path = _choose(donor, type_name, paths)
        inference.add(type_name, path, access.displacement, "disasm:%s" % name)
        if through is not None and access.second is not None:
            inference.add(through[0], through[1], access.second, "disasm:%s" % name)
        decoded += 1
    if missing and decoded:
        inference.notes.append("disasm: the code of %s is not in the dump" % ", ".join(missing))
    elif missing:
        inference.notes.append("disasm: the kernel's getter code is not in the dump")
    return decoded


def _choose(donor: Any, type_name: str, paths: Tuple[str, ...]) -> str:
    """The member name this kernel generation uses (`WoW64Process` since Windows 10)."""
    if donor is not None and donor.has_type(type_name):
        for path in paths:
            if donor.type(type_name).has_field(path):
                return path
    return paths[0]


__all__ = ["Access", "GETTERS", "add_getter_evidence", "decode_getter"]
