"""`!py layouts [show|export FILE]: the kernel layouts in use; export them as an ISF file`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("layouts")
