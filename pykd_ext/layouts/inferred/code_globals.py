"""Kernel globals named by the code of exported functions (`disasm:ObGetObjectType`).

Why: a types-only layout (derived ISFs, inferred layouts) has no symbol RVAs, and neither the
dump header nor the KDBG block states `ObHeaderCookie` or `ObTypeIndexTable` (and a triage or
KDBG-less dump may not state `PspCidTable`). The kernel's own code does, as RIP-relative
(x64), absolute (x86) or `adrp`-based (ARM64) operands of small exported functions:
- `ObGetObjectType(Object)` decodes `_OBJECT_HEADER.TypeIndex`: since Windows 10 it XORs the
  stored byte with a *byte load* of `ObHeaderCookie`, then indexes a pointer array whose
  address it takes with `lea` / `adrp+add`: `ObTypeIndexTable` (Windows Internals 7th ed.,
  part 2, ch. 8, "Object headers and bodies"; the same instructions WinDbg's `u nt!ObGetObjectType`
  shows);
- `PsLookupProcessByProcessId` / `PsLookupThreadByThreadId` load the `PspCidTable` pointer,
  directly (Windows 7: `mov rcx, [PspCidTable]` before `ExMapHandleToPointer`) or in the first
  function they call (Windows 8.1+: `PspReferenceCidTableEntry`), so one direct call is followed.
A global is claimed only when it lies inside the kernel image (they are all its variables) and
every export that names it names the same address; each result carries its provenance (the
exports' names). The shapes are recognised by operand kind (byte
load, address taken then indexed by 8, pointer load), never by byte patterns.

capstone is the `[disasm]` extra: without it nothing is found (the callers keep their scans).
"""
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError

#: global -> the exports whose code names it, and the operand shape that does
CODE_GLOBALS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "ObHeaderCookie": (("ObGetObjectType", "byte"),),
    "ObTypeIndexTable": (("ObGetObjectType", "table"),),
    "PspCidTable": (("PsLookupProcessByProcessId", "pointer"), ("PsLookupThreadByThreadId", "pointer")),
}
#: bytes read and instructions decoded per function (real ObGetObjectType is 10 instructions)
CODE_BYTES = 160
MAX_INSTRUCTIONS = 40
_MEMO_KEY = "code globals"
#: capstone gives immediates as signed 64-bit values
_MASK64 = (1 << 64) - 1


class Reference:
    """One absolute address an instruction names, and how it uses it."""

    def __init__(self, address: int, shape: str, text: str) -> None:
        self.address = address
        self.shape = shape            # "byte" load, "pointer" load, "table" (address indexed), "call"
        self.text = text

    def __repr__(self) -> str:
        return "Reference(%#x, %s, %r)" % (self.address, self.shape, self.text)


def references(code: bytes, address: int, arch: str) -> List[Reference]:
    """The global references of one function's first instructions, in order (up to its `ret`)."""
    from pykd_ext.disasm.engine import engine
    md = engine(arch)
    if arch == "x64":
        return _x64(md, code, address)
    if arch == "x86":
        return _x86(md, code, address)
    if arch == "arm64":
        return _arm64(md, code, address)
    return []


def _x64(md: Any, code: bytes, address: int) -> List[Reference]:
    from capstone import x86
    out: List[Reference] = []
    taken: Dict[int, Tuple[int, str]] = {}          # register -> address it holds (lea rip)
    for n, insn in enumerate(md.disasm(code, address)):
        if n >= MAX_INSTRUCTIONS or insn.mnemonic in ("ret", "int3", "jmp"):
            break
        text = "%s %s" % (insn.mnemonic, insn.op_str)
        ops = insn.operands
        if insn.mnemonic == "call" and ops and ops[0].type == x86.X86_OP_IMM:
            out.append(Reference(ops[0].imm & _MASK64, "call", text))
            continue
        for op in ops:
            if op.type != x86.X86_OP_MEM:
                continue
            mem = op.mem
            if mem.base == x86.X86_REG_RIP and mem.index == 0:
                target = (insn.address + insn.size + mem.disp) & _MASK64
                if insn.mnemonic == "lea" and ops[0].type == x86.X86_OP_REG:
                    taken[ops[0].reg] = (target, text)
                elif insn.mnemonic.startswith("mov") and op.size == 1 and op is ops[-1]:
                    out.append(Reference(target, "byte", text))
                elif insn.mnemonic == "mov" and op.size == 8 and op is ops[-1] \
                        and ops[0].type == x86.X86_OP_REG:
                    out.append(Reference(target, "pointer", text))
            elif mem.base in taken and mem.index != 0 and mem.scale == 8:
                target, lea = taken.pop(mem.base)
                out.append(Reference(target, "table", "%s; %s" % (lea, text)))
    return out


