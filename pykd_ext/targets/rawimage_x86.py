"""Raw physical images of 32-bit Windows: find the kernel's page directory, then the kernel.

Why: a raw image has no header. On x64 the processor start block in low memory names the
kernel DTB (`rawimage.find_low_stub`); 32-bit Windows has no such block, so the DTB is found the
way Windows builds its page tables (Intel SDM 4.3/4.4 geometry; Windows' recursive mapping at
0xC0000000, as Volatility 3's x86 DTB tests also use):
- non-PAE: a page directory whose entry 0x300 (VA 0xC0000000) maps the directory itself, and no
  other entry does;
- PAE: five consecutive frames, a PDPT (entries 0-3 -> the next four frames) and its four page
  directories, the last of which maps the directories through its entries 0-3 (entry 3 = itself).
A candidate is kept when the kernel view of `_KUSER_SHARED_DATA` (0xFFDF0000) translates. The
kernel is then found from the KDBG block: its owner tag in physical memory, its `KernBase`
(sign-extended, as 32-bit kernels store it) pointing at a PE image naming a kernel PDB in that
address space. Everything is bounded (pages scanned, candidates tried, tags examined).
"""
import struct
from typing import Any, List, Optional, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.memory.paging_x86 import X86AddressSpace
from pykd_ext.memory.space import PAGE_SIZE, AddressSpace, PhysicalMemory
from pykd_ext.targets.base import TargetInfo
from pykd_ext.targets.pe import read_pe_info
from pykd_ext.targets.rawimage import KDBG_TAG, RawImageTarget, _kdbg_offsets

#: PDE index of VA 0xC0000000 (non-PAE recursive entry) and the PAE self-mapping directory
NON_PAE_SELF_INDEX = 0xC0000000 >> 22
PAE_SELF_DIRECTORY = 3
KUSER_SHARED_DATA_KERNEL = 0xFFDF0000
#: bounds: pages examined for directories, candidates verified, KDBG tags examined
MAX_SCAN_PAGES = 1 << 22          # 16 GiB of physical memory
MAX_CANDIDATES = 64
MAX_KDBG_TAGS = 4096

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FRAME_PAE = 0x000FFFFFFFFFF000


def find_x86_dtbs(physical: PhysicalMemory) -> List[Tuple[int, bool]]:
    """(DTB, PAE?) candidates, in physical order (bounded; see the module docstring)."""
    out: List[Tuple[int, bool]] = []
    scanned = 0
    for first, count in physical.runs():
        for pfn in range(first, first + count):
            scanned += 1
            if scanned > MAX_SCAN_PAGES or len(out) >= MAX_CANDIDATES:
                return out
            page = physical.page(pfn)
            if page is None:
                continue
            address = pfn * PAGE_SIZE
            pde = _U32.unpack_from(page, NON_PAE_SELF_INDEX * 4)[0]
            if pde & 1 and pde & 0xFFFFF000 == address and not pde & 0x80:
                out.append((address, False))
                continue
            entry = _U64.unpack_from(page, PAE_SELF_DIRECTORY * 8)[0]
            if entry & 1 and entry & _FRAME_PAE == address and pfn >= 4:
                top = physical.page(pfn - 4)
                if top is None:
                    continue
                pdpt = [_U64.unpack_from(top, i * 8)[0] for i in range(4)]
                if all(e & 1 and e & _FRAME_PAE == (pfn - 3 + i) * PAGE_SIZE for i, e in enumerate(pdpt)):
                    out.append(((pfn - 4) * PAGE_SIZE, True))
    return out


def _sign_extended(value: int) -> Optional[int]:
    if value >> 32 == 0xFFFFFFFF:
        return value & 0xFFFFFFFF
    return value if value < 1 << 32 else None


def find_kernel_by_kdbg(fmap: Any, space: AddressSpace, segments: Any = None) -> Optional[Tuple[int, int]]:
    """(kernel base, KDBG virtual address) from a KDBG owner tag in physical memory whose
    KernBase is a kernel PE image in `space` (flat images; bounded)."""
    offsets = _kdbg_offsets()
    if offsets is None or segments is not None:
        return None
    tag_offset, kernbase_offset = offsets
    size = fmap.size
    pos = fmap.find(KDBG_TAG, 0, size)
    seen = 0
    while pos >= 0 and seen < MAX_KDBG_TAGS:
        seen += 1
        block_pa = pos - tag_offset
        raw = fmap.bytes_at(block_pa + kernbase_offset, 8)
        base = _sign_extended(_U64.unpack(raw)[0]) if len(raw) == 8 else None
        if base and not base & 0xFFF:
            try:
                if space.read(base, 2) == b"MZ" and read_pe_info(space, base).is_kernel:
                    # the block's VA: its page is inside the image; find it by its offset
                    va = _virtual_of(space, base, block_pa)
                    if va is not None:
                        return base, va
            except (PykdExtError, MemoryReadError):
                pass
        pos = fmap.find(KDBG_TAG, pos + 1, size)
    return None


