"""Structure-aware fuzzing of ISF input (issue 10: "a structure-aware ISF fuzz run bounded in CI").

The seed is a small real ISF document (nine kernel types cut out of 10.0.19041.1288 with their
enums, base types and a few symbols: structs, a union, bitfields, arrays, pointers). Each example
applies a few structural mutations at random places of the JSON tree: a value replaced by another
JSON type (huge or negative integers, floats, inf/nan, strings with control and bidi characters,
lists, objects), a key deleted, a key renamed to an odd string, a value buried under 1-60 levels
of arrays or lists, a `kind` swapped for another, a subtree copied over another.

Whatever the mutation, checking + reducing + building the layouts either raises LayoutError or
gives layouts that are consistent (every member inside its record, bitfields inside their
storage, arrays sized count x element, pointers of the build's size, enum constants and symbol
RVAs in range) and usable (`dt` lays out every type, construct parses it), and that survive the
store's JSON round trip unchanged. A second fuzz mutates the stored JSON form directly. Runs are
reproducible (derandomized, no example database) and bounded (300 + 200 examples).
"""
import copy
import json
from typing import Any, Dict, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykd_ext.commands.dt import build_lines
from pykd_ext.errors import LayoutError
from pykd_ext.layouts.from_reduced import layouts_from_reduced
from pykd_ext.layouts.isf import meta_from_isf, reduce_isf
from pykd_ext.layouts.model import KernelLayouts, compile_record
from pykd_ext.layouts.reduced_json import dumps_reduced, loads_reduced
from test_isf_samples import small_doc

SEED_DOC = small_doc()
KINDS = ["struct", "union", "base", "pointer", "array", "bitfield", "enum", "function", "class", "int",
         "char", "float", "void", "bool", "ptr", "bits"]
ODD_TEXT = ["", "x64", "x86", "arm64", "\x1b[2J", "a\u202eb", "\ud800", "\x00", "unsigned long", "_LIST_ENTRY",
            "pointer", "__unnamed_1", "<unnamed-tag>", "Flink", "x" * 2000, '"""', "0x10", "1e400"]
NUMBERS = [0, 1, -1, 2, 3, 7, 8, 16, 63, 64, 65, 2 ** 24, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64, -2 ** 63]
SCALARS = st.one_of(st.none(), st.booleans(), st.sampled_from(NUMBERS),
                    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_TEXT),
                    st.sampled_from(KINDS), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["kind", "name", "size", "count", "subtype", "offset",
                                                         "type", "fields", "bit_position", "bit_length"]),
                                        inner, max_size=4), max_leaves=8)
OPERATIONS = ["replace", "delete", "rename", "deepen", "kind", "copy"]


def _children(node: Any) -> List[Any]:
    if isinstance(node, dict):
        return sorted(node, key=str)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def _pick(data: Any, doc: Dict[str, Any]) -> Tuple[Any, Any]:
    """(container, key) of a random place in the tree, reached by a random walk from the root."""
    parent, key = None, None
    node: Any = doc
    for _ in range(12):
        keys = _children(node)
        if not keys or (parent is not None and data.draw(st.integers(0, 4)) == 0):
            break
        parent, key = node, data.draw(st.sampled_from(keys))
        node = parent[key]
    return parent, key


def mutate(data: Any, doc: Dict[str, Any]) -> None:
    parent, key = _pick(data, doc)
    if parent is None:
        return
    op = data.draw(st.sampled_from(OPERATIONS))
    if op == "replace":
        parent[key] = data.draw(VALUES)
    elif op == "delete":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        parent[data.draw(st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=8)))] = parent.pop(key)
    elif op == "deepen":
        value = parent[key]
        as_list = data.draw(st.booleans())
        for _ in range(data.draw(st.integers(1, 60))):
            value = [value] if as_list else {"kind": "array", "count": 1, "subtype": value}
        parent[key] = value
    elif op == "kind":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target["kind"] = data.draw(st.sampled_from(KINDS))
    elif op == "copy":
        other_parent, other_key = _pick(data, doc)
        if other_parent is not None:
            parent[key] = copy.deepcopy(other_parent[other_key])


