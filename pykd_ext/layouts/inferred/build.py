"""Turn merged evidence into a `KernelLayouts` of the ordinary runtime model.

Why the same model: every walker reads fields by name (`view["Peb"]`, `layouts.type(...)`);
an inferred layout is a `KernelLayouts` whose types hold only the proven members, so every
command works unchanged, shows what the proven members give, and gets `None` (the "this build
has no such field" answer) for the rest. `InferredLayouts.context_notes()` tells the kernel
context which wanted fields stayed unknown, so commands can say so.

Member types (not offsets) come from the donor layout (`shapes`); a member the donor lacks, a
bitfield (its width would be a guess) or a member inside a container whose own offset nobody
proved is left out and named in `unplaced`.
"""
import hashlib
from typing import Any, Dict, List, Optional, Tuple

from construct import Construct

from pykd_ext.errors import LayoutError, MissingLayoutError
from pykd_ext.layouts.cons import At, Record, sizeof
from pykd_ext.layouts.entry import BuildEntry
from pykd_ext.layouts.inferred.evidence import Inference, InferredField
from pykd_ext.layouts.inferred.shapes import ABI_ENUMS, ABI_TYPES, WANTED, embedded_type
from pykd_ext.layouts.model import KernelLayouts, TypeLayout, compile_record

#: a member being placed: (offset within its record, construct) or a nested container
_Leaf = Tuple[int, Construct]


class _Container:
    """Members of one record being assembled (an outer type or an embedded Pcb/Tcb)."""

    def __init__(self, type_name: str, donor: Optional[TypeLayout]) -> None:
        self.type_name = type_name
        self.donor = donor
        self.leaves: Dict[str, _Leaf] = {}
        self.children: Dict[str, "_Container"] = {}
        self.disputed: List[str] = []
        self._built: Optional[Record] = None

    def put(self, name: str, offset: int, subcon: Construct) -> bool:
        if name in self.disputed:
            return False
        old = self.leaves.get(name)
        if old is not None and old[0] != offset:
            self.disputed.append(name)
            del self.leaves[name]
            return False
        self.leaves[name] = (offset, subcon)
        return True

    def record(self, size: Optional[int]) -> Record:
        """The Record of the placed members (built once: the outer record embeds this object)."""
        if self._built is None:
            self._built = self._make(size)
        return self._built

    def _make(self, size: Optional[int]) -> Record:
        members: List[Tuple[int, str, Construct]] = [(off, name, sub) for name, (off, sub) in self.leaves.items()]
        for name, child in self.children.items():
            members.append((0, name, child.record(None)))
        members.sort(key=lambda m: (m[0], m[1]))
        end = 0
        for off, _name, sub in members:
            end = max(end, off + _size_of(sub))
        digest = hashlib.sha1(repr([(o, n, repr(s)) for o, n, s in members]).encode()).hexdigest()[:12]
        fields = [name / At(off, sub) for off, name, sub in members]
        return Record(self.type_name, max(size or 0, end), "struct", *fields,
                      variant="%s_inferred" % self.type_name, digest="inferred-" + digest)


def _size_of(sub: Construct) -> int:
    try:
        return sizeof(sub)
    except Exception:                       # noqa: BLE001 - a function member has no size
        return 0


def _place(box: _Container, parts: List[str], offset: int) -> Optional[str]:
    """Put the member at `parts` (relative `offset` in `box`); None, or why it could not."""
    donor = box.donor
    if donor is None:
        return "no donor type %s" % box.type_name
    head = parts[0]
    found = donor.fields.get(head)
    if found is None:
        return "the donor's %s has no %s" % (box.type_name, head)
    if len(parts) == 1:
        if found.kind == "bitfield":
            return "%s is a bitfield (its width is not proven)" % head
        return None if box.put(head, offset, found.subcon) else "sources disagree on %s" % head
    inner = embedded_type(box.type_name, head)
    record = found.record
    if inner is not None and record is not None and found.offset == 0:
        child = box.children.get(head)
        if child is None:
            child = box.children[head] = _Container(inner, compile_record(record))
        return _place(child, parts[1:], offset)
    if record is not None and record.type_name in ABI_TYPES:
        try:
            within = compile_record(record).offset(".".join(parts[1:]))
        except MissingLayoutError:
            return "the donor's %s has no %s" % (record.type_name, ".".join(parts[1:]))
        return None if box.put(head, offset - within, record) else "sources disagree on %s" % head
    return "the offset of %s.%s itself is not proven" % (box.type_name, head)


