"""Source 2: offsets proven by known objects agreeing with themselves (as MemProcFS does).

The System process is the one object whose contents are known without symbols: its
`ImageFileName` is "System", its `UniqueProcessId` is 4 and is directly followed by
`ActiveProcessLinks` (in every kernel since NT 4), whose Blink is `PsActiveProcessHead` (System is
the first process on the list); its `Pcb.DirectoryTableBase` is the DTB the dump header states.
Its threads point back at it (`Tcb.ApcState.Process`, `Tcb.Process`, `Cid.UniqueProcess` = 4),
and its two thread list heads (`Pcb.ThreadListHead`, `ThreadListHead`) lead to entries at one
fixed offset of every thread. Offsets found on System are then checked on the next processes
of the list and on every thread of the list (`self-consistency:process-list`,
`self-consistency:thread-list`). Every scan is bounded (`MAX_STRUCT`, `MAX_WALK`).
"""
import re
import struct
from typing import Any, Dict, List, Optional, Set, Tuple

from pykd_ext.errors import MemoryReadError, PykdExtError
from pykd_ext.layouts.inferred.evidence import Inference
from pykd_ext.targets.arch import arch_or_pointer_size

#: scan windows: no Windows _EPROCESS/_ETHREAD is larger than this (0xb80 on 24H2)
MAX_STRUCT = 0x1000
#: processes / threads a verification walk visits
MAX_WALK = 64
SYSTEM_NAME = b"System\0"
SYSTEM_PID = 4
SOURCE = "self-consistency:System"
LIST_SOURCE = "self-consistency:process-list"
THREAD_SOURCE = "self-consistency:thread-list"
TRIAGE_PROCESS = "self-consistency:triage-process"
TRIAGE_THREAD = "self-consistency:triage-thread"


class _Mem:
    """Bounded, cached, never-raising reads of the kernel space."""

    def __init__(self, space: Any, pointer_size: int, arch: str = "") -> None:
        self.space = space
        self.ptr = pointer_size
        # the kernel half starts where the architecture says (targets/arch.py); none: no pointer is
        start = arch_or_pointer_size(arch, pointer_size).kernel_start
        self.kernel_start = start if start is not None else 1 << (8 * pointer_size)
        self.fmt = "<Q" if pointer_size == 8 else "<I"
        self.cache: Dict[Tuple[int, int], bytes] = {}

    def read(self, address: int, size: int) -> bytes:
        """As many bytes as are readable from `address` (possibly none)."""
        key = (address, size)
        found = self.cache.get(key)
        if found is None:
            try:
                data, _fault = self.space.read_partial(address, size)
                found = bytes(data)
            except (MemoryReadError, PykdExtError, ValueError, OverflowError):
                found = b""
            self.cache[key] = found
        return found

    def ptr_at(self, address: int) -> Optional[int]:
        data = self.read(address, self.ptr)
        return struct.unpack(self.fmt, data)[0] if len(data) == self.ptr else None

    def q(self, data: bytes, offset: int) -> Optional[int]:
        if offset < 0 or offset + self.ptr > len(data):
            return None
        return struct.unpack_from(self.fmt, data, offset)[0]

    def kernel_pointer(self, value: Optional[int]) -> bool:
        if not value:
            return False
        return value >= self.kernel_start


def _unique(values: List[int]) -> Optional[int]:
    return values[0] if len(values) == 1 else None


def _triage_process(info: Any) -> Optional[int]:
    """The process a triage dump holds (System when the crash happened in a system thread)."""
    process = (info.extra or {}).get("process")
    return process if isinstance(process, int) and process else None


def _find_links(mem: _Mem, data: bytes, head: int) -> List[int]:
    """Offsets of a LIST_ENTRY whose Blink is `head`, directly after a pointer-sized 4."""
    found = []
    for off in range(mem.ptr, len(data) - 2 * mem.ptr + 1, mem.ptr):
        if mem.q(data, off + mem.ptr) == head and mem.q(data, off - mem.ptr) == SYSTEM_PID:
            found.append(off)
    return found


