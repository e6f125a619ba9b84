"""Disassembly of code in a dump (`pykd-ext u`, the faulting instruction of a crash record).

Why a package of its own: capstone (the `disasm` extra) turns bytes into instructions for x64,
x86 and ARM64; what pykd-ext adds is where the bytes come from (any `Target`'s kernel space, with
"not in dump" where a triage dump did not keep the page), and naming addresses the way WinDbg
does: branch targets, RIP-relative operands and ARM64 `adr`/`adrp`/literal loads as
`module+0xoffset` (or `module!Export+0xoffset` where the module's export table is in the dump).

- `engine`: capstone per architecture, one `Instruction` record per decoded instruction;
- `names`: the small address namer (loaded modules from the target's own lists, exports);
- `listing`: `unassemble` (the lines of `u`) and `faulting_instruction` (one line of text).
capstone is imported only when code is disassembled, so `import pykd_ext` stays cheap.
"""
from pykd_ext.disasm.listing import UnassembledLine, faulting_instruction, unassemble
from pykd_ext.disasm.names import AddressNamer, modules_of_target

__all__ = ["AddressNamer", "UnassembledLine", "faulting_instruction", "modules_of_target",
           "unassemble"]
