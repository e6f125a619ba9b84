"""`pykd-ext u ADDRESS [L COUNT]`: disassemble code in the dump, like WinDbg's `u`.

`u fffff804`4a24d2d4`, `u fffff8044a24d2d4 L3`, `u ntoskrnl+0x4a2d4 L 10`: numbers follow
WinDbg's radix rules (`kernel.numbers.parse_number`: bare numbers are hex, `L0n20` is decimal),
the count defaults to 8 instructions. The address may be `module+offset` of a module the dump
lists. Lines are WinDbg's: a `module+0xoff:` label where a module (or exported function) starts,
then `address bytes mnemonic operands`, branch targets and RIP-relative operands named
`module+0xoff (address)`; where the dump holds no more code the line says "not in dump".
capstone decodes x64, x86 and ARM64 (and Thumb-2 for 32-bit ARM).
"""
import argparse
from typing import Any, Iterator, List, Optional

from pykd_ext.disasm.listing import DEFAULT_COUNT, MAX_COUNT, format_line, namer_for, unassemble
from pykd_ext.disasm.mode import code_arch
from pykd_ext.disasm.names import stem
from pykd_ext.errors import NotFoundError, PykdExtError
from pykd_ext.kernel.numbers import parse_number
from pykd_ext.render.grid import Column, Result, Row

HELP = "disassemble code in the dump, like WinDbg's u (u ADDRESS [L COUNT])"
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'u fffff8047bdb5ae0 -t crash.dmp',
    'u fffff8047bdb5ae0 L 20 -t crash.dmp',
]

_COLUMNS = [Column("address", fmt="addr"), Column("bytes"), Column("mnemonic"),
            Column("operands"), Column("label"), Column("fault")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", metavar="ADDRESS",
                        help="code address (hex like WinDbg, backticks allowed) or module+offset")
    parser.add_argument("range", nargs="*", metavar="L COUNT",
                        help="instruction count as WinDbg writes it: L8 or L 8 (default 8)")


def parse_count(words: List[str]) -> int:
    """WinDbg's `L8` / `L 8` / `l0n20` (radix rules of `parse_number`); default 8."""
    if not words:
        return DEFAULT_COUNT
    text = "".join(words).strip()
    if text[:1] not in ("L", "l"):
        raise PykdExtError("expected a count as L<number> (like WinDbg's u), not %r" % text)
    value = parse_number(text[1:])
    if value is None or value <= 0:
        raise PykdExtError("bad instruction count %r" % text)
    if value > MAX_COUNT:
        raise PykdExtError("instruction count %d is above the limit of %d" % (value, MAX_COUNT))
    return value


def _kernel_modules(session: Any) -> Optional[List[Any]]:
    """PsLoadedModuleList through the kernel layouts, when the target has no driver list and the
    layouts are there (a full dump); None when they are not."""
    if (session.target.info().extra or {}).get("drivers"):
        return None
    try:
        from pykd_ext.commands.procview import kernel_context
        return list(kernel_context(session).modules())
    except PykdExtError:
        return None


def resolve_address(text: str, namer: Any) -> int:
    """A number, or `module+offset` / `module` of a module the target lists."""
    value = parse_number(text)
    if value is not None and value >= 0:
        return value
    name, _, offset_text = text.partition("+")
    offset = parse_number(offset_text) if offset_text else 0
    if offset is not None:
        wanted = stem(name.strip()).lower()
        for base, size, module in namer.modules:
            if stem(module).lower() == wanted and offset < size:
                return base + offset
    raise NotFoundError("%r is neither an address nor module+offset of a listed module" % text)


def run(session: Any, args: argparse.Namespace) -> Result:
    count = parse_count(list(args.range))
    target = session.target
    info = target.info()
    namer = namer_for(target, _kernel_modules(session))
    address = resolve_address(args.address, namer)
    arch, why = code_arch(target, address)          # H12: WoW64 dumps hold x86 code too
    pointer_size = target.kernel.pointer_size
    if arch != info.arch and address < 1 << 32:
        pointer_size = 4                            # 32-bit code: WinDbg's .effmach x86 addresses

    def rows() -> Iterator[Row]:
        for line in unassemble(target.kernel, address, count, arch, namer, pointer_size):
            yield Row(line.to_dict(), format_line(line, arch, pointer_size))

    notes = ["decoded as %s: %s" % (arch, why)] if why else []
    return Result("u", _COLUMNS, rows=rows(), notes=notes, meta={"target": info.path, "arch": arch})
