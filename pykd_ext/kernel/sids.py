"""Security identifiers: `_SID` decoding, the `S-1-5-18` text form, and names of well-known SIDs.

Why a module of its own: tokens (user, groups, restricted SIDs, AppContainer package and
capabilities, the integrity label) and later job/silo output all show SIDs, and a WinDbg user
expects `S-1-5-32-544` next to `BUILTIN\\Administrators`. The `_SID` layout (Revision,
SubAuthorityCount, IdentifierAuthority, SubAuthority[]) comes from the build's layout; the names
are facts from Microsoft's documentation, kept in one table below.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

from pykd_ext.errors import MemoryReadError
from pykd_ext.memory.faults import Fault

#: A SID has at most 15 sub-authorities (winnt.h SID_MAX_SUB_AUTHORITIES); anything larger is
#: not a SID, so decoding stops instead of reading a runaway count.
SID_MAX_SUB_AUTHORITIES = 15
#: SID_REVISION (winnt.h): the only revision Windows has ever used.
SID_REVISION = 1

#: Well-known SIDs and the names `LookupAccountSid`/WinDbg show for them. Source: Microsoft Learn,
#: "Well-known SIDs" (win32/secauthz/well-known-sids), "Security identifiers"
#: (windows-server/identity/ad-ds/manage/understand-security-identifiers), "Mandatory Integrity
#: Control" (SECURITY_MANDATORY_*_RID) and the capability SIDs listed in "App capability
#: declarations" (SECURITY_CAPABILITY_* in winnt.h).
WELL_KNOWN_SIDS: Dict[str, str] = {
    "S-1-0-0": "NULL SID",
    "S-1-1-0": "Everyone",
    "S-1-2-0": "LOCAL",
    "S-1-2-1": "CONSOLE LOGON",
    "S-1-3-0": "CREATOR OWNER",
    "S-1-3-1": "CREATOR GROUP",
    "S-1-3-2": "CREATOR OWNER SERVER",
    "S-1-3-3": "CREATOR GROUP SERVER",
    "S-1-3-4": "OWNER RIGHTS",
    "S-1-5-1": "NT AUTHORITY\\DIALUP",
    "S-1-5-2": "NT AUTHORITY\\NETWORK",
    "S-1-5-3": "NT AUTHORITY\\BATCH",
    "S-1-5-4": "NT AUTHORITY\\INTERACTIVE",
    "S-1-5-6": "NT AUTHORITY\\SERVICE",
    "S-1-5-7": "NT AUTHORITY\\ANONYMOUS LOGON",
    "S-1-5-8": "NT AUTHORITY\\PROXY",
    "S-1-5-9": "NT AUTHORITY\\ENTERPRISE DOMAIN CONTROLLERS",
    "S-1-5-10": "NT AUTHORITY\\SELF",
    "S-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "S-1-5-12": "NT AUTHORITY\\RESTRICTED",
    "S-1-5-13": "NT AUTHORITY\\TERMINAL SERVER USER",
    "S-1-5-14": "NT AUTHORITY\\REMOTE INTERACTIVE LOGON",
    "S-1-5-15": "NT AUTHORITY\\This Organization",
    "S-1-5-17": "NT AUTHORITY\\IUSR",
    "S-1-5-18": "NT AUTHORITY\\SYSTEM",
    "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE",
    "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE",
    "S-1-5-32-544": "BUILTIN\\Administrators",
    "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests",
    "S-1-5-32-547": "BUILTIN\\Power Users",
    "S-1-5-32-548": "BUILTIN\\Account Operators",
    "S-1-5-32-549": "BUILTIN\\Server Operators",
    "S-1-5-32-550": "BUILTIN\\Print Operators",
    "S-1-5-32-551": "BUILTIN\\Backup Operators",
    "S-1-5-32-552": "BUILTIN\\Replicator",
    "S-1-5-32-554": "BUILTIN\\Pre-Windows 2000 Compatible Access",
    "S-1-5-32-555": "BUILTIN\\Remote Desktop Users",
    "S-1-5-32-556": "BUILTIN\\Network Configuration Operators",
    "S-1-5-32-558": "BUILTIN\\Performance Monitor Users",
    "S-1-5-32-559": "BUILTIN\\Performance Log Users",
    "S-1-5-32-562": "BUILTIN\\Distributed COM Users",
    "S-1-5-32-568": "BUILTIN\\IIS_IUSRS",
    "S-1-5-32-569": "BUILTIN\\Cryptographic Operators",
    "S-1-5-32-573": "BUILTIN\\Event Log Readers",
    "S-1-5-32-578": "BUILTIN\\Hyper-V Administrators",
    "S-1-5-32-580": "BUILTIN\\Remote Management Users",
    "S-1-5-64-10": "NT AUTHORITY\\NTLM Authentication",
    "S-1-5-64-14": "NT AUTHORITY\\SChannel Authentication",
    "S-1-5-64-21": "NT AUTHORITY\\Digest Authentication",
    "S-1-5-80-0": "NT SERVICE\\ALL SERVICES",
    "S-1-5-83-0": "NT VIRTUAL MACHINE\\Virtual Machines",
    "S-1-5-90-0": "Window Manager\\Window Manager Group",
    "S-1-5-113": "NT AUTHORITY\\Local account",
    "S-1-5-114": "NT AUTHORITY\\Local account and member of Administrators group",
    "S-1-5-1000": "NT AUTHORITY\\Other Organization",
    "S-1-15-2-1": "APPLICATION PACKAGE AUTHORITY\\ALL APPLICATION PACKAGES",
    "S-1-15-2-2": "APPLICATION PACKAGE AUTHORITY\\ALL RESTRICTED APPLICATION PACKAGES",
    "S-1-15-3-1": "APPLICATION PACKAGE AUTHORITY\\Your Internet connection",
    "S-1-15-3-2": "APPLICATION PACKAGE AUTHORITY\\Your Internet connection, including incoming "
                  "connections from the Internet",
    "S-1-15-3-3": "APPLICATION PACKAGE AUTHORITY\\Your home or work networks",
    "S-1-15-3-4": "APPLICATION PACKAGE AUTHORITY\\Your pictures library",
    "S-1-15-3-5": "APPLICATION PACKAGE AUTHORITY\\Your videos library",
    "S-1-15-3-6": "APPLICATION PACKAGE AUTHORITY\\Your music library",
    "S-1-15-3-7": "APPLICATION PACKAGE AUTHORITY\\Your documents library",
    "S-1-15-3-8": "APPLICATION PACKAGE AUTHORITY\\Your Windows credentials",
    "S-1-15-3-9": "APPLICATION PACKAGE AUTHORITY\\Software and hardware certificates or a smart card",
    "S-1-15-3-10": "APPLICATION PACKAGE AUTHORITY\\Removable storage",
    "S-1-15-3-11": "APPLICATION PACKAGE AUTHORITY\\Your Appointments",
    "S-1-15-3-12": "APPLICATION PACKAGE AUTHORITY\\Your Contacts",
    "S-1-16-0": "Mandatory Label\\Untrusted Mandatory Level",
    "S-1-16-4096": "Mandatory Label\\Low Mandatory Level",
    "S-1-16-8192": "Mandatory Label\\Medium Mandatory Level",
    "S-1-16-8448": "Mandatory Label\\Medium Plus Mandatory Level",
    "S-1-16-12288": "Mandatory Label\\High Mandatory Level",
    "S-1-16-16384": "Mandatory Label\\System Mandatory Level",
    "S-1-16-20480": "Mandatory Label\\Protected Process Mandatory Level",
    "S-1-16-28672": "Mandatory Label\\Secure Process Mandatory Level",
    "S-1-18-1": "Authentication authority asserted identity",
    "S-1-18-2": "Service asserted identity",
}

#: Well-known relative ids of a domain or machine SID (S-1-5-21-a-b-c-RID). Same sources.
DOMAIN_RIDS: Dict[int, str] = {
    500: "Administrator", 501: "Guest", 502: "krbtgt", 503: "DefaultAccount",
    504: "WDAGUtilityAccount", 512: "Domain Admins", 513: "Domain Users", 514: "Domain Guests",
    515: "Domain Computers", 516: "Domain Controllers", 517: "Cert Publishers",
    518: "Schema Admins", 519: "Enterprise Admins", 520: "Group Policy Creator Owners",
}

#: SID prefixes whose members are named by pattern (same sources): prefix -> label.
SID_PATTERNS: Tuple[Tuple[str, str], ...] = (
    ("S-1-5-5-", "NT AUTHORITY\\LogonSessionId_%s"),        # logon session SIDs
    ("S-1-5-90-0-", "Window Manager\\DWM-%s"),
    ("S-1-5-96-0-", "Font Driver Host\\UMFD-%s"),
    ("S-1-5-80-", "NT SERVICE\\(service SID %s)"),
    ("S-1-15-2-", "APPLICATION PACKAGE AUTHORITY\\(package %s)"),
    ("S-1-15-3-", "APPLICATION PACKAGE AUTHORITY\\(capability %s)"),
)


def integrity_level(sid: Optional[str]) -> Optional[str]:
    """"System", "High", "Medium", "Low"... for a mandatory label SID (S-1-16-RID), else None."""
    if not sid or not sid.startswith("S-1-16-"):
        return None
    name = WELL_KNOWN_SIDS.get(sid)
    if name:
        return name.split("\\", 1)[1].replace(" Mandatory Level", "")
    return "Mandatory Level 0x%x" % int(sid.rsplit("-", 1)[1])


def sid_name(sid: Optional[str]) -> Optional[str]:
    """The well-known name of a SID string, or None (ordinary user/group SIDs have none here)."""
    if not sid:
        return None
    name = WELL_KNOWN_SIDS.get(sid)
    if name is not None:
        return name
    parts = sid.split("-")
    if sid.startswith("S-1-5-21-") and len(parts) == 8:
        rid = int(parts[-1])
        if rid in DOMAIN_RIDS:
            return "(domain or machine)\\%s" % DOMAIN_RIDS[rid]
        return None
    for prefix, label in SID_PATTERNS:
        if sid.startswith(prefix):
            rest = sid[len(prefix):]
            return label % rest.replace("-", "_" if prefix == "S-1-5-5-" else "-")
    return None


def sid_to_string(revision: int, authority: bytes, subs: List[int]) -> str:
    """The SDDL text form (MS-DTYP 2.4.2.1): authority in decimal below 2^32, else hex."""
    value = int.from_bytes(bytes(authority), "big")
    auth = str(value) if value < (1 << 32) else "0x%012X" % value
    return "S-%d-%s%s" % (revision, auth, "".join("-%d" % s for s in subs))


class SidReader:
    """Reads `_SID`s of one build from one address space (offsets from the layout)."""

    def __init__(self, space: Any, layouts: Any) -> None:
        self.space = space
        sid = layouts.type("_SID")
        self.revision = sid.offset("Revision")
        self.count = sid.offset("SubAuthorityCount")
        self.authority = sid.offset("IdentifierAuthority")
        self.authority_size = sid.field("IdentifierAuthority").size
        self.subs = sid.offset("SubAuthority")
        self._cache: Dict[int, Union[str, Fault]] = {}

    def read(self, address: int) -> Union[str, Fault]:
        """The SID at `address` as text, or the Fault that stopped the read. A structure that is
        not a SID (wrong revision, too many sub-authorities) yields a Fault of reason "invalid"."""
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        result = self._read(address)
        self._cache[address] = result
        return result

    def _read(self, address: int) -> Union[str, Fault]:
        if not address:
            return Fault("invalid address", address)
        try:
            head = self.space.read(address, self.subs)
        except MemoryReadError as err:
            return err.fault
        revision, count = head[self.revision], head[self.count]
        if revision != SID_REVISION or count > SID_MAX_SUB_AUTHORITIES:
            return Fault("invalid address", address)
        authority = head[self.authority:self.authority + self.authority_size]
        try:
            raw = self.space.read(address + self.subs, 4 * count) if count else b""
        except MemoryReadError as err:
            return err.fault
        subs = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 4 * count, 4)]
        return sid_to_string(revision, authority, subs)


def sid_record(sid: Union[str, Fault], attributes: Optional[int] = None,
               attribute_names: Optional[List[str]] = None) -> Dict[str, Any]:
    """{sid, name[, attributes, attribute_names]} for JSON output."""
    rec: Dict[str, Any] = {"sid": sid, "name": sid_name(sid) if isinstance(sid, str) else None}
    if attributes is not None:
        rec["attributes"] = attributes
        rec["attribute_names"] = attribute_names or []
    return rec


__all__ = ["DOMAIN_RIDS", "SID_MAX_SUB_AUTHORITIES", "SidReader", "WELL_KNOWN_SIDS",
           "integrity_level", "sid_name", "sid_record", "sid_to_string"]
