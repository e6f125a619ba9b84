"""`!py ps [NAME|PID ...]: the process list, like !process 0 0`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("ps")
