"""Access tokens (`_TOKEN`): user, groups, privileges, integrity, identity and AppContainer facts.

Why: "who is this process" is the first question about it. `EPROCESS.Token` is an `_EX_FAST_REF`
(the reference count in the low bits is masked with the width the layout gives `RefCnt`); a
thread that impersonates holds its token in `ETHREAD.ClientSecurity` (`ImpersonationToken` with
the impersonation level and effective-only bits in its low bits, widths from the layout) and says
so with `ActiveImpersonationInfo`.

Everything is decoded from the build's layout: the group array is `UserAndGroups` /
`UserAndGroupCount` (`_SID_AND_ATTRIBUTES`), privileges the three `_SEP_TOKEN_PRIVILEGES` masks,
the integrity label the group at `IntegrityLevelIndex`, the AppContainer package SID and
capabilities `Package` / `Capabilities` / `CapabilityCount` where the build has them (8+).
Names of privileges, group attributes and flags come from `privileges.py`, of SIDs from `sids.py`.
Counts read from the dump are bounded; every value may be a `Fault`.
"""
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union, cast

from pykd_ext.errors import MemoryReadError
from pykd_ext.kernel.privileges import (GROUP_ATTRIBUTES, MANDATORY_POLICY, SE_GROUP_ENABLED,
                                        SE_GROUP_USE_FOR_DENY_ONLY, TOKEN_FLAGS, TOKEN_LOWBOX,
                                        bit_names, privileges_from_masks)
from pykd_ext.kernel.sids import SidReader, integrity_level, sid_name
from pykd_ext.kernel.view import StructView
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

#: The most SIDs a token's user+group array (and each restricted-SID or capability array) is
#: trusted to hold: the access token's group field holds at most 1,024 SIDs (Microsoft KB 328889,
#: "Users who are members of more than 1,015 groups may fail logon authentication"). A larger
#: count (a ULONG a corrupt token can set to anything) is implausible: it gets a note and only
#: the leading entries that decode to SIDs are shown.
MAX_TOKEN_SIDS = 1024
#: The Administrators alias (S-1-5-32-544): what makes a split token "Full" or "Limited".
ADMINISTRATORS = "S-1-5-32-544"

Value = Union[int, str, bool, None, Fault]


def luid_text(high: Any, low: Any) -> Union[str, Fault, None]:
    """`(0,3e7)` as `!token` prints a LUID."""
    for part in (high, low):
        if isinstance(part, Fault):
            return part
    if high is None or low is None:
        return None
    return "(%x,%x)" % (high, low)


