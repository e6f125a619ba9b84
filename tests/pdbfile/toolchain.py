"""Builds PDBs with clang-cl (`clang --driver-mode=cl`) + lld-link from Debian's clang/lld.

Why build instead of ship: the PDBs (and the executables beside them) are the compiler's and
linker's own output, not ours, and llvm-pdbutil reads them independently. A missing toolchain
fails the tests (no skips): .ci/run installs clang, lld and llvm.
"""
import shutil
import subprocess
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"
TARGETS = {"x64": "x86_64-pc-windows-msvc", "x86": "i686-pc-windows-msvc"}
SOURCES = ("layouts.c", "classes.cpp")


def _clang_cl() -> list:
    # Debian's clang package ships no clang-cl link; the cl driver mode is the same program
    if shutil.which("clang-cl"):
        return ["clang-cl"]
    assert shutil.which("clang"), "clang not installed (apt-get install clang lld llvm)"
    return ["clang", "--driver-mode=cl"]


def build_pdb(source: Path, arch: str, out_dir: Path) -> Path:
    stem = "%s-%s" % (source.stem, arch)
    obj, exe, pdb = (out_dir / (stem + ext) for ext in (".obj", ".exe", ".pdb"))
    # `--` before the source: clang-cl reads an absolute path starting with /w as an option
    subprocess.run(_clang_cl() + ["--target=" + TARGETS[arch], "/Z7", "/GS-", "/GR-", "/c",
                                  "/Fo" + str(obj), "--", str(source)],
                   check=True, capture_output=True, timeout=120)
    subprocess.run(["lld-link", "/debug", "/nodefaultlib", "/entry:main", "/subsystem:console",
                    str(obj), "/out:" + str(exe), "/pdb:" + str(pdb)],
                   check=True, capture_output=True, timeout=120)
    return pdb