def _find_name(data: bytes) -> Optional[int]:
    hits: List[int] = []
    start = data.find(SYSTEM_NAME)
    while start >= 0 and len(hits) < 4:
        tail = data[start + len(SYSTEM_NAME):start + 15]
        if not any(tail):
            hits.append(start)
        start = data.find(SYSTEM_NAME, start + 1)
    return _unique(hits)


def _locate_system(mem: _Mem, info: Any, head: int, size: int, inference_dtb_offset: Optional[int],
                   process_object: Optional[int]
                   ) -> Optional[Tuple[int, bytes, int]]:
    """(address, bytes, ActiveProcessLinks offset) of System, or None."""
    candidate = _triage_process(info)
    if candidate is not None:
        data = mem.read(candidate, size)
        links = _find_links(mem, data, head)
        if len(links) == 1:
            return candidate, data, links[0]
    first = mem.ptr_at(head)                       # System's ActiveProcessLinks (full dumps)
    if not mem.kernel_pointer(first):
        return None
    assert first is not None
    around = mem.read(first - mem.ptr, 3 * mem.ptr)
    # the 4 sits right before `first`, the head right after its Flink
    if mem.q(around, 0) != SYSTEM_PID or mem.q(around, 2 * mem.ptr) != head:
        return None
    # ActiveProcessLinks' offset: the one that puts "System" inside the structure, a process
    # dispatcher header (Type = the donor's `_KOBJECTS.ProcessObject`) at its start, and the
    # header's DTB at the KDBG's DirectoryTableBase offset when the KDBG states it
    dtb = info.directory_table_base
    dtb_at = inference_dtb_offset
    names = []
    for link in range(mem.ptr, MAX_STRUCT, mem.ptr):
        data = mem.read(first - link, size)
        if len(data) < size or (process_object is not None and data[0] != process_object):
            continue
        if _find_name(data) is None:
            continue
        if dtb_at is not None and isinstance(dtb, int) and dtb:
            value = mem.q(data, dtb_at)
            if value is None or value & ~0xFFF != dtb & ~0xFFF:
                continue
        names.append((first - link, bytes(data), link))
    if len(names) == 1:
        return names[0]
    return None


def add_consistency_evidence(inference: Inference, space: Any, info: Any,
                             process_object: Optional[int] = None,
                             thread_object: Optional[int] = None) -> int:
    """Evidence from System (and the processes and threads after it); returns fields added.
    `process_object`: the `_KOBJECTS.ProcessObject` value a process's dispatcher header starts
    with (an enum value, from the donor layout), used to pick System's start on full dumps;
    `thread_object` likewise for threads."""
    mem = _Mem(space, inference.pointer_size, inference.arch)
    kdbg = info.kdbg or {}
    head = info.ps_active_process_head or kdbg.get("PsActiveProcessHead")
    if not isinstance(head, int) or not head:
        inference.notes.append("self-consistency: PsActiveProcessHead is not stated by the dump")
        return 0
    size = inference.value("_EPROCESS", "", "size") or MAX_STRUCT
    size = min(size, MAX_STRUCT)
    before = len(inference.evidence)
    add_triage_evidence(inference, mem, info)
    found = _locate_system(mem, info, head, size,
                           inference.value("_EPROCESS", "Pcb.DirectoryTableBase"), process_object)
    if found is None:
        inference.notes.append("self-consistency: the System process is not in the dump")
        return len(inference.evidence) - before
    system, data, apl = found
    ptr = mem.ptr
    inference.add("_EPROCESS", "UniqueProcessId", apl - ptr, SOURCE)
    inference.add("_EPROCESS", "ActiveProcessLinks", apl, SOURCE)
    name = _find_name(data)
    if name is not None:
        inference.add("_EPROCESS", "ImageFileName", name, SOURCE)
    dtb = info.directory_table_base
    if isinstance(dtb, int) and dtb:
        hits = [off for off in range(0, min(len(data), 0x100) - ptr + 1, ptr)
                if (mem.q(data, off) or 0) & ~0xFFF == dtb & ~0xFFF]
        if len(hits) == 1:
            inference.add("_EPROCESS", "Pcb.DirectoryTableBase", hits[0], SOURCE)
    _verify_process_list(inference, mem, head, system, apl, name, size)
    _threads(inference, mem, info, system, data, thread_object)
    _client_ids(inference, mem, head, apl)
    return len(inference.evidence) - before


