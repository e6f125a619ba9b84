"""Symbol files the way WinDbg gets them: symbol paths, symbol stores, symbol servers.

- `path`: `_NT_SYMBOL_PATH` / `--symbol-path` in WinDbg's syntax (`srv*CACHE*URL`, `cache*DIR`,
  plain directories, `;`-separated);
- `store`: the store layout (`name.pdb/<GUID><AGE>/name.pdb`, images by timestamp and size,
  two-tier stores) and atomic writes a shared WinDbg cache can take;
- `download`: HTTP with timeout, retries, a size limit and progress;
- `cab`: the CAB (`.pd_`) form servers may send (MSZIP or stored);
- `fetch`: the search along a path, verification of what was found, caching;
- `for_target`: the kernel PDB a dump names (CodeView record, or kernel image identity).

Nothing here touches the network unless a symbol path names a server and `offline` is off.
"""
