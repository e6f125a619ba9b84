"""Corrupt or missing memory never crashes the token/job/object decoders: counts are bounded, loops
end, unreadable parts come back as Faults and the rest still decodes. Structures are planted by
the test in a sparse fake address space with offsets from the layout."""
from typing import Any, Dict, List

import pytest

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.job import MAX_JOB_DEPTH, Job
from pykd_ext.kernel.objects import ObjectReader
from pykd_ext.kernel.token import MAX_TOKEN_SIDS, Token
from pykd_ext.kernel.view import StructView, read_unicode_string
from pykd_ext.layouts.registry import load_layouts
from pykd_ext.memory.faults import Fault
from pykd_ext.memory.space import AddressSpace

BASE = 0xFFFF800000100000


class FakeSpace(AddressSpace):
    pointer_size = 8

    def __init__(self) -> None:
        self.pages: Dict[int, bytearray] = {}

    def map(self, address: int, size: int) -> None:
        for page in range(address & ~0xFFF, address + size, 0x1000):
            self.pages.setdefault(page, bytearray(0x1000))

    def write(self, address: int, data: bytes) -> None:
        self.map(address, len(data))
        for i, b in enumerate(data):
            self.pages[(address + i) & ~0xFFF][(address + i) & 0xFFF] = b

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            a = address + len(out)
            page = self.pages.get(a & ~0xFFF)
            if page is None:
                raise MemoryReadError(Fault("not in dump", a), len(out))
            chunk = min(size - len(out), 0x1000 - (a & 0xFFF))
            out += page[a & 0xFFF:(a & 0xFFF) + chunk]
        return bytes(out)

    def read_partial(self, address: int, size: int) -> Any:
        try:
            return self.read(address, size), None
        except MemoryReadError as err:
            done = getattr(err, "readable", 0) or 0
            return (self.read(address, done) if done else b""), err.fault

    def read_pointer(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")


class FakeCtx:
    def __init__(self, build: str) -> None:
        self.layouts = load_layouts(build)
        self.space = FakeSpace()
        self.pointer_size = 8
        self.layout_id = build
        self.notes: List[str] = []

    def view(self, name: str, address: int, size: Any = None) -> StructView:
        return StructView(self.space, self.layouts.type(name), address, size)

    def enum_name(self, enum: str, value: Any) -> Any:
        if not isinstance(value, int) or not self.layouts.has_enum(enum):
            return None
        return self.layouts.enum(enum).name_of(value)

    def read_unicode(self, view: StructView, path: str) -> Any:
        return read_unicode_string(self.space, view, path)

    def global_address(self, name: str) -> Any:
        return None

    def type_name_of_index(self, index: int) -> Any:
        return None

    def put(self, type_name: str, address: int, path: str, value: int) -> None:
        f = self.layouts.type(type_name).field(path)
        assert f.bit_length is None
        self.space.write(address + f.offset, value.to_bytes(f.size, "little"))


BUILDS = ["6.1.7601.24540", "10.0.22000.318"]


@pytest.mark.parametrize("build", BUILDS)
def test_token_with_runaway_count_and_missing_groups(build: str) -> None:
    ctx = FakeCtx(build)
    token = BASE
    ctx.space.map(token, ctx.layouts.type("_TOKEN").size)
    ctx.put("_TOKEN", token, "UserAndGroupCount", 0xFFFFFFFF)
    ctx.put("_TOKEN", token, "UserAndGroups", BASE + 0x100000)       # never mapped
    ctx.put("_TOKEN", token, "TokenId.LowPart", 0x1234)
    rec = Token(ctx, token).record()
    assert isinstance(rec["user"], Fault) and isinstance(rec["groups"], Fault)
    assert rec["token_id"] == "(0,1234)"
    assert rec["elevation_type"] is None
    # a mapped array whose first three entries are SIDs the test planted, then zeros: the
    # 0xFFFFFFFF count is implausible, so only the readable SIDs are shown, with one note
    array = BASE + 0x100000
    ctx.space.map(array, MAX_TOKEN_SIDS * 16)
    planted = ["S-1-5-18", "S-1-5-32-544", "S-1-16-16384"]
    for i, text in enumerate(planted):
        ctx.put("_SID_AND_ATTRIBUTES", array + i * 16, "Sid", plant_sid(ctx, BASE + 0x200000 + i * 0x40, text))
        ctx.put("_SID_AND_ATTRIBUTES", array + i * 16, "Attributes", 0x7)
    groups = Token(ctx, token).user_and_groups()
    assert [g["sid"] for g in groups] == planted
    assert ctx.notes == ["token at 0x%x: UserAndGroupCount 4294967295 is implausible (a token holds "
                         "at most 1024 SIDs); showing the first 3 readable" % token]
    # a plausible count decodes every entry, unreadable SIDs included (no note)
    ctx.notes.clear()
    ctx.put("_TOKEN", token, "UserAndGroupCount", 5)
    groups = Token(ctx, token).user_and_groups()
    assert [g["sid"] for g in groups][:3] == planted and len(groups) == 5
    assert all(isinstance(g["sid"], Fault) for g in groups[3:]) and ctx.notes == []


def plant_sid(ctx: "FakeCtx", at: int, text: str) -> int:
    """Write the SID `text` at `at` (layout offsets of `_SID`); returns `at`."""
    parts = [int(p) for p in text.split("-")[1:]]
    sid = ctx.layouts.type("_SID")
    subs = parts[2:]
    ctx.space.map(at, 0x40)
    ctx.space.write(at + sid.offset("Revision"), bytes([parts[0]]))
    ctx.space.write(at + sid.offset("SubAuthorityCount"), bytes([len(subs)]))
    ctx.space.write(at + sid.offset("IdentifierAuthority"), parts[1].to_bytes(6, "big"))
    for i, value in enumerate(subs):
        ctx.space.write(at + sid.offset("SubAuthority") + 4 * i, value.to_bytes(4, "little"))
    return at


@pytest.mark.parametrize("build", BUILDS)
def test_token_count_beyond_its_variable_part(build: str) -> None:
    """Groups that lie in the token's variable part can be no more than it has room for."""
    ctx = FakeCtx(build)
    token = BASE
    layout = ctx.layouts.type("_TOKEN")
    entry = ctx.layouts.type("_SID_AND_ATTRIBUTES").size
    ctx.space.map(token, layout.size + 0x400)
    array = token + layout.offset("VariablePart")
    ctx.put("_TOKEN", token, "VariableLength", 2 * entry)             # room for two entries
    ctx.put("_TOKEN", token, "UserAndGroups", array)
    ctx.put("_TOKEN", token, "UserAndGroupCount", 40)                  # plausible by itself
    for i, text in enumerate(["S-1-5-18", "S-1-5-32-544", "S-1-1-0"]):
        ctx.put("_SID_AND_ATTRIBUTES", array + i * entry, "Sid", plant_sid(ctx, BASE + 0x10000 + i * 0x40, text))
    groups = Token(ctx, token).user_and_groups()
    assert [g["sid"] for g in groups] == ["S-1-5-18", "S-1-5-32-544"]
    assert ctx.notes == ["token at 0x%x: UserAndGroupCount 40 is implausible (its variable part "
                         "(VariableLength %d) has room for 2); showing the first 2 readable" % (token, 2 * entry)]


@pytest.mark.parametrize("build", BUILDS)
def test_token_partly_in_dump(build: str) -> None:
    ctx = FakeCtx(build)
    token = BASE + 0xFA0                       # UserAndGroups (+0x90/+0x98) lies past the mapped page
    ctx.space.map(BASE, 0x1000)
    ctx.put("_TOKEN", token, "TokenId.LowPart", 7)
    rec = Token(ctx, token).record()
    assert rec["token_id"] == "(0,7)"
    assert isinstance(rec["user"], Fault)


def test_job_parent_loop_ends() -> None:
    ctx = FakeCtx("10.0.22000.318")
    size = ctx.layouts.type("_EJOB").size
    a, b = BASE, BASE + 0x1000
    for job, parent in ((a, b), (b, a)):
        ctx.space.map(job, size)
        ctx.put("_EJOB", job, "ParentJob", parent)
        head = job + ctx.layouts.type("_EJOB").offset("ProcessListHead")
        ctx.put("_LIST_ENTRY", head, "Flink", head + 0x10)            # a member that loops on itself
        ctx.space.map(head + 0x10, 0x10)
        ctx.put("_LIST_ENTRY", head + 0x10, "Flink", head + 0x10)
    job = Job(ctx, a)
    assert job.chain() == [a, b]
    assert any("loops" in n for n in job.notes)
    members = job.members()
    assert len(members) == 1 and any("cycle" in n for n in job.notes)
    # an unreadable parent ends the chain with a note
    ctx.put("_EJOB", b, "ParentJob", BASE + 0x900000)
    job = Job(ctx, a)
    assert job.chain() == [a, b, BASE + 0x900000]
    assert len(job.chain()) <= MAX_JOB_DEPTH


def test_object_directory_loop_and_missing_header() -> None:
    ctx = FakeCtx("10.0.22000.318")
    reader = ObjectReader(ctx)
    name_info = ctx.layouts.type("_OBJECT_HEADER_NAME_INFO")
    header_type = ctx.layouts.type("_OBJECT_HEADER")
    creator = ctx.layouts.type("_OBJECT_HEADER_CREATOR_INFO").size

    def named(at: int, name: str, directory: int) -> int:
        header = at + creator + name_info.size
        body = header + header_type.offset("Body")
        ctx.space.map(at, 0x200)
        ctx.space.write(header + header_type.offset("InfoMask"), bytes([0x3]))
        info = header - creator - name_info.size
        text = name.encode("utf-16-le")
        ctx.space.write(at + 0x100, text)
        ctx.put("_OBJECT_HEADER_NAME_INFO", info, "Name.Length", len(text))
        ctx.put("_OBJECT_HEADER_NAME_INFO", info, "Name.MaximumLength", len(text))
        ctx.put("_OBJECT_HEADER_NAME_INFO", info, "Name.Buffer", at + 0x100)
        ctx.put("_OBJECT_HEADER_NAME_INFO", info, "Directory", directory)
        return body

    d1 = BASE + 0x2000 + creator + name_info.size + header_type.offset("Body")
    d2 = BASE + 0x3000 + creator + name_info.size + header_type.offset("Body")
    assert named(BASE + 0x2000, "A", d2) == d1
    assert named(BASE + 0x3000, "B", d1) == d2
    obj = named(BASE + 0x4000, "leaf", d1)
    assert reader.full_name(obj) == "leaf"          # a directory loop: only the own name is trusted
    root = named(BASE + 0x5000, "\\", 0)
    mid = named(BASE + 0x6000, "KnownDlls", root)
    assert reader.full_name(named(BASE + 0x7000, "ntdll.dll", mid)) == "\\KnownDlls\\ntdll.dll"
    missing = BASE + 0x800000
    header = reader.header(missing)
    assert isinstance(header.type_name, Fault) and reader.name(missing) is None
