"""`!py ethread [ADDRESS|TID]: one thread, like !thread (default: the implicit thread)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("ethread")
