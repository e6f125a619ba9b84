"""Extract the Python-visible names of pykd 0.3.4.15 from its Windows wheel (one-off tool).

pykd is a boost.python extension (`pykd/pykd.pyd`, PE32+ x64, boost.python linked statically) and
cannot be imported off Windows.  Its names are string literals handed to boost.python at module
initialisation, so they are recovered from the machine code of the init function:

1. `objdump -d -M intel -j .text pykd.pyd` (binutils; PE32+ support) disassembles the code;
   function bounds come from the `.pdata` exception table (pefile).
2. A linear scan tracks, per function, which registers (rcx, rdx, r8, r9 = the x64 calling
   convention's first four arguments) and stack/frame slots hold the address of a string literal
   in `.rdata` (`lea reg,[rip+X]`), and records every call with its string arguments.  A call graph
   (direct calls) is built in the same pass.
3. The module init function is the one with the most `def("name", fn, ..., "doc")` calls
   (identifier in rcx plus a docstring argument).  Its calls, in address order, are read as the
   `BOOST_PYTHON_MODULE` body (helpers it calls without string arguments are read in place):
   - identifier in rcx                          -> module function (`boost::python::def`);
   - pointer to a frame slot holding an identifier -> module attribute (`scope().attr("x") = ...`);
   - identifier in rdx (rcx = `this`), classified by what the callee reaches in the call graph,
     with markers learnt from anchor calls named below: a class (`class_<T>("Name", ...)`), an
     enum (`enum_<T>("name")`), an enum value (`.value("name", v)`), a method or property of the
     current class/enum (`.def`, `.add_property`, `def_readonly` ...);
   - anything else (keyword names such as `args("offset", "count")`) is not a name.
   In a helper function, identifiers that reach no boost.python marker are module-level names
   (pykd's exception classes are registered that way: name and docstring become `std::string`s).
4. Output: module names, and `Class.member` for class/enum members (enum values included).

Anchors (names the public pykd documentation shows): class `typeInfo` / `typedVar` / `module`,
enum `executionStatus`, method `typeInfo.fieldOffset`, property `systemVersion.win32Major`, enum
value `executionStatus.NoDebuggee`.

Usage: python tests/data/pykd-0.3.4.15-names.extract.py WHEEL > tests/data/pykd-0.3.4.15-names.txt
(progress and a summary go to stderr).
"""
import bisect
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Iterable, List, Optional, Set, Tuple

import pefile

ARG_REGS = ("rcx", "rdx", "r8", "r9")
VOLATILE = ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LINE = re.compile(r"^\s+([0-9a-f]+):\s+(\w+)\s*(.*)$")
LEA_RIP = re.compile(r"^(\w+),\[rip\+0x[0-9a-f]+\]\s+# 0x([0-9a-f]+)")
LEA_SLOT = re.compile(r"^(\w+),\[(rsp|rbp)([+-]0x[0-9a-f]+)?\]$")
STORE_SLOT = re.compile(r"^QWORD PTR \[(rsp|rbp)([+-]0x[0-9a-f]+)?\],(\w+)$")
MOV_REG = re.compile(r"^(\w+),(\w+)$")
CALL_DIRECT = re.compile(r"^(0x[0-9a-f]+)")
REACH_DEPTH = 4

# 32/16/8-bit register names -> the 64-bit register they write.
_SUBREG: Dict[str, str] = {}
for _r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
    _SUBREG.update({"r" + _r: "r" + _r, "e" + _r: "r" + _r, _r: "r" + _r})
for _r in ("al", "bl", "cl", "dl"):
    _SUBREG[_r] = "r" + _r[0] + "x"
for _n in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _SUBREG["r%d%s" % (_n, _suffix)] = "r%d" % _n


