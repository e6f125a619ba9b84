"""`!py eproc [NAME|PID|ADDRESS] [-v]: one process, like !process <p> 1 (default: the current process)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("eproc")
