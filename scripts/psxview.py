"""`!py psxview: processes seen by each source (lists, CID table, threads, processors)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("psxview")
