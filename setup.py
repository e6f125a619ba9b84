"""Package discovery only; all metadata lives in pyproject.toml.

`structs/` is a top-level folder in the repository (the user's layout) that installs as the
sub-package `pykd_ext.structs`; setuptools' declarative config cannot express "find the packages
under a folder and give them another prefix", so it is done here.
"""
from setuptools import find_packages, setup

_CORE = find_packages(include=["pykd_ext", "pykd_ext.*"])
_STRUCTS = ["pykd_ext." + name for name in find_packages(include=["structs", "structs.*"])]

setup(
    packages=_CORE + _STRUCTS,
    package_dir={"pykd_ext": "pykd_ext", "pykd_ext.structs": "structs"},
)