#: an image file name as `_EPROCESS.ImageFileName` holds it for a process started from a file:
#: a base name with an extension, NUL-padded to the array's 15 bytes
_IMAGE_NAME = re.compile(rb"[A-Za-z0-9_\-~$ ]{1,12}\.[A-Za-z0-9]{1,3}\0+")
IMAGE_NAME_BYTES = 15


def _image_names(data: bytes) -> List[int]:
    """Offsets of image-file-name-shaped runs (see `_IMAGE_NAME`) that start a 15-byte window
    whose tail is all NULs."""
    out = []
    for match in _IMAGE_NAME.finditer(data):
        start = match.start()
        window = data[start:start + IMAGE_NAME_BYTES]
        if len(window) == IMAGE_NAME_BYTES:
            text = window.split(b"\0", 1)[0]
            if not any(window[len(text):]):
                out.append(start)
    return out


def add_triage_evidence(inference: Inference, mem: _Mem, info: Any) -> int:
    """Offsets proven by a triage dump's own process and thread (any process, not only System:
    the ARM32 17134 dump holds svchost.exe). The header names both; the thread points back at
    the process twice (`Tcb.ApcState.Process`, the KDBG's offset, and `Tcb.Process`); the
    thread's `Cid` (a PID then a different TID) names a value the process holds directly before a
    LIST_ENTRY of kernel pointers (`UniqueProcessId`, `ActiveProcessLinks`, adjacent in every
    kernel since NT 4), the pair unique in both objects; a list neighbour in the dump must link
    back. The process's name is the one image-file-name-shaped 15-byte window in it ("System"
    for PID 4)."""
    extra = info.extra or {}
    process, thread = extra.get("process"), extra.get("thread")
    if not isinstance(process, int) or not isinstance(thread, int) or not process or not thread:
        return 0
    ptr = mem.ptr
    psize = min(inference.value("_EPROCESS", "", "size") or MAX_STRUCT, MAX_STRUCT)
    tsize = min(inference.value("_ETHREAD", "", "size") or MAX_STRUCT, MAX_STRUCT)
    pdata, tdata = mem.read(process, psize), mem.read(thread, tsize)
    if len(pdata) < 4 * ptr or len(tdata) < 4 * ptr:
        return 0
    before = len(inference.evidence)
    apc = inference.value("_ETHREAD", "Tcb.ApcState.Process")
    back = set(_back_pointers(mem, tdata, process))
    others = sorted(back - {apc}) if apc is not None else []
    if apc is not None and apc in back and len(others) == 1:
        inference.add("_ETHREAD", "Tcb.ApcState.Process", apc, TRIAGE_THREAD)
        inference.add("_ETHREAD", "Tcb.Process", others[0], TRIAGE_THREAD)
    pairs = []
    # the process's words once, by value (a hostile object full of small values stays linear)
    where: Dict[int, List[int]] = {}
    for u in range(0, len(pdata) - 3 * ptr + 1, ptr):
        value = mem.q(pdata, u)
        if _tid_like(value):
            where.setdefault(value, []).append(u)            # type: ignore[arg-type]
    for c in range(0, len(tdata) - 2 * ptr + 1, ptr):
        pid, tid = mem.q(tdata, c), mem.q(tdata, c + ptr)
        if not _tid_like(pid) or not _tid_like(tid) or pid == tid:
            continue
        for u in where.get(pid, ())[:MAX_WALK]:                  # type: ignore[arg-type]
            link = process + u + ptr
            flink, blink = mem.q(pdata, u + ptr), mem.q(pdata, u + 2 * ptr)
            if not mem.kernel_pointer(flink) or not mem.kernel_pointer(blink):
                continue
            if not _links_back(mem, link, flink, blink):
                continue
            pairs.append((c, u))
            if len(pairs) > MAX_WALK:
                break
    if len(pairs) == 1:
        c, u = pairs[0]
        inference.add("_ETHREAD", "Cid.UniqueProcess", c, TRIAGE_THREAD)
        inference.add("_ETHREAD", "Cid.UniqueThread", c + ptr, TRIAGE_THREAD)
        inference.add("_EPROCESS", "UniqueProcessId", u, TRIAGE_PROCESS)
        inference.add("_EPROCESS", "ActiveProcessLinks", u + ptr, TRIAGE_PROCESS)
    elif pairs:
        inference.notes.append("self-consistency: the triage thread's Cid matches %d places of its process; "
                               "Cid and UniqueProcessId stay unknown from it" % len(pairs))
    names = _image_names(pdata)
    if len(pairs) == 1 and mem.q(pdata, pairs[0][1]) == SYSTEM_PID:
        system_name = _find_name(pdata)                 # System's name has no extension
        names = names + ([system_name] if system_name is not None else [])
    if len(names) == 1:
        inference.add("_EPROCESS", "ImageFileName", names[0], TRIAGE_PROCESS)
    return len(inference.evidence) - before


