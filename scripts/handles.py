"""`!py handles [PROCESS]: a process's handle table, like !handle 0 3 <p>`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("handles")
