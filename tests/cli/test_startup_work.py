"""Start-up (issue 10, Scale): `eproc` on the sample does no whole-table work it does not need.

The command runs in a fresh interpreter (nothing this test process loaded counts); afterwards the
probe reads the interpreter's own state: the kphdyn kernel table (~3,700 rows) was never loaded
whole, yet the kernel's exact-version question was asked (`kernel_version_of` ran on the target).
"""
import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "win10-19041-standard.dmp"

PROBE = r'''
import contextlib, io, json, sys
from pykd_ext import cli
from pykd_ext.layouts import version_choice
asked = []
original = version_choice.kernel_version_of
def kernel_version_of(info):
    asked.append(True)
    return original(info)
version_choice.kernel_version_of = kernel_version_of
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = cli.main(["eproc", "lsass.exe", "--target", sys.argv[1]])
from pykd_ext.layouts import kernel_versions
print(json.dumps({"code": code, "lsass": "lsass.exe" in out.getvalue(), "asked": bool(asked),
                  "table_loaded": kernel_versions._TABLE is not None}))
'''


def test_eproc_does_not_load_the_kphdyn_table() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(SAMPLE)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"code": 0, "lsass": True, "asked": True, "table_loaded": False}


#: after `eproc` in a fresh interpreter: what construct imported but nobody used is still a
#: placeholder, what the command used of the 19041 layouts was built and the rest was not; then
#: the deferred modules work when used (SHA-256 of "abc": the FIPS 180-2 test vector)
DEFERRED_PROBE = r'''
import contextlib, io, json, sys
from pykd_ext import cli
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main(["eproc", "lsass.exe", "--target", sys.argv[1]])
from pykd_ext.layouts.cons import Record
layouts = sys.modules["pykd_ext.structs.nt_10_0_19041"]
records = [v for v in vars(layouts).values() if isinstance(v, Record)]
state = {"code": code,
         "placeholders": sorted(n for n in ("pdb", "pickle", "hashlib", "inspect", "traceback", "subprocess")
                                if type(sys.modules[n]).__name__ == "_Placeholder"),
         "records": len(records), "built": sum(r._fields is not None for r in records),
         "eprocess_built": any(r.type_name == "_EPROCESS" and r._fields is not None for r in records)}
import hashlib, pickle
state["sha256"] = hashlib.sha256(b"abc").hexdigest()
state["pickle"] = pickle.loads(pickle.dumps({"a": [1, 2]}))
state["hashlib_is_real"] = type(sys.modules["hashlib"]).__name__ == "module"
print(json.dumps(state))
'''


def test_eproc_builds_only_what_it_uses_and_deferred_modules_still_work() -> None:
    proc = subprocess.run([sys.executable, "-c", DEFERRED_PROBE, str(SAMPLE)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["code"] == 0
    assert state["placeholders"] == ["hashlib", "inspect", "pdb", "pickle", "subprocess", "traceback"]
    assert state["eprocess_built"]
    assert state["records"] > 200 and state["built"] < state["records"] // 4
    assert state["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert state["pickle"] == {"a": [1, 2]} and state["hashlib_is_real"]


THREADS_PROBE = r'''
import sys, threading
for name in ("pdb", "pickle", "hashlib", "inspect", "traceback"):
    sys.modules.pop(name, None)
from pykd_ext.startup import defer_unused_imports
defer_unused_imports()
import hashlib, importlib.util, pickle
assert type(sys.modules["hashlib"]).__name__ == "_Placeholder"
assert importlib.util.find_spec("hashlib").name == "hashlib"     # still answers, and loads nothing
assert type(sys.modules["hashlib"]).__name__ == "_Placeholder"
start = threading.Barrier(8)
results, errors = [], []
def use():
    start.wait()
    try:
        results.append((hashlib.sha256(b"abc").hexdigest(), pickle.loads(pickle.dumps(7))))
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(len(set(results)), len(results), errors, type(sys.modules["hashlib"]).__name__)
'''


def test_deferred_modules_load_once_under_threads() -> None:
    proc = subprocess.run([sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "8", "[]", "module"]


def test_every_dataclass_has_a_docstring() -> None:
    """`dataclasses` calls `inspect.signature` for a class without one, loading `inspect` (and
    `ast`, `dis`, `tokenize`) that start-up otherwise never loads (pykd_ext/startup.py)."""
    import ast
    root = Path(__file__).resolve().parents[2] / "pykd_ext"
    missing = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.ClassDef) and ast.get_docstring(node) is None
                    and any("dataclass" in ast.dump(d) for d in node.decorator_list)):
                missing.append("%s:%s" % (path.relative_to(root), node.name))
    assert missing == []
