"""`!py teb [THREAD]: a thread environment block, like !teb`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("teb")
