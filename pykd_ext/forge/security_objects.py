"""Forge what a process holds for security: full tokens, typed and named handles, jobs and silos.

Why: the `token`, `handles` and `job` decoders (and their Volatility 3 agreement tests) need dumps
whose tokens, handle tables and jobs are known to the bit. `plant_security(builder)` is the hook
the scenario builder (`kernel_objects._Builder.build`) calls after it has planted processes,
threads and their minimal tokens/handle tables; it enriches them, writing every field at the
offset/bit the build's symbol data gives (`BuildFacts`), and records what it planted on
`planted.security` for the tests:

- tokens: SYSTEM (services and the system processes), a medium-integrity user with a split-token
  Administrators group (explorer.exe, winlogon.exe's session, ...), an elevated administrator
  (rootkit.exe: High integrity, SeDebugPrivilege enabled), a low-integrity AppContainer with a
  package SID and capabilities (SearchApp.exe, Windows 8+ where `_TOKEN` has `Package`), a
  restricted token with restricted SIDs (the WoW64 process), and an impersonation token on each
  thread the scenario marks `impersonating`;
- object types File, Device and Section appended to `ObTypeIndexTable`, the object directories
  `\\`, `\\Device`, `\\KnownDlls`, `\\Sessions\\1\\BaseNamedObjects`, named objects with name (and
  creator/quota) optional headers, and `ObpInfoMaskToOffset` (what Volatility 3 reads to find a
  name) computed from the build's optional-header sizes;
- explorer.exe's handle table rebuilt as a 3-level table (TableCode level 2) holding File,
  Section, Event, Mutant, Directory, Process and Thread handles with Inherit/Protected/AuditOnClose
  attributes, with the same handle count the scenario asked for, and Key handles whose
  `_CM_KEY_BODY` leads to a KCB chain (`PLANTED_KEYS`; planted paths in `planted.security["keys"]`);
- jobs: the scenario's job gets limits, a parent job (Windows 8+ nesting) and, on builds with
  silos, svchost.exe (PID 812) is put in a server silo with a container id.
"""
import uuid
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.forge.handle_tables import link_entry_pages
from pykd_ext.kernel.handles import (HANDLE_PAGE_SIZE, LEGACY_LOCK_BIT, LEGACY_PROTECT_CLOSE_BIT,
                                     OBJ_AUDIT_OBJECT_CLOSE, OBJ_INHERIT, OBJ_PROTECT_CLOSE)
from pykd_ext.kernel.objects import INFO_MASK_HEADERS
from pykd_ext.kernel.privileges import PRIVILEGES
from pykd_ext.kernel.registry_keys import KEY_HIVE_ENTRY, KEY_HIVE_EXIT

#: winnt.h SE_GROUP_* values used below.
MANDATORY, DEFAULT, ENABLED, OWNER, DENY_ONLY = 0x1, 0x2, 0x4, 0x8, 0x10
INTEGRITY, INTEGRITY_ENABLED, LOGON_ID = 0x20, 0x40, 0xC0000000
STD = MANDATORY | DEFAULT | ENABLED
#: winnt.h: SECURITY_NT_AUTHORITY {0,0,0,0,0,5} etc. (identifier authority values)
AUTHORITIES = {"0": 0, "1": 1, "2": 2, "3": 3, "5": 5, "15": 15, "16": 16}
#: ntifs.h TOKEN_* flags used by the profiles (see pykd_ext.kernel.privileges.TOKEN_FLAGS).
TOKEN_HAS_TRAVERSE_PRIVILEGE, TOKEN_NOT_LOW, TOKEN_LOWBOX = 0x1, 0x2000, 0x4000
TOKEN_HAS_IMPERSONATE_PRIVILEGE = 0x80
TOKEN_IS_RESTRICTED = 0x10
#: wdm.h IO_TYPE_FILE, IO_TYPE_DEVICE: `_FILE_OBJECT.Type` / `_DEVICE_OBJECT.Type`.
IO_TYPE_FILE, IO_TYPE_DEVICE = 5, 3
#: winnt.h JOB_OBJECT_LIMIT_* planted on the scenario's job.
JOB_LIMITS = 0x2000 | 0x0800 | 0x0008 | 0x0200       # KILL_ON_JOB_CLOSE|BREAKAWAY_OK|ACTIVE_PROCESS|JOB_MEMORY
PARENT_JOB_LIMITS = 0x1000                           # SILENT_BREAKAWAY_OK
SILO_LIMITS = 0x2000 | 0x0008                        # KILL_ON_JOB_CLOSE|ACTIVE_PROCESS
#: Types this module adds to ObTypeIndexTable after the scenario's.
EXTRA_TYPES = ("File", "Device", "Section", "Key")
USER_SID = "S-1-5-21-1004336348-1177238915-682003330-1001"
PACKAGE_SID = "S-1-15-2-1861897761-1695161497-2927542615-642690995-327840285-2659745135-2630312742"
CONTAINER_ID = uuid.UUID("6f1a3c2e-8d4b-4e0a-9b7c-52d1e0a4f3b9")
#: Registry keys explorer.exe holds handles to: the path its KCB chain spells, root first.
#: `HIVE_LINKS` are the keys under which a hive is mounted; on builds whose `_CM_KEY_BODY` has
#: `Trans` (Windows 10 1607+) such a link gets its own KCB (flag KEY_HIVE_EXIT) above the hive
#: root's KCB (KEY_HIVE_ENTRY, named after the root cell).
PLANTED_KEYS = ("\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft",
                "\\REGISTRY\\MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Explorer",
                "\\REGISTRY\\USER\\S-1-5-21-1004336348-1177238915-682003330-1001\\Control Panel\\Desktop",
                "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\Control\\Session Manager")
