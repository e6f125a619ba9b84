"""CodeView constants: leaf kinds, numeric leaves, primitive types, symbol kinds.

Why one table: the TPI decoder, the symbol reader and the ISF converter must agree on every
number, and a reader checks its constants against one published source. Sources:
- LLVM `llvm/DebugInfo/CodeView/CodeViewTypes.def` (leaf kinds), `CodeViewSymbols.def`
  (symbol kinds), `TypeIndex.h` (SimpleTypeKind / SimpleTypeMode), `CodeView.h` (ClassOptions,
  PointerKind/Mode, MethodKind); https://llvm.org/docs/PDB/CodeViewTypes.html;
- Microsoft's `cvinfo.h` (microsoft-pdb repository) for LF_CLASS2/LF_STRUCTURE2/LF_UNION2/
  LF_INTERFACE2 (0x1608..0x160b, written by Visual Studio 2019+), which LLVM 14 does not list.
Base-type names are those Volatility 3's `pdbconv` writes into ISF files (so a PDB read here and
an ISF made by Volatility name the same types alike); kinds it does not name (bool, char8/16/32,
complex) get the C spelling.
"""
from typing import Dict, Tuple

from pykd_ext.targets.arch import ARCHES

# --- leaf kinds of type records (TPI) ---------------------------------------------------------
LF_VTSHAPE = 0x000A
LF_MODIFIER = 0x1001
LF_POINTER = 0x1002
LF_PROCEDURE = 0x1008
LF_MFUNCTION = 0x1009
LF_ARGLIST = 0x1201
LF_FIELDLIST = 0x1203
LF_BITFIELD = 0x1205
LF_METHODLIST = 0x1206
LF_ARRAY_ST = 0x1003
LF_CLASS_ST = 0x1004
LF_STRUCTURE_ST = 0x1005
LF_UNION_ST = 0x1006
LF_ENUM_ST = 0x1007
LF_ARRAY = 0x1503
LF_CLASS = 0x1504
LF_STRUCTURE = 0x1505
LF_UNION = 0x1506
LF_ENUM = 0x1507
LF_STRIDED_ARRAY = 0x1516
LF_INTERFACE = 0x1519
LF_VFTABLE = 0x151D
LF_CLASS2 = 0x1608
LF_STRUCTURE2 = 0x1609
LF_UNION2 = 0x160A
LF_INTERFACE2 = 0x160B

# --- member records inside an LF_FIELDLIST ----------------------------------------------------
LF_BCLASS = 0x1400
LF_VBCLASS = 0x1401
LF_IVBCLASS = 0x1402
LF_FRIENDFCN_ST = 0x1403
LF_INDEX = 0x1404
LF_MEMBER_ST = 0x1405
LF_STMEMBER_ST = 0x1406
LF_METHOD_ST = 0x1407
LF_NESTTYPE_ST = 0x1408
LF_VFUNCTAB = 0x1409
LF_FRIENDCLS = 0x140A
LF_ONEMETHOD_ST = 0x140B
LF_VFUNCOFF = 0x140C
LF_NESTTYPEEX_ST = 0x140D
LF_MEMBERMODIFY_ST = 0x140E
LF_ENUMERATE_ST = 0x0403
LF_ENUMERATE = 0x1502
LF_FRIENDFCN = 0x150C
LF_MEMBER = 0x150D
LF_STMEMBER = 0x150E
LF_METHOD = 0x150F
LF_NESTTYPE = 0x1510
LF_ONEMETHOD = 0x1511
LF_NESTTYPEEX = 0x1512
LF_MEMBERMODIFY = 0x1513
LF_BINTERFACE = 0x151A

#: kinds below this one carry length-prefixed ("pascal", _ST) names; from it on, NUL-terminated
LF_ST_MAX = 0x1500

