"""Live virtual machines: memory that changes while we read it.

Why a folder of its own: a live VM brings things no dump has (a control socket, a guest that runs
on, caches that go stale, processes to start and stop), and none of it belongs to the file readers.
- `qmp`: a minimal QMP client (QEMU's JSON control protocol), one short connection per question so
  that several students can share one socket;
- `mtree`: the parser of `info mtree -f` (which guest-physical ranges are RAM, at which RAM-file
  offsets) and `registers`: the parser of `info registers -a` (each vCPU's CR3, CR0, CR4, EFER);
- `ramfile`: physical sources over a RAM file that changes under us (mmap'd read-only for QEMU's
  fixed-size backend file; `os.pread` for a `live:` file whose size may change);
- `qemu` / `livefile`: the targets behind `--target qemu:SOCKET[?ram=PATH&pause]` and
  `--target live:PATH[?lowmem=SIZE]`, whose `refresh()` makes later reads see new guest memory;
- `labvm`: starts QEMU paused on a forged scenario's memory (`pykd-ext lab vm`).
Nothing here writes to a guest: RAM files are opened read-only and QMP is used only to ask
(`info`, `qom-get`, `query-status`) and, with `pause`, to `stop`/`cont` the guest.
"""