def _virtual_of(space: AddressSpace, base: int, physical_address: int) -> Optional[int]:
    """VA in the kernel image (at most 64 MiB from `base`) that maps `physical_address`."""
    try:
        size = read_pe_info(space, base).size_of_image
    except PykdExtError:
        return None
    for va in range(base, base + min(size, 64 << 20), PAGE_SIZE):
        try:
            if space.translate(va) == physical_address & ~0xFFF:
                return va | (physical_address & 0xFFF)
        except MemoryReadError:
            continue
    return None


MAX_BUILD_LAB = 128


def build_lab(space: AddressSpace, address: object) -> Optional[str]:
    """The kernel's NtBuildLab string ("7601.17514.x86fre.win7sp1_rtm.101119-1850"), or None."""
    if not isinstance(address, int) or not address:
        return None
    data, _fault = space.read_partial(address, MAX_BUILD_LAB)
    text = data.split(b"\0", 1)[0]
    if not text or any(c < 0x20 or c > 0x7E for c in text):
        return None
    return text.decode("ascii")


class X86RawImageTarget(RawImageTarget):
    """A raw image of a 32-bit Windows machine (PAE or not)."""

    def __init__(self, path: str, fmap: Any, dtb: int, pae: bool, how: str,
                 segments: Any = None) -> None:
        super().__init__(path, fmap, dtb=dtb, segments=segments)
        self.pae = pae
        self._kernel = X86AddressSpace(self._physical, dtb, pae)
        self._facts["paging"] = "x86 PAE" if pae else "x86 non-PAE"
        self._facts["paging_source"] = how

    def _build_info(self) -> TargetInfo:
        lime = self._segments is not None
        info = TargetInfo(path=self.path, container="lime" if lime else "raw", arch="x86",
                          dump_type="LiME ranges" if lime else "raw physical image",
                          directory_table_base=self.dtb, physical_runs=self._physical.runs(),
                          pages_present=self._physical.page_count())
        info.extra.update(self._facts)
        info.extra["file_size"] = self._fmap.size
        info.notes.extend(n for n in self._notes if "x64 processor start block" not in n)
        found = find_kernel_by_kdbg(self._fmap, self._kernel, self._segments)
        if found is None:
            info.notes.append("no KDBG block naming a mapped kernel image was found")
            return info
        base, kdbg_va = found
        info.kernel_base = base
        try:
            pe = read_pe_info(self._kernel, base)
        except PykdExtError as err:
            info.notes.append("kernel PE header at 0x%x not readable: %s" % (base, err.one_line()))
            return info
        info.extra["kernel_timestamp"] = pe.timestamp
        info.extra["kernel_size_of_image"] = pe.size_of_image
        if pe.file_version is not None:
            info.extra["kernel_file_version"] = pe.file_version
            info.build = int(pe.file_version.split(".")[2])
        if pe.debug_codeview is not None:
            self._set_pdb(info, pe.debug_codeview)
        from pykd_ext.targets.crashdump import truncate_kdbg32
        from pykd_ext.targets.kdbg import decode_kdbg
        try:
            info.kdbg = truncate_kdbg32(dict(decode_kdbg(self._kernel, kdbg_va, info)))
        except PykdExtError as err:
            info.notes.append("KDBG at 0x%x not decoded: %s" % (kdbg_va, err.one_line()))
            return info
        info.kd_debugger_data_block = kdbg_va
        for key, attribute in (("PsActiveProcessHead", "ps_active_process_head"),
                               ("PsLoadedModuleList", "ps_loaded_module_list")):
            value = info.kdbg.get(key)
            if isinstance(value, int) and value:
                setattr(info, attribute, value)
        if info.build is None:
            lab = build_lab(self._kernel, info.kdbg.get("NtBuildLab"))
            if lab is not None:
                info.extra["build_lab"] = lab
                head = lab.split(".", 2)
                if head[0].isdigit():
                    info.build = int(head[0])
                    info.notes.append("NT build from the kernel's NtBuildLab string (KDBG)")
        if info.build is None:
            info.notes.append("NT build unknown (no version resource, no NtBuildLab); use --symbols")
        return info


def open_x86_raw_image(path: str, fmap: Any, segments: Any = None) -> Optional[RawImageTarget]:
    """An x86 raw-image target when a 32-bit kernel page directory is found, else None."""
    from pykd_ext.memory.filephysical import FlatPhysicalMemory, RunPhysicalMemory
    if segments is None:
        physical: PhysicalMemory = FlatPhysicalMemory(fmap.view)
    else:
        physical = RunPhysicalMemory(fmap.view, [(pa >> 12, length >> 12, offset)
                                                 for pa, offset, length in segments])
    for dtb, pae in find_x86_dtbs(physical):
        space = X86AddressSpace(physical, dtb, pae)
        try:
            space.translate(KUSER_SHARED_DATA_KERNEL)
        except MemoryReadError:
            continue
        how = ("page directory mapping itself at 0xC0000000" if not pae else
               "PDPT + 4 page directories mapping themselves at 0xC0600000")
        return X86RawImageTarget(path, fmap, dtb, pae, how, segments)
    return None
