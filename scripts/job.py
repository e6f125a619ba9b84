"""`!py job [PROCESS|JOB]: a job, like !job`

pykd-ext inside WinDbg; see pykd_ext/windbg/entry.py.
"""
from pykd_ext.windbg.entry import run_script

run_script("job")