class Call:
    __slots__ = ("addr", "target", "regs", "slot_ptrs", "stack")

    def __init__(self, addr: int, target: Optional[int], regs: Dict[str, str],
                 slot_ptrs: Dict[str, str], stack: Dict[str, str]) -> None:
        self.addr, self.target = addr, target
        self.regs, self.slot_ptrs, self.stack = regs, slot_ptrs, stack

    def ident(self, reg: str) -> Optional[str]:
        value = self.regs.get(reg)
        return value if value is not None and IDENT.match(value) else None

    def has_doc(self) -> bool:
        texts = list(self.regs.values()) + list(self.stack.values())
        return any(not IDENT.match(text) for text in texts)


class Binary:
    def __init__(self, path: str) -> None:
        pe = pefile.PE(path, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXCEPTION"]])
        self.base = pe.OPTIONAL_HEADER.ImageBase
        self.image = pe.get_memory_mapped_image()
        rdata = [s for s in pe.sections if s.Name.rstrip(b"\0") == b".rdata"][0]
        self.rdata = (self.base + rdata.VirtualAddress,
                      self.base + rdata.VirtualAddress + rdata.Misc_VirtualSize)
        self.funcs = sorted({(e.struct.BeginAddress + self.base, e.struct.EndAddress + self.base)
                             for e in pe.DIRECTORY_ENTRY_EXCEPTION})
        self.starts = [start for start, _ in self.funcs]
        self._strings: Dict[int, Optional[str]] = {}

    def function_of(self, addr: int) -> Optional[int]:
        index = bisect.bisect_right(self.starts, addr) - 1
        if index >= 0 and addr < self.funcs[index][1]:
            return self.funcs[index][0]
        return None

    def string_at(self, va: int) -> Optional[str]:
        if va not in self._strings:
            text = None
            if self.rdata[0] <= va < self.rdata[1]:
                offset = va - self.base
                end = self.image.find(b"\0", offset, offset + 4096)
                if end > offset:
                    try:
                        candidate = self.image[offset:end].decode("ascii")
                        if all(ch >= " " or ch in "\t\r\n" for ch in candidate):
                            text = candidate
                    except UnicodeDecodeError:
                        pass
            self._strings[va] = text
        return self._strings[va]


def scan(binary: Binary, pyd: str) -> Tuple[Dict[int, List[Call]], Dict[int, Set[int]]]:
    """Calls (with string arguments) per function, and the direct call graph."""
    calls: Dict[int, List[Call]] = {}
    graph: Dict[int, Set[int]] = {}
    regs: Dict[str, str] = {}
    reg_slot_ptr: Dict[str, str] = {}
    slots: Dict[str, str] = {}
    proc = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", "-M", "intel", "-j", ".text",
                             pyd], stdout=subprocess.PIPE, universal_newlines=True, bufsize=1 << 20)
    assert proc.stdout is not None
    current_fn: Optional[int] = None
    for line in proc.stdout:
        match = LINE.match(line)
        if match is None:
            continue
        addr = int(match.group(1), 16)
        op, rest = match.group(2), match.group(3)
        fn = binary.function_of(addr)
        if fn != current_fn:
            current_fn = fn
            regs, reg_slot_ptr, slots = {}, {}, {}
        dest = _SUBREG.get(rest.split(",")[0]) if rest else None
        if op == "lea":
            rip = LEA_RIP.match(rest)
            slot = LEA_SLOT.match(rest)
            if dest:
                regs.pop(dest, None)
                reg_slot_ptr.pop(dest, None)
            if rip and dest:
                text = binary.string_at(int(rip.group(2), 16))
                if text is not None:
                    regs[dest] = text
            elif slot and dest:
                key = slot.group(2) + (slot.group(3) or "+0x0")
                if key in slots:
                    reg_slot_ptr[dest] = slots[key]
            continue
        if op == "mov":
            store = STORE_SLOT.match(rest)
            if store:
                key = store.group(1) + (store.group(2) or "+0x0")
                source = _SUBREG.get(store.group(3))
                if source in regs:
                    slots[key] = regs[source]
                else:
                    slots.pop(key, None)
                continue
            pair = MOV_REG.match(rest)
            if pair and pair.group(1) in _SUBREG and pair.group(2) in _SUBREG:
                target_reg, source_reg = _SUBREG[pair.group(1)], _SUBREG[pair.group(2)]
                if source_reg in regs:
                    regs[target_reg] = regs[source_reg]
                else:
                    regs.pop(target_reg, None)
                reg_slot_ptr.pop(target_reg, None)
                continue
        if op == "call":
            direct = CALL_DIRECT.match(rest)
            target = int(direct.group(1), 16) if direct else None
            if target is not None:
                graph.setdefault(fn, set()).add(target)
            arg_strings = {r: regs[r] for r in ARG_REGS if r in regs}
            slot_args = {r: reg_slot_ptr[r] for r in ARG_REGS if r in reg_slot_ptr}
            stack_args = {k: v for k, v in slots.items() if k.startswith("rsp")}
            if fn is not None:
                calls.setdefault(fn, []).append(Call(addr, target, arg_strings, slot_args,
                                                     stack_args))
            for r in VOLATILE:
                regs.pop(r, None)
                reg_slot_ptr.pop(r, None)
            slots = {k: v for k, v in slots.items() if not k.startswith("rsp")}
            continue
        if op == "jmp":
            direct = CALL_DIRECT.match(rest)
            if direct and fn is not None:
                target = int(direct.group(1), 16)
                if binary.function_of(target) != fn:
                    graph.setdefault(fn, set()).add(target)
            regs, reg_slot_ptr = {}, {}
            continue
        if op in ("ret", "int3"):
            regs, reg_slot_ptr = {}, {}
            continue
        if dest:
            regs.pop(dest, None)
            reg_slot_ptr.pop(dest, None)
    if proc.wait() != 0:
        raise SystemExit("objdump failed")
    return calls, graph


