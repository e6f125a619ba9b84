"""A minimal ntoskrnl-like PE image, placed at a kernel virtual address of a forged machine.

Why: readers identify a kernel the way debuggers do: find the image base (KDBG `KernBase`, the
low stub's `LmTarget`, or a scan), read its PE headers, follow the debug directory to the
CodeView `RSDS` record, and use the PDB GUID/age/name to pick symbols. A forged dump needs a
kernel image whose headers are real PE structures carrying a chosen identity, nothing more.

The PE/COFF structures are the reader's own construct definitions (`pykd_ext.targets.pe`:
IMAGE_DOS_HEADER, IMAGE_FILE_HEADER, IMAGE_OPTIONAL_HEADER (PE32 or PE32+), IMAGE_DATA_DIRECTORY,
IMAGE_SECTION_HEADER, IMAGE_DEBUG_DIRECTORY, CV_INFO_PDB70), built instead of parsed, so the format
is written down once. The constants below are from the Microsoft PE/COFF specification ("PE
Format", learn.microsoft.com): characteristics, subsystem NATIVE, section flags, debug type 2 =
CODEVIEW, and the CodeView PDB 7.0 record ("RSDS", GUID, age, NUL-terminated PDB path). The
image's architecture (`targets.arch.Arch`, x64 by default) gives the Machine field and, by its
pointer size, the header flavour (`PE_FLAVOURS`: PE32+ for 64-bit, PE32 for 32-bit kernels).

When given `exports`, the image also carries an export directory (IMAGE_EXPORT_DIRECTORY,
the PE spec's ".edata" layout) naming real code: `getter_exports(table)` writes the kernel's
one-line accessors (`PsGetProcessPeb`: `mov rax, [rcx+disp32]; ret`) at the build's RVAs with the
build's member offsets, so layout inference from getter disassembly can be checked on any build
(tests/layouts/inferred compares our capstone decoding with GNU objdump's).

The image is laid out as it is in memory (FileAlignment = SectionAlignment = 0x1000,
PointerToRawData = VirtualAddress), so the same bytes are a valid file for `pefile` too.
"""
import uuid
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from construct import Array

from pykd_ext.forge.pagetables import PAGE_2M, PageTables
from pykd_ext.memory.space import PAGE_SIZE
from pykd_ext.targets.pe import (CV_INFO_PDB70, IMAGE_DATA_DIRECTORY, IMAGE_DEBUG_DIRECTORY,
                                 IMAGE_DEBUG_TYPE_CODEVIEW, IMAGE_DIRECTORY_ENTRY_DEBUG,
                                 IMAGE_DIRECTORY_ENTRY_EXPORT, IMAGE_DOS_HEADER, IMAGE_EXPORT_DIRECTORY,
                                 IMAGE_FILE_HEADER, IMAGE_NT_SIGNATURE,
                                 IMAGE_OPTIONAL_HEADER, IMAGE_SECTION_HEADER, PE32_MAGIC,
                                 PE32PLUS_MAGIC)
from pykd_ext.targets.arch import X64, Arch

IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
IMAGE_FILE_32BIT_MACHINE = 0x0100
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_NUMBEROF_DIRECTORY_ENTRIES = 16
IMAGE_SCN_CNT_CODE = 0x00000020
IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_MEM_EXECUTE = 0x20000000
IMAGE_SCN_MEM_READ = 0x40000000
IMAGE_SCN_MEM_WRITE = 0x80000000
E_LFANEW = 0x100
MAX_TEXT_PAGES = 0x1FF
#: sizeof(IMAGE_OPTIONAL_HEADER64): 112 bytes of fields + 16 data directories of 8 bytes.
OPTIONAL_HEADER64_SIZE = 0xF0
#: sizeof(IMAGE_OPTIONAL_HEADER32): 96 bytes of fields + 16 data directories of 8 bytes.
OPTIONAL_HEADER32_SIZE = 0xE0
#: The MS-DOS stub header fields between e_magic and e_lfanew, as link.exe writes them
#: (e_cblp 0x90, e_cp 3, e_cparhdr 4, e_maxalloc 0xFFFF, e_sp 0xB8, e_lfarlc 0x40).
_DOS_FIELDS = bytes.fromhex("9000030000000400" "0000ffff00000000" "b800000000000000"
                            "4000") + bytes(0x3A - 26)
