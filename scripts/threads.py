"""`!py threads [NAME|PID|ADDRESS]: a process's threads, like !process <p> 2 (default: the current process)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("threads")