def _x86(md: Any, code: bytes, address: int) -> List[Reference]:
    """32-bit code names globals by absolute address: `movzx ecx, byte ptr [ObHeaderCookie]`,
    `mov eax, dword ptr [ecx*4 + ObTypeIndexTable]`, `mov eax, dword ptr [PspCidTable]` (or
    `push dword ptr [PspCidTable]` before ExMapHandleToPointer on Windows 7)."""
    from capstone import x86
    out: List[Reference] = []
    for n, insn in enumerate(md.disasm(code, address)):
        if n >= MAX_INSTRUCTIONS or insn.mnemonic in ("ret", "int3", "jmp"):
            break
        text = "%s %s" % (insn.mnemonic, insn.op_str)
        ops = insn.operands
        if insn.mnemonic == "call" and ops and ops[0].type == x86.X86_OP_IMM:
            out.append(Reference(ops[0].imm & 0xFFFFFFFF, "call", text))
            continue
        for op in ops:
            if op.type != x86.X86_OP_MEM or op.mem.base != 0 or op.mem.segment != 0:
                continue
            target = op.mem.disp & 0xFFFFFFFF
            if op.mem.index == 0 and op.size == 1 and insn.mnemonic.startswith("mov") and op is ops[-1]:
                out.append(Reference(target, "byte", text))
            elif op.mem.index != 0 and op.mem.scale == 4 and insn.mnemonic == "mov" and op is ops[-1]:
                out.append(Reference(target, "table", text))
            elif op.mem.index == 0 and op.size == 4 and op is ops[-1] and (
                    insn.mnemonic == "push" or (insn.mnemonic == "mov" and ops[0].type == x86.X86_OP_REG)):
                out.append(Reference(target, "pointer", text))
    return out


def _arm64_names() -> Tuple[Any, str]:
    import capstone
    arm = getattr(capstone, "arm64", None) or getattr(capstone, "aarch64")
    return arm, "ARM64" if hasattr(arm, "ARM64_REG_X0") else "AARCH64"


def _arm64(md: Any, code: bytes, address: int) -> List[Reference]:
    arm, prefix = _arm64_names()
    op_mem, op_imm, op_reg = (getattr(arm, prefix + s) for s in ("_OP_MEM", "_OP_IMM", "_OP_REG"))
    x_regs = {getattr(arm, "%s_REG_X%d" % (prefix, i)) for i in range(29)}
    out: List[Reference] = []
    pages: Dict[int, Tuple[int, str]] = {}          # register -> page its adrp loaded
    taken: Dict[int, Tuple[int, str]] = {}          # register -> address adrp+add made
    for n, insn in enumerate(md.disasm(code, address)):
        if n >= MAX_INSTRUCTIONS or insn.mnemonic in ("ret", "b", "br", "brk"):
            break
        text = "%s %s" % (insn.mnemonic, insn.op_str)
        ops = insn.operands
        if insn.mnemonic == "bl" and ops and ops[0].type == op_imm:
            out.append(Reference(ops[0].imm & _MASK64, "call", text))
            continue
        if insn.mnemonic == "adrp" and len(ops) == 2 and ops[1].type == op_imm:
            pages[ops[0].reg] = (ops[1].imm & _MASK64, text)
            continue
        if insn.mnemonic == "add" and len(ops) == 3 and ops[1].type == op_reg and ops[1].reg in pages \
                and ops[2].type == op_imm:
            page, adrp = pages[ops[1].reg]
            taken[ops[0].reg] = ((page + ops[2].imm) & _MASK64, "%s; %s" % (adrp, text))
            continue
        mem = [op for op in ops if op.type == op_mem]
        if not mem or not insn.mnemonic.startswith("ldr"):
            continue
        base, index = mem[0].mem.base, mem[0].mem.index
        if base in pages and not index:
            page, adrp = pages[base]
            if insn.mnemonic == "ldrb":
                out.append(Reference((page + mem[0].mem.disp) & _MASK64, "byte", "%s; %s" % (adrp, text)))
            elif insn.mnemonic == "ldr" and ops[0].type == op_reg and ops[0].reg in x_regs:
                out.append(Reference((page + mem[0].mem.disp) & _MASK64, "pointer", "%s; %s" % (adrp, text)))
        elif base in taken and index:
            target, add = taken.pop(base)
            out.append(Reference(target, "table", "%s; %s" % (add, text)))
    return out