HIVE_LINKS = ("\\REGISTRY\\MACHINE\\SOFTWARE", "\\REGISTRY\\MACHINE\\SYSTEM",
              "\\REGISTRY\\USER\\S-1-5-21-1004336348-1177238915-682003330-1001")
HIVE_ROOT_CELL_NAME = "CMI-CreateHive{%s}"
#: `_CM_KEY_BODY.Type` of every key body: 'ky02' (ReactOS cm.h CM_KEY_BODY_TYPE).
CM_KEY_BODY_TYPE = 0x6B793032
SYSTEM_PRIVS_ENABLED = (4, 7, 10, 13, 14, 15, 16, 20, 21, 23, 29, 30, 33, 34, 35)
USER_PRIVS = (19, 23, 25, 33, 34)


def _sid_bytes(text: str) -> Tuple[int, bytes, List[int]]:
    parts = text.split("-")
    return int(parts[1]), int(parts[2]).to_bytes(6, "big"), [int(p) for p in parts[3:]]


class _Profile:
    def __init__(self, user: str, groups: List[Tuple[str, int]], present: Tuple[int, ...],
                 enabled: Tuple[int, ...], integrity: str, source: bytes, flags: int,
                 package: Optional[str] = None, capabilities: Optional[List[Tuple[str, int]]] = None,
                 default_owner: int = 0, restricted: Optional[List[Tuple[str, int]]] = None) -> None:
        self.user, self.groups, self.present, self.enabled = user, groups, present, enabled
        self.integrity, self.source, self.flags = integrity, source, flags
        self.package, self.capabilities, self.default_owner = package, capabilities or [], default_owner
        self.restricted = restricted or []


def _profiles() -> Dict[str, _Profile]:
    system_groups = [("S-1-5-32-544", DEFAULT | ENABLED | OWNER), ("S-1-1-0", STD),
                     ("S-1-5-11", STD), ("S-1-16-16384", INTEGRITY | INTEGRITY_ENABLED)]
    user_common = [("S-1-5-21-1004336348-1177238915-682003330-513", STD), ("S-1-1-0", STD),
                   ("S-1-5-114", DENY_ONLY), ("S-1-5-32-544", DENY_ONLY), ("S-1-5-32-545", STD),
                   ("S-1-5-4", STD), ("S-1-2-1", STD), ("S-1-5-11", STD), ("S-1-5-15", STD),
                   ("S-1-5-113", STD), ("S-1-5-5-0-318411", STD | LOGON_ID), ("S-1-2-0", STD),
                   ("S-1-5-64-10", STD)]
    admin = [(s, a) for s, a in user_common if s not in ("S-1-5-114", "S-1-5-32-544")]
    admin += [("S-1-5-114", STD), ("S-1-5-32-544", STD | OWNER), ("S-1-16-12288", INTEGRITY | INTEGRITY_ENABLED)]
    all_privs = tuple(sorted(PRIVILEGES))
    medium_flags = TOKEN_HAS_TRAVERSE_PRIVILEGE | TOKEN_NOT_LOW | 0x200 | 0x800
    return {
        "restricted": _Profile(USER_SID, user_common + [("S-1-16-8192", INTEGRITY | INTEGRITY_ENABLED)],
                               (23,), (23,), "S-1-16-8192", b"User32 ", medium_flags | TOKEN_IS_RESTRICTED,
                               restricted=[("S-1-5-12", STD), ("S-1-1-0", STD), ("S-1-5-5-0-318411", STD | LOGON_ID)]),
        "system": _Profile("S-1-5-18", system_groups, all_privs, SYSTEM_PRIVS_ENABLED, "S-1-16-16384",
                           b"*SYSTEM*", TOKEN_HAS_TRAVERSE_PRIVILEGE | TOKEN_HAS_IMPERSONATE_PRIVILEGE | TOKEN_NOT_LOW),
        "medium": _Profile(USER_SID, user_common + [("S-1-16-8192", INTEGRITY | INTEGRITY_ENABLED)],
                           USER_PRIVS, (23,), "S-1-16-8192", b"User32 ",
                           TOKEN_HAS_TRAVERSE_PRIVILEGE | TOKEN_NOT_LOW | 0x200 | 0x800),
        "admin": _Profile(USER_SID, admin, (5, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25, 28,
                                            29, 30, 33, 34, 35),
                          (20, 23, 29, 30), "S-1-16-12288", b"User32 ",
                          TOKEN_HAS_TRAVERSE_PRIVILEGE | TOKEN_NOT_LOW | TOKEN_HAS_IMPERSONATE_PRIVILEGE,
                          default_owner=len(admin) - 1),
        "appcontainer": _Profile(USER_SID, user_common + [("S-1-15-2-1", STD), ("S-1-16-4096", INTEGRITY | INTEGRITY_ENABLED)],
                                 (19, 23, 25, 33, 34), (23,), "S-1-16-4096", b"User32 ",
                                 TOKEN_HAS_TRAVERSE_PRIVILEGE | TOKEN_LOWBOX,
                                 package=PACKAGE_SID,
                                 capabilities=[("S-1-15-3-1", ENABLED), ("S-1-15-3-8", ENABLED),
                                               ("S-1-15-3-1024-1065365936-1281604716-3511738428-1654721687-"
                                                "432734479-3232135806-4053264122-3456934681", ENABLED)]),
    }


