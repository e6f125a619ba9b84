"""`pykd-ext diagram PROCESS [--svg FILE|--dot FILE|--png FILE]`: one process's structures and links.

Why: a student learns how `_EPROCESS` hangs together faster from a picture with the real
addresses and the offsets of the linking fields than from six listings. The boxes are what the
other commands decode (the same kernel objects: `Process`, `Thread`, `Token`, `Job`, the PEB and
loader decoders); every offset shown comes from the layouts of the target's build; arrows leave
from the field that holds the pointer:

    _EPROCESS (Pcb: _KPROCESS) -ThreadListHead-> _ETHREAD (Tcb: _KTHREAD) -Tcb.Teb-> _TEB
              -Peb-> _PEB -Ldr-> _PEB_LDR_DATA -InLoadOrderModuleList-> _LDR_DATA_TABLE_ENTRY ...
              -Token-> _TOKEN (user, groups, privileges, integrity)
              -ObjectTable-> _HANDLE_TABLE
              -Job-> _EJOB -ParentJob-> _EJOB ...; -ServerSilo-> the silo (an _EJOB)

Protection and process kind are lines of the `_EPROCESS` box. Without a file option the DOT
source is printed (`--format json` gives the nodes and edges as records). Graphviz renders
through the `graphviz` package (the `[diagram]` extra) and Debian's `graphviz` (`dot`).
"""
import argparse
from typing import Any, List, Optional

from pykd_ext.commands.procview import add_context_notes, kernel_context, result_meta
from pykd_ext.errors import NotFoundError, PykdExtError
from pykd_ext.kernel.lookup import Finder
from pykd_ext.memory.faults import Fault
from pykd_ext.render.dot import Diagram, Node, dot_source, render
from pykd_ext.render.grid import Column, Result

HELP = ("one process's structures and how they link (EPROCESS, threads, TEB, PEB, modules, token, "
        "handles, job) as Graphviz")
#: `--help` ends with these (issue 12); crash.dmp stands for any dump
EXAMPLES = [
    'diagram lsass.exe --svg lsass.svg -t crash.dmp',
    'diagram 0n636 --dot lsass.dot -t crash.dmp',
]

COLUMNS = [Column("kind", "Kind"), Column("id", "Id"), Column("type", "Type"),
           Column("address", "Address", "addr"), Column("from", "From"), Column("to", "To"),
           Column("label", "Label")]
