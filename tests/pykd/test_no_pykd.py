"""`import pykd_ext` (every module of it) works where pykd cannot be imported at all (Linux).

A fresh interpreter gets a meta-path finder that refuses `pykd`, then imports every module of
the package: only running a pykd target may need pykd, never importing code.
"""
import subprocess
import sys
import textwrap

from pykd_harness import REPO

CHILD = textwrap.dedent('''
    import importlib, pkgutil, sys

    class NoPykd:
        """Makes `import pykd` fail like on a machine without it."""
        def find_spec(self, name, path=None, target=None):
            if name == "pykd" or name.startswith("pykd."):
                raise ImportError("No module named 'pykd' (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoPykd())
    sys.path = [p for p in sys.path if "standin" not in p]
    import pykd_ext
    names = []
    for info in pkgutil.walk_packages(pykd_ext.__path__, "pykd_ext."):
        if info.name == "pykd_ext.__main__":
            continue                      # runs the CLI
        importlib.import_module(info.name)
        names.append(info.name)
    assert "pykd" not in sys.modules
    try:
        import pykd
        raise SystemExit("pykd was importable")
    except ImportError:
        pass
    from pykd_ext.targets.pykd_target import open_pykd_target
    from pykd_ext.errors import TargetError
    try:
        open_pykd_target()
        raise SystemExit("opened a pykd target without pykd")
    except TargetError as err:
        assert "pykd is not importable" in str(err), err
    from pykd_ext.windbg.entry import run
    assert run("ps", []) == 2             # a clear one-line error, no traceback
    print(len(names))
''')


def test_every_module_imports_without_pykd() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=str(REPO), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    count = int(proc.stdout.strip().splitlines()[-1])
    assert count > 60                     # the whole package, not a stub
    assert "pykd-ext: pykd is not importable" in proc.stderr