_DATA_DIRECTORIES = Array(IMAGE_NUMBEROF_DIRECTORY_ENTRIES, IMAGE_DATA_DIRECTORY)


@dataclass(frozen=True)
class PeFlavour:
    """What PE32 and PE32+ headers differ in (PE/COFF specification, "Optional Header"): the
    magic, the optional header's size (16 data directories), the file characteristics link.exe
    sets (a 64-bit image is large-address aware; a 32-bit one states IMAGE_FILE_32BIT_MACHINE)."""

    magic: int
    optional_header_size: int
    characteristics: int


#: The header flavour of an image by its architecture's pointer size.
PE_FLAVOURS = {
    8: PeFlavour(PE32PLUS_MAGIC, OPTIONAL_HEADER64_SIZE,
                 IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE),
    4: PeFlavour(PE32_MAGIC, OPTIONAL_HEADER32_SIZE,
                 IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_32BIT_MACHINE),
}


def parse_guid(guid: str) -> uuid.UUID:
    """A GUID written as symbol servers and ISF files do: 32 hex digits (dashes/braces allowed)."""
    text = guid.replace("-", "").replace("{", "").replace("}", "")
    if len(text) != 32:
        raise ValueError("a GUID has 32 hex digits, got %r" % guid)
    return uuid.UUID(hex=text)


@dataclass
class Export:
    """An exported function: its name, RVA and code bytes."""

    name: str
    rva: int
    code: bytes
    #: False: code the image holds but does not export (an internal callee such as
    #: PspReferenceCidTableEntry)
    exported: bool = True


#: x64 encodings (Intel SDM vol. 2, ModRM mod=10 rm=001: [rcx+disp32]; mod=10 rm=000: [rax+disp32])
#: of the accessor shapes the kernel's getters compile to; the displacement is appended.
X64_LOAD_QWORD = bytes.fromhex("488b81")       # mov rax, qword ptr [rcx+disp32]
X64_LOAD_DWORD = bytes.fromhex("8b81")         # mov eax, dword ptr [rcx+disp32]
X64_LOAD_BYTE = bytes.fromhex("0fb681")        # movzx eax, byte ptr [rcx+disp32]
X64_ADDRESS = bytes.fromhex("488d81")          # lea rax, [rcx+disp32]
X64_DEREF_DWORD = bytes.fromhex("8b80")        # mov eax, dword ptr [rax+disp32]
X64_TEST_RAX = bytes.fromhex("4885c0")         # test rax, rax
X64_JE_SHORT = bytes.fromhex("74")             # je rel8
X64_OR_EAX_MINUS_1 = bytes.fromhex("83c8ff")   # or eax, -1
X64_RET = bytes.fromhex("c3")                  # ret

#: getter -> (type, member path candidates, shape, member reached through the loaded pointer)
FORGED_GETTERS: Tuple[Tuple[str, str, Tuple[str, ...], bytes, Optional[Tuple[str, str]]], ...] = (
    ("PsGetProcessId", "_EPROCESS", ("UniqueProcessId",), X64_LOAD_QWORD, None),
    ("PsGetProcessPeb", "_EPROCESS", ("Peb",), X64_LOAD_QWORD, None),
    ("PsGetProcessImageFileName", "_EPROCESS", ("ImageFileName",), X64_ADDRESS, None),
    ("PsGetProcessInheritedFromUniqueProcessId", "_EPROCESS", ("InheritedFromUniqueProcessId",),
     X64_LOAD_QWORD, None),
    ("PsGetProcessExitStatus", "_EPROCESS", ("ExitStatus",), X64_LOAD_DWORD, None),
    ("PsGetProcessJob", "_EPROCESS", ("Job",), X64_LOAD_QWORD, None),
    ("PsGetProcessProtection", "_EPROCESS", ("Protection",), X64_LOAD_BYTE, None),
    ("PsGetProcessSessionId", "_EPROCESS", ("Session",), X64_LOAD_QWORD, ("_MM_SESSION_SPACE", "SessionId")),
    ("PsGetProcessWow64Process", "_EPROCESS", ("WoW64Process", "Wow64Process"), X64_LOAD_QWORD, None),
    ("PsGetThreadId", "_ETHREAD", ("Cid.UniqueThread",), X64_LOAD_QWORD, None),
    ("PsGetThreadProcessId", "_ETHREAD", ("Cid.UniqueProcess",), X64_LOAD_QWORD, None),
    ("PsGetThreadTeb", "_ETHREAD", ("Tcb.Teb",), X64_LOAD_QWORD, None),
)


