"""`--target qemu:QMP_SOCKET[?ram=PATH&pause&backend=ID&timeout=S]`: a running QEMU/KVM guest.

How (the facts measured in issue 14): QEMU started with file-backed shared RAM
(`-object memory-backend-file,id=qemu-ram,mem-path=...,share=on`) exposes guest-physical memory
as a file any host process can mmap read-only, and guest writes show in it at once. Over QMP we ask:
- `qom-list /objects` + `qom-get <backend> mem-path`: which file (unless `ram=PATH` says it;
  a RAM backend whose mem-path is a directory leaves an unlinked file QMP cannot name);
- `info mtree -f`: where each guest-physical RAM range sits in that file (`mtree`);
- `info registers -a`: each vCPU's CR3 (`registers`), the kernel DTB when the processor start
  block cannot be found in low memory.
The kernel and its DTB are then found as for a raw image (`targets.rawimage.RawImageTarget`).

Each QMP question is one short connection (`QmpClient`): a QMP socket serves one client at a time,
and a class shares one VM. Nothing is written to the guest.

Contract of `refresh()`: later reads see the guest's memory as it is now: cached translations,
pages and vCPU registers are dropped, and the memory map is asked again (the firmware may remap
ROM shadows; a hot-plugged DIMM adds RAM) and rebuilt when it changed. What was found at open is
kept: the kernel DTB, and `info()`'s kernel base, build and KDBG (a running kernel moves none of
them; re-finding them costs a scan of the kernel image, ~0.2 s) unless the memory map changed.
Objects decoded before the refresh (a `KernelContext`'s processes) stay as they were decoded:
decode again through a new context.

`pause` (`?pause`): the guest is stopped (QMP `stop`) when the target opens and let go (`cont`)
when it closes, so one command reads a frozen guest; the guest is resumed only if we stopped it.
`hold()` / `release()` do the same by hand (`watch` releases between runs: `refresh()` holds
again when `pause` was asked).
"""
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import PykdExtError, TargetError
from pykd_ext.live.locator import flag, split_locator
from pykd_ext.live.mtree import FlatRange, parse_flat_view, ram_ranges
from pykd_ext.live.qmp import DEFAULT_TIMEOUT, QmpClient
from pykd_ext.live.ramfile import Segment, mapped_ram
from pykd_ext.live.registers import VcpuRegisters, parse_registers
from pykd_ext.memory.paged import PagedAddressSpace
from pykd_ext.memory.space import PhysicalSource
from pykd_ext.targets.arch import X64
from pykd_ext.targets.base import TargetDescription, TargetInfo
from pykd_ext.targets.rawimage import RawImageTarget

OPTIONS = ("ram", "pause", "backend", "timeout")
#: QOM types of RAM backends (QEMU qapi/qom.json): only a file backend has a file to read
FILE_BACKEND = "child<memory-backend-file>"


def segments_of(ranges: List[FlatRange]) -> List[Segment]:
    """(guest-physical address, file offset, length) of RAM ranges."""
    return [(r.start, r.offset, r.size) for r in ranges]


def find_backend(qmp: QmpClient, wanted: Optional[str]) -> Tuple[Optional[str], Dict[str, Any]]:
    """(backend id, its facts) of the guest's RAM backend: `wanted`, else the one file backend.

    Facts: `mem-path` and `share` when QOM states them. (None, {}) when no file backend exists.
    """
    objects = qmp.qom_list("/objects")
    backends = [item.get("name") for item in objects
                if str(item.get("type", "")).startswith("child<memory-backend-")]
    files = [item.get("name") for item in objects if item.get("type") == FILE_BACKEND]
    if wanted is not None:
        if wanted not in backends:
            raise TargetError("QEMU has no memory backend %r (it has: %s)"
                              % (wanted, ", ".join(str(b) for b in backends) or "none"), qmp.path)
        name: Optional[str] = wanted
    elif len(files) == 1:
        name = files[0]
    elif len(files) > 1:
        raise TargetError("QEMU has several file memory backends (%s): name one with "
                          "?backend=ID" % ", ".join(str(f) for f in files), qmp.path)
    else:
        return (backends[0] if len(backends) == 1 else None), {}
    facts: Dict[str, Any] = {}
    for prop in ("mem-path", "share", "size"):
        try:
            facts[prop] = qmp.qom_get("/objects/%s" % name, prop)
        except PykdExtError:
            pass
    return name, facts