class Token:
    """The `_TOKEN` at `address` (a body address; the fast-ref bits already masked)."""

    def __init__(self, ctx: "KernelContext", address: int) -> None:
        self.ctx = ctx
        self.address = address
        self.layout = ctx.layouts.type("_TOKEN")
        self.view = StructView(ctx.space, self.layout, address)
        self.sids = SidReader(ctx.space, ctx.layouts)
        self._cache: Dict[str, Any] = {}

    @property
    def readable(self) -> bool:
        return not isinstance(self.view["TokenId.LowPart"], Fault)

    def field(self, path: str) -> Value:
        return self.view.get(path)

    def _luid(self, path: str) -> Union[str, Fault, None]:
        return luid_text(self.field(path + ".HighPart"), self.field(path + ".LowPart"))

    def _luid_value(self, path: str) -> Value:
        high, low = self.field(path + ".HighPart"), self.field(path + ".LowPart")
        if isinstance(high, int) and isinstance(low, int):
            return (high << 32) | low
        return high if isinstance(high, Fault) else low

    # ---- SID arrays
    def _sid_capacity(self, pointer: int, entry_size: int) -> Tuple[int, str]:
        """How many `_SID_AND_ATTRIBUTES` the array at `pointer` can hold, and why: the rest of
        the token's variable part when the array lies in it (`VariablePart`/`VariableLength`,
        where the kernel places a token's SID arrays: ReactOS `SepCreateToken`), never more than
        `MAX_TOKEN_SIDS`."""
        if self.view.has("VariablePart") and self.view.has("VariableLength"):
            length = self.field("VariableLength")
            start = self.address + self.layout.offset("VariablePart")
            if isinstance(length, int) and start <= pointer < start + length:
                room = (start + length - pointer) // max(entry_size, 1)
                if room < MAX_TOKEN_SIDS:
                    return room, "its variable part (VariableLength %d) has room for %d" % (length, room)
        return MAX_TOKEN_SIDS, "a token holds at most %d SIDs" % MAX_TOKEN_SIDS

    def _note(self, text: str) -> None:
        """A note for the command (through the context, which every command reports)."""
        notes = getattr(self.ctx, "notes", None)
        if isinstance(notes, list) and text not in notes:
            notes.append(text)

    def _sid_array(self, pointer_path: str, count_path: str) -> Union[List[Dict[str, Any]], Fault]:
        pointer = self.field(pointer_path)
        count = self.field(count_path)
        if isinstance(pointer, Fault):
            return pointer
        if isinstance(count, Fault):
            return count
        if not pointer or not count:
            return []
        entry = self.ctx.layouts.type("_SID_AND_ATTRIBUTES")
        bound, why = self._sid_capacity(int(pointer), entry.size)
        implausible = int(count) > bound
        n = min(int(count), bound)
        budget = getattr(self.ctx, "budget", None)
        if budget is not None:
            n = budget.take_entries(n)          # a spent budget shortens the array (its note says so)
        if implausible:
            # decode the readable prefix only: the count says nothing about where the array ends
            data, fault = self.ctx.space.read_partial(int(pointer), n * entry.size)
            if len(data) < entry.size and fault is not None:
                return fault
            n = min(n, len(data) // entry.size)
        else:
            try:
                data = self.ctx.space.read(int(pointer), n * entry.size)
            except MemoryReadError as err:
                return err.fault
        read_sid, read_attr = entry.reader("Sid"), entry.reader("Attributes")
        out: List[Dict[str, Any]] = []
        for i in range(n):
            base = i * entry.size
            sid = self.sids.read(read_sid(data, base))
            if implausible and not isinstance(sid, str):
                break                           # past the plausible part: garbage from here on
            attributes = read_attr(data, base)
            out.append({"sid": sid, "name": sid_name(sid) if isinstance(sid, str) else None,
                        "attributes": attributes,
                        "attribute_names": bit_names(attributes, GROUP_ATTRIBUTES)})
        if implausible:
            self._note("token at 0x%x: %s %d is implausible (%s); showing the first %d readable"
                       % (self.address, count_path, cast(int, count), why, len(out)))
        return out

    def user_and_groups(self) -> Union[List[Dict[str, Any]], Fault]:
        if "groups" not in self._cache:
            self._cache["groups"] = self._sid_array("UserAndGroups", "UserAndGroupCount")
        return self._cache["groups"]

    @property
    def user(self) -> Any:
        groups = self.user_and_groups()
        if isinstance(groups, Fault):
            return groups
        return groups[0] if groups else None

    @property
    def groups(self) -> Any:
        groups = self.user_and_groups()
        return groups if isinstance(groups, Fault) else groups[1:]

    def restricted_sids(self) -> Any:
        return self._sid_array("RestrictedSids", "RestrictedSidCount")

    def capabilities(self) -> Any:
        if not self.view.has("Capabilities"):
            return None
        return self._sid_array("Capabilities", "CapabilityCount")

    def package(self) -> Any:
        if not self.view.has("Package"):
            return None
        pointer = self.field("Package")
        if not isinstance(pointer, int) or not pointer:
            return pointer if isinstance(pointer, Fault) else None
        sid = self.sids.read(pointer)
        return {"sid": sid, "name": sid_name(sid) if isinstance(sid, str) else None}

    def primary_group(self) -> Any:
        pointer = self.field("PrimaryGroup")
        if not isinstance(pointer, int) or not pointer:
            return pointer if isinstance(pointer, Fault) else None
        return self.sids.read(pointer)

    # ---- privileges
    def privileges(self) -> Union[List[Dict[str, Any]], Fault]:
        masks = [self.field("Privileges." + name) for name in ("Present", "Enabled", "EnabledByDefault")]
        for mask in masks:
            if isinstance(mask, Fault):
                return mask
        # no Fault is left (returned above); the masks are ULONG64 fields: int or None
        return privileges_from_masks(*[int(cast(Optional[int], m) or 0) for m in masks])

    # ---- integrity, elevation
    def integrity_sid(self) -> Any:
        index = self.field("IntegrityLevelIndex")
        groups = self.user_and_groups()
        if isinstance(index, Fault):
            return index
        if isinstance(groups, Fault):
            return groups
        if isinstance(index, int) and 0 <= index < len(groups):
            sid = groups[index]["sid"]
            if isinstance(sid, str) and sid.startswith("S-1-16-"):
                return sid
        for entry in groups:            # fall back to the group marked as the integrity label
            if entry["attributes"] & 0x20 and isinstance(entry["sid"], str):
                return entry["sid"]
        return None

    def elevation_type(self) -> Optional[str]:
        """"Full" (Administrators enabled), "Limited" (Administrators deny-only: the filtered half
        of a split token), "Default" (no Administrators membership). Derived from the groups, as
        TOKEN_ELEVATION_TYPE documents the three cases."""
        groups = self.user_and_groups()
        if isinstance(groups, Fault):
            return None
        for entry in groups:
            if entry["sid"] == ADMINISTRATORS:
                if entry["attributes"] & SE_GROUP_USE_FOR_DENY_ONLY:
                    return "Limited"
                if entry["attributes"] & SE_GROUP_ENABLED:
                    return "Full"
        return "Default"

    # ---- identity
    def token_type(self) -> Value:
        value = self.field("TokenType")
        name = self.ctx.enum_name("_TOKEN_TYPE", value)
        return name if name is not None else value

    def impersonation_level(self) -> Value:
        value = self.field("ImpersonationLevel")
        name = self.ctx.enum_name("_SECURITY_IMPERSONATION_LEVEL", value)
        return name if name is not None else value

    def source(self) -> Dict[str, Any]:
        raw = self.view.raw("TokenSource.SourceName")
        name: Any = raw if isinstance(raw, Fault) else \
            bytes(raw).split(b"\0", 1)[0].decode("ascii", errors="backslashreplace").rstrip()
        return {"name": name, "id": self._luid("TokenSource.SourceIdentifier")}

    def flags(self) -> Value:
        return self.field("TokenFlags")

    def record(self) -> Dict[str, Any]:
        """The `token` command's JSON record."""
        flags = self.flags()
        policy = self.field("MandatoryPolicy")
        integrity = self.integrity_sid()
        capabilities = self.capabilities()
        package = self.package()
        return {
            "address": self.address,
            "session_id": self.field("SessionId"),
            "user": self.user,
            "groups": self.groups,
            "primary_group": self.primary_group(),
            "default_owner_index": self.field("DefaultOwnerIndex"),
            "privileges": self.privileges(),
            "integrity_sid": integrity,
            "integrity": integrity_level(integrity) if isinstance(integrity, str) else integrity,
            "authentication_id": self._luid("AuthenticationId"),
            "token_type": self.token_type(),
            "impersonation_level": self.impersonation_level(),
            "source": self.source(),
            "flags": flags,
            "flag_names": bit_names(flags, TOKEN_FLAGS) if isinstance(flags, int) else [],
            "mandatory_policy": policy,
            "mandatory_policy_names": bit_names(policy, MANDATORY_POLICY) if isinstance(policy, int) else [],
            "token_id": self._luid("TokenId"),
            "parent_token_id": self._luid("ParentTokenId"),
            "modified_id": self._luid("ModifiedId"),
            "token_id_value": self._luid_value("TokenId"),
            "elevation_type": self.elevation_type(),
            "restricted_sids": self.restricted_sids(),
            "restricted_sid_count": self.field("RestrictedSidCount"),
            "restricted_sids_pointer": self.field("RestrictedSids"),
            "appcontainer": bool(isinstance(flags, int) and flags & TOKEN_LOWBOX),
            "package": package,
            "capabilities": capabilities,
            "layout": self.ctx.layout_id,
        }


def process_token_address(ctx: "KernelContext", process: Any) -> Value:
    """The `_TOKEN` body of a process (`EPROCESS.Token`, fast-ref bits masked)."""
    return process.token


def thread_impersonation(ctx: "KernelContext", thread: Any) -> Dict[str, Any]:
    """{active, token, level, effective_only} of a thread (`ETHREAD.ClientSecurity`).

    `active` is `ActiveImpersonationInfo` (None when the build has no such bit); the token pointer
    has its low bits masked by the widths of `ImpersonationLevel` and `EffectiveOnly`."""
    view = thread.view
    active = view.get("ActiveImpersonationInfo")
    out: Dict[str, Any] = {"active": bool(active) if isinstance(active, int) else active,
                           "token": None, "level": None, "effective_only": None}
    if not view.has("ClientSecurity.ImpersonationData"):
        return out
    data = view["ClientSecurity.ImpersonationData"]
    if isinstance(data, Fault):
        out["token"] = data
        return out
    layout = ctx.layouts.type("_ETHREAD")
    low_bits = 0
    for path in ("ClientSecurity.ImpersonationLevel", "ClientSecurity.EffectiveOnly"):
        if layout.has_field(path):
            fl = layout.field(path)
            low_bits = max(low_bits, int(fl.bit_position or 0) + int(fl.bit_length or 0))
    token = data & ~((1 << low_bits) - 1) if data else 0
    if token and out["active"] is not False:
        level = view.get("ClientSecurity.ImpersonationLevel")
        name = ctx.enum_name("_SECURITY_IMPERSONATION_LEVEL", level)
        out["token"] = token
        out["level"] = name if name is not None else level
        out["effective_only"] = bool(view.get("ClientSecurity.EffectiveOnly"))
    return out


__all__ = ["MAX_TOKEN_SIDS", "Token", "luid_text", "process_token_address", "thread_impersonation"]