class InferredTypeLayout(TypeLayout):
    """A `TypeLayout` that tells its `InferredLayouts` which members decoders asked for and did
    not get (the donor build has them; nobody proved their offset), so commands can name them."""

    def __init__(self, record: Record, owner: "InferredLayouts") -> None:
        super().__init__(record)
        self.owner = owner

    def accessor(self, path: str) -> Optional[Tuple[int, Any]]:
        found = super().accessor(path)
        if found is None:
            self.owner.missed(self.name, path)
        return found


def nearest_donor(build: int, pointer_size: int, arch: str) -> Optional[KernelLayouts]:
    """The shipped layout whose member *types* an inferred layout borrows (see `shapes`)."""
    from pykd_ext.layouts.registry import shipped_builds, usable_layouts
    pool = [e for e in shipped_builds() if e.pointer_size == pointer_size]
    if not pool:
        return None
    # same architecture first, then the nearest build number, a layout from a PDB before a
    # types-only one (those serve too: only their member types are used)
    best = min(pool, key=lambda e: (e.arch != arch, abs(e.build - build), e.types_only, -(e.revision or 0)))
    return usable_layouts(best)


class InferredLayouts(KernelLayouts):
    """A `KernelLayouts` built from evidence: only proven members, each with its provenance."""

    def __init__(self, entry: BuildEntry, table: Dict[str, Any], inference: Inference,
                 fields: Dict[Tuple[str, str, str], InferredField], placed: Dict[str, str],
                 unplaced: Dict[str, str], donor: Optional[KernelLayouts]) -> None:
        super().__init__(entry, table, {})
        self.types_only = True
        self.inference = inference
        #: (type, path, kind) -> the merged field, proven or disputed
        self.fields = fields
        #: "type.path" -> its sources, for members present in the types
        self.placed = placed
        #: "type.path" -> why a proven offset could not be used
        self.unplaced = unplaced
        self.donor = donor
        self.donor_id = donor.build_id if donor is not None else None
        #: members decoders asked for that the donor has and nobody proved, in asking order
        self.lacked: List[str] = []
        self._notes: Optional[List[str]] = None
        self._lacked_note = -1
        for value in table.values():
            if isinstance(value, Record) and value.variant.endswith("_inferred"):
                value.__dict__["_compiled"] = InferredTypeLayout(value, self)

    @property
    def label(self) -> str:
        return "%s (inferred from the dump)" % self.build_id

    def provenance(self) -> List[Dict[str, Any]]:
        """Every merged field, proven or disputed, with its sources (sorted by type and path)."""
        return [f.to_dict() for _k, f in sorted(self.fields.items())]

    def wanted(self) -> List[Tuple[str, str]]:
        """The wanted fields (`shapes.WANTED`) this kernel generation has (the donor's names:
        Windows 7 has no `Protection` and spells `Wow64Process`), as (type, path)."""
        out = []
        donor = self.donor
        for type_name, paths in WANTED.items():
            for path in paths:
                if path and donor is not None and donor.has_type(type_name) \
                        and not donor.type(type_name).has_field(path):
                    continue
                out.append((type_name, path))
        return out

    def recovered(self) -> List[Tuple[str, str]]:
        """The wanted fields that were proven (sizes included)."""
        missing = set(self.unknown_wanted())
        return [(t, p) for t, p in self.wanted()
                if ("%s.%s" % (t, p) if p else "sizeof(%s)" % t) not in missing]

    def unknown_wanted(self) -> List[str]:
        """Wanted fields (`shapes.WANTED`) nobody proved."""
        out = []
        for type_name, path in self.wanted():
            kind = "size" if path == "" else "offset"
            got = self.fields.get((type_name, path, kind))
            if got is None or got.value is None:
                out.append("%s.%s" % (type_name, path) if path else "sizeof(%s)" % type_name)
        return out

    def missed(self, type_name: str, path: str) -> None:
        """A decoder asked for a member this layout lacks: named in the command's notes when
        the donor build has it (a member no build of this generation has is not lacking)."""
        name = "%s.%s" % (type_name, path)
        if name in self.lacked or self.donor is None or not self.donor.has_type(type_name) \
                or not self.donor.type(type_name).has_field(path):
            return
        self.lacked.append(name)
        if self._notes is not None:
            text = "values of %s were not decoded: the inferred layout lacks them" % ", ".join(self.lacked)
            if 0 <= self._lacked_note < len(self._notes):
                self._notes[self._lacked_note] = text
            else:
                self._lacked_note = len(self._notes)
                self._notes.append(text)

    def context_notes(self, notes: Optional[List[str]] = None) -> List[str]:
        """What a command says about the layout it decoded with (`kernel.context` asks, handing
        its live notes list: the members decoders miss are added to it as they are asked for)."""
        if notes is not None:
            self._notes = notes
            self._lacked_note = -1
        proven = sum(1 for f in self.fields.values() if f.value is not None)
        notes = ["no shipped layout was used: %d offsets were inferred from the dump itself (%s); "
                 "member types and enum names from %s" % (proven, ", ".join("%s %d" % kv for kv in
                                                                sorted(self.inference.sources_run.items())),
                                           self.donor_id or "nowhere")]
        unknown = self.unknown_wanted()
        if unknown:
            notes.append("the inferred layout lacks %s: those values are shown empty" % ", ".join(unknown))
        for f in self.fields.values():
            if f.value is None and f.conflict:
                notes.append("sources disagree on %s (%s): left unknown" % (
                    f.name, ", ".join("%s=%#x" % c for c in f.conflict)))
        return notes + list(self.inference.notes)