class QemuTarget(RawImageTarget):
    """A running QEMU guest: its RAM file by the QMP memory map, refreshed on demand."""

    live = True

    def __init__(self, socket_path: str, ram_path: str, physical: PhysicalSource,
                 segments: List[Segment], registers: List[VcpuRegisters],
                 backend: Optional[str], options: Tuple[Tuple[str, str], ...],
                 notes: List[str], facts: Dict[str, Any], timeout: float,
                 stopped_by_us: bool, pause: bool) -> None:
        self.socket_path = socket_path
        self.ram_path = ram_path
        self.backend = backend
        self.timeout = timeout
        self.pause = pause
        self._segments = segments
        self._registers: Optional[List[VcpuRegisters]] = registers
        self._stopped_by_us = stopped_by_us
        # A vCPU in 64-bit paging mode says the guest is x64: the start block (below 1 MiB) is
        # looked for, else that vCPU's CR3 is the DTB; the other architectures' scans (the whole
        # of RAM for x86) are left for guests whose vCPUs do not page yet or run 32-bit.
        dtb = None
        vcpu = kernel_vcpu(registers)
        finder = X64.find_dtbs
        if vcpu is not None and finder is not None and not finder.find(physical, X64):
            dtb = vcpu.cr3 & ~0xFFF
            facts["paging_source_vcpu"] = vcpu.index
            notes.append("no processor start block in low memory: kernel DTB from vCPU %d's CR3"
                         % vcpu.index)
        super().__init__(physical, TargetDescription("qemu", socket_path, options), ram_path,
                         "qemu", dtb, X64, notes, facts)

    # -- QMP ---------------------------------------------------------------------------------

    def qmp(self) -> QmpClient:
        """A fresh QMP connection (close it soon: the socket serves one client at a time)."""
        return QmpClient(self.socket_path, self.timeout)

    def registers(self) -> List[VcpuRegisters]:
        """Each vCPU's registers (asked once per refresh)."""
        if self._registers is None:
            with self.qmp() as qmp:
                self._registers = parse_registers(qmp.hmp("info registers -a"))
        return list(self._registers)

    def hold(self) -> None:
        """Stop the guest (QMP `stop`) if it runs; `release()` lets it go again."""
        with self.qmp() as qmp:
            if qmp.running():
                qmp.execute("stop")
                self._stopped_by_us = True

    def release(self) -> None:
        """Resume the guest if `hold()` (or `pause`) stopped it; a guest stopped by someone
        else stays stopped."""
        if self._stopped_by_us:
            with self.qmp() as qmp:
                qmp.execute("cont")
            self._stopped_by_us = False

    # -- live --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """See the module docstring: later reads see the guest's memory as it is now."""
        with self.qmp() as qmp:
            if self.pause and qmp.running():
                qmp.execute("stop")
                self._stopped_by_us = True
            ranges = guest_ram(parse_flat_view(qmp.hmp("info mtree -f")), self.backend)
        segments = segments_of(ranges)
        kept = self._info              # kernel base, build, KDBG: a running kernel keeps them
        if segments != self._segments:
            self._rebind(mapped_ram(self.ram_path, segments))
            self._segments = segments
            kept = None                # the memory map changed: state it anew
        self._registers = None
        self.drop_caches()
        self._info = kept
        self._vcpus_stale = kept is not None

    _vcpus_stale = False

    def info(self) -> TargetInfo:
        """The facts found at open (kept across refreshes: the kernel does not move), with the
        vCPU registers as of the last refresh."""
        info = super().info()
        if self._vcpus_stale:
            self._vcpus_stale = False
            self._add_vcpus(info)
        return info

    def _add_vcpus(self, info: TargetInfo) -> None:
        try:
            cpus = self.registers()
        except PykdExtError as err:
            info.notes.append("vCPU registers not read: %s" % err.one_line())
            info.extra.pop("vcpus", None)
        else:
            info.processors = len(cpus)
            info.extra["vcpus"] = [cpu.record() for cpu in cpus]

    def _rebind(self, physical: PhysicalSource) -> None:
        """Read through a new memory map (same DTB and paging mode)."""
        old = self._physical
        self._physical = physical
        self._spaces = {}
        if isinstance(self._kernel, PagedAddressSpace):
            self._kernel = PagedAddressSpace(physical, self._kernel.dtb, self._kernel.mode,
                                             self._software_pte, self._kernel.maxphyaddr)
        old.close()

    def _build_info(self) -> TargetInfo:
        info = super()._build_info()
        info.dump_type = "running QEMU guest"
        info.extra["qmp_socket"] = self.socket_path
        info.extra["ram_file"] = self.ram_path
        info.extra["ram_segments"] = [{"physical": a, "file_offset": o, "size": n}
                                      for a, o, n in self._segments]
        self._add_vcpus(info)
        return info

    def close(self) -> None:
        """Resume the guest if we paused it (tried twice: the socket may be busy a moment; when
        QEMU is gone there is nothing to resume), then unmap the RAM file."""
        try:
            for attempt in (1, 2):
                try:
                    self.release()
                    break
                except PykdExtError:
                    if attempt == 2:
                        self._stopped_by_us = False
        finally:
            super().close()


