"""A kernel PDB written by LLVM (`llvm-pdbutil yaml2pdb`) from an original ISF symbol table.

Why: no real ntkrnlmp.pdb may be shipped, yet `--fetch-symbols` and the PDB reader must be shown
working on a kernel-sized type graph with the exact identity a dump names. The type records are
described here from ../shared/isf (the data the shipped layouts came from), and LLVM's own PDB
writer lays out the MSF container, the TPI stream and the PDB info stream (GUID, age): our
reader then reads a file that neither our generator nor our writer made.

CodeView facts used (LLVM `include/llvm/DebugInfo/CodeView/TypeIndex.h` SimpleTypeKind and
SimpleTypeMode; `CodeView.h` PointerKind, PointerOptions): simple type indices, 64-bit near
pointers `0x600 | kind`, pointer attributes `kind | size << 13`. The YAML is written in JSON's
flow style (see `_flow`).
"""
import json
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

#: ISF base type name -> CodeView simple type kind (TypeIndex.h SimpleTypeKind)
SIMPLE = {"void": 0x03, "HRESULT": 0x08, "char": 0x10, "unsigned char": 0x20, "short": 0x11,
          "unsigned short": 0x21, "long": 0x12, "unsigned long": 0x22, "long long": 0x13,
          "unsigned long long": 0x23, "int": 0x74, "unsigned int": 0x75, "wchar": 0x71,
          "float": 0x40, "f32": 0x40, "double": 0x41, "bool": 0x30}
NEAR64, NEAR32 = 0x600, 0x400                        # SimpleTypeMode
PTR_NEAR64, PTR_NEAR32 = 0x0C, 0x0A                   # PointerKind
FIRST_INDEX = 0x1000


class _Tpi:
    """TPI records in dependency order; `index(desc)` returns a type index, emitting what it needs."""

    def __init__(self, doc: Dict[str, Any]) -> None:
        self.doc = doc
        self.records: List[Dict[str, Any]] = []
        self.full: Dict[str, int] = {}
        self.forward: Dict[str, int] = {}
        self.enums: Dict[str, int] = {}
        self.memo: Dict[str, int] = {}
        self.proc = 0

    def add(self, kind: str, key: str, body: Dict[str, Any]) -> int:
        self.records.append({"Kind": kind, key: body})
        return FIRST_INDEX + len(self.records) - 1

    @staticmethod
    def _pdb_name(name: str) -> str:
        return "<unnamed-tag>" if name.startswith("__unnamed") else \
            ("<anonymous-tag>" if name.startswith("__anonymous") else name)

    def _procedure(self) -> int:
        if not self.proc:
            args = self.add("LF_ARGLIST", "ArgList", {"ArgIndices": []})
            self.proc = self.add("LF_PROCEDURE", "Procedure", {
                "ReturnType": SIMPLE["void"], "CallConv": "NearC", "Options": ["None"],
                "ParameterCount": 0, "ArgumentList": args})
        return self.proc

    def _forward_ref(self, name: str, kind: str) -> int:
        if name not in self.forward:
            rec = {"MemberCount": 0, "Options": ["None", "ForwardReference"], "FieldList": 0,
                   "Name": name, "UniqueName": "", "Size": 0}
            if kind == "union":
                self.forward[name] = self.add("LF_UNION", "Union", rec)
            else:
                rec.update({"DerivationList": 0, "VTableShape": 0})
                self.forward[name] = self.add("LF_STRUCTURE", "Class", rec)
        return self.forward[name]

    def enum(self, name: str) -> int:
        if name not in self.enums:
            src = self.doc["enums"][name]
            fields = [{"Kind": "LF_ENUMERATE", "Enumerator": {"Attrs": 3, "Value": value, "Name": const}}
                      for const, value in src["constants"].items()]
            flist = self.add("LF_FIELDLIST", "FieldList", fields)
            self.enums[name] = self.add("LF_ENUM", "Enum", {
                "NumEnumerators": len(fields), "Options": ["None"], "FieldList": flist, "Name": name,
                "UniqueName": "", "UnderlyingType": SIMPLE[src["base"]]})
        return self.enums[name]

    def pointer(self, desc: Dict[str, Any]) -> int:
        width = self.doc["base_types"].get(desc.get("base", "pointer"), {}).get("size", 8)
        sub = desc.get("subtype") or {}
        if sub.get("kind") == "base" and sub.get("name") in SIMPLE:
            return (NEAR64 if width == 8 else NEAR32) | SIMPLE[sub["name"]]
        kind = sub.get("kind")
        name = str(sub.get("name", ""))
        if kind in ("struct", "union") and not name.startswith(("__unnamed", "__anonymous")):
            referent = self._forward_ref(name, kind)
        elif kind in ("struct", "union"):
            referent = self.struct(name)              # anonymous: no name to resolve a forward ref by
        elif kind == "function":
            referent = self._procedure()
        else:
            referent = self.index(sub)
        attrs = (PTR_NEAR64 if width == 8 else PTR_NEAR32) | width << 13
        return self.add("LF_POINTER", "Pointer", {"ReferentType": referent, "Attrs": attrs})

    def index(self, desc: Dict[str, Any]) -> int:
        kind = desc.get("kind")
        if kind == "base":
            return SIMPLE[desc["name"]]
        if kind in ("struct", "union"):
            return self.struct(desc["name"])
        if kind == "enum":
            return self.enum(desc["name"])
        key = json.dumps(desc, sort_keys=True)
        if key in self.memo:
            return self.memo[key]
        if kind == "pointer":
            found = self.pointer(desc)
        elif kind == "array":
            element = self.index(desc["subtype"])
            found = self.add("LF_ARRAY", "Array", {"ElementType": element, "IndexType": SIMPLE["unsigned long long"],
                                                   "Size": desc["count"] * self._size(desc["subtype"]), "Name": ""})
        elif kind == "bitfield":
            found = self.add("LF_BITFIELD", "BitField", {"Type": self.index(desc["type"]),
                                                         "BitSize": desc["bit_length"],
                                                         "BitOffset": desc["bit_position"]})
        elif kind == "function":
            found = self._procedure()
        else:
            raise ValueError("ISF member kind %r" % kind)
        self.memo[key] = found
        return found

    def _size(self, desc: Dict[str, Any]) -> int:
        kind = desc.get("kind")
        if kind == "base":
            return int(self.doc["base_types"][desc["name"]]["size"])
        if kind in ("struct", "union"):
            return int(self.doc["user_types"][desc["name"]]["size"])
        if kind == "enum":
            return int(self.doc["enums"][desc["name"]]["size"])
        if kind == "pointer":
            return int(self.doc["base_types"].get(desc.get("base", "pointer"), {}).get("size", 8))
        if kind == "array":
            return int(desc["count"]) * self._size(desc["subtype"])
        raise ValueError("size of %r" % kind)

    def struct(self, name: str) -> int:
        if name in self.full:
            return self.full[name]
        src = self.doc["user_types"][name]
        members = sorted(src.get("fields", {}).items(), key=lambda kv: kv[1]["offset"])
        fields = [{"Kind": "LF_MEMBER", "DataMember": {"Attrs": 3, "Type": self.index(m["type"]),
                                                       "FieldOffset": m["offset"], "Name": n}}
                  for n, m in members]
        flist = self.add("LF_FIELDLIST", "FieldList", fields)
        rec = {"MemberCount": len(fields), "Options": ["None"], "FieldList": flist,
               "Name": self._pdb_name(name), "UniqueName": "", "Size": src["size"]}
        if src.get("kind") == "union":
            found = self.add("LF_UNION", "Union", rec)
        else:
            rec.update({"DerivationList": 0, "VTableShape": 0})
            found = self.add("LF_STRUCTURE", "Class", rec)
        self.full[name] = found
        return found


