"""`!py modules [PROCESS]: loaded modules from the PEB loader lists (64- and 32-bit)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("modules")