def kernel_vcpu(registers: List[VcpuRegisters]) -> Optional[VcpuRegisters]:
    """The vCPU whose CR3 best names the kernel's tables: 64-bit paging, kernel mode first."""
    usable = [cpu for cpu in registers if cpu.paging and cpu.long_mode and cpu.cr3
              and not cpu.five_level]
    usable.sort(key=lambda cpu: (cpu.values.get("CPL", 0) != 0, cpu.index))
    return usable[0] if usable else None


def open_qemu_target(socket_path: str, ram: Optional[str] = None, pause: bool = False,
                     backend: Optional[str] = None,
                     timeout: float = DEFAULT_TIMEOUT) -> QemuTarget:
    """Open a running QEMU guest through its QMP socket (see the module docstring)."""
    notes: List[str] = []
    facts: Dict[str, Any] = {}
    stopped = False
    with QmpClient(socket_path, timeout) as qmp:
        version = qmp.greeting.get("QMP", {}).get("version", {}).get("qemu", {})
        if isinstance(version, dict) and "major" in version:
            facts["qemu_version"] = "%s.%s.%s" % (version.get("major"), version.get("minor"),
                                                  version.get("micro"))
        if pause and qmp.running():
            qmp.execute("stop")
            stopped = True
        try:
            name, backend_facts = find_backend(qmp, backend)
            ranges = guest_ram(parse_flat_view(qmp.hmp("info mtree -f")), name)
            registers = parse_registers(qmp.hmp("info registers -a"))
        except BaseException:
            if stopped:
                qmp.execute("cont")
            raise
    try:
        facts.update(("backend_" + k.replace("-", "_"), v) for k, v in backend_facts.items())
        if ram is None:
            ram = backend_facts.get("mem-path") if isinstance(backend_facts.get("mem-path"), str) else None
            if not ram:
                raise TargetError("QMP names no RAM file (the guest's RAM is not a "
                                  "memory-backend-file): start QEMU with -object memory-backend-"
                                  "file,...,share=on or give qemu:SOCKET?ram=PATH", socket_path)
        if backend_facts.get("share") is False:
            notes.append("the RAM backend has share=off: the guest's writes do not reach the file")
        segments = segments_of(ranges)
        physical = mapped_ram(ram, segments)
        options = tuple((k, v) for k, v in (("ram", ram), ("pause", "1" if pause else ""),
                                            ("backend", name or "")) if v)
        try:
            return QemuTarget(socket_path, ram, physical, segments, registers, name, options,
                              notes, facts, timeout, stopped, pause)
        except BaseException:
            physical.close()
            raise
    except BaseException:
        if stopped:
            with QmpClient(socket_path, timeout) as qmp:
                qmp.execute("cont")
        raise


def guest_ram(view: List[FlatRange], backend: Optional[str]) -> List[FlatRange]:
    """The RAM ranges of a backend: its memory region carries the backend's id as its name
    (QEMU backends/hostmem.c); a region named otherwise (legacy `-mem-path`: "pc.ram") is
    taken when it is the only RAM region."""
    if backend is not None and any(r.region == backend and r.kind == "ram" for r in view):
        return ram_ranges(view, backend)
    return ram_ranges(view, None)


def open_qemu_locator(text: str) -> QemuTarget:
    """`SOCKET[?ram=PATH&pause&backend=ID&timeout=S]` (the part after `qemu:`)."""
    path, options = split_locator(text, OPTIONS)
    timeout = DEFAULT_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            raise TargetError("timeout: not a number of seconds: %r" % options["timeout"],
                              text) from None
    return open_qemu_target(path, ram=options.get("ram") or None, pause=flag(options, "pause"),
                            backend=options.get("backend") or None, timeout=timeout)