def kernel_pdb_yaml(doc: Dict[str, Any], types: List[str]) -> Tuple[str, int]:
    """The YAML text of a PDB holding `types` (and what they use) of the ISF `doc`; and the count
    of TPI records."""
    tpi = _Tpi(doc)
    for name in types:
        tpi.struct(name)
    for name in doc.get("enums", {}):
        tpi.enum(name)
    pdb = doc["metadata"]["windows"]["pdb"]
    guid = pdb["GUID"].upper()
    text = {"MSF": {"SuperBlock": {"BlockSize": 4096, "FreeBlockMap": 2, "NumBlocks": 0,
                                   "NumDirectoryBytes": 0, "Unknown1": 0, "BlockMapAddr": 0},
                    "NumDirectoryBlocks": 0, "DirectoryBlocks": [], "NumStreams": 0, "FileSize": 0},
            "PdbStream": {"Age": int(pdb["age"]),
                          "Guid": "{%s-%s-%s-%s-%s}" % (guid[:8], guid[8:12], guid[12:16], guid[16:20], guid[20:]),
                          "Signature": 0x5F5E100, "Features": ["VC140"], "Version": "VC70"},
            # the machine (and so the pointer size) is the DBI stream's, as in a linker's PDB
            "DbiStream": {"VerHeader": "V70", "Age": int(pdb["age"]), "BuildNumber": 36363, "PdbDllVersion": 0,
                          "PdbDllRbld": 0, "Flags": 0,
                          "MachineType": "Amd64" if int(pdb.get("machine_type", 0x8664)) == 0x8664 else "x86"},
            "TpiStream": {"Version": "VC80", "Records": tpi.records}}
    return "---\n" + _flow(text) + "\n...\n", len(tpi.records)


def _flow(value: Any) -> str:
    """YAML flow style: plain keys (LLVM's YAML I/O matches keys by their plain text), strings
    single-quoted, one record per line."""
    if isinstance(value, dict):
        return "{" + ", ".join("%s: %s" % (k, _flow(v)) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",\n ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'%s'" % str(value).replace("'", "''")


def write_kernel_pdb(doc: Dict[str, Any], types: List[str], out: Path) -> Path:
    """Write the PDB with LLVM's writer (`llvm-pdbutil yaml2pdb`); .ci/run installs Debian's llvm."""
    text, _ = kernel_pdb_yaml(doc, types)
    yaml_path = out.with_suffix(".yaml")
    yaml_path.write_text(text)
    subprocess.run(["llvm-pdbutil", "yaml2pdb", "--pdb=%s" % out, str(yaml_path)], check=True,
                   capture_output=True, timeout=300)
    return out