def _links_back(mem: _Mem, link: int, flink: Optional[int], blink: Optional[int]) -> bool:
    """A LIST_ENTRY's neighbours, where the dump holds them, point back at it."""
    assert flink is not None and blink is not None
    back = mem.ptr_at(flink + mem.ptr)
    if back is not None and back != link:
        return False
    forward = mem.ptr_at(blink)
    return forward is None or forward == link


def _client_ids(inference: Inference, mem: _Mem, head: int, apl: int) -> None:
    """`Cid`: on every thread of every process (bounded walks), `Cid.UniqueProcess` is the
    process's PID and the next pointer-sized value (`UniqueThread`) a thread ID unique among
    them; needs the thread lists' offsets and `Cid.UniqueProcess` (System's threads or a getter)."""
    ptr = mem.ptr
    cid = inference.value("_ETHREAD", "Cid.UniqueProcess")
    list_head = inference.value("_EPROCESS", "ThreadListHead")
    entry = inference.value("_ETHREAD", "ThreadListEntry")
    if cid is None or list_head is None or entry is None:
        return
    tids: List[int] = []
    threads_seen: Set[int] = set()
    processes_seen: Set[int] = set()
    link = mem.ptr_at(head)
    for _ in range(MAX_WALK):
        if link is None or link == head or not mem.kernel_pointer(link) or link in processes_seen:
            break
        processes_seen.add(link)
        process = link - apl
        pid = mem.ptr_at(process + apl - ptr)
        start = process + list_head
        thread_link = mem.ptr_at(start)
        for _t in range(MAX_WALK):
            if thread_link is None or thread_link == start or not mem.kernel_pointer(thread_link):
                break
            if thread_link - entry in threads_seen:
                return                                # a loop: prove nothing from it
            threads_seen.add(thread_link - entry)
            thread = thread_link - entry
            if mem.ptr_at(thread + cid) != pid:
                inference.notes.append("self-consistency: thread %#x's Cid does not name its process" % thread)
                return
            tid = mem.ptr_at(thread + cid + ptr)
            if not _tid_like(tid) or tid in tids:
                return
            assert tid is not None
            tids.append(tid)
            thread_link = mem.ptr_at(thread_link)
        link = mem.ptr_at(link)
    if len(tids) > 1:
        inference.add("_ETHREAD", "Cid.UniqueProcess", cid, THREAD_SOURCE)
        inference.add("_ETHREAD", "Cid.UniqueThread", cid + ptr, THREAD_SOURCE)