def reach(graph: Dict[int, Set[int]], start: Optional[int], depth: int = REACH_DEPTH) -> Set[int]:
    if start is None:
        return set()
    seen, frontier = {start}, [start]
    for _ in range(depth):
        nxt = []
        for node in frontier:
            for callee in graph.get(node, ()):
                if callee not in seen:
                    seen.add(callee)
                    nxt.append(callee)
        frontier = nxt
    return seen


def find_init(calls: Dict[int, List[Call]]) -> int:
    def score(fn: int) -> int:
        return sum(1 for c in calls[fn] if c.ident("rcx") and c.has_doc())
    return max(calls, key=score)


def registration_sequence(calls: Dict[int, List[Call]], init: int) -> List[Tuple[Call, bool]]:
    """The init function's calls in order, helpers' calls spliced in (flag: inside a helper)."""
    with_strings = {c.target for c in calls[init] if c.regs or c.stack or c.slot_ptrs}
    sequence: List[Tuple[Call, bool]] = []
    for call in calls[init]:
        sequence.append((call, False))
        helper = call.target
        if (helper is not None and helper not in with_strings and not call.regs
                and helper in calls and helper != init):
            sequence.extend((inner, True) for inner in calls[helper]
                            if inner.ident("rdx") or inner.ident("rcx"))
    return sequence


def _anchor(sequence: List[Tuple[Call, bool]], name: str, doc_in: Optional[str] = None,
            after: Optional[str] = None) -> Call:
    """First call registering `name` (rdx); `doc_in`: register holding a docstring (class_ and
    enum_ constructors take it in r8, after `this` and the name); `after`: the owner's name."""
    armed = after is None
    for call, _ in sequence:
        if not armed:
            armed = call.ident("rdx") == after
            continue
        doc = call.regs.get(doc_in) if doc_in else None
        if call.ident("rdx") == name and (doc_in is None or (doc and not IDENT.match(doc))):
            return call
    raise SystemExit("anchor %r not found" % name)