MAX_THREADS = 8
MAX_MODULES = 8
MAX_GROUPS = 6
MAX_JOB_CHAIN = 8
#: The TEB box: (TEB record key, field) read from the TEB itself (user memory of the process).
TEB_BOX = (("client_id_tid", "ClientId.UniqueThread"), ("stack_base", "NtTib.StackBase"),
           ("stack_limit", "NtTib.StackLimit"), ("last_error", "LastErrorValue"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("process", metavar="NAME|PID|ADDRESS", help="the process to draw")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--svg", metavar="FILE", help="write an SVG (Graphviz dot)")
    out.add_argument("--png", metavar="FILE", help="write a PNG (Graphviz dot)")
    out.add_argument("--dot", metavar="FILE", help="write the DOT source")
    parser.add_argument("--max-threads", type=int, default=MAX_THREADS, metavar="N",
                        help="threads drawn (default %d; the box says how many more)" % MAX_THREADS)


def _usable(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value != 0


class Builder:
    """Fills a Diagram for one process, reading each structure once through the kernel objects."""

    def __init__(self, ctx: Any, max_threads: int = MAX_THREADS) -> None:
        self.ctx = ctx
        self.layouts = ctx.layouts
        self.max_threads = max(0, max_threads)
        self.notes: List[str] = []
        self.diagram = Diagram("")

    def offset(self, type_name: str, path: str) -> Optional[int]:
        """A field's offset from the layouts (None when this build has no such field)."""
        if not self.layouts.has_type(type_name):
            return None
        layout = self.layouts.type(type_name)
        return layout.offset(path) if layout.has_field(path) else None

    def row(self, node: Node, type_name: str, path: str, value: Any, link: bool = False,
            name: Optional[str] = None) -> Optional[str]:
        return node.add(name or path, value, self.offset(type_name, path), link)

    def link(self, tail: Node, port: Optional[str], head: Node, head_type: str, head_field: Optional[str],
             style: str = "solid") -> None:
        label = ""
        if head_field:
            offset = self.offset(head_type, head_field)
            label = head_field if offset is None else "%s +0x%x" % (head_field, offset)
        self.diagram.edge(tail, port, head, label, style)

    # ---- the process
    def process(self, process: Any) -> Diagram:
        E = "_EPROCESS"
        rec = process.record(with_threads=False)
        self.diagram.title = "%s (PID %s) - layout %s" % (rec.get("name"), rec.get("pid"), self.ctx.layout_id)
        ep, _ = self.diagram.node(E, process.address, "process")
        ep.add("Pcb (_KPROCESS)", "DirectoryTableBase %s" % _hex(rec.get("dtb")), self.offset(E, "Pcb"))
        self.row(ep, E, "UniqueProcessId", rec.get("pid"))
        self.row(ep, E, "InheritedFromUniqueProcessId", rec.get("ppid"))
        self.row(ep, E, "ImageFileName", rec.get("name"))
        protection = rec.get("protection")
        text = protection.get("text") if isinstance(protection, dict) else protection
        self.row(ep, E, "Protection", text or "none")
        ep.add("kind", " ".join(rec.get("kind_flags") or [rec.get("kind") or "?"]))
        ep.note = "found by %s" % ", ".join(rec.get("found_by") or ["?"])
        self.threads(process, ep)
        self.peb(process, ep, rec)
        self.token(ep, rec.get("token"), "Token", E)
        self.handles(process, ep, rec)
        self.jobs(process, ep, rec)
        return self.diagram

    def threads(self, process: Any, ep: Node) -> None:
        E, T = "_EPROCESS", "_ETHREAD"
        threads = process.threads()
        port = self.row(ep, E, "ThreadListHead", "%d threads" % len(threads), link=bool(threads))
        previous, previous_port = ep, port
        for thread in threads[:self.max_threads]:
            trec = thread.record()
            node, _ = self.diagram.node(T, thread.address, "thread")
            node.add("Tcb (_KTHREAD)", "", self.offset(T, "Tcb"))
            self.row(node, T, "Cid.UniqueThread", trec.get("tid"))
            self.row(node, T, "Tcb.State", trec.get("state"))
            self.row(node, T, "Tcb.WaitReason", trec.get("wait_reason"))
            self.row(node, T, "Tcb.Priority", trec.get("priority"))
            if trec.get("running_on") is not None:
                node.add("running on processor", trec.get("running_on"))
            next_port = self.row(node, T, "ThreadListEntry", "next", link=True)
            self.link(previous, previous_port, node, T, "ThreadListEntry")
            previous, previous_port = node, next_port
            teb = trec.get("teb")
            if _usable(teb):
                teb_port = self.row(node, T, "Tcb.Teb", teb, link=True)
                tnode, _ = self.diagram.node("_TEB", teb, "user")     # filled by _fill_tebs
                self.link(node, teb_port, tnode, "_TEB", None)
            if trec.get("impersonating"):
                from pykd_ext.kernel.token import thread_impersonation
                imp = thread_impersonation(self.ctx, thread)
                port = self.row(node, T, "ClientSecurity", imp.get("level"), link=_usable(imp.get("token")))
                if _usable(imp.get("token")):
                    self.token(node, imp["token"], "ClientSecurity", T, port=port)
        more = len(threads) - self.max_threads
        if more > 0 and previous is not ep:
            previous.note = "... %d more thread(s) (--max-threads)" % more
        self._fill_tebs(threads[:self.max_threads])

    def _fill_tebs(self, threads: List[Any]) -> None:
        """The TEB boxes' stack bounds, from the TEB decoder (user memory of the process)."""
        from pykd_ext.kernel.teb import kernel_thread_tebs
        try:
            decoded = kernel_thread_tebs(self.ctx, threads)
        except PykdExtError as err:
            self.notes.append("TEBs: %s" % err.one_line())
            return
        for _thread, _user, teb in decoded:
            rec = teb.record
            address = rec.get("address")
            if not _usable(address):
                continue
            node, _ = self.diagram.node("_TEB", address, "user")
            for key, path in TEB_BOX:
                self.row(node, "_TEB", path, _hex(rec.get(key)) if "Stack" in path else rec.get(key))
            peb = rec.get("peb")
            if _usable(peb):
                port = self.row(node, "_TEB", "ProcessEnvironmentBlock", peb, link=True)
                pnode, _ = self.diagram.node("_PEB", peb, "user")
                self.link(node, port, pnode, "_PEB", None, style="dashed")

    def peb(self, process: Any, ep: Node, rec: Any) -> None:
        E = "_EPROCESS"
        peb = rec.get("peb")
        port = self.row(ep, E, "Peb", peb, link=_usable(peb))
        if not _usable(peb):
            return
        node, _ = self.diagram.node("_PEB", peb, "user")
        self.link(ep, port, node, "_PEB", None)
        from pykd_ext.kernel.peb import decode_user_process
        from pykd_ext.kernel.userspace import from_kernel_process
        try:
            decoding = decode_user_process(from_kernel_process(self.ctx, process), with_modules=True)
        except PykdExtError as err:
            node.note = err.one_line()
            return
        prec = decoding.record
        self.row(node, "_PEB", "ImageBaseAddress", prec.get("image_base"))
        params = prec.get("process_parameters")
        pport = self.row(node, "_PEB", "ProcessParameters", params, link=_usable(params))
        if _usable(params):
            R = "_RTL_USER_PROCESS_PARAMETERS"
            pnode, _ = self.diagram.node(R, params, "user")
            self.row(pnode, R, "ImagePathName", prec.get("image_path"))
            self.row(pnode, R, "CommandLine", prec.get("command_line"))
            self.link(node, pport, pnode, R, None)
        ldr = prec.get("ldr")
        lport = self.row(node, "_PEB", "Ldr", ldr, link=_usable(ldr))
        if not _usable(ldr):
            return
        L, M = "_PEB_LDR_DATA", "_LDR_DATA_TABLE_ENTRY"
        lnode, _ = self.diagram.node(L, ldr, "user")
        self.link(node, lport, lnode, L, None)
        modules = [m for m in (decoding.listing.modules if decoding.listing is not None else [])
                   if "load" in (m.get("lists") or [])]
        previous, port = lnode, self.row(lnode, L, "InLoadOrderModuleList", "%d modules" % len(modules),
                                         link=bool(modules))
        for module in modules[:MAX_MODULES]:
            entry = module.get("address")
            mnode, _ = self.diagram.node(M, entry if _usable(entry) else None, "user")
            self.row(mnode, M, "DllBase", module.get("base"))
            self.row(mnode, M, "SizeOfImage", module.get("size"))
            self.row(mnode, M, "FullDllName", module.get("path"))
            self.link(previous, port, mnode, M, "InLoadOrderLinks")
            previous, port = mnode, self.row(mnode, M, "InLoadOrderLinks", "next", link=True)
        if len(modules) > MAX_MODULES:
            previous.note = "... %d more module(s)" % (len(modules) - MAX_MODULES)

    def token(self, tail: Node, address: Any, field_name: str, tail_type: str,
              port: Optional[str] = None) -> None:
        if port is None:
            port = self.row(tail, tail_type, field_name, address, link=_usable(address))
        if not _usable(address):
            return
        from pykd_ext.kernel.token import Token
        K = "_TOKEN"
        node, new = self.diagram.node(K, address, "security")
        self.link(tail, port, node, K, None)
        if not new:
            return
        trec = Token(self.ctx, address).record()
        user = trec.get("user") or {}
        self.row(node, K, "UserAndGroups", "%s %s" % (user.get("sid"), user.get("name") or ""),
                 name="UserAndGroups[0] (user)")
        groups = [g for g in (trec.get("groups") or []) if isinstance(g, dict)]
        for group in groups[:MAX_GROUPS]:
            node.add("group", "%s %s" % (group.get("sid"), " ".join(group.get("attribute_names") or [])))
        if len(groups) > MAX_GROUPS:
            node.add("group", "... %d more" % (len(groups) - MAX_GROUPS))
        privileges = trec.get("privileges")
        if isinstance(privileges, list):
            enabled = [p.get("name") for p in privileges if p.get("enabled")]
            self.row(node, K, "Privileges", "%d present, %d enabled" % (len(privileges), len(enabled)))
        self.row(node, K, "IntegrityLevelIndex", "%s (%s)" % (trec.get("integrity"), trec.get("integrity_sid")),
                 name="IntegrityLevelIndex (integrity)")
        self.row(node, K, "TokenType", trec.get("token_type"))
        if trec.get("token_type") == "TokenImpersonation":
            self.row(node, K, "ImpersonationLevel", trec.get("impersonation_level"))

    def handles(self, process: Any, ep: Node, rec: Any) -> None:
        E, H = "_EPROCESS", "_HANDLE_TABLE"
        table = process.field("ObjectTable")
        port = self.row(ep, E, "ObjectTable", table, link=_usable(table))
        if not _usable(table):
            return
        node, _ = self.diagram.node(H, table, "object")
        code = self._field(H, table, "TableCode")
        self.row(node, H, "TableCode", code)
        if _usable(code) or code == 0:
            node.add("levels", (code & 3) + 1 if isinstance(code, int) else "?")
        node.add("handles in use", rec.get("handle_count"))
        self.link(ep, port, node, H, None)

    def jobs(self, process: Any, ep: Node, rec: Any) -> None:
        from pykd_ext.kernel.job import Job
        E, J = "_EPROCESS", "_EJOB"
        job = rec.get("job")
        port = self.row(ep, E, "Job", job, link=_usable(job))
        silo: Any = process.field("ServerSilo") if self.offset(E, "ServerSilo") is not None else None
        silo_port = None
        if self.offset(E, "ServerSilo") is not None:
            silo_port = self.row(ep, E, "ServerSilo", silo, link=_usable(silo))
        tail, tail_port, address, depth = ep, port, job, 0
        while _usable(address) and depth < MAX_JOB_CHAIN:
            node, new = self.diagram.node(J, address, "object")
            self.link(tail, tail_port, node, J, None)
            if not new:
                break
            jrec = Job(self.ctx, address).record(with_members=False)
            self.row(node, J, "LimitFlags", " ".join(jrec.get("limit_names") or []) or jrec.get("limit_flags"))
            self.row(node, J, "ActiveProcesses", jrec.get("active_processes"))
            self.row(node, J, "ActiveProcessLimit", jrec.get("active_process_limit"))
            if jrec.get("is_silo"):
                node.add("silo", "server silo" if jrec.get("is_server_silo") else "application silo")
                if jrec.get("container_id"):
                    node.add("container id", jrec.get("container_id"))
            parent = jrec.get("parent_job")
            tail, tail_port = node, self.row(node, J, "ParentJob", parent, link=_usable(parent))
            address, depth = parent, depth + 1
        if _usable(silo):
            node, new = self.diagram.node(J, silo, "object")
            if new:
                jrec = Job(self.ctx, silo).record(with_members=False)
                node.add("silo", "server silo" if jrec.get("is_server_silo") else "silo")
                node.add("container id", jrec.get("container_id"))
            self.link(ep, silo_port, node, J, None, style="dashed")

    def _field(self, type_name: str, address: int, path: str) -> Any:
        from pykd_ext.kernel.view import StructView
        if not self.layouts.has_type(type_name):
            return None
        return StructView(self.ctx.space, self.layouts.type(type_name), address).get(path)


def _hex(value: Any) -> Any:
    if isinstance(value, Fault):
        return value.marker
    return "0x%x" % value if isinstance(value, int) and not isinstance(value, bool) else value


def run(session: Any, args: argparse.Namespace) -> Result:
    ctx = kernel_context(session)
    processes = Finder(ctx).processes(args.process)
    if not processes:
        raise NotFoundError("no process matches %r (try psxview for hidden ones)" % args.process)
    builder = Builder(ctx, args.max_threads)
    diagram = builder.process(processes[0])
    notes = list(builder.notes)
    if len(processes) > 1:
        notes.append("%d processes match %r: drew the first (PID %s); name one by PID or address"
                     % (len(processes), args.process, processes[0].pid))
    written = None
    for fmt in ("svg", "png", "dot"):
        path = getattr(args, fmt, None)
        if path:
            data = render(diagram, fmt)
            try:
                with open(path, "wb") as out:
                    out.write(data)
            except OSError as err:
                raise PykdExtError("cannot write %s: %s" % (path, err.strerror), path=path) from None
            written = path
            notes.append("wrote %s (%d boxes, %d arrows)" % (path, len(diagram.nodes), len(diagram.edges)))
    add_context_notes(ctx, notes)
    meta = result_meta(ctx)
    meta["written"] = written

    def text(_result: Result) -> List[str]:
        return [] if written else dot_source(diagram).splitlines()

    return Result("diagram", COLUMNS, records=diagram.records(), text=text, meta=meta, notes=notes)