def _verify_process_list(inference: Inference, mem: _Mem, head: int, system: int, apl: int,
                         name: Optional[int], size: int) -> None:
    """Walk the process list from System: every process must have a PID (a multiple of 4)
    right before its links, Blinks that point back, and a name (any bytes: a hostile process
    may name itself with control characters, and a 15-character name has no NUL)."""
    ptr = mem.ptr
    link = system + apl
    checked = 0
    previous = head
    seen = set()
    for _ in range(MAX_WALK):
        if link == head or link in seen:          # the end, or a loop: each process counts once
            break
        seen.add(link)
        entry = mem.read(link - apl, size)
        if len(entry) < apl + 2 * ptr:
            break                                  # not in the dump: nothing to check
        pid = mem.q(entry, apl - ptr)
        if mem.q(entry, apl + ptr) != previous or pid is None or pid % 4 or not 0 < pid < 1 << 32:
            inference.notes.append("self-consistency: process %#x on the list does not fit the offsets "
                                   "found on System; the process-list check stopped there" % (link - apl))
            return
        if name is not None:
            raw = entry[name:name + 15]
            text = raw.split(b"\0", 1)[0]
            if len(raw) == 15 and not text:
                inference.notes.append("self-consistency: process %#x has no name at the offset "
                                       "found on System" % (link - apl))
                return
        checked += 1
        previous = link
        nxt = mem.q(entry, apl)
        if not mem.kernel_pointer(nxt):
            break
        assert nxt is not None
        link = nxt
    if checked > 1:       # System itself is the first; a second process is independent evidence
        inference.add("_EPROCESS", "UniqueProcessId", apl - ptr, LIST_SOURCE)
        inference.add("_EPROCESS", "ActiveProcessLinks", apl, LIST_SOURCE)
        if name is not None:
            inference.add("_EPROCESS", "ImageFileName", name, LIST_SOURCE)


def _back_pointers(mem: _Mem, thread: bytes, process: int) -> List[int]:
    return [off for off in range(0, len(thread) - mem.ptr + 1, mem.ptr) if mem.q(thread, off) == process]


def _threads(inference: Inference, mem: _Mem, info: Any, system: int, data: bytes,
             thread_object: Optional[int]) -> None:
    """Thread list heads of System, the entries' offset in the threads, back pointers, Cid."""
    ptr = mem.ptr
    tsize = min(inference.value("_ETHREAD", "", "size") or MAX_STRUCT, MAX_STRUCT)
    apc = inference.value("_ETHREAD", "Tcb.ApcState.Process")
    known: List[int] = []
    extra = info.extra or {}
    if extra.get("process") == system and isinstance(extra.get("thread"), int):
        known.append(extra["thread"])
    lists: List[Tuple[int, int, List[int]]] = []       # (head offset, entry offset, threads)
    for h in range(0, len(data) - 2 * ptr + 1, ptr):
        flink, blink = mem.q(data, h), mem.q(data, h + ptr)
        if not mem.kernel_pointer(flink) or not mem.kernel_pointer(blink) or flink == system + h:
            continue
        assert flink is not None
        if mem.ptr_at(flink + ptr) != system + h:     # the first entry's Blink is the head
            continue
        found = _entry_offset(mem, system, system + h, flink, tsize, apc, known, thread_object)
        if found is not None:
            lists.append((h, found[0], found[1]))
    if len(lists) == 2 and lists[0][1] < lists[1][1]:
        # Pcb (at +0) comes before the rest of _EPROCESS, Tcb before the rest of _ETHREAD
        (kh, kl, threads), (eh, el, _t) = lists
        inference.add("_EPROCESS", "Pcb.ThreadListHead", kh, SOURCE)
        inference.add("_ETHREAD", "Tcb.ThreadListEntry", kl, THREAD_SOURCE)
        inference.add("_EPROCESS", "ThreadListHead", eh, SOURCE)
        inference.add("_ETHREAD", "ThreadListEntry", el, THREAD_SOURCE)
        known = list(dict.fromkeys(known + threads))
    elif lists:
        inference.notes.append("self-consistency: %d thread list(s) of System found where 2 were "
                               "expected; their offsets stay unknown" % len(lists))
    if known:
        _thread_fields(inference, mem, system, known, tsize, apc)