def _disp32(value: int) -> bytes:
    return int(value).to_bytes(4, "little", signed=True)


def getter_code(shape: bytes, offset: int, through: Optional[int] = None) -> bytes:
    """The bytes of one accessor: load/lea at `offset` from rcx, then ret; with `through`, the
    loaded pointer is tested and dereferenced at `through` (-1 when it is NULL)."""
    code = shape + _disp32(offset)
    if through is None:
        return code + X64_RET
    tail = X64_DEREF_DWORD + _disp32(through) + X64_RET
    return code + X64_TEST_RAX + X64_JE_SHORT + bytes([len(tail)]) + tail + X64_OR_EAX_MINUS_1 + X64_RET


def getter_exports(table: Any) -> List[Export]:
    """The build's getters (`FORGED_GETTERS`) at their RVAs with its member offsets, from the
    build's ISF (`forge.isf.SymbolTable`); getters or members the build lacks are left out."""
    out: List[Export] = []
    for name, type_name, paths, shape, through in FORGED_GETTERS:
        try:
            rva = table.rva(name)
        except KeyError:
            continue
        offset = None
        for path in paths:
            try:
                offset = table.offset(type_name, path)
                break
            except KeyError:
                continue
        if offset is None:
            continue
        second = None
        if through is not None:
            try:
                second = table.offset(*through)
            except KeyError:
                continue
        out.append(Export(name, rva, getter_code(shape, offset, second)))
    return out + global_code_exports(table.rva, table.offset)     # H12: ObGetObjectType, CID lookups


#: Functions whose code names kernel globals (H12, issue 15: `layouts.inferred.code_globals`
#: reads them back). x64 encodings (Intel SDM vol. 2: ModRM mod=00 rm=101 is [rip+disp32],
#: mod=10 rm=001 [rcx+disp32]; SIB scale=11 index=rax base=rcx is [rcx+rax*8]); a RIP-relative
#: displacement counts from the end of its instruction. The shapes are ntoskrnl's own:
#: ObGetObjectType (rcx = object body) since Windows 10 —
#:   lea   rax, [rcx+disp32]           48 8d 81 d32   header = body - _OBJECT_HEADER.Body
#:   movzx ecx, byte ptr [rcx+disp32]  0f b6 89 d32   stored TypeIndex (TypeIndex - Body)
#:   shr   rax, 8                      48 c1 e8 08
#:   movzx eax, al                     0f b6 c0
#:   xor   rax, rcx                    48 33 c1
#:   movzx ecx, byte ptr [rip+disp32]  0f b6 0d d32   ObHeaderCookie
#:   xor   rax, rcx                    48 33 c1
#:   lea   rcx, [rip+disp32]           48 8d 0d d32   ObTypeIndexTable
#:   mov   rax, qword ptr [rcx+rax*8]  48 8b 04 c1
#:   ret                               c3
#: and before Windows 10 (no cookie): movzx eax, byte ptr [rcx+disp32] (0f b6 81 d32); lea rcx,
#: [rip+disp32]; mov rax, [rcx+rax*8]; ret.
#: PsLookupProcessByProcessId / PsLookupThreadByThreadId (rcx = id, rdx = out pointer) —
#:   mov qword ptr [rsp+8], rbx        48 89 5c 24 08
#:   push rdi                          57
#:   sub rsp, 0x20                     48 83 ec 20
#:   mov rdi, rdx                      48 8b fa
#: then, Windows 7 (the table loaded in place, for ExMapHandleToPointer):
#:   mov rdx, rcx                      48 8b d1
#:   mov rcx, qword ptr [rip+disp32]   48 8b 0d d32   PspCidTable
#: or, Windows 8.1+ (the load is in PspReferenceCidTableEntry):
#:   call rel32                        e8 rel32
#: then mov qword ptr [rdi], rax (48 89 07); mov rbx, [rsp+0x30] (48 8b 5c 24 30); add rsp, 0x20
#: (48 83 c4 20); pop rdi (5f); xor eax, eax (33 c0); ret (c3). PspReferenceCidTableEntry:
#:   mov rax, qword ptr [rip+disp32]   48 8b 05 d32   PspCidTable
#:   ret                               c3
_LOOKUP_PROLOGUE = bytes.fromhex("48895c2408" "57" "4883ec20" "488bfa")
_LOOKUP_EPILOGUE = bytes.fromhex("488907" "488b5c2430" "4883c420" "5f" "33c0" "c3")