#: type-record kinds whose names are length-prefixed (the "_ST" spellings of VC++ 7.0)
ST_NAMED = frozenset((LF_ARRAY_ST, LF_CLASS_ST, LF_STRUCTURE_ST, LF_UNION_ST, LF_ENUM_ST))
#: struct/class/interface records and their union/enum siblings, by their shape
CLASS_KINDS = frozenset((LF_CLASS, LF_STRUCTURE, LF_INTERFACE, LF_CLASS_ST, LF_STRUCTURE_ST))
CLASS2_KINDS = frozenset((LF_CLASS2, LF_STRUCTURE2, LF_INTERFACE2))
UNION_KINDS = frozenset((LF_UNION, LF_UNION_ST))
ENUM_KINDS = frozenset((LF_ENUM, LF_ENUM_ST))
ARRAY_KINDS = frozenset((LF_ARRAY, LF_ARRAY_ST, LF_STRIDED_ARRAY))
FUNCTION_KINDS = frozenset((LF_PROCEDURE, LF_MFUNCTION))

# --- numeric leaves (a value < 0x8000 is stored in the leaf itself) ---------------------------
LF_NUMERIC = 0x8000
#: numeric leaf -> (byte width, signed); floats, dates and strings are not integers we accept
NUMERIC_LEAVES: Dict[int, Tuple[int, bool]] = {
    0x8000: (1, True),    # LF_CHAR
    0x8001: (2, True),    # LF_SHORT
    0x8002: (2, False),   # LF_USHORT
    0x8003: (4, True),    # LF_LONG
    0x8004: (4, False),   # LF_ULONG
    0x8009: (8, True),    # LF_QUADWORD
    0x800A: (8, False),   # LF_UQUADWORD
    0x8017: (16, True),   # LF_OCTWORD
    0x8018: (16, False),  # LF_UOCTWORD
}

# --- CV_prop_t (ClassOptions) bits ------------------------------------------------------------
PROP_FORWARD_REF = 0x0080
PROP_SCOPED = 0x0100
PROP_HAS_UNIQUE_NAME = 0x0200

# --- LF_POINTER attributes (CV_ptrtype_e / CV_ptrmode_e) ---------------------------------------
PTR_KIND_MASK = 0x1F
PTR_KIND_NEAR32 = 0x0A
PTR_KIND_64 = 0x0C
PTR_MODE_SHIFT, PTR_MODE_MASK = 5, 0x7
PTR_MODE_POINTER = 0
PTR_MODE_LVALUE_REF = 1
PTR_MODE_DATA_MEMBER = 2
PTR_MODE_MEMBER_FUNCTION = 3
PTR_MODE_RVALUE_REF = 4
PTR_SIZE_SHIFT, PTR_SIZE_MASK = 13, 0x3F

# --- method properties (CV_methodprop_e) that carry a vtable offset in LF_ONEMETHOD ------------
MPROP_SHIFT, MPROP_MASK = 2, 0x7
MPROP_INTRO = 4
MPROP_PURE_INTRO = 6

