"""The identity of one known kernel build and where its layouts live (an `index.json` entry).

Why a module of its own: the registry (which builds exist), the user store (which builds were
imported) and the data builder (layouts of one build) all name builds by this record; keeping it
below all three keeps their imports one-way.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class BuildEntry:
    """One known build (shipped or user-imported): identity + where its layouts live."""

    build_id: str
    version: str
    build: int
    revision: Optional[int]
    guid: Optional[str]
    age: Optional[int]
    arch: str
    pointer_size: int
    products: List[str] = field(default_factory=list)
    source: str = ""
    types_only: bool = False
    pdb: str = "ntkrnlmp.pdb"
    module: str = ""
    store: Optional[str] = None          # folder of a user store; None = shipped
    #: H10: derived-layout facts from index.json (partial_types, absent_types, revision_range, ...)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], store: Optional[str] = None) -> "BuildEntry":
        return cls(build_id=str(d["build_id"]), version=str(d.get("version") or ""), build=int(d.get("build") or 0),
                   revision=d.get("revision"), guid=d.get("guid"), age=d.get("age"), arch=d.get("arch", "x64"),
                   pointer_size=int(d.get("pointer_size") or 8), products=list(d.get("products") or []),
                   source=str(d.get("source") or ""), types_only=bool(d.get("types_only")),
                   pdb=d.get("pdb") or "ntkrnlmp.pdb", module=str(d.get("module") or ""), store=store,
                   extra=dict(d.get("extra") or {}))

    def to_dict(self) -> Dict[str, Any]:
        return {"build_id": self.build_id, "version": self.version, "build": self.build,
                "revision": self.revision, "guid": self.guid, "age": self.age, "arch": self.arch,
                "pointer_size": self.pointer_size, "products": list(self.products), "source": self.source,
                "types_only": self.types_only, "pdb": self.pdb, "module": self.module,
                **({"extra": dict(self.extra)} if self.extra else {})}

    @property
    def guid_age(self) -> Optional[str]:
        return "%s-%s" % (self.guid, self.age) if self.guid else None