def _rip(rva: int, prefix: bytes, target_rva: int, tail: int = 0) -> bytes:
    """`prefix` + the disp32 that makes this instruction (at `rva`) name `target_rva`."""
    end = rva + len(prefix) + 4 + tail
    return prefix + _disp32(target_rva - end)


def object_type_code(rva: int, body: int, type_index: int, table_rva: int,
                     cookie_rva: Optional[int]) -> bytes:
    """ObGetObjectType at `rva` (see above); `body`/`type_index`: `_OBJECT_HEADER` offsets."""
    if cookie_rva is None:
        code = bytes.fromhex("0fb681") + _disp32(type_index - body)
    else:
        code = (bytes.fromhex("488d81") + _disp32(-body) + bytes.fromhex("0fb689") + _disp32(type_index - body)
                + bytes.fromhex("48c1e808" "0fb6c0" "4833c1"))
        code += _rip(rva + len(code), bytes.fromhex("0fb60d"), cookie_rva) + bytes.fromhex("4833c1")
    code += _rip(rva + len(code), bytes.fromhex("488d0d"), table_rva)
    return code + bytes.fromhex("488b04c1") + X64_RET


def cid_lookup_code(rva: int, cid_table_rva: int, helper_rva: Optional[int] = None) -> bytes:
    """PsLookupProcessByProcessId/PsLookupThreadByThreadId at `rva` (see above): the table load
    in place, or a call to the helper at `helper_rva` (whose code is `cid_helper_code`)."""
    code = _LOOKUP_PROLOGUE
    if helper_rva is None:
        code += bytes.fromhex("488bd1")
        code += _rip(rva + len(code), bytes.fromhex("488b0d"), cid_table_rva)
    else:
        code += _rip(rva + len(code), bytes.fromhex("e8"), helper_rva)
    return code + _LOOKUP_EPILOGUE


def cid_helper_code(rva: int, cid_table_rva: int) -> bytes:
    """PspReferenceCidTableEntry's table load (see above)."""
    return _rip(rva, bytes.fromhex("488b05"), cid_table_rva) + X64_RET


#: The same functions in 32-bit (stdcall) code, which names globals by absolute address (IA-32
#: encodings, Intel SDM vol. 2: ModRM mod=00 rm=101 is [disp32]; SIB scale=10 base=101 with mod=00
#: is [index*4+disp32]). ObGetObjectType since Windows 10 —
#:   mov edi, edi; push ebp; mov ebp, esp   8b ff 55 8b ec
#:   mov ecx, dword ptr [ebp+8]             8b 4d 08       the object body
#:   lea eax, [ecx+disp32]                  8d 81 d32      header = body - _OBJECT_HEADER.Body
#:   movzx ecx, byte ptr [ecx+disp32]       0f b6 89 d32   stored TypeIndex
#:   shr eax, 8; movzx eax, al; xor ecx, eax               c1 e8 08 0f b6 c0 33 c8
#:   movzx eax, byte ptr [disp32]           0f b6 05 a32   ObHeaderCookie
#:   xor ecx, eax                           33 c8
#:   mov eax, dword ptr [ecx*4+disp32]      8b 04 8d a32   ObTypeIndexTable
#:   pop ebp; ret 4                         5d c2 04 00
#: before Windows 10: the frame, mov eax, [ebp+8] (8b 45 08), movzx eax, byte ptr [eax+disp32]
#: (0f b6 80 d32), mov eax, dword ptr [eax*4+disp32] (8b 04 85 a32), pop ebp; ret 4.
#: PsLookupProcessByProcessId / PsLookupThreadByThreadId: the frame, then Windows 7's
#: push dword ptr [ebp+8] (ff 75 08); push dword ptr [disp32] (ff 35 a32, PspCidTable), or 8.1+'s
#: mov ecx, [ebp+8] (8b 4d 08); mov dl, 3 (b2 03); call rel32 (e8); then xor eax, eax (33 c0);
#: pop ebp; ret 8 (5d c2 08 00). PspReferenceCidTableEntry: mov eax, dword ptr [disp32] (a1 a32); ret.
_X86_FRAME = bytes.fromhex("8bff" "55" "8bec")


