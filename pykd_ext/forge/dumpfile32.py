"""Write forged physical memory as 32-bit Windows kernel dumps (`PAGEDUMP`): full and bitmap.

Why: 32-bit readers (ours, Volatility 3's `WindowsCrashDump32Layer`) need dumps with the
0x1000-byte `DUMP_HEADER32`, built here with the reader's own construct definition
(`pykd_ext.targets.dumpheader.DUMP_HEADER32`, from mindumpdef.h), so the format is written once:
- DumpType 1 (full, run-based): the pages of every `PhysicalMemoryBlock` run from 0x1000;
- DumpType 5 (bitmap): the `SDMP`/`FDMP` summary header at 0x1000 (`SUMMARY_DUMP`, shared with
  64-bit dumps per Volatility's crash_common), the bitmap, the present pages from `FirstPage`.
Unset fields keep Windows' "PAGE" fill, `PaeEnabled` says which paging the kernel uses, pointers
are 32-bit. Page streaming and file handling are `dumpfile`'s (same rules: never overwrite).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from pykd_ext.forge.dumpfile import (_fill_bytes, _offset_of, _open_new, _write_pages,
                                     write_bitmap_body)
from pykd_ext.forge.physmem import PhysicalImage, Run
from pykd_ext.memory.space import PAGE_SIZE
from pykd_ext.targets.dumpheader import (DMP_CONTEXT_RECORD_SIZE_32, DMP_PHYSICAL_MEMORY_BLOCK_SIZE,
                                         DUMP_HEADER32, DUMP_TYPE_BITMAP_FULL, DUMP_TYPE_FULL,
                                         FILL, FILL32, HEADER32_SIZE, MAX_RUNS32,
                                         PHYSICAL_MEMORY_DESCRIPTOR32, PHYSICAL_MEMORY_RUN32)

IMAGE_FILE_MACHINE_I386 = 0x14C          # PE/COFF specification
STATUS_BREAKPOINT = 0x80000003

_PMB_OFFSET = _offset_of(DUMP_HEADER32, "PhysicalMemoryBlock")
_DESCRIPTOR_HEAD = _offset_of(PHYSICAL_MEMORY_DESCRIPTOR32, "Run")
_RUN_SIZE = PHYSICAL_MEMORY_RUN32.sizeof()


@dataclass
class DumpSpec32:
    """What a 32-bit dump header states (written as given)."""

    build: int
    dtb: int
    pae: bool
    processors: int = 1
    bugcheck_code: int = 0x1000007E
    bugcheck_parameters: Sequence[int] = (0xC0000005, 0, 0, 0)
    kd_debugger_data_block: int = FILL32
    ps_active_process_head: int = FILL32
    ps_loaded_module_list: int = FILL32
    pfn_database: int = FILL32
    major_version: int = 0xF
    system_time: int = 0x01D707F23DBB3399
    system_uptime: int = 0x023BC1E9
    product_type: int = 1
    suite_mask: int = 0x110
    context: Optional[bytes] = None
    extra_fields: Dict[str, int] = field(default_factory=dict)


def build_header32(spec: DumpSpec32, dump_type: int, runs: List[Run], file_size: int) -> bytes:
    """The 0x1000-byte DUMP_HEADER32."""
    if len(runs) > MAX_RUNS32:
        raise ValueError("%d physical memory runs do not fit (at most %d)" % (len(runs), MAX_RUNS32))
    context = spec.context or b""
    if len(context) > DMP_CONTEXT_RECORD_SIZE_32:
        raise ValueError("CONTEXT record of %d bytes does not fit" % len(context))
    params = list(spec.bugcheck_parameters) + [0] * 4
    fields: Dict[str, object] = {
        "MajorVersion": spec.major_version, "MinorVersion": spec.build,
        "DirectoryTableBase": spec.dtb, "PfnDataBase": spec.pfn_database,
        "PsLoadedModuleList": spec.ps_loaded_module_list,
        "PsActiveProcessHead": spec.ps_active_process_head,
        "MachineImageType": IMAGE_FILE_MACHINE_I386, "NumberProcessors": spec.processors,
        "BugCheckCode": spec.bugcheck_code, "BugCheckParameter": params[:4],
        "PaeEnabled": 1 if spec.pae else 0, "KdSecondaryVersion": 0,
        "KdDebuggerDataBlock": spec.kd_debugger_data_block,
        "PhysicalMemoryBlock": {"NumberOfRuns": len(runs), "NumberOfPages": sum(n for _, n in runs),
                                "Run": [{"BasePage": a, "PageCount": n} for a, n in runs]},
        "ContextRecord": context + bytes(DMP_CONTEXT_RECORD_SIZE_32 - len(context)),
        "Exception": {"ExceptionCode": STATUS_BREAKPOINT, "ExceptionFlags": 1, "ExceptionRecord": 0,
                      "ExceptionAddress": 0, "NumberParameters": 0,
                      "ExceptionInformation": [FILL32] * 15},
        "Attributes": FILL32, "BootId": FILL32, "DumpType": dump_type,
        "MiniDumpFields": FILL32, "SecondaryDataState": 0, "ProductType": spec.product_type,
        "SuiteMask": spec.suite_mask, "WriterStatus": FILL32, "RequiredDumpSpace": file_size,
        "SystemUpTime": spec.system_uptime, "SystemTime": spec.system_time,
    }
    unknown = [name for name in spec.extra_fields if name not in fields]
    if unknown:
        raise ValueError("unknown header field(s): %s" % ", ".join(unknown))
    fields.update(spec.extra_fields)
    header = bytearray(DUMP_HEADER32.build(fields))
    if len(header) != HEADER32_SIZE:
        raise AssertionError("DUMP_HEADER32 built 0x%x bytes" % len(header))
    start = _PMB_OFFSET + _DESCRIPTOR_HEAD + _RUN_SIZE * len(runs)
    end = _PMB_OFFSET + DMP_PHYSICAL_MEMORY_BLOCK_SIZE
    header[start:end] = _fill_bytes(start, end)
    return bytes(header)


def write_full_dump32(path: str, phys: PhysicalImage, spec: DumpSpec32,
                      overwrite: bool = False) -> str:
    """DumpType 1: header, then every page of every RAM run."""
    runs = phys.ram_runs()
    if not runs:
        raise ValueError("no physical memory to write")
    size = HEADER32_SIZE + sum(n for _, n in runs) * PAGE_SIZE
    header = build_header32(spec, DUMP_TYPE_FULL, runs, size)
    with _open_new(path, overwrite) as out:
        out.write(header)
        for first, count in runs:
            _write_pages(out, phys, range(first, first + count))
    return path


def write_bitmap_dump32(path: str, phys: PhysicalImage, spec: DumpSpec32, kernel_only: bool = False,
                        overwrite: bool = False) -> str:
    """DumpType 5: `SDMP` (kernel_only) or `FDMP` summary header at 0x1000, bitmap, pages."""
    write_bitmap_body(path, phys, kernel_only, overwrite, HEADER32_SIZE,
                      lambda size: build_header32(spec, DUMP_TYPE_BITMAP_FULL,
                                                  phys.ram_runs()[:MAX_RUNS32], size))
    return path


__all__ = ["DumpSpec32", "build_header32", "write_bitmap_dump32", "write_full_dump32", "FILL"]
