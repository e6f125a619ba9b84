"""Independent readers for forge tests: structure facts straight from the ISF JSON, and virtual
reads through kdmp-parser's own dump parser and page walker (neither shares code with the forge
or with pykd-ext's readers)."""
import json
import lzma
from typing import Any, Dict, Tuple

import kdmp_parser

PAGE = 0x1000


class Isf:
    """Offsets/bits/enums read directly from one ISF file (independent of the project)."""

    def __init__(self, path: str) -> None:
        with lzma.open(path, "rb") as handle:
            data = json.load(handle)
        self.types = data["user_types"]
        self.enums = data["enums"]
        self.symbols = data["symbols"]

    def member(self, type_name: str, path: str) -> Tuple[int, Dict[str, Any]]:
        offset, current, desc = 0, type_name, {}
        for name in path.split("."):
            entry = self.types[current]["fields"][name]
            offset += entry["offset"]
            desc = entry["type"]
            current = desc.get("name", "")
        return offset, desc

    def off(self, type_name: str, path: str) -> int:
        return self.member(type_name, path)[0]

    def rva(self, name: str) -> int:
        return self.symbols[name]["address"]


class DumpReader:
    """Virtual reads through kdmp-parser's page walker."""

    def __init__(self, path: str) -> None:
        self.dump = kdmp_parser.KernelDumpParser(path)

    def read(self, va: int, size: int, dtb: int = 0) -> bytes:
        out = b""
        while len(out) < size:
            address = va + len(out)
            page = self.dump.read_virtual_page(address & ~(PAGE - 1), dtb)
            assert page is not None, hex(address)
            start = address & (PAGE - 1)
            out += bytes(page[start:start + size - len(out)])
        return out

    def u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def u32(self, va: int) -> int:
        return int.from_bytes(self.read(va, 4), "little")

    def u8(self, va: int) -> int:
        return self.read(va, 1)[0]


__all__ = ["DumpReader", "Isf", "PAGE"]