def _abs32(address: int) -> bytes:
    return (address & 0xFFFFFFFF).to_bytes(4, "little")


def object_type_code32(base: int, body: int, type_index: int, table_rva: int,
                       cookie_rva: Optional[int]) -> bytes:
    """32-bit ObGetObjectType (see above) for an image at `base`."""
    if cookie_rva is None:
        return (_X86_FRAME + bytes.fromhex("8b4508" "0fb680") + _disp32(type_index - body)
                + bytes.fromhex("8b0485") + _abs32(base + table_rva) + bytes.fromhex("5dc20400"))
    return (_X86_FRAME + bytes.fromhex("8b4d08" "8d81") + _disp32(-body) + bytes.fromhex("0fb689")
            + _disp32(type_index - body) + bytes.fromhex("c1e808" "0fb6c0" "33c8" "0fb605")
            + _abs32(base + cookie_rva) + bytes.fromhex("33c8" "8b048d") + _abs32(base + table_rva)
            + bytes.fromhex("5dc20400"))


def cid_lookup_code32(rva: int, base: int, cid_table_rva: int, helper_rva: Optional[int] = None) -> bytes:
    """32-bit PsLookupProcessByProcessId/PsLookupThreadByThreadId at `rva` (see above)."""
    code = _X86_FRAME
    if helper_rva is None:
        code += bytes.fromhex("ff7508" "ff35") + _abs32(base + cid_table_rva)
    else:
        code += bytes.fromhex("8b4d08" "b203")
        code += _rip(rva + len(code), bytes.fromhex("e8"), helper_rva)     # rel32 from the next instruction
    return code + bytes.fromhex("33c0" "5d" "c20800")


def global_code_exports(rva: Any, offset: Any, image_base: Optional[int] = None) -> List[Export]:
    """ObGetObjectType and the CID lookups whose code names `ObHeaderCookie`, `ObTypeIndexTable`
    and `PspCidTable`, given `rva(name)` and `offset(type, path)` lookups (KeyError: absent);
    functions whose globals or RVAs the build lacks are left out. With `image_base`, 32-bit code
    (absolute addresses); without, x64 code (RIP-relative)."""
    if image_base is not None:
        return _global_code_exports32(rva, offset, image_base)
    def get(fn: Any, *args: str) -> Optional[int]:
        try:
            return int(fn(*args))
        except KeyError:
            return None
    out: List[Export] = []
    at, table = get(rva, "ObGetObjectType"), get(rva, "ObTypeIndexTable")
    body, index = get(offset, "_OBJECT_HEADER", "Body"), get(offset, "_OBJECT_HEADER", "TypeIndex")
    if None not in (at, table, body, index):
        out.append(Export("ObGetObjectType", at, object_type_code(at, body, index, table,  # type: ignore[arg-type]
                                                                  get(rva, "ObHeaderCookie"))))
    cid, helper = get(rva, "PspCidTable"), get(rva, "PspReferenceCidTableEntry")
    if cid is None:
        return out
    if helper is not None:
        out.append(Export("PspReferenceCidTableEntry", helper, cid_helper_code(helper, cid), exported=False))
    for name in ("PsLookupProcessByProcessId", "PsLookupThreadByThreadId"):
        at = get(rva, name)
        if at is not None:
            out.append(Export(name, at, cid_lookup_code(at, cid, helper)))
    return out


