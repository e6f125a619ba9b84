"""Evidence for inferred layouts: one proven offset per (type, path), with where it came from.

Why: an inferred layout is only as good as the reasons behind each field. Every source (the KDBG
block, self-consistency of known objects, disassembled kernel getters, System Informer's kphdyn
table) adds `Evidence` with a provenance string ("kdbg:OffsetEprocessPeb",
"self-consistency:System", "disasm:PsGetProcessPeb", "kphdyn:EpObjectTable"); `Inference.fields()`
merges them: a field several sources agree on carries all their names, a field they disagree on
is reported as a conflict and left unknown, never picked.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

#: what a value is: a member's byte offset in its type, the type's size, a bitfield's shift
KINDS = ("offset", "size", "bit_position")

Key = Tuple[str, str, str]      # (type name, dotted member path or "" for the size, kind)


@dataclass(frozen=True)
class Evidence:
    """One source's statement: `type_name.path` is at `value` (or the type is `value` bytes)."""

    type_name: str
    path: str
    value: int
    source: str
    kind: str = "offset"

    @property
    def key(self) -> Key:
        return (self.type_name, self.path, self.kind)


@dataclass
class InferredField:
    """A merged field: its value when the sources agree (None on conflict), and every source."""

    type_name: str
    path: str
    kind: str
    value: Optional[int]
    sources: List[str] = field(default_factory=list)
    #: (source, value) of every statement, when they disagree
    conflict: List[Tuple[str, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "%s.%s" % (self.type_name, self.path) if self.path else "sizeof(%s)" % self.type_name

    def to_dict(self) -> Dict[str, object]:
        return {"type": self.type_name, "path": self.path, "kind": self.kind, "value": self.value,
                "sources": list(self.sources), "conflict": [list(c) for c in self.conflict]}


class Inference:
    """Evidence gathered from one target, and the notes the sources wrote while gathering it."""

    def __init__(self, arch: str, pointer_size: int) -> None:
        self.arch = arch
        self.pointer_size = pointer_size
        self.evidence: List[Evidence] = []
        self.notes: List[str] = []
        #: which sources ran and what they found (for `layouts show` and the benchmark)
        self.sources_run: Dict[str, int] = {}

    def add(self, type_name: str, path: str, value: int, source: str, kind: str = "offset") -> None:
        if kind not in KINDS:
            raise ValueError("unknown evidence kind %r" % kind)
        self.evidence.append(Evidence(type_name, path, int(value), source, kind))
        family = source.split(":", 1)[0]
        self.sources_run[family] = self.sources_run.get(family, 0) + 1

    def value(self, type_name: str, path: str, kind: str = "offset") -> Optional[int]:
        """The agreed value of one field so far (None: unknown or disputed)."""
        found = self.fields().get((type_name, path, kind))
        return found.value if found is not None else None

    def fields(self) -> Dict[Key, InferredField]:
        grouped: Dict[Key, List[Evidence]] = {}
        for ev in self.evidence:
            grouped.setdefault(ev.key, []).append(ev)
        merged: Dict[Key, InferredField] = {}
        for key, items in grouped.items():
            sources: List[str] = []
            for ev in items:
                if ev.source not in sources:
                    sources.append(ev.source)
            values = {ev.value for ev in items}
            agreed = items[0].value if len(values) == 1 else None
            conflict = [(ev.source, ev.value) for ev in items] if agreed is None else []
            merged[key] = InferredField(key[0], key[1], key[2], agreed, sources, conflict)
        return merged

    def conflicts(self) -> List[InferredField]:
        return [f for f in self.fields().values() if f.value is None]


__all__ = ["Evidence", "Inference", "InferredField", "KINDS"]
