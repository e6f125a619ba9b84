"""Inside WinDbg: the `!py` entry (`entry`), the pykd-backed session (`session`), DML links (`dml`).

Nothing here imports pykd at import time; `entry.run` imports it when a command runs, through
`pykd_ext.targets.pykd_target` (the only module that touches pykd).
"""
