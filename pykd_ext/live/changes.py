"""What changed between two runs of a command: records that appeared, exited, or whose fields moved.

Why its own module: `watch` re-runs a command (`ps`, `threads`, `handles`...) over a target whose
memory changes, and a person wants the difference, not two listings. The comparison works on the
command's `Result` records (the same dicts `--format json` prints), never on text, so every
command diffs the same way and a renamed column cannot break it.

Records are matched by a stable identity chosen from the fields the record kind has
(`IDENTITIES`): a thread is its `_ETHREAD` address plus TID, a process its `_EPROCESS` address plus
PID, a handle its owner PID plus handle value. A kernel object whose address is reused for another
PID/TID after an exit is then a removal plus an addition, not a "change" of PID. Values are
compared in their JSON form (`render.values.plain`), so a `Fault` (unreadable memory) compares by
its marker, and a record's nested lists/dicts (wait objects, protection) compare as a whole.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from pykd_ext.render.values import json_default

#: Candidate identities, most specific first: the first whose fields every record of a kind has.
IDENTITIES: Tuple[Tuple[str, ...], ...] = (
    ("address", "tid"),          # threads (ETHREAD address + TID)
    ("address", "pid"),          # processes (EPROCESS address + PID)
    ("pid", "handle"),           # handle table entries (owner + handle value)
    ("process", "base"),         # modules of processes (by process + image base)
    ("pid", "base"),
    ("address",),                # any other kernel object (token, job, ...)
    ("pid",), ("tid",), ("name",),
)

#: The `change` values (the JSON contract of `watch --format jsonl`).
ADDED, REMOVED, CHANGED = "added", "removed", "changed"

Key = Tuple[Any, ...]


def plain_record(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record as JSON values (Faults as their markers, bytes as hex...), compared and printed."""
    return json.loads(json.dumps(record, default=json_default))


def identity_fields(records: Sequence[Dict[str, Any]]) -> Tuple[str, ...]:
    """The identity of a kind of record: the first of `IDENTITIES` all `records` carry
    (an empty tuple: no stable identity, records are then compared whole)."""
    for candidate in IDENTITIES:
        if records and all(all(name in rec for name in candidate) for rec in records):
            return candidate
    return ()


class Snapshot:
    """One run's records by identity, in the order the command produced them."""

    def __init__(self, records: Iterable[Dict[str, Any]], identity: Optional[Tuple[str, ...]] = None) -> None:
        plain = [plain_record(r) for r in records]
        self.identity = identity if identity is not None else identity_fields(plain)
        self.records: Dict[Key, Dict[str, Any]] = {}
        for rec in plain:
            key = self.key_of(rec)
            base, n = key, 1
            while key in self.records:           # two records with one identity: keep both, in order
                key = base + ("#%d" % n,)
                n += 1
            self.records[key] = rec

    def key_of(self, record: Dict[str, Any]) -> Key:
        if not self.identity:
            return (json.dumps(record, sort_keys=True),)
        return tuple(_hashable(record.get(name)) for name in self.identity)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class Change:
    """One difference: `change` is added/removed/changed; `record` the new record (the last one seen
    for a removal); `fields` {name: [old, new]} for a change."""

    change: str
    key: Key
    record: Dict[str, Any]
    fields: Dict[str, List[Any]] = field(default_factory=dict)
    identity: Tuple[str, ...] = ()

    def to_json(self, command: str, refresh: int) -> Dict[str, Any]:
        """The `--format jsonl` object: change, record, changed fields, and where it was seen."""
        return {"change": self.change, "command": command, "refresh": refresh,
                "identity": {name: self.record.get(name) for name in self.identity},
                "record": self.record, "fields": self.fields}


def _hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def diff(old: Snapshot, new: Snapshot, ignore: Sequence[str] = ()) -> List[Change]:
    """Changes from `old` to `new`: removals first (in old order), then additions and field changes
    (in new order). `ignore`: fields not compared (none by default)."""
    out: List[Change] = []
    for key, rec in old.records.items():
        if key not in new.records:
            out.append(Change(REMOVED, key, rec, identity=old.identity))
    for key, rec in new.records.items():
        before = old.records.get(key)
        if before is None:
            out.append(Change(ADDED, key, rec, identity=new.identity))
            continue
        changed: Dict[str, List[Any]] = {}
        for name in _field_order(before, rec):
            if name in ignore:
                continue
            if before.get(name) != rec.get(name):
                changed[name] = [before.get(name), rec.get(name)]
        if changed:
            out.append(Change(CHANGED, key, rec, changed, new.identity))
    return out


def _field_order(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    names = list(after)
    names.extend(n for n in before if n not in after)
    return names


__all__ = ["ADDED", "CHANGED", "Change", "IDENTITIES", "REMOVED", "Snapshot", "diff",
           "identity_fields", "plain_record"]