# --- simple (primitive) type indices: mode << 8 | kind ---------------------------------------
FIRST_NON_SIMPLE = 0x1000
SIMPLE_KIND_MASK = 0xFF
SIMPLE_MODE_MASK = 0x700
#: SimpleTypeMode -> pointer size in bytes (near32, far32, near64, near128)
SIMPLE_POINTER_SIZES: Dict[int, int] = {0x100: 2, 0x400: 4, 0x500: 6, 0x600: 8, 0x700: 16}
#: SimpleTypeKind -> (ISF base-type name, kind, signed, size)
PRIMITIVES: Dict[int, Tuple[str, str, bool, int]] = {
    0x00: ("void", "void", True, 0),               # T_NOTYPE (only ever pointed to)
    0x03: ("void", "void", True, 0),               # T_VOID
    0x07: ("void", "void", True, 0),               # T_NOTTRANS
    0x08: ("HRESULT", "int", False, 4),            # T_HRESULT
    0x10: ("char", "char", True, 1),               # T_CHAR (signed char)
    0x20: ("unsigned char", "char", False, 1),     # T_UCHAR
    0x68: ("int8", "int", True, 1),                # T_INT1
    0x69: ("uint8", "int", False, 1),              # T_UINT1
    0x70: ("char", "char", True, 1),               # T_RCHAR (char)
    0x71: ("wchar", "int", True, 2),               # T_WCHAR (wchar_t)
    0x7A: ("char16_t", "int", False, 2),           # T_CHAR16
    0x7B: ("char32_t", "int", False, 4),           # T_CHAR32
    0x7C: ("char8_t", "char", False, 1),           # T_CHAR8
    0x11: ("short", "int", True, 2),               # T_SHORT
    0x21: ("unsigned short", "int", False, 2),     # T_USHORT
    0x72: ("short", "int", True, 2),               # T_INT2
    0x73: ("unsigned short", "int", False, 2),     # T_UINT2
    0x12: ("long", "int", True, 4),                # T_LONG
    0x22: ("unsigned long", "int", False, 4),      # T_ULONG
    0x74: ("int", "int", True, 4),                 # T_INT4
    0x75: ("unsigned int", "int", False, 4),       # T_UINT4
    0x13: ("long long", "int", True, 8),           # T_QUAD
    0x23: ("unsigned long long", "int", False, 8),  # T_UQUAD
    0x76: ("long long", "int", True, 8),           # T_INT8
    0x77: ("unsigned long long", "int", False, 8),  # T_UINT8
    0x14: ("int128", "int", True, 16),             # T_OCT
    0x24: ("uint128", "int", False, 16),           # T_UOCT
    0x78: ("int128", "int", True, 16),             # T_INT16
    0x79: ("uint128", "int", False, 16),           # T_UINT16
    0x46: ("f16", "float", True, 2),               # T_REAL16
    0x40: ("f32", "float", True, 4),               # T_REAL32
    0x45: ("f32pp", "float", True, 4),             # T_REAL32PP
    0x44: ("f48", "float", True, 6),               # T_REAL48
    0x41: ("double", "float", True, 8),            # T_REAL64
    0x42: ("f80", "float", True, 10),              # T_REAL80
    0x43: ("f128", "float", True, 16),             # T_REAL128
    0x56: ("complex16", "float", True, 4),         # T_CPLX16
    0x50: ("complex32", "float", True, 8),         # T_CPLX32
    0x55: ("complex32pp", "float", True, 8),       # T_CPLX32PP
    0x54: ("complex48", "float", True, 12),        # T_CPLX48
    0x51: ("complex64", "float", True, 16),        # T_CPLX64
    0x52: ("complex80", "float", True, 20),        # T_CPLX80
    0x53: ("complex128", "float", True, 32),       # T_CPLX128
    0x30: ("bool", "bool", False, 1),              # T_BOOL08
    0x31: ("bool16", "bool", False, 2),            # T_BOOL16
    0x32: ("bool32", "bool", False, 4),            # T_BOOL32
    0x33: ("bool64", "bool", False, 8),            # T_BOOL64
    0x34: ("bool128", "bool", False, 16),          # T_BOOL128
}

# --- symbol record kinds (symbol-record stream) -----------------------------------------------
S_LDATA32_ST = 0x1007
S_GDATA32_ST = 0x1008
S_PUB32_ST = 0x1009
S_LDATA32 = 0x110C
S_GDATA32 = 0x110D
S_PUB32 = 0x110E
#: data/public symbol kind -> (precedence: lower wins when two name the same symbol, ST name?)
ADDRESS_SYMBOLS: Dict[int, Tuple[int, bool]] = {
    S_PUB32: (0, False), S_PUB32_ST: (0, True),
    S_GDATA32: (1, False), S_GDATA32_ST: (1, True),
    S_LDATA32: (2, False), S_LDATA32_ST: (2, True),
}

# --- machine types (IMAGE_FILE_MACHINE_*) in the DBI header -----------------------------------
# (the architectures' own facts, `targets.arch`: x86, ARM, x64, ARM64, IA-64)
MACHINE_POINTER_SIZE: Dict[int, int] = {machine: arch.pointer_size for arch in ARCHES
                                        for machine in arch.machine_types}
MACHINE_ARCH: Dict[int, str] = {machine: arch.name for arch in ARCHES for machine in arch.machine_types}
