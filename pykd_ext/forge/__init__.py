"""The forge: builds Windows x64 memory and writes it as kernel dumps and raw images.

Why: tests of pykd-ext run on dumps the project writes itself; they only mean something when
independent readers (kdmp-parser, Volatility 3) agree with them, which `tests/forge/` checks.

Pieces (one job each):
- `physmem.PhysicalImage`: sparse physical memory with a memory map and a frame allocator;
- `pagetables.PageTables`: page tables of any paging mode (`memory.paging_modes`: x64 4- and
  5-level, x86 PAE and non-PAE; large pages, Windows' self map, planted invalid PTEs);
- `ptebits.PteFormat`: MMPTE values with bit positions from the build's ISF;
- `kernel_image.KernelImage`: a minimal ntoskrnl PE with a CodeView RSDS identity;
- `lowstub.write_low_stub`: the processor start block raw-image readers scan for;
- `dumpfile`: `DumpSpec`, `write_full_dump`, `write_bitmap_dump`, `write_raw_image`;
- `machine.forge_machine`: all of the above assembled into a crashed-kernel skeleton;
- `isf`: the forge's read-only view of the ISF symbol tables;
- `scenario`, `kernel_objects`: processes and threads described as data, planted by build;
  `handle_tables` lays out handle tables (0-2 pointer levels, as the kernel does) and
  `ram_budget` sizes the machine's RAM from the scenario (up to 10,000 processes and more).
"""
from pykd_ext.forge.dumpfile import (DumpSpec, build_context, write_bitmap_dump, write_full_dump,
                                     write_raw_image)
from pykd_ext.forge.isf import SymbolTable, load_table, table_for_build
from pykd_ext.forge.kernel_image import KernelImage, PlacedImage
from pykd_ext.forge.lowstub import write_low_stub
from pykd_ext.forge.machine import ForgedMachine, forge_machine, rewrite_kdbg
from pykd_ext.forge.pagetables import PAGE_1G, PAGE_2M, PageTables
from pykd_ext.forge.physmem import SMALL_MEMORY_MAP, PhysicalImage, pc_memory_map
from pykd_ext.forge.ptebits import PteFormat

__all__ = ["DumpSpec", "ForgedMachine", "KernelImage", "PAGE_1G", "PAGE_2M", "PageTables",
           "PhysicalImage", "PlacedImage", "PteFormat", "SMALL_MEMORY_MAP", "SymbolTable",
           "build_context", "forge_machine", "load_table", "pc_memory_map", "rewrite_kdbg",
           "table_for_build", "write_bitmap_dump", "write_full_dump", "write_low_stub",
           "write_raw_image"]