def _global_code_exports32(rva: Any, offset: Any, base: int) -> List[Export]:
    def get(fn: Any, *args: str) -> Optional[int]:
        try:
            return int(fn(*args))
        except KeyError:
            return None
    out: List[Export] = []
    at, table = get(rva, "ObGetObjectType"), get(rva, "ObTypeIndexTable")
    body, index = get(offset, "_OBJECT_HEADER", "Body"), get(offset, "_OBJECT_HEADER", "TypeIndex")
    if at is not None and table is not None and body is not None and index is not None:
        out.append(Export("ObGetObjectType", at,
                          object_type_code32(base, body, index, table, get(rva, "ObHeaderCookie"))))
    cid, helper = get(rva, "PspCidTable"), get(rva, "PspReferenceCidTableEntry")
    if cid is None:
        return out
    if helper is not None:
        out.append(Export("PspReferenceCidTableEntry", helper,
                          bytes.fromhex("a1") + _abs32(base + cid) + bytes.fromhex("c3"), exported=False))
    for name in ("PsLookupProcessByProcessId", "PsLookupThreadByThreadId"):
        at = get(rva, name)
        if at is not None:
            out.append(Export(name, at, cid_lookup_code32(at, base, cid, helper)))
    return out


@dataclass
class Section:
    """One section the forged kernel image declares: name, RVA, size, characteristics."""

    name: str
    rva: int
    size: int
    characteristics: int


@dataclass
class PlacedImage:
    """Where a KernelImage ended up in a forged machine."""

    base: int                # kernel virtual address of the image (ImageBase)
    physical: int            # physical address of the first byte
    size_of_image: int
    entry_point: int         # virtual address of AddressOfEntryPoint
    debug_directory: int     # virtual address of the IMAGE_DEBUG_DIRECTORY


