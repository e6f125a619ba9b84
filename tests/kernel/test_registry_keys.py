"""Registry Key handles get their key path from the KCB chain: on forged dumps of the four tested
builds the decoded paths are the ones the forge planted (through Windows 10's separate hive-link /
hive-root KCBs), and corrupt chains (loops, unreadable name blocks or parents, runaway depth) end
with a marked partial path instead of an exception. Corrupt structures are planted by the test in
a sparse fake address space at offsets from the layout."""
from typing import Any, List, Optional

import pytest

from pykd_ext.kernel.handles import HandleDecoder
from pykd_ext.kernel.registry_keys import (KEY_HIVE_ENTRY, KEY_HIVE_EXIT, MAX_KEY_DEPTH, UNREADABLE_PIECE,
                                           key_path)
from pykd_ext.memory.faults import Fault
from security_world import BUILD_NAMES, world_for
from test_security_corrupt import BASE, FakeCtx

FAKE_BUILDS = ["6.1.7601.24540", "10.0.22000.318"]


@pytest.fixture(scope="module", params=BUILD_NAMES)
def world(request: Any, tmp_path_factory: Any) -> Any:
    return world_for(request.param, str(tmp_path_factory.getbasetemp()))


@pytest.mark.slow
def test_planted_key_paths(world: Any) -> None:
    keys = world.security["keys"]
    assert len(keys) == 4
    for body, planted in keys.items():
        got = key_path(world.ctx, body)
        assert got.text == planted and got.complete and got.problem is None
        assert got.kcb == world.security["objects"][body]["kcb"]
    pid = world.planted.by_name("explorer.exe")["pid"]
    records = world.run("handles", "0n%d" % pid, "--type", "key")["records"]
    assert {r["object"]: r["name"] for r in records} == keys
    assert all(r["type"] == "Key" and r["details"]["key_path"] == r["name"] for r in records)


@pytest.mark.slow
def test_hive_link_kcbs_are_one_piece(world: Any) -> None:
    """Windows 10+ (`_CM_KEY_BODY.Trans`): the SOFTWARE link KCB and the hive root KCB under it
    make one path piece; the raw chain (read here by layout offsets) is one KCB longer."""
    layouts = world.ctx.layouts
    kcb_type = layouts.type("_CM_KEY_CONTROL_BLOCK")
    parent_at = kcb_type.offset("ParentKcb")
    for body, planted in world.security["keys"].items():
        chain = 0
        kcb = world.security["objects"][body]["kcb"]
        while kcb and chain < MAX_KEY_DEPTH:
            chain += 1
            kcb = world.ctx.space.read_pointer(kcb + parent_at)
        pieces = planted.count("\\")
        split_hives = layouts.type("_CM_KEY_BODY").has_field("Trans")
        assert chain == pieces + (1 if split_hives else 0), planted


# ---- corrupt chains in a fake address space ------------------------------------------------------

