"""`Process`: one `_EPROCESS` (with its embedded `_KPROCESS`), read once, decoded field by field.

Why lazy: `ps` over hundreds of processes touches ~30 fields of each; reading the structure once
(one `StructView`) and decoding each field with the layout's precompiled reader costs microseconds,
while derived things that need more memory (the image path string, the session id, the handle
count, the thread lists) are computed only when asked for and cached on the object.

Every value is an int/str/bool, None (this build has no such field, or the pointer is NULL) or a
`Fault` (the memory is not in the dump). Nothing here raises on a bad process.
"""
from typing import Any, Dict, List, Union, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.kinds import kind_flags, primary_kind
from pykd_ext.kernel.kobject import KernelObject, Value
from pykd_ext.kernel.protection import protection_of
from pykd_ext.kernel.times import filetime_to_iso
from pykd_ext.memory.faults import Fault


#: `_EPROCESS` fields renamed between builds: the first the layout has is used.
WOW64_FIELDS = ("WoW64Process", "Wow64Process")


def decode_image_name(raw: Any) -> Union[str, Fault]:
    """`ImageFileName` bytes (15, NUL-padded) as text."""
    if isinstance(raw, Fault):
        return raw
    return bytes(raw).split(b"\0", 1)[0].decode("ascii", errors="backslashreplace")