@dataclass
class KernelImage:
    """The PE identity of a forged kernel (see the module docstring)."""

    guid: str
    age: int = 1
    timestamp: int = 0x5F5E1000
    size_of_image: int = 0x200000
    pdb_name: str = "ntkrnlmp.pdb"
    entry_rva: int = 0x1000
    sections: List[Section] = field(default_factory=list)
    exports: List[Export] = field(default_factory=list)
    dll_name: str = "ntoskrnl.exe"
    arch: Arch = X64                 # Machine, and the PE32/PE32+ flavour by its pointer size

    def __post_init__(self) -> None:
        parse_guid(self.guid)
        self.size_of_image = -(-self.size_of_image // PAGE_SIZE) * PAGE_SIZE
        if self.size_of_image < 4 * PAGE_SIZE:
            raise ValueError("SizeOfImage must hold the headers and three sections")
        if not self.sections:
            self.sections = self._default_sections()
        if not 0 < self.entry_rva < self.size_of_image:
            raise ValueError("entry point RVA 0x%x is outside the image" % self.entry_rva)
        # only code that lies inside the image and clear of its headers/debug/export data (an
        # image sized for the globals a scenario uses may end before some getters' RVAs)
        kept = [e for e in self.exports if PAGE_SIZE <= e.rva and e.rva + len(e.code) <= self.size_of_image]
        self.exports = kept
        low, high = self.debug_rva, self.export_rva + len(self.export_blob())
        self.exports = [e for e in kept if e.rva + len(e.code) <= low or e.rva >= high]

    def _default_sections(self) -> List[Section]:
        pages = self.size_of_image // PAGE_SIZE - 1
        # .text ends within the first 2 MiB, so the CodeView record sits near the image start
        # (Volatility 3's kernel scan looks for the PDB name within 4 MiB of the base).
        text = max(1, min(pages * 2 // 5, MAX_TEXT_PAGES))
        rdata = max(1, pages // 5)
        data = pages - text - rdata
        return [
            Section(".text", PAGE_SIZE, text * PAGE_SIZE,
                    IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ),
            Section(".rdata", (1 + text) * PAGE_SIZE, rdata * PAGE_SIZE,
                    IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ),
            Section(".data", (1 + text + rdata) * PAGE_SIZE, data * PAGE_SIZE,
                    IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ | IMAGE_SCN_MEM_WRITE),
        ]

    @property
    def debug_rva(self) -> int:
        """RVA of the debug directory: the start of the first read-only data section."""
        for section in self.sections:
            if not section.characteristics & (IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_WRITE):
                return section.rva
        return self.sections[-1].rva

    def codeview_record(self) -> bytes:
        guid = parse_guid(self.guid)
        head = CV_INFO_PDB70.build({"Data1": guid.time_low, "Data2": guid.time_mid,
                                    "Data3": guid.time_hi_version, "Data4": guid.bytes[8:],
                                    "Age": self.age})
        return head + self.pdb_name.encode("ascii") + b"\0"

    def debug_blob(self) -> bytes:
        """The IMAGE_DEBUG_DIRECTORY followed by the CodeView record it points to."""
        record = self.codeview_record()
        record_rva = self.debug_rva + IMAGE_DEBUG_DIRECTORY.sizeof()
        directory = IMAGE_DEBUG_DIRECTORY.build({
            "Characteristics": 0, "TimeDateStamp": self.timestamp, "MajorVersion": 0,
            "MinorVersion": 0, "Type": IMAGE_DEBUG_TYPE_CODEVIEW, "SizeOfData": len(record),
            "AddressOfRawData": record_rva, "PointerToRawData": record_rva})
        return directory + record

    @property
    def export_rva(self) -> int:
        """RVA of the export directory: after the debug data, 16-byte aligned."""
        return -(-(self.debug_rva + len(self.debug_blob())) // 16) * 16

    def export_blob(self) -> bytes:
        """IMAGE_EXPORT_DIRECTORY, then the function, name and ordinal tables and the strings
        (names sorted, as the loader's binary search needs; ordinal i = function i)."""
        exports = sorted((e for e in self.exports if e.exported), key=lambda e: e.name.encode("ascii"))
        if not exports:
            return b""
        count = len(exports)
        start = self.export_rva
        functions = start + IMAGE_EXPORT_DIRECTORY.sizeof()
        names = functions + 4 * count
        ordinals = names + 4 * count
        strings = ordinals + 2 * count
        pool = bytearray(self.dll_name.encode("ascii") + b"\0")
        name_rvas = []
        for export in exports:
            name_rvas.append(strings + len(pool))
            pool += export.name.encode("ascii") + b"\0"
        directory = IMAGE_EXPORT_DIRECTORY.build({
            "Characteristics": 0, "TimeDateStamp": self.timestamp, "MajorVersion": 0, "MinorVersion": 0,
            "Name": strings, "Base": 1, "NumberOfFunctions": count, "NumberOfNames": count,
            "AddressOfFunctions": functions, "AddressOfNames": names, "AddressOfNameOrdinals": ordinals})
        return (directory + b"".join(e.rva.to_bytes(4, "little") for e in exports)
                + b"".join(r.to_bytes(4, "little") for r in name_rvas)
                + b"".join(i.to_bytes(2, "little") for i in range(count)) + bytes(pool))

    def headers(self, image_base: int) -> bytes:
        """The header page: DOS header, PE signature, file/optional headers, section table."""
        code = sum(s.size for s in self.sections if s.characteristics & IMAGE_SCN_CNT_CODE)
        init = sum(s.size for s in self.sections
                   if s.characteristics & IMAGE_SCN_CNT_INITIALIZED_DATA)
        directories = [{"VirtualAddress": 0, "Size": 0}
                       for _ in range(IMAGE_NUMBEROF_DIRECTORY_ENTRIES)]
        directories[IMAGE_DIRECTORY_ENTRY_DEBUG] = {"VirtualAddress": self.debug_rva,
                                                   "Size": IMAGE_DEBUG_DIRECTORY.sizeof()}
        if any(e.exported for e in self.exports):
            directories[IMAGE_DIRECTORY_ENTRY_EXPORT] = {"VirtualAddress": self.export_rva,
                                                        "Size": len(self.export_blob())}
        flavour = PE_FLAVOURS[self.arch.pointer_size]
        dos = IMAGE_DOS_HEADER.build({"_dos": _DOS_FIELDS, "e_lfanew": E_LFANEW})
        file_header = IMAGE_FILE_HEADER.build({
            "Machine": self.arch.machine_types[0], "NumberOfSections": len(self.sections),
            "TimeDateStamp": self.timestamp, "PointerToSymbolTable": 0, "NumberOfSymbols": 0,
            "SizeOfOptionalHeader": flavour.optional_header_size,
            "Characteristics": flavour.characteristics})
        optional = IMAGE_OPTIONAL_HEADER.build({
            "Magic": flavour.magic,
            "common": {"MajorLinkerVersion": 14, "MinorLinkerVersion": 0, "SizeOfCode": code,
                       "SizeOfInitializedData": init, "SizeOfUninitializedData": 0,
                       "AddressOfEntryPoint": self.entry_rva,
                       "BaseOfCode": self.sections[0].rva},
            # PE32 only: the first data section's RVA
            "BaseOfData": self.sections[1].rva if flavour.magic == PE32_MAGIC else {},
            "windows": {
                "ImageBase": image_base, "SectionAlignment": PAGE_SIZE,
                "FileAlignment": PAGE_SIZE, "MajorOperatingSystemVersion": 10,
                "MinorOperatingSystemVersion": 0, "MajorImageVersion": 10,
                "MinorImageVersion": 0, "MajorSubsystemVersion": 10, "MinorSubsystemVersion": 0,
                "Win32VersionValue": 0, "SizeOfImage": self.size_of_image,
                "SizeOfHeaders": PAGE_SIZE, "CheckSum": 0, "Subsystem": IMAGE_SUBSYSTEM_NATIVE,
                "DllCharacteristics": 0, "SizeOfStackReserve": 0x40000,
                "SizeOfStackCommit": 0x1000, "SizeOfHeapReserve": 0x100000,
                "SizeOfHeapCommit": 0x1000, "LoaderFlags": 0,
                "NumberOfRvaAndSizes": IMAGE_NUMBEROF_DIRECTORY_ENTRIES}})
        optional += _DATA_DIRECTORIES.build(directories)
        if len(optional) != flavour.optional_header_size:
            raise AssertionError("optional header built 0x%x bytes" % len(optional))
        table = b"".join(IMAGE_SECTION_HEADER.build({
            "Name": s.name.encode("ascii").ljust(8, b"\0")[:8], "VirtualSize": s.size,
            "VirtualAddress": s.rva, "SizeOfRawData": s.size, "PointerToRawData": s.rva,
            "PointerToRelocations": 0, "PointerToLinenumbers": 0, "NumberOfRelocations": 0,
            "NumberOfLinenumbers": 0, "Characteristics": s.characteristics})
            for s in self.sections)
        page = bytearray(PAGE_SIZE)
        page[:len(dos)] = dos
        nt = IMAGE_NT_SIGNATURE + file_header + optional + table
        if E_LFANEW + len(nt) > PAGE_SIZE:
            raise ValueError("too many sections for one header page")
        page[E_LFANEW:E_LFANEW + len(nt)] = nt
        return bytes(page)

    def flat_image(self, image_base: int) -> bytes:
        """The whole image as one buffer (headers + debug data; the rest zero), for pefile."""
        out = bytearray(self.size_of_image)
        out[:PAGE_SIZE] = self.headers(image_base)
        blob = self.debug_blob()
        out[self.debug_rva:self.debug_rva + len(blob)] = blob
        exports = self.export_blob()
        out[self.export_rva:self.export_rva + len(exports)] = exports
        for export in self.exports:
            out[export.rva:export.rva + len(export.code)] = export.code
        return bytes(out)

    def place(self, pt: PageTables, base: int, large_pages: bool = True) -> PlacedImage:
        """Map the image at `base` and write its headers and debug data.

        The whole SizeOfImage range is mapped to fresh frames (2 MiB pages when `base` allows,
        as Windows maps ntoskrnl), but only pages that receive data become present.
        """
        if base % PAGE_SIZE:
            raise ValueError("image base 0x%x is not page aligned" % base)
        use_large = large_pages and base % PAGE_2M == 0
        page_size = PAGE_2M if use_large else PAGE_SIZE
        span = -(-self.size_of_image // page_size) * page_size
        first = pt.phys.allocate(span // PAGE_SIZE, align_pages=page_size // PAGE_SIZE)
        pt.map(base, first * PAGE_SIZE, span, page_size, user=False)
        pt.write_virtual(base, self.headers(base))
        pt.write_virtual(base + self.debug_rva, self.debug_blob())
        if self.exports:
            pt.write_virtual(base + self.export_rva, self.export_blob())
            for export in self.exports:
                pt.write_virtual(base + export.rva, export.code)
        return PlacedImage(base=base, physical=first * PAGE_SIZE,
                           size_of_image=self.size_of_image,
                           entry_point=base + self.entry_rva,
                           debug_directory=base + self.debug_rva)


__all__ = ["Export", "FORGED_GETTERS", "KernelImage", "PE_FLAVOURS", "PeFlavour", "PlacedImage", "Section",
           "cid_helper_code", "cid_lookup_code", "cid_lookup_code32", "getter_code", "getter_exports",
           "global_code_exports", "object_type_code", "object_type_code32", "parse_guid"]
