"""`!py peb [PROCESS]: a process environment block, like !peb`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("peb")
