"""Every pykd name the adapter uses exists in the real pykd 0.3.4.15 (`tests/data/` list, made
from the wheel; see its README), the sources use no pykd name outside the declared list, and the
stand-in offers exactly what the real module offers for the names it implements."""
import re
from typing import Set

from pykd_harness import REPO, run_like_bootstrapper, script_path, use_standin
from pykd_ext.targets.pykd_target import PYKD_02_NAMES_USED, PYKD_NAMES_USED

NAMES_FILE = REPO / "tests" / "data" / "pykd-0.3.4.15-names.txt"
ADAPTER = [REPO / "pykd_ext" / "targets" / "pykd_target.py", REPO / "pykd_ext" / "layouts" / "from_typeinfo.py"] + \
    sorted((REPO / "pykd_ext" / "windbg").glob("*.py"))

#: (regex over the adapter's source, how a match is named in the wheel's list)
PATTERNS = (
    (r'\.call\("(\w+)"', "{}"),
    (r'self\.load_bytes[^=\n]*= module\.(\w+)', "{}"),
    (r'(?:getattr|hasattr)\((?:module|pykd|self\.mod|self\.api\.mod), "(\w+)"', "{}"),
    (r'(?<![`\w.])(?:pykd|mod|self\.api\.mod)\.(\w+)\(', "{}"),
    (r'getter = "(\w+)" if', "{}"),
    (r'else "(\w+)"\n\s+func = getattr\(pykd', "{}"),
    (r'\b(?:ti|fti|ksystem)\.(\w+)\(', "typeInfo.{}"),
    (r'typeInfo\("[^"]*"\)\.(\w+)\(', "typeInfo.{}"),
    (r'\b(?:nt|kmod)\.(\w+)\(', "module.{}"),
    (r'_int_attr\(version, "(\w+)"\)', "systemVersion.{}"),
    (r'getattr\(version, "(\w+)"', "systemVersion.{}"),
)


def wheel_names() -> Set[str]:
    return {line.strip() for line in NAMES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()}


def used_in_sources() -> Set[str]:
    found: Set[str] = set()
    for path in ADAPTER:
        text = path.read_text(encoding="utf-8")
        for pattern, form in PATTERNS:
            for match in re.finditer(pattern, text):
                found.add(form.format(match.group(1)))
    return found


def test_declared_names_exist_in_pykd_0_3_4_15() -> None:
    names = wheel_names()
    missing = sorted(n for n in PYKD_NAMES_USED if n not in names)
    assert not missing, "not exported by pykd 0.3.4.15: %s" % missing
    assert all(n not in names for n in PYKD_02_NAMES_USED)       # truly 0.2.x-only fallbacks


def test_sources_use_only_declared_names() -> None:
    used = used_in_sources()
    assert len(used) >= 30, sorted(used)
    undeclared = sorted(used - set(PYKD_NAMES_USED) - set(PYKD_02_NAMES_USED))
    assert not undeclared, "pykd names used but not declared in PYKD_NAMES_USED: %s" % undeclared


def test_standin_implements_only_real_names() -> None:
    pykd = use_standin()
    names = wheel_names()
    public = {n for n in vars(pykd) if not n.startswith("_") and n not in ("annotations",)}
    helpers = {"json", "lzma", "os", "sys", "Any", "Dict", "List", "Optional", "Tuple"}
    assert sorted(public - helpers - names) == []
    for cls, prefix in ((pykd.typeInfo, "typeInfo"), (pykd.module, "module")):
        methods = {n for n in vars(cls) if not n.startswith("_") or n in ("__len__", "__str__", "__int__")}
        assert sorted("%s.%s" % (prefix, m) for m in methods if "%s.%s" % (prefix, m) not in names) == []
    # what the adapter declares is what the stand-in offers
    for name in PYKD_NAMES_USED:
        owner, _, member = name.partition(".")
        if owner == "numVariant":
            continue
        obj = getattr(pykd, owner if member else name, None)
        if owner == "systemVersion":
            obj = pykd._SystemVersion(19041)
            assert hasattr(obj, member), name
            continue
        assert obj is not None, name
        if member:
            assert hasattr(obj, member), name


def test_calls_made_while_running_scripts_are_real(standin: object, machines: dict) -> None:
    standin._standin_configure(dump=machines[19041].path)
    for script in ("eproc", "ps", "ethread", "layouts"):
        run_like_bootstrapper(script_path(script), [])
    called = set(standin._standin_calls())
    assert {"loadBytes", "getOffset", "isWindbgExt", "dprintln"} <= called
    assert called <= wheel_names()
    assert called <= set(PYKD_NAMES_USED) | {"typeInfo", "module"}


def test_bootstrapper_rules_in_the_sources() -> None:
    """No pykd.initialize(), no bare `except:`, pykd imported in one module only."""
    for path in (REPO / "pykd_ext").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "initialize()" not in text.replace("no `pykd.initialize()`", "").replace(
            "never `initialize()`", "").replace("never calls `pykd.initialize()`", ""), path
        assert not re.search(r"except\s*:", text), path
        if path.name != "pykd_target.py":
            assert not re.search(r"^\s*(import pykd\b|from pykd import)", text, re.M), path
    for path in (REPO / "scripts").glob("*.py"):
        lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
        code = [l for l in lines if not l.startswith('"""') and l[:1] not in (" ", "`") and "pykd-ext inside" not in l
                and not l.startswith("`")]
        assert len(code) <= 6, path
