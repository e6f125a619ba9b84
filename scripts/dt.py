"""`!py dt TYPE [ADDRESS] [FIELDS]: a structure, like dt nt!TYPE`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("dt")