def _entry_offset(mem: _Mem, system: int, head: int, first: int, tsize: int, apc: Optional[int],
                  known: List[int], thread_object: Optional[int]) -> Optional[Tuple[int, List[int]]]:
    """The offset of this list's entry in `_ETHREAD`, and the threads on it, when every
    entry's thread points back at System (at the KDBG's ApcState.Process offset, or wherever
    the known thread points back)."""
    ptr = mem.ptr
    links: List[int] = []
    link = first
    for _ in range(MAX_WALK):
        if link == head:
            break
        if link in links:                         # a loop that misses the head: not a list
            return None
        links.append(link)
        nxt = mem.ptr_at(link)
        if not mem.kernel_pointer(nxt):
            return None
        assert nxt is not None
        link = nxt
    if not links:
        return None
    candidates: List[int] = []
    for t in known:
        if t < links[0] <= t + tsize:
            candidates.append(links[0] - t)
    for off in range(ptr, tsize, ptr):
        threads = [lk - off for lk in links]
        if off not in candidates and all(_points_back(mem, t, system, apc, thread_object)
                                         for t in threads[:8]):
            candidates.append(off)
    good = []
    for off in candidates:
        threads = [lk - off for lk in links]
        if all(_points_back(mem, t, system, apc, thread_object) for t in threads):
            good.append(off)
    if len(good) != 1:
        return None
    return good[0], [lk - good[0] for lk in links]


def _points_back(mem: _Mem, thread: int, system: int, apc: Optional[int],
                 thread_object: Optional[int]) -> bool:
    """The thread's ApcState.Process is System and (when the donor names the value) its
    dispatcher header says ThreadObject."""
    if apc is None or mem.ptr_at(thread + apc) != system:
        return False
    if thread_object is not None:
        head = mem.read(thread, 1)
        return len(head) == 1 and head[0] == thread_object
    return True


def _thread_fields(inference: Inference, mem: _Mem, system: int, threads: List[int], tsize: int,
                   apc: Optional[int]) -> None:
    """`Tcb.Process`, `Tcb.ApcState.Process` and `Cid` from offsets every thread agrees on."""
    back: Optional[Set[int]] = None
    cid: Optional[Set[int]] = None
    for t in threads[:MAX_WALK]:
        data = mem.read(t, tsize)
        if len(data) < tsize:
            continue
        offs = set(_back_pointers(mem, data, system))
        back = offs if back is None else back & offs
        here = {off for off in range(0, len(data) - 2 * mem.ptr + 1, mem.ptr)
                if mem.q(data, off) == SYSTEM_PID and _tid_like(mem.q(data, off + mem.ptr))}
        cid = here if cid is None else cid & here
    if back:
        others = sorted(back - ({apc} if apc is not None else set()))
        if apc is not None and apc in back and len(others) == 1:
            inference.add("_ETHREAD", "Tcb.ApcState.Process", apc, THREAD_SOURCE)
            inference.add("_ETHREAD", "Tcb.Process", others[0], THREAD_SOURCE)
        elif apc is None and len(back) == 2:
            low, high = sorted(back)
            inference.notes.append("self-consistency: two back pointers to System at %#x and %#x; "
                                   "without the KDBG's ApcState.Process offset they stay unknown" % (low, high))
    if cid and len(cid) == 1:
        off = next(iter(cid))
        inference.add("_ETHREAD", "Cid.UniqueProcess", off, THREAD_SOURCE)
        if len(threads) > 1:
            tids = {mem.ptr_at(t + off + mem.ptr) for t in threads[:MAX_WALK]}
            if len(tids) == len(threads[:MAX_WALK]):      # thread ids are unique
                inference.add("_ETHREAD", "Cid.UniqueThread", off + mem.ptr, THREAD_SOURCE)


def _tid_like(value: Optional[int]) -> bool:
    return value is not None and 0 < value < 1 << 26 and value % 4 == 0


__all__ = ["add_consistency_evidence"]