def build_layouts(inference: Inference, build: int, version: Optional[str], arch: str,
                  donor: Optional[KernelLayouts] = None) -> InferredLayouts:
    """The inferred `KernelLayouts` of one target's evidence."""
    pointer = inference.pointer_size
    if donor is None:
        donor = nearest_donor(build, pointer, arch)
    if donor is None:
        raise LayoutError("no shipped layout with %d-byte pointers to take member types from" % pointer)
    fields = inference.fields()
    boxes: Dict[str, _Container] = {}
    sizes: Dict[str, int] = {}
    placed: Dict[str, str] = {}
    unplaced: Dict[str, str] = {}
    for (type_name, path, kind), f in sorted(fields.items()):
        if f.value is None:
            continue
        if kind == "size":
            sizes[type_name] = f.value
            continue
        if kind != "offset":
            unplaced["%s.%s" % (type_name, path)] = "a bit position (kept as evidence only)"
            continue
        box = boxes.get(type_name)
        if box is None:
            box = boxes[type_name] = _Container(
                type_name, donor.type(type_name) if donor.has_type(type_name) else None)
        why = _place(box, path.split("."), f.value)
        if why is None:
            placed["%s.%s" % (type_name, path)] = " + ".join(f.sources)
        else:
            unplaced["%s.%s" % (type_name, path)] = why
    table: Dict[str, Any] = {}
    for name in ABI_TYPES:
        if donor.has_type(name):
            table[name] = donor.construct(name)
    for name in ABI_ENUMS:
        if donor.has_enum(name):
            table[name] = donor.construct(name)
    for type_name, box in boxes.items():
        table[type_name] = box.record(sizes.get(type_name))
        for child in box.children.values():
            table[child.type_name] = child.record(None)
    for type_name, size in sizes.items():
        if type_name not in table:
            table[type_name] = Record(type_name, size, "struct", variant="%s_inferred" % type_name,
                                      digest="inferred-size")
    parts = (version or "").split(".")
    revision = int(parts[3]) if len(parts) == 4 and parts[3].isdigit() else None
    entry = BuildEntry(build_id="inferred-%s-%s" % (version or build, arch), version=version or "",
                       build=int(build or 0), revision=revision, guid=None, age=None, arch=arch,
                       pointer_size=pointer, source="inferred from the dump", types_only=True)
    return InferredLayouts(entry, table, inference, fields, placed, unplaced, donor)


__all__ = ["InferredLayouts", "build_layouts", "nearest_donor"]