def reachable_records(layouts: KernelLayouts) -> List[Any]:
    seen: Dict[int, Any] = {}
    todo = [layouts.construct(n) for n in layouts.type_names()]
    while todo:
        record = todo.pop()
        if id(record) in seen:
            continue
        seen[id(record)] = record
        for fl in compile_record(record).fields.values():
            element = fl
            while element.kind == "array":
                element = element.element
            if element.record is not None:
                todo.append(element.record)
    return list(seen.values())


def check_consistent(layouts: KernelLayouts) -> Dict[str, Any]:
    """Assert the layouts are self-consistent and usable; returns their comparable facts."""
    facts: Dict[str, Any] = {}
    for record in reachable_records(layouts):
        t = compile_record(record)
        rows = []
        for fl in t.fields.values():
            assert 0 <= fl.offset and fl.offset + fl.size <= t.size, (t.name, fl)
            element = fl
            while element.kind == "array":
                assert element.size == element.count * element.element.size
                element = element.element
            if element.kind == "bitfield":
                assert element.bit_position + element.bit_length <= 8 * element.size
            if element.kind == "pointer":
                assert element.size == layouts.pointer_size
            rows.append((fl.name, fl.offset, fl.size, fl.kind, fl.windbg_type()))
        if t.size <= 4096:
            t.parse(bytes(t.size))
        facts[record.digest] = (t.name, t.size, t.kind, rows)
    for name in layouts.type_names():
        build_lines(layouts, layouts.type(name), [], 2, None)
    for name in layouts.enum_names():
        enum = layouts.enum(name)
        for _, value in enum.items():
            assert -(1 << (8 * enum.size - 1)) <= value < 1 << (8 * enum.size)
        facts["enum " + name] = enum.items()
    for name in layouts.symbol_names():
        assert 0 <= layouts.symbol_rva(name) < 1 << 32
        facts["symbol " + name] = layouts.symbol_rva(name)
    return facts


def build_or_refuse(doc: Any) -> None:
    try:
        meta = meta_from_isf(doc, path="fuzz.json")
        reduced = reduce_isf(doc, meta, "fuzz.json")
        layouts = layouts_from_reduced(reduced, None, "fuzz.json")
    except LayoutError as err:
        line = err.one_line()
        assert "\n" not in line and "\x1b" not in line
        return
    facts = check_consistent(layouts)
    again = layouts_from_reduced(loads_reduced(dumps_reduced(reduced), "stored.json"), None, "stored.json")
    assert check_consistent(again) == facts


def test_seed_builds() -> None:
    """The unmutated seed builds (so the fuzz starts from a document that works)."""
    meta = meta_from_isf(copy.deepcopy(SEED_DOC), path="seed.json")
    layouts = layouts_from_reduced(reduce_isf(SEED_DOC, meta, "seed.json"))
    assert len(layouts.type_names()) == 9 and layouts.has_enum("_KTHREAD_STATE")
    assert len(check_consistent(layouts)) > 10


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_isf_builds_consistently_or_is_refused(data: Any) -> None:
    doc = copy.deepcopy(SEED_DOC)
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(data, doc)
    build_or_refuse(doc)


SEED_STORED = json.loads(dumps_reduced(reduce_isf(SEED_DOC, meta_from_isf(SEED_DOC, path="seed"), "seed")))


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_stored_layout_builds_consistently_or_is_refused(data: Any) -> None:
    stored = copy.deepcopy(SEED_STORED)
    for _ in range(data.draw(st.integers(1, 3))):
        mutate(data, stored)
    try:
        text = json.dumps(stored).encode("utf-8", "surrogatepass")
        layouts = layouts_from_reduced(loads_reduced(text, "stored.json"), None, "stored.json")
    except LayoutError as err:
        assert "\n" not in err.one_line()
        return
    check_consistent(layouts)