class Planter:
    def __init__(self, build: str) -> None:
        self.ctx = FakeCtx(build)
        self.next = BASE

    def alloc(self, size: int) -> int:
        address = self.next
        self.next += -(-size // 0x100) * 0x100
        self.ctx.space.map(address, size)
        return address

    def put_bits(self, type_name: str, address: int, path: str, value: int) -> None:
        f = self.ctx.layouts.type(type_name).field(path)
        if f.bit_length is None:
            self.ctx.put(type_name, address, path, value)
            return
        at = address + f.offset
        old = int.from_bytes(self.ctx.space.read(at, f.size), "little")
        mask = ((1 << f.bit_length) - 1) << f.bit_position
        new = (old & ~mask) | ((value << f.bit_position) & mask)
        self.ctx.space.write(at, new.to_bytes(f.size, "little"))

    def name_block(self, name: str, compressed: bool = True) -> int:
        data = name.encode("latin-1") if compressed else name.encode("utf-16-le")
        t = self.ctx.layouts.type("_CM_NAME_CONTROL_BLOCK")
        block = self.alloc(t.offset("Name") + len(data))
        self.put_bits("_CM_NAME_CONTROL_BLOCK", block, "Compressed", int(compressed))
        self.ctx.put("_CM_NAME_CONTROL_BLOCK", block, "NameLength", len(data))
        self.ctx.space.write(block + t.offset("Name"), data)
        return block

    def kcb(self, name: Optional[str], parent: int, compressed: bool = True, flags: int = 0,
            name_block: Optional[int] = None) -> int:
        kcb = self.alloc(self.ctx.layouts.type("_CM_KEY_CONTROL_BLOCK").size)
        self.ctx.put("_CM_KEY_CONTROL_BLOCK", kcb, "ParentKcb", parent)
        block = name_block if name_block is not None else self.name_block(name or "", compressed)
        self.ctx.put("_CM_KEY_CONTROL_BLOCK", kcb, "NameBlock", block)
        self.put_bits("_CM_KEY_CONTROL_BLOCK", kcb, "Flags", flags)
        return kcb

    def chain(self, names: List[str]) -> int:
        kcb = 0
        for name in names:
            kcb = self.kcb(name, kcb)
        return kcb

    def body(self, kcb: int) -> int:
        body = self.alloc(self.ctx.layouts.type("_CM_KEY_BODY").size)
        self.ctx.put("_CM_KEY_BODY", body, "KeyControlBlock", kcb)
        return body


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_utf16_and_compressed_names(build: str) -> None:
    p = Planter(build)
    machine = p.chain(["REGISTRY", "MACHINE"])
    wide = p.kcb("Sch\u00f6ne \u30ad\u30fc", machine, compressed=False)
    leaf = p.kcb("Caf\u00e9", wide)                      # 8-bit compressed, not ASCII
    got = key_path(p.ctx, p.body(leaf))
    assert got.text == "\\REGISTRY\\MACHINE\\Sch\u00f6ne \u30ad\u30fc\\Caf\u00e9"
    assert got.complete and got.kcb == leaf


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_hive_entry_under_exit_is_skipped(build: str) -> None:
    p = Planter(build)
    machine = p.chain(["REGISTRY", "MACHINE"])
    link = p.kcb("SOFTWARE", machine, flags=KEY_HIVE_EXIT)
    root = p.kcb("CMI-CreateHive{X}", link, flags=KEY_HIVE_ENTRY)
    assert key_path(p.ctx, p.body(p.kcb("Classes", root))).text == "\\REGISTRY\\MACHINE\\SOFTWARE\\Classes"
    merged = p.kcb("SYSTEM", machine, flags=KEY_HIVE_ENTRY)      # pre-1607: one KCB, no exit parent
    assert key_path(p.ctx, p.body(merged)).text == "\\REGISTRY\\MACHINE\\SYSTEM"


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_cyclic_parent_chain_ends(build: str) -> None:
    p = Planter(build)
    a = p.kcb("A", 0)
    b = p.kcb("B", a)
    p.ctx.put("_CM_KEY_CONTROL_BLOCK", a, "ParentKcb", b)        # A -> B -> A
    got = key_path(p.ctx, p.body(a))
    assert got.problem == "cycle" and not got.complete
    assert got.pieces == [UNREADABLE_PIECE, "B", "A"] and got.text == "<?>\\B\\A"
    self_loop = p.kcb("Self", 0)
    p.ctx.put("_CM_KEY_CONTROL_BLOCK", self_loop, "ParentKcb", self_loop)
    assert key_path(p.ctx, p.body(self_loop)).text == "<?>\\Self"


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_runaway_depth_is_bounded(build: str) -> None:
    p = Planter(build)
    leaf = p.chain(["K%d" % i for i in range(MAX_KEY_DEPTH + 40)])
    got = key_path(p.ctx, p.body(leaf))
    assert got.problem == "too deep"
    assert len(got.pieces) == MAX_KEY_DEPTH + 1 and got.pieces[0] == UNREADABLE_PIECE
    assert got.pieces[-1] == "K%d" % (MAX_KEY_DEPTH + 39)


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_unreadable_pieces_give_partial_paths(build: str) -> None:
    p = Planter(build)
    missing = BASE + 0x1000000                              # never mapped
    machine = p.chain(["REGISTRY", "MACHINE"])
    hole = p.kcb(None, machine, name_block=missing)
    got = key_path(p.ctx, p.body(p.kcb("Leaf", hole)))
    assert got.text == "\\REGISTRY\\MACHINE\\<?>\\Leaf"
    assert not got.complete and got.problem == "unreadable" and isinstance(got.fault, Fault)
    orphan = p.kcb("Leaf", missing)                         # the parent KCB is not in the dump
    got = key_path(p.ctx, p.body(orphan))
    assert got.text == "<?>\\Leaf" and isinstance(got.fault, Fault)
    got = key_path(p.ctx, p.body(missing))                  # the KCB itself is not in the dump
    assert got.text == UNREADABLE_PIECE and got.kcb == missing
    got = key_path(p.ctx, missing)                          # nor is the key body
    assert got.text == UNREADABLE_PIECE and isinstance(got.fault, Fault)


class _NoKeyTypes:
    """A types-only layout without the key cache types."""

    def __init__(self, layouts: Any) -> None:
        self._layouts = layouts

    def has_type(self, name: str) -> bool:
        return not name.startswith("_CM_") and self._layouts.has_type(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layouts, name)


@pytest.mark.parametrize("build", FAKE_BUILDS)
def test_handle_decoder_key_names(build: str) -> None:
    p = Planter(build)
    body = p.body(p.chain(["REGISTRY", "USER"]))
    broken = p.body(BASE + 0x1000000)
    decoder = HandleDecoder(p.ctx, objects=object())        # Key names need no object headers
    assert decoder.describe(body, "Key") == ("\\REGISTRY\\USER", {"kcb": p.ctx.space.read_pointer(
        body + p.ctx.layouts.type("_CM_KEY_BODY").offset("KeyControlBlock")), "key_path": "\\REGISTRY\\USER"})
    name, details = decoder.describe(broken, "Key")
    assert name == UNREADABLE_PIECE and "partial" in details["note"]
    p.ctx.layouts = _NoKeyTypes(p.ctx.layouts)
    name, details = HandleDecoder(p.ctx, objects=object()).describe(body, "Key")
    assert name is None and details["key_path"] is None and "_CM_KEY_BODY" in details["note"]