class Process(KernelObject):
    """A process at `address` (an `_EPROCESS`), found by the methods in `found_by`."""

    TYPE_NAME = "_EPROCESS"

    def __repr__(self) -> str:
        return "Process(0x%x, pid=%r, %r)" % (self.address, self.pid, self.name)

    @property
    def readable(self) -> bool:
        """True when the structure was read up to its name (enough to call it a process)."""
        return not isinstance(self.view["ImageFileName"], Fault)

    def pointer_field(self, path: str) -> Value:
        """A pointer member that some builds store as an `_EX_FAST_REF` (e.g. `DeviceMap` on
        Windows 11): the reference count bits are masked off; None when the build lacks it."""
        if not self.view.has(path):
            return None
        if self.view.has(path + ".Value"):
            value = self.view[path + ".Value"]
            return value & self.ctx.fast_ref_mask if isinstance(value, int) else value
        return self.view[path]

    # ---- identity
    @property
    def pid(self) -> Union[int, Fault]:
        return cast(Union[int, Fault], self.view["UniqueProcessId"])     # a HANDLE: int or Fault

    @property
    def ppid(self) -> Union[int, Fault]:
        return cast(Union[int, Fault], self.view["InheritedFromUniqueProcessId"])

    @property
    def name(self) -> Union[str, Fault]:
        return self._cached("name", lambda: decode_image_name(self.view["ImageFileName"]))

    @property
    def image_path(self) -> Value:
        """Full NT path from `SeAuditProcessCreationInfo.ImageFileName` (an `_OBJECT_NAME_INFORMATION`)."""
        def compute() -> Value:
            pointer = self.field("SeAuditProcessCreationInfo.ImageFileName")
            if not isinstance(pointer, int) or not pointer:
                return pointer if isinstance(pointer, Fault) else None
            # _OBJECT_NAME_INFORMATION is { UNICODE_STRING Name; } (wdm.h): the string is at +0.
            return self.ctx.unicode_string_at(pointer)
        return self._cached("image_path", compute)

    @property
    def session_id(self) -> Value:
        """`Session->SessionId`; None when the process has no session (System, Registry, smss)."""
        def compute() -> Value:
            session = self.field("Session")
            if not isinstance(session, int) or not session:
                return session if isinstance(session, Fault) else None
            if not self.ctx.has("_MM_SESSION_SPACE", "SessionId"):
                return None
            field = self.ctx.layouts.type("_MM_SESSION_SPACE").field("SessionId")
            # read only up to SessionId: the structure is 20 KB on Windows 10
            return self.ctx.view("_MM_SESSION_SPACE", session, field.offset + field.size)["SessionId"]
        return self._cached("session_id", compute)

    # ---- times and exit
    @property
    def create_time_raw(self) -> Value:
        return self.field("CreateTime.QuadPart")

    @property
    def exit_time_raw(self) -> Value:
        return self.field("ExitTime.QuadPart")

    @property
    def exit_status(self) -> Value:
        return self.field("ExitStatus")

    # ---- counts
    @property
    def threads_active(self) -> Value:
        return self.field("ActiveThreads")

    @property
    def handle_count(self) -> Value:
        def compute() -> Value:
            from pykd_ext.kernel.handle_table import handle_count
            table = self.field("ObjectTable")
            if not isinstance(table, int) or not table:
                return table if isinstance(table, Fault) else None
            return handle_count(self.ctx, table)
        return self._cached("handle_count", compute)

    # ---- memory
    @property
    def dtb(self) -> Value:
        return self.view["Pcb.DirectoryTableBase"]

    @property
    def user_dtb(self) -> Value:
        return self.field("Pcb.UserDirectoryTableBase")

    @property
    def peb(self) -> Value:
        return self.field("Peb")

    @property
    def wow64_pointer(self) -> Value:
        for path in WOW64_FIELDS:
            if self.view.has(path):
                return self.view[path]
        return None

    @property
    def wow64(self) -> Union[bool, Fault, None]:
        pointer = self.wow64_pointer
        if isinstance(pointer, Fault) or pointer is None:
            return pointer
        return bool(pointer)

    @property
    def peb32(self) -> Value:
        """The 32-bit PEB of a WoW64 process.

        Windows 10 keeps a pointer to an `_EWOW64PROCESS` (`WoW64Process`), whose `Peb` member is
        the PEB32; before it (7, 8, 8.1) `Wow64Process` is an untyped pointer holding the PEB32
        address itself (what `PsGetProcessWow64Process` returns). The layout's pointer type tells
        which: a pointer to a structure is followed, an untyped one is the answer.
        """
        def compute() -> Value:
            pointer = self.wow64_pointer
            if not isinstance(pointer, int) or not pointer:
                return pointer if isinstance(pointer, Fault) else None
            path = next(p for p in WOW64_FIELDS if self.view.has(p))
            target = self.view.type.field(path).type_name
            if target in (None, "void", "<function>"):
                return pointer
            offset = 0      # _EWOW64PROCESS.Peb is its first member (checked against every ISF)
            if self.ctx.has(target, "Peb"):
                offset = self.ctx.layouts.type(target).offset("Peb")
            try:
                return self.ctx.space.read_pointer(pointer + offset)
            except MemoryReadError as err:
                return err.fault
        return self._cached("peb32", compute)

    # ---- security
    @property
    def token(self) -> Value:
        value = self.field("Token.Value")
        if isinstance(value, int):
            return value & self.ctx.fast_ref_mask
        return value

    @property
    def job(self) -> Value:
        return self.field("Job")

    @property
    def protection(self) -> Any:
        return protection_of(self.ctx.layouts, self.view)

    @property
    def signature_level(self) -> Value:
        return self.field("SignatureLevel")

    @property
    def section_signature_level(self) -> Value:
        return self.field("SectionSignatureLevel")

    @property
    def kind_flags(self) -> List[str]:
        return self._cached("kind_flags", lambda: kind_flags(self.view, self.ctx.system_process()))

    @property
    def kind(self) -> str:
        return primary_kind(self.kind_flags)

    # ---- threads
    def thread_listing(self) -> Any:
        """Both thread lists walked (see `processes.process_threads`), cached."""
        def compute() -> Any:
            from pykd_ext.kernel.thread_lists import process_threads
            return process_threads(self.ctx, self)
        return self._cached("threads", compute)

    def threads(self) -> List[Any]:
        return self.thread_listing().threads

    @property
    def threads_listed(self) -> Value:
        listing = self.thread_listing()
        return listing.counts.get("ThreadListHead")

    # ---- output
    def display_more(self) -> Dict[str, Any]:
        """Display-only values for the WinDbg-shaped text (`render.windbg`): not part of the record."""
        more: Dict[str, Any] = {"object_table": self.field("ObjectTable"),
                                "pointer_width": 2 * self.ctx.pointer_size,
                                "time_increment": self.ctx.time_increment(),
                                "layout_label": getattr(self.ctx.layouts, "label", self.ctx.layout_id)}
        if self.view.has("DeviceMap"):
            more["device_map"] = self.pointer_field("DeviceMap")
        for key, path in (("user_ticks", "Pcb.UserTime"),
                          ("kernel_ticks", "Pcb.KernelTime"), ("virtual_size", "VirtualSize"),
                          ("peak_virtual_size", "PeakVirtualSize"), ("base_priority", "Pcb.BasePriority"),
                          ("commit_charge", "CommitCharge")):
            if self.view.has(path):
                more[key] = self.view[path]
        now, created = self.ctx.info.system_time, self.create_time_raw
        if isinstance(now, int) and isinstance(created, int) and 0 < created <= now:
            end = self.exit_time_raw if isinstance(self.exit_time_raw, int) and self.exit_time_raw else now
            more["elapsed"] = max(0, end - created)
        return more

    def record(self, with_threads: bool = True) -> Dict[str, Any]:
        """The contract's process record (JSON keys of `ps`/`eproc`)."""
        prot = self.protection
        create_raw, exit_raw = self.create_time_raw, self.exit_time_raw
        return {
            "address": self.address, "pid": self.pid, "ppid": self.ppid, "name": self.name,
            "image_path": self.image_path, "session_id": self.session_id,
            "create_time": filetime_to_iso(create_raw) if not isinstance(create_raw, Fault) else create_raw,
            "create_time_raw": create_raw,
            "exit_time": filetime_to_iso(exit_raw) if not isinstance(exit_raw, Fault) else exit_raw,
            "exit_time_raw": exit_raw, "exit_status": self.exit_status,
            "threads_active": self.threads_active,
            "threads_listed": self.threads_listed if with_threads else None,
            "handle_count": self.handle_count, "dtb": self.dtb, "user_dtb": self.user_dtb,
            "peb": self.peb, "wow64": self.wow64, "peb32": self.peb32, "token": self.token,
            "job": self.job, "protection": prot, "signature_level": self.signature_level,
            "section_signature_level": self.section_signature_level, "kind": self.kind,
            "kind_flags": list(self.kind_flags), "found_by": list(self.found_by),
            "layout": self.ctx.layout_id,
        }
