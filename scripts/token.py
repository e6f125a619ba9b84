"""`!py token [PROCESS|TOKEN]: a token, like !token (default: the current process's)`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("token")