def _read(space: Any, address: int) -> bytes:
    try:
        return bytes(space.read_partial(address, CODE_BYTES)[0])
    except (MemoryReadError, PykdExtError, ValueError, OverflowError):
        return b""


def global_from_function(space: Any, entry: int, arch: str, shape: str) -> Optional[Tuple[int, str]]:
    """(address, instruction text) of the first `shape` reference in the function at `entry`; for
    a pointer load not made before the function's first direct call, the callee's first one."""
    code = _read(space, entry)
    if not code:
        return None
    refs = references(code, entry, arch)
    for ref in refs:
        if ref.shape == "call":
            if shape != "pointer":
                continue
            callee = _read(space, ref.address)
            found = [r for r in references(callee, ref.address, arch) if r.shape == shape] if callee else []
            return (found[0].address, "%s -> %s" % (ref.text, found[0].text)) if found else None
        if ref.shape == shape:
            return ref.address, ref.text
    return None


def find_code_globals(space: Any, kernel_base: Optional[int], arch: str) -> Dict[str, Dict[str, Any]]:
    """{global: {"address", "sources": ["disasm:<export>", ...], "code": [text, ...]}} for the
    globals of `CODE_GLOBALS` whose exports' code is in the dump and agrees (cached per space).
    Exports naming different addresses for one global leave it out."""
    memo = space.memo()
    key = (_MEMO_KEY, kernel_base, arch)
    if key in memo:
        return memo[key]
    found: Dict[str, Dict[str, Any]] = {}
    memo[key] = found
    if not kernel_base or arch not in ("x64", "x86", "arm64"):
        return found
    try:
        from pykd_ext.disasm.engine import engine
        engine(arch)
        from pykd_ext.targets.pe import read_pe_info
        pe = read_pe_info(space, kernel_base)
    except (ImportError, MemoryReadError, PykdExtError, ValueError):
        return found
    for name, uses in CODE_GLOBALS.items():
        hits: List[Tuple[int, str, str]] = []
        for export, shape in uses:
            try:
                rva = pe.export_rva(export)
            except (MemoryReadError, PykdExtError, ValueError):
                rva = None
            if not rva:
                continue
            got = global_from_function(space, kernel_base + rva, arch, shape)
            # every one of these globals is a variable of the kernel image itself
            if got is not None and kernel_base <= got[0] < kernel_base + int(pe.size_of_image or 0):
                hits.append((got[0], "disasm:%s" % export, got[1]))
        if hits and len({h[0] for h in hits}) == 1:
            found[name] = {"address": hits[0][0], "sources": [h[1] for h in hits], "code": [h[2] for h in hits]}
    return found


def code_global(target: Any, name: str) -> Optional[Tuple[int, str]]:
    """(address, "disasm:<export>[+...]") of one global of `CODE_GLOBALS`, or None."""
    if name not in CODE_GLOBALS:
        return None
    info = target.info()
    base = info.kernel_base or (info.kdbg or {}).get("KernBase")
    found = find_code_globals(target.kernel, base if isinstance(base, int) else None, info.arch or "x64")
    hit = found.get(name)
    return (hit["address"], "+".join(hit["sources"])) if hit else None


__all__ = ["CODE_GLOBALS", "Reference", "code_global", "find_code_globals", "global_from_function",
           "references"]
