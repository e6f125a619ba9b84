"""One forged kernel image for every architecture (issue 11: the PE32 twin is gone; the image's
`Arch` gives its Machine and, by pointer size, the PE32/PE32+ flavour).

Independent reader: pefile parses the forged headers. Expected values from the PE/COFF
specification: Machine 0x8664 (AMD64) / 0x14C (I386) / 0xAA64 (ARM64); optional header magic
0x20B (PE32+) / 0x10B (PE32) and size 0xF0 / 0xE0; IMAGE_FILE_LARGE_ADDRESS_AWARE (0x20) on
64-bit images, IMAGE_FILE_32BIT_MACHINE (0x100) on 32-bit ones; BaseOfData only in PE32.
"""
import pytest

from pykd_ext.forge.kernel_image import KernelImage
from pykd_ext.targets.arch import ARM64, X64, X86

GUID = "5F3D1A2B4C6E4F7A8B9C0D1E2F3A4B5C"


@pytest.mark.parametrize("arch,machine,magic,optional_size,flag,base", [
    (X64, 0x8664, 0x20B, 0xF0, 0x20, 0xFFFFF80512400000),
    (X86, 0x14C, 0x10B, 0xE0, 0x100, 0x82A00000),
    (ARM64, 0xAA64, 0x20B, 0xF0, 0x20, 0xFFFFF80512400000)], ids=["x64", "x86", "arm64"])
def test_pefile_reads_the_architectures_headers(arch, machine: int, magic: int, optional_size: int,
                                                flag: int, base: int) -> None:
    import pefile
    image = KernelImage(guid=GUID, size_of_image=0x40000, pdb_name="ntkrpamp.pdb", arch=arch)
    pe = pefile.PE(data=image.flat_image(base))
    assert pe.FILE_HEADER.Machine == machine
    assert pe.OPTIONAL_HEADER.Magic == magic and pe.FILE_HEADER.SizeOfOptionalHeader == optional_size
    assert pe.FILE_HEADER.Characteristics & flag and pe.FILE_HEADER.Characteristics & 0x2
    assert pe.OPTIONAL_HEADER.ImageBase == base
    assert [s.Name.rstrip(b"\0") for s in pe.sections] == [b".text", b".rdata", b".data"]
    if magic == 0x10B:
        assert pe.OPTIONAL_HEADER.BaseOfData == pe.sections[1].VirtualAddress
    else:
        assert not hasattr(pe.OPTIONAL_HEADER, "BaseOfData")
    codeview = pe.DIRECTORY_ENTRY_DEBUG[0].entry
    assert codeview.PdbFileName.rstrip(b"\0") == b"ntkrpamp.pdb"
