"""Privileges and the other token bit sets: privilege LUID -> name, group attribute and token flag names.

Why tables: since Windows Vista a token keeps its privileges as three 64-bit masks
(`_SEP_TOKEN_PRIVILEGES.Present/Enabled/EnabledByDefault`) indexed by the privilege's LUID low
part; the names, the group attribute bits and the token flag bits are constants of the public
Windows headers, not symbol data. Each table below names its source; nothing here is an offset.
"""
from typing import Dict, List, Tuple

#: Privilege LUIDs (LowPart) and names: SE_MIN_WELL_KNOWN_PRIVILEGE (2) ..
#: SE_MAX_WELL_KNOWN_PRIVILEGE (36). Source: winnt.h / wdm.h `SE_*_PRIVILEGE` constants and the
#: `SE_*_NAME` strings (Microsoft Learn, "Privilege Constants (Authorization)").
PRIVILEGES: Dict[int, str] = {
    2: "SeCreateTokenPrivilege",
    3: "SeAssignPrimaryTokenPrivilege",
    4: "SeLockMemoryPrivilege",
    5: "SeIncreaseQuotaPrivilege",
    6: "SeMachineAccountPrivilege",
    7: "SeTcbPrivilege",
    8: "SeSecurityPrivilege",
    9: "SeTakeOwnershipPrivilege",
    10: "SeLoadDriverPrivilege",
    11: "SeSystemProfilePrivilege",
    12: "SeSystemtimePrivilege",
    13: "SeProfileSingleProcessPrivilege",
    14: "SeIncreaseBasePriorityPrivilege",
    15: "SeCreatePagefilePrivilege",
    16: "SeCreatePermanentPrivilege",
    17: "SeBackupPrivilege",
    18: "SeRestorePrivilege",
    19: "SeShutdownPrivilege",
    20: "SeDebugPrivilege",
    21: "SeAuditPrivilege",
    22: "SeSystemEnvironmentPrivilege",
    23: "SeChangeNotifyPrivilege",
    24: "SeRemoteShutdownPrivilege",
    25: "SeUndockPrivilege",
    26: "SeSyncAgentPrivilege",
    27: "SeEnableDelegationPrivilege",
    28: "SeManageVolumePrivilege",
    29: "SeImpersonatePrivilege",
    30: "SeCreateGlobalPrivilege",
    31: "SeTrustedCredManAccessPrivilege",
    32: "SeRelabelPrivilege",
    33: "SeIncreaseWorkingSetPrivilege",
    34: "SeTimeZonePrivilege",
    35: "SeCreateSymbolicLinkPrivilege",
    36: "SeDelegateSessionUserImpersonatePrivilege",
}
#: `_SEP_TOKEN_PRIVILEGES` masks are 64 bits wide (one bit per LUID low part).
PRIVILEGE_BITS = 64

#: `SID_AND_ATTRIBUTES.Attributes` group bits, in the order and spelling `!token` prints them.
#: Source: winnt.h `SE_GROUP_*` (Microsoft Learn, "TOKEN_GROUPS structure").
GROUP_ATTRIBUTES: Tuple[Tuple[int, str], ...] = (
    (0x00000001, "Mandatory"),              # SE_GROUP_MANDATORY
    (0x00000002, "Default"),                # SE_GROUP_ENABLED_BY_DEFAULT
    (0x00000004, "Enabled"),                # SE_GROUP_ENABLED
    (0x00000008, "Owner"),                  # SE_GROUP_OWNER
    (0x00000010, "UseForDenyOnly"),         # SE_GROUP_USE_FOR_DENY_ONLY
    (0x00000020, "GroupIntegrity"),         # SE_GROUP_INTEGRITY
    (0x00000040, "GroupIntegrityEnabled"),  # SE_GROUP_INTEGRITY_ENABLED
    (0x20000000, "Resource"),               # SE_GROUP_RESOURCE
    (0xC0000000, "LogonId"),                # SE_GROUP_LOGON_ID
)
SE_GROUP_USE_FOR_DENY_ONLY = 0x00000010
SE_GROUP_ENABLED = 0x00000004

#: `_TOKEN.TokenFlags` bits. Source: the WDK's ntifs.h `TOKEN_*` flag constants
#: (TOKEN_HAS_TRAVERSE_PRIVILEGE ... TOKEN_NO_CHILD_PROCESS_UNLESS_SECURE).
TOKEN_FLAGS: Tuple[Tuple[int, str], ...] = (
    (0x00000001, "HasTraversePrivilege"),
    (0x00000002, "HasBackupPrivilege"),
    (0x00000004, "HasRestorePrivilege"),
    (0x00000008, "WriteRestricted"),
    (0x00000010, "IsRestricted"),
    (0x00000020, "SessionNotReferenced"),
    (0x00000040, "SandboxInert"),
    (0x00000080, "HasImpersonatePrivilege"),
    (0x00000100, "BackupPrivilegesChecked"),
    (0x00000200, "VirtualizeAllowed"),
    (0x00000400, "VirtualizeEnabled"),
    (0x00000800, "IsFiltered"),
    (0x00001000, "UIAccess"),
    (0x00002000, "NotLow"),
    (0x00004000, "LowBox"),
    (0x00008000, "HasOwnClaimAttributes"),
    (0x00010000, "PrivateNamespace"),
    (0x00020000, "DoNotUseGlobalAttribsForQuery"),
    (0x00040000, "SpecialEncryptedOpen"),
    (0x00080000, "NoChildProcess"),
    (0x00100000, "NoChildProcessUnlessSecure"),
    (0x00200000, "AuditNoChildProcess"),
)
TOKEN_LOWBOX = 0x00004000

#: `_TOKEN.MandatoryPolicy` bits. Source: winnt.h TOKEN_MANDATORY_POLICY_*.
MANDATORY_POLICY: Tuple[Tuple[int, str], ...] = ((0x1, "NoWriteUp"), (0x2, "NewProcessMin"))


def bit_names(value: int, table: Tuple[Tuple[int, str], ...]) -> List[str]:
    """Names of the bits set in `value` (multi-bit entries need all their bits)."""
    return [name for mask, name in table if value & mask == mask]


def privilege_name(luid: int) -> str:
    return PRIVILEGES.get(luid, "Privilege%d" % luid)


def privileges_from_masks(present: int, enabled: int, default: int) -> List[dict]:
    """One record per present privilege (plus any enabled one not marked present), in LUID order:
    {value, name, present, enabled, enabled_by_default}."""
    out = []
    any_bit = present | enabled | default
    for luid in range(PRIVILEGE_BITS):
        bit = 1 << luid
        if not any_bit & bit:
            continue
        out.append({"value": luid, "name": privilege_name(luid), "present": bool(present & bit),
                    "enabled": bool(enabled & bit), "enabled_by_default": bool(default & bit)})
    return out


__all__ = ["GROUP_ATTRIBUTES", "MANDATORY_POLICY", "PRIVILEGES", "PRIVILEGE_BITS",
           "SE_GROUP_ENABLED", "SE_GROUP_USE_FOR_DENY_ONLY", "TOKEN_FLAGS", "TOKEN_LOWBOX",
           "bit_names", "privilege_name", "privileges_from_masks"]