def _elevation(groups: List[Tuple[str, int]]) -> str:
    """TOKEN_ELEVATION_TYPE the profile stands for: Full (Administrators enabled), Limited (the
    deny-only half of a split token), Default (no Administrators membership)."""
    for sid, attributes in groups:
        if sid == "S-1-5-32-544":
            return "Limited" if attributes & DENY_ONLY else ("Full" if attributes & ENABLED else "Default")
    return "Default"


def profile_for(proc: Any) -> str:
    """Which token a scenario process gets (by its role in the standard scenario)."""
    name = proc.name.lower()
    if name == "searchapp.exe":
        return "appcontainer"
    if name == "rootkit.exe":
        return "admin"
    if proc.wow64:
        return "restricted"                 # the 32-bit installer runs with a restricted token
    if proc.session is not None and proc.session >= 1 and name not in ("winlogon.exe", "csrss.exe"):
        return "medium"
    return "system"


class SecurityPlanter:
    """Writes the objects described in the module docstring through a scenario builder."""

    def __init__(self, builder: Any) -> None:
        self.b = builder
        self.facts = builder.facts
        self.mem = builder.mem
        self.pool = builder.pool
        self.family = builder.family
        self.facts_out: Dict[str, Any] = {"tokens": {}, "handles": {}, "jobs": {}, "objects": {},
                                          "impersonation": {}, "keys": {}, "notes": []}
        self.directories: Dict[str, int] = {}
        self.kcbs: Dict[str, int] = {}

    # ---- small pieces
    def sid(self, text: str) -> int:
        revision, authority, subs = _sid_bytes(text)
        f, m = self.facts, self.mem
        size = f.offset("_SID", "SubAuthority") + 4 * max(1, len(subs))
        address = self.pool.alloc(size, 8)
        m.put("_SID", address, "Revision", revision)
        m.put("_SID", address, "SubAuthorityCount", len(subs))
        m.write(address + f.offset("_SID", "IdentifierAuthority"), authority)
        element = f.field("_SID", "SubAuthority[0]").size
        for i, sub in enumerate(subs):
            m.write(address + f.offset("_SID", "SubAuthority") + element * i, sub.to_bytes(element, "little"))
        return address

    def sid_array(self, entries: List[Tuple[str, int]]) -> int:
        f, m = self.facts, self.mem
        size = f.size("_SID_AND_ATTRIBUTES")
        array = self.pool.alloc(max(1, len(entries)) * size, 8)
        for i, (text, attributes) in enumerate(entries):
            m.put("_SID_AND_ATTRIBUTES", array + i * size, "Sid", self.sid(text))
            m.put("_SID_AND_ATTRIBUTES", array + i * size, "Attributes", attributes)
        return array

    def put_luid(self, token: int, path: str, value: int) -> None:
        self.mem.put("_TOKEN", token, path + ".LowPart", value & 0xFFFFFFFF)
        self.mem.put("_TOKEN", token, path + ".HighPart", value >> 32)

    # ---- tokens
    def fill_token(self, token: int, profile: _Profile, session: int, token_id: int,
                   impersonation_level: Optional[str] = None) -> Dict[str, Any]:
        f, m = self.facts, self.mem
        entries = [(profile.user, 0)] + list(profile.groups)
        m.put("_TOKEN", token, "UserAndGroups", self.sid_array(entries))
        m.put("_TOKEN", token, "UserAndGroupCount", len(entries))
        integrity_index = next(i for i, (s, _a) in enumerate(entries) if s == profile.integrity)
        m.put("_TOKEN", token, "IntegrityLevelIndex", integrity_index)
        m.put("_TOKEN", token, "PrimaryGroup", self.sid(profile.user if profile.user == "S-1-5-18"
                                                          else "S-1-5-21-1004336348-1177238915-682003330-513"))
        m.put("_TOKEN", token, "DefaultOwnerIndex", profile.default_owner)
        present = sum(1 << p for p in profile.present)
        enabled = sum(1 << p for p in profile.enabled)
        m.put("_TOKEN", token, "Privileges.Present", present)
        m.put("_TOKEN", token, "Privileges.Enabled", enabled)
        m.put("_TOKEN", token, "Privileges.EnabledByDefault", enabled)
        m.put_bytes("_TOKEN", token, "TokenSource.SourceName", profile.source.ljust(8, b" ")[:8])
        m.put("_TOKEN", token, "TokenSource.SourceIdentifier.LowPart", 0x3E6 if profile.user == "S-1-5-18" else 0x1B2F)
        m.put("_TOKEN", token, "TokenFlags", profile.flags)
        m.put("_TOKEN", token, "SessionId", session)
        m.put("_TOKEN", token, "MandatoryPolicy", 0x3 if profile.user == "S-1-5-18" else 0x1)
        self.put_luid(token, "TokenId", token_id)
        self.put_luid(token, "ModifiedId", token_id + 1)
        self.put_luid(token, "ParentTokenId", 0 if profile.user == "S-1-5-18" else 0x3E7)
        m.put("_TOKEN", token, "RestrictedSidCount", len(profile.restricted))
        m.put("_TOKEN", token, "RestrictedSids", self.sid_array(profile.restricted) if profile.restricted else 0)
        types = f.enum("_TOKEN_TYPE")
        levels = f.enum("_SECURITY_IMPERSONATION_LEVEL")
        if impersonation_level:
            m.put("_TOKEN", token, "TokenType", types["TokenImpersonation"])
            m.put("_TOKEN", token, "ImpersonationLevel", levels[impersonation_level])
        package = None
        capabilities: List[Tuple[str, int]] = []
        if profile.package:
            if f.has("_TOKEN", "Package"):
                m.put("_TOKEN", token, "Package", self.sid(profile.package))
                m.put("_TOKEN", token, "Capabilities", self.sid_array(profile.capabilities))
                m.put("_TOKEN", token, "CapabilityCount", len(profile.capabilities))
                package, capabilities = profile.package, list(profile.capabilities)
            else:
                m.put("_TOKEN", token, "TokenFlags", profile.flags & ~TOKEN_LOWBOX)
                self.facts_out["notes"].append("build %s has no _TOKEN.Package: no AppContainer token"
                                               % self.b.choice.version)
        return {"address": token, "user": profile.user, "groups": list(profile.groups),
                "integrity": profile.integrity, "present": sorted(profile.present),
                "enabled": sorted(profile.enabled), "enabled_by_default": sorted(profile.enabled),
                "source": profile.source.decode().strip(), "flags": profile.flags if package or not profile.package
                else profile.flags & ~TOKEN_LOWBOX,
                "package": package, "capabilities": capabilities, "session": session,
                "restricted": list(profile.restricted),
                "token_id": token_id, "impersonation_level": impersonation_level,
                "elevation": _elevation(profile.groups)}

    def plant_tokens(self) -> None:
        profiles = _profiles()
        for proc in self.b.spec.processes:
            token = self.b.tokens.get(proc.pid)
            if token is None:
                continue
            kind = profile_for(proc)
            planted = self.fill_token(token, profiles[kind], proc.session or 0, 0x1000 + proc.pid)
            planted["profile"] = kind
            self.facts_out["tokens"][proc.pid] = planted
            for thread in proc.threads:
                if thread.impersonating and thread.tid in self.b.ethread and not proc.exited:
                    self.plant_impersonation(proc, thread.tid, profiles["medium"])

    def plant_impersonation(self, proc: Any, tid: int, profile: _Profile) -> None:
        f, m = self.facts, self.mem
        token = self.b.pool_object(b"Toke", "_TOKEN", "Token", pointer_count=2, handle_count=0)
        level = "SecurityImpersonation"
        planted = self.fill_token(token, profile, 1, 0x9000 + tid, impersonation_level=level)
        et = self.b.ethread[tid]
        level_value = f.enum("_SECURITY_IMPERSONATION_LEVEL")[level]
        m.put("_ETHREAD", et, "ClientSecurity.ImpersonationData", token)
        m.put("_ETHREAD", et, "ClientSecurity.ImpersonationLevel", level_value)
        m.put("_ETHREAD", et, "ClientSecurity.EffectiveOnly", 0)
        m.put_if("_ETHREAD", et, "ActiveImpersonationInfo", 1)
        self.facts_out["impersonation"][tid] = {"thread": et, "token": token, "level": level, "pid": proc.pid,
                                                "user": planted["user"]}

    # ---- object types, directories, named objects
    def add_types(self) -> None:
        b, m = self.b, self.mem
        table = b.sym("ObTypeIndexTable")
        index = max(b.type_index.values()) + 1
        for name in EXTRA_TYPES:
            if name in b.type_index:
                continue
            body = b.pool_object(b"ObjT", "_OBJECT_TYPE", "Type", pointer_count=2)
            m.put("_OBJECT_TYPE", body, "Index", index)
            buffer = self.pool.alloc(2 * len(name) + 2, 8)
            m.unicode_string("_OBJECT_TYPE", body, "Name", name, buffer)
            m.list_init(body + self.facts.offset("_OBJECT_TYPE", "TypeList"))
            m.u64(table + 8 * index, body)
            b.type_index[name] = index
            b.types[name] = body
            index += 1

    def info_sizes(self) -> Dict[int, int]:
        sizes = {}
        for bit, name in INFO_MASK_HEADERS:
            sizes[bit] = self.facts.size(name) if self.facts.has_type(name) else 0
        # Windows 10's extended/padding headers (bits 0x40, 0x80) where the ISF has them
        for bit, name in ((0x40, "_OBJECT_HEADER_EXTENDED_INFO"), (0x80, "_OBJECT_HEADER_PADDING_INFO")):
            sizes[bit] = self.facts.size(name) if self.facts.has_type(name) else 0
        return sizes

    def plant_info_mask_table(self) -> None:
        """`ObpInfoMaskToOffset[mask]`: bytes below the header of all optional headers in `mask`."""
        if not self.facts.has_symbol("ObpInfoMaskToOffset"):
            return
        sizes = self.info_sizes()
        table = bytes(sum(size for bit, size in sizes.items() if mask & bit) & 0xFF for mask in range(256))
        self.mem.write(self.b.sym("ObpInfoMaskToOffset"), table)

    def named_object(self, type_name: str, tag: bytes, body_size: int, name: Optional[str],
                     directory: int, info_mask: int = 0x2, handle_count: int = 1) -> int:
        """A pool block: optional headers (InfoMask order), `_OBJECT_HEADER`, body. Returns the body."""
        f, m, b = self.facts, self.mem, self.b
        sizes = self.info_sizes()
        optional = sum(sizes[bit] for bit, _n in INFO_MASK_HEADERS if info_mask & bit)
        pool_header = f.size("_POOL_HEADER")
        header_size = f.offset("_OBJECT_HEADER", "Body")
        total = -(-(pool_header + optional + header_size + body_size) // 16) * 16
        block = self.pool.alloc(total, 16)
        m.put("_POOL_HEADER", block, "BlockSize", total // 16)
        m.put("_POOL_HEADER", block, "PoolType", 2)
        m.put("_POOL_HEADER", block, "PoolTag", int.from_bytes(tag, "little"))
        header = block + pool_header + optional
        body = header + header_size
        m.put("_OBJECT_HEADER", header, "PointerCount", handle_count + 1)
        m.put("_OBJECT_HEADER", header, "HandleCount", handle_count)
        m.put("_OBJECT_HEADER", header, "TypeIndex", b.encoded_type_index(type_name, header))
        m.put("_OBJECT_HEADER", header, "InfoMask", info_mask)
        below = 0
        for bit, type_ in INFO_MASK_HEADERS:
            if not info_mask & bit:
                continue
            below += sizes[bit]
            at = header - below
            if bit == 0x2:
                m.put("_OBJECT_HEADER_NAME_INFO", at, "Directory", directory)
                if name is not None:
                    buffer = self.pool.alloc(2 * len(name) + 2, 8)
                    m.unicode_string("_OBJECT_HEADER_NAME_INFO", at, "Name", name, buffer)
                m.put("_OBJECT_HEADER_NAME_INFO", at, "ReferenceCount", 1)
            elif bit == 0x1:
                m.list_init(at + f.offset("_OBJECT_HEADER_CREATOR_INFO", "TypeList"))
                m.put("_OBJECT_HEADER_CREATOR_INFO", at, "CreatorUniqueProcess", 4)
            elif bit == 0x8:
                m.put("_OBJECT_HEADER_QUOTA_INFO", at, "PagedPoolCharge", 0x400)
        b.headers[body] = header
        return body

    def directory(self, path: str) -> int:
        """The `_OBJECT_DIRECTORY` body for an absolute path, creating the chain."""
        if path in self.directories:
            return self.directories[path]
        size = self.facts.size("_OBJECT_DIRECTORY")
        if path == "\\":
            body = self.named_object("Directory", b"Dire", size, "\\", 0)
            self.mem.u64(self.b.sym("ObpRootDirectoryObject"), body)
        else:
            parent_path, _, leaf = path.rpartition("\\")
            parent = self.directory(parent_path or "\\")
            body = self.named_object("Directory", b"Dire", size, leaf, parent)
        self.directories[path] = body
        return body

    def named(self, type_name: str, path: str, tag: bytes, body_size: int, info_mask: int = 0x2) -> int:
        parent, _, leaf = path.rpartition("\\")
        directory = self.directory(parent or "\\")
        body = self.named_object(type_name, tag, body_size, leaf, directory, info_mask)
        self.facts_out["objects"][body] = {"type": type_name, "name": path}
        return body

    def file_object(self, device: int, file_name: str) -> int:
        f, m = self.facts, self.mem
        body = self.named_object("File", b"File", f.size("_FILE_OBJECT"), None, 0, info_mask=0)
        m.put("_FILE_OBJECT", body, "Type", IO_TYPE_FILE)
        m.put("_FILE_OBJECT", body, "Size", f.size("_FILE_OBJECT"))
        m.put("_FILE_OBJECT", body, "DeviceObject", device)
        buffer = self.pool.alloc(2 * len(file_name) + 2, 8)
        m.unicode_string("_FILE_OBJECT", body, "FileName", file_name, buffer)
        self.facts_out["objects"][body] = {"type": "File", "name": "\\Device\\HarddiskVolume3" + file_name,
                                           "file_name": file_name}
        return body

    # ---- registry keys
    def name_block(self, name: str) -> int:
        """A `_CM_NAME_CONTROL_BLOCK` holding `name` compressed (8-bit), as the kernel stores ASCII names."""
        f, m = self.facts, self.mem
        data = name.encode("latin-1")
        block = self.pool.alloc(max(f.size("_CM_NAME_CONTROL_BLOCK"), f.offset("_CM_NAME_CONTROL_BLOCK", "Name")
                                    + len(data)), 16)
        m.put("_CM_NAME_CONTROL_BLOCK", block, "Compressed", 1)
        m.put_if("_CM_NAME_CONTROL_BLOCK", block, "RefCount", 1)
        m.put("_CM_NAME_CONTROL_BLOCK", block, "NameLength", len(data))
        m.write(block + f.offset("_CM_NAME_CONTROL_BLOCK", "Name"), data)
        return block

    def new_kcb(self, name: str, parent: int, flags: int) -> int:
        f, m = self.facts, self.mem
        kcb = self.pool.alloc(f.size("_CM_KEY_CONTROL_BLOCK"), 16)
        m.put("_CM_KEY_CONTROL_BLOCK", kcb, "RefCount", 1)
        m.put("_CM_KEY_CONTROL_BLOCK", kcb, "ParentKcb", parent)
        m.put("_CM_KEY_CONTROL_BLOCK", kcb, "NameBlock", self.name_block(name))
        m.put("_CM_KEY_CONTROL_BLOCK", kcb, "Flags", flags)
        return kcb

    def kcb(self, path: str) -> int:
        """The KCB of a key path (`\\REGISTRY\\...`), creating the chain up to the root KCB."""
        if path in self.kcbs:
            return self.kcbs[path]
        parent_path, _, leaf = path.rpartition("\\")
        parent = self.kcb(parent_path) if parent_path else 0
        if path in HIVE_LINKS and self.facts.has("_CM_KEY_BODY", "Trans"):
            link = self.new_kcb(leaf, parent, KEY_HIVE_EXIT)
            guid = uuid.uuid5(CONTAINER_ID, path)
            kcb = self.new_kcb(HIVE_ROOT_CELL_NAME % str(guid).upper(), link, KEY_HIVE_ENTRY)
        else:
            kcb = self.new_kcb(leaf, parent, KEY_HIVE_ENTRY if path in HIVE_LINKS else 0)
        self.kcbs[path] = kcb
        return kcb

    def key_object(self, path: str) -> int:
        """A Key object: `_CM_KEY_BODY` pointing at the path's KCB (keys have no object name)."""
        f, m = self.facts, self.mem
        body = self.named_object("Key", b"Key ", f.size("_CM_KEY_BODY"), None, 0, info_mask=0)
        m.put("_CM_KEY_BODY", body, "Type", CM_KEY_BODY_TYPE)
        m.put("_CM_KEY_BODY", body, "KeyControlBlock", self.kcb(path))
        if f.has("_CM_KEY_BODY", "KeyBodyList"):
            m.list_init(body + f.offset("_CM_KEY_BODY", "KeyBodyList"))
        self.facts_out["objects"][body] = {"type": "Key", "name": path, "kcb": self.kcbs[path]}
        self.facts_out["keys"][body] = path
        return body

    # ---- handle tables
    def write_table(self, entries: Dict[int, Tuple[int, int, int]], levels: int, pid: int, owner: int) -> int:
        """A `_HANDLE_TABLE` with `levels` pointer levels; entries: index -> (header, access, OBJ_* attrs)."""
        f, m, b = self.facts, self.mem, self.b
        table = b.pool_object(b"Obtb", "_HANDLE_TABLE", None)
        entry_size = f.size("_HANDLE_TABLE_ENTRY")
        per_page = HANDLE_PAGE_SIZE // entry_size
        modern = f.has("_HANDLE_TABLE_ENTRY", "ObjectPointerBits")
        leaves: Dict[int, int] = {}
        for index, (header, access, attrs) in sorted(entries.items()):
            if index % per_page == 0:
                raise ValueError("handle index %d is reserved" % index)
            leaf = index // per_page
            if leaf not in leaves:
                leaves[leaf] = self.pool.page()
                m.u64(leaves[leaf], 0)
            at = leaves[leaf] + (index % per_page) * entry_size
            if modern:
                m.put("_HANDLE_TABLE_ENTRY", at, "ObjectPointerBits", (header & 0xFFFFFFFFFFFF) >> 4)
                m.put("_HANDLE_TABLE_ENTRY", at, "Unlocked", 1)
                m.put("_HANDLE_TABLE_ENTRY", at, "RefCnt", 0x7FFF)
                m.put("_HANDLE_TABLE_ENTRY", at, "Attributes", attrs)
                m.put("_HANDLE_TABLE_ENTRY", at, "GrantedAccessBits", access)
            else:
                m.put("_HANDLE_TABLE_ENTRY", at, "Object",
                      header | LEGACY_LOCK_BIT | (attrs & (OBJ_INHERIT | OBJ_AUDIT_OBJECT_CLOSE)))
                m.put("_HANDLE_TABLE_ENTRY", at, "GrantedAccess",
                      access | (LEGACY_PROTECT_CLOSE_BIT if attrs & OBJ_PROTECT_CLOSE else 0))
        code = link_entry_pages(leaves, levels, f.field("_HANDLE_TABLE", "TableCode").size,
                                self.pool.page, m.write)
        m.put("_HANDLE_TABLE", table, "TableCode", code)
        m.put("_HANDLE_TABLE", table, "NextHandleNeedingPool", (max(leaves) + 1) * per_page * 4 if leaves else 0)
        m.put_if("_HANDLE_TABLE", table, "HandleCount", len(entries))
        m.put_if("_HANDLE_TABLE", table, "UniqueProcessId", pid)
        m.put_if("_HANDLE_TABLE", table, "QuotaProcess", owner)
        m.list_init(table + f.offset("_HANDLE_TABLE", "HandleTableList"))
        return table

    def plant_handles(self) -> None:
        b = self.b
        try:
            explorer_spec = next(p for p in b.spec.processes if p.name.lower() == "explorer.exe" and not p.exited)
        except StopIteration:
            return
        record = next(r for r in b.planted.processes if r["pid"] == explorer_spec.pid)
        ep = record["address"]
        device = self.named("Device", "\\Device\\HarddiskVolume3", b"Devi",
                            self.facts.size("_DEVICE_OBJECT"), info_mask=0x2)
        self.mem.put_if("_DEVICE_OBJECT", device, "Type", IO_TYPE_DEVICE)
        section_size = self.facts.size("_SECTION") if self.facts.has_type("_SECTION") else 0x40
        event_size = self.facts.size("_KEVENT")
        mutant_size = self.facts.size("_KMUTANT") if self.facts.has_type("_KMUTANT") else 0x38
        typed: List[Tuple[int, int, int]] = [      # (body, access, attributes)
            (self.file_object(device, "\\Windows\\explorer.exe"), 0x00120089, 0),
            (self.file_object(device, "\\Windows\\System32\\en-US\\explorer.exe.mui"), 0x00100001, OBJ_INHERIT),
            (self.file_object(device, "\\Users\\user\\AppData\\Local\\IconCache.db"), 0x0012019F, 0),
            (self.named("Section", "\\KnownDlls\\ntdll.dll", b"Sect", section_size, info_mask=0x3), 0x000F0005, OBJ_PROTECT_CLOSE),
            (self.named("Event", "\\Sessions\\1\\BaseNamedObjects\\ShellDesktopSwitchEvent", b"Even", event_size,
                        info_mask=0xB), 0x001F0003, OBJ_INHERIT | OBJ_PROTECT_CLOSE),
            (self.named("Mutant", "\\Sessions\\1\\BaseNamedObjects\\SessionImmersiveColorMutex", b"Muta", mutant_size),
             0x001F0001, OBJ_AUDIT_OBJECT_CLOSE),
            (self.directory("\\KnownDlls"), 0x00000003, 0),
            (self.directory("\\Sessions\\1\\BaseNamedObjects"), 0x0000000F, 0),
        ]
        if all(self.facts.has_type(t) for t in ("_CM_KEY_BODY", "_CM_KEY_CONTROL_BLOCK", "_CM_NAME_CONTROL_BLOCK")):
            # KEY_READ (0x20019), KEY_ALL_ACCESS (0xF003F) and KEY_QUERY_VALUE|KEY_NOTIFY (0x11), winnt.h
            typed += [(self.key_object(path), access, 0)
                      for path, access in zip(PLANTED_KEYS, (0x00020019, 0x000F003F, 0x00020019, 0x00000011))]
        else:
            self.facts_out["notes"].append("build %s has no registry key types: no Key handles" % b.choice.version)
        own = [ep, b.tokens[explorer_spec.pid]] + [t["address"] for t in record["threads"]]
        count = max(explorer_spec.handles, len(typed) + 1)
        per_page = HANDLE_PAGE_SIZE // self.facts.size("_HANDLE_TABLE_ENTRY")
        # indices: the typed objects first, the rest spread over leaf pages 0.. and one far leaf
        indices: List[int] = []
        index = 1
        far_leaf = 300                              # a leaf 300 pages in: needs the pointer levels
        far = max(1, count // 10)
        while len(indices) < count - far:
            if index % per_page:
                indices.append(index)
            index += 1
        index = far_leaf * per_page + 1
        while len(indices) < count:
            if index % per_page:
                indices.append(index)
            index += 1
        entries: Dict[int, Tuple[int, int, int]] = {}
        planted: List[Dict[str, Any]] = []
        for n, idx in enumerate(indices):
            if n < len(typed):
                body, access, attrs = typed[n]
            else:
                body, access, attrs = own[n % len(own)], 0x1FFFFF, 0
            entries[idx] = (b.headers[body], access, attrs)
            planted.append({"handle": idx * 4, "object": body, "access": access, "attributes": attrs})
        table = self.write_table(entries, 2, explorer_spec.pid, ep)
        self.mem.put("_EPROCESS", ep, "ObjectTable", table)
        record["handle_table"] = table
        record["handle_count"] = len(entries)
        self.facts_out["handles"][explorer_spec.pid] = {"table": table, "levels": 2, "entries": planted}

    # ---- jobs and silos
    def init_job(self, job: int, limits: int, active_limit: int = 0) -> None:
        f, m = self.facts, self.mem
        m.put("_EJOB", job, "LimitFlags", limits)
        m.put("_EJOB", job, "ActiveProcessLimit", active_limit)
        m.put_if("_EJOB", job, "JobMemoryLimit", 0x40000000 if limits & 0x200 else 0)
        for head in ("ProcessListHead", "JobLinks", "ChildJobListHead", "SiblingJobLinks"):
            if f.has("_EJOB", head):
                m.list_init(job + f.offset("_EJOB", head))

    def plant_jobs(self) -> None:
        b, f, m = self.b, self.facts, self.mem
        jobbed = [(spec, rec) for spec, rec in zip(b.spec.processes, b.planted.processes) if rec.get("job")]
        for spec, rec in jobbed:
            job = rec["job"]
            members_head = job + f.offset("_EJOB", "ProcessListHead")
            self.init_job(job, JOB_LIMITS, 4)
            m.list_link(members_head, [rec["address"] + f.offset("_EPROCESS", "JobLinks")])
            m.put("_EJOB", job, "ActiveProcesses", 1)
            m.put("_EJOB", job, "TotalProcesses", 1)
            m.put("_EJOB", job, "TotalPageFaultCount", 0x1234)
            m.put("_EJOB", job, "SessionId", spec.session or 0)
            fact: Dict[str, Any] = {"members": [spec.pid], "limit_flags": JOB_LIMITS, "active_limit": 4,
                                    "parent": None, "silo": False, "server_silo": False, "container_id": None}
            if f.has("_EJOB", "ParentJob"):
                parent = b.pool_object(b"Job ", "_EJOB", "Job", pointer_count=2, handle_count=1)
                self.init_job(parent, PARENT_JOB_LIMITS)
                m.put("_EJOB", parent, "ActiveProcesses", 1)
                m.put("_EJOB", parent, "TotalProcesses", 1)
                m.put("_EJOB", job, "ParentJob", parent)
                m.put("_EJOB", job, "RootJob", parent)
                m.put("_EJOB", parent, "RootJob", parent)
                m.put_if("_EJOB", job, "NestingDepth", 1)
                m.list_link(parent + f.offset("_EJOB", "ChildJobListHead"),
                            [job + f.offset("_EJOB", "SiblingJobLinks")])
                fact["parent"] = parent
                self.facts_out["jobs"][parent] = {"members": [], "limit_flags": PARENT_JOB_LIMITS,
                                                  "active_limit": 0, "parent": None, "children": [job],
                                                  "silo": False, "server_silo": False, "container_id": None}
            self.facts_out["jobs"][job] = fact
        self.plant_silo()

    def plant_silo(self) -> None:
        b, f, m = self.b, self.facts, self.mem
        if not (f.has("_EJOB", "Silo") and f.has("_EJOB", "ServerSiloGlobals") and f.has("_EPROCESS", "ServerSilo")):
            self.facts_out["notes"].append("build %s has no server silos" % b.choice.version)
            return
        try:
            spec, rec = next((s, r) for s, r in zip(b.spec.processes, b.planted.processes)
                             if s.pid == 812 and not s.exited)
        except StopIteration:
            return
        silo = b.pool_object(b"Job ", "_EJOB", "Job", pointer_count=3, handle_count=1)
        self.init_job(silo, SILO_LIMITS, 64)
        m.put("_EJOB", silo, "Silo", 1)
        size = f.size("_ESERVERSILO_GLOBALS") if f.has_type("_ESERVERSILO_GLOBALS") else 0x100
        globals_ = self.pool.alloc(size, 16)
        m.put("_EJOB", silo, "ServerSiloGlobals", globals_)
        m.write(silo + f.offset("_EJOB", "ContainerId"), CONTAINER_ID.bytes_le)
        m.put_if("_EJOB", silo, "JobId", 0x2A)
        m.list_link(silo + f.offset("_EJOB", "ProcessListHead"), [rec["address"] + f.offset("_EPROCESS", "JobLinks")])
        m.put("_EJOB", silo, "ActiveProcesses", 1)
        m.put("_EJOB", silo, "TotalProcesses", 1)
        m.put("_EPROCESS", rec["address"], "Job", silo)
        m.put("_EPROCESS", rec["address"], "ServerSilo", silo)
        rec["job"] = silo
        self.facts_out["jobs"][silo] = {"members": [spec.pid], "limit_flags": SILO_LIMITS, "active_limit": 64,
                                        "parent": None, "silo": True, "server_silo": True,
                                        "container_id": "{%s}" % CONTAINER_ID, "server_silo_globals": globals_}

    # ---- all
    def plant(self) -> Dict[str, Any]:
        self.add_types()
        self.plant_info_mask_table()
        self.plant_tokens()
        self.plant_handles()
        self.plant_jobs()
        return self.facts_out


def plant_security(builder: Any) -> Dict[str, Any]:
    """The scenario builder's hook (see the module docstring); returns and stores the facts on
    `builder.planted.security`."""
    facts = SecurityPlanter(builder).plant()
    builder.planted.security = facts
    return facts


__all__ = ["CONTAINER_ID", "PACKAGE_SID", "SecurityPlanter", "USER_SID", "plant_security", "profile_for"]