def classify(sequence: List[Tuple[Call, bool]], graph: Dict[int, Set[int]]
             ) -> Tuple[List[str], Dict[str, List[str]], List[str]]:
    """Module names, members per class/enum, and identifiers that are no names (keywords)."""
    class_calls = [_anchor(sequence, n, "r8") for n in ("typeInfo", "typedVar", "module")]
    enum_calls = [_anchor(sequence, n, "r8") for n in ("executionStatus", "eventResult")]
    method_call = _anchor(sequence, "fieldOffset", after="typeInfo")
    prop_call = _anchor(sequence, "win32Major", after="systemVersion")
    value_call = _anchor(sequence, "NoDebuggee", after="executionStatus")
    keyword_call = next(c for c, _ in sequence
                        if c.ident("rdx") == "offset" and c.ident("r8") == "count")
    init_calls = [c for c, _ in sequence if c.ident("rdx") == "__init__"]
    module_def_targets = {c.target for c, _ in sequence if c.ident("rcx")}

    def union(calls: Iterable[Call], depth: int = REACH_DEPTH) -> Set[int]:
        result: Set[int] = set()
        for call in calls:
            result |= reach(graph, call.target, depth)
        return result

    def direct(call: Call) -> Set[int]:
        return set(graph.get(call.target, ())) if call.target is not None else set()

    # class_<T> constructors call boost's class_base constructor directly; enum_<T> constructors
    # call enum_base's.  Markers: direct callees every anchor shares and no other kind reaches.
    not_class = union(enum_calls + [method_call, prop_call, value_call] + init_calls)
    for target in module_def_targets:
        not_class |= reach(graph, target)
    class_marks = set.intersection(*(direct(c) for c in class_calls)) - not_class
    enum_marks = set.intersection(*(direct(c) for c in enum_calls)) \
        - union(class_calls + [method_call, prop_call])
    member_marks = (union([method_call, prop_call]) | {method_call.target, prop_call.target}) \
        - union([value_call, keyword_call])
    value_targets = {value_call.target}
    if not class_marks or not enum_marks or not member_marks:
        raise SystemExit("could not learn class/enum/member markers")

    module: List[str] = []
    members: Dict[str, List[str]] = {}
    ignored: List[str] = []
    current: Optional[str] = None
    for call, in_helper in sequence:
        name = call.ident("rcx")
        if name and not in_helper:
            module.append(name)
            continue
        slot_name = call.slot_ptrs.get("r8")
        if slot_name and IDENT.match(slot_name) and not call.regs and not in_helper:
            module.append(slot_name)          # scope().attr("name") = value
            continue
        name = call.ident("rdx")
        if not name:
            continue
        if direct(call) & (class_marks | enum_marks):
            current = name
            module.append(name)
            members.setdefault(name, [])
        elif current is not None and (call.target in value_targets
                                      or reach(graph, call.target) & member_marks):
            members[current].append(name)
        elif in_helper:
            module.append(name)
        else:
            ignored.append(name)
    return module, members, ignored


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    wheel = argv[1]
    with open(wheel, "rb") as handle:
        wheel_sha = hashlib.sha256(handle.read()).hexdigest()
    with tempfile.TemporaryDirectory() as temp, zipfile.ZipFile(wheel) as archive:
        pyd = os.path.join(temp, "pykd.pyd")
        with archive.open("pykd/pykd.pyd") as source, open(pyd, "wb") as target:
            target.write(source.read())
        with open(pyd, "rb") as handle:
            pyd_sha = hashlib.sha256(handle.read()).hexdigest()
        binary = Binary(pyd)
        calls, graph = scan(binary, pyd)
    init = find_init(calls)
    sequence = registration_sequence(calls, init)
    module, members, ignored = classify(sequence, graph)
    names = set(module)
    for owner, member_names in members.items():
        names.update("%s.%s" % (owner, member) for member in member_names)
    for name in sorted(names):
        print(name)
    print("wheel sha256 %s; pykd.pyd sha256 %s; init function 0x%x" % (wheel_sha, pyd_sha, init),
          file=sys.stderr)
    print("%d names: %d module-level (%d classes/enums), %d members; ignored (keyword names "
          "etc.): %s" % (len(names), len(set(module)), len(members),
                         len(names) - len(set(module)), " ".join(sorted(set(ignored)))),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
