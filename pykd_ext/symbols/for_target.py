"""Which kernel PDB a dump needs, from what the target's `info()` states, and fetching it.

Two ways, as WinDbg has them:
- the kernel's CodeView (RSDS) record: `extra["pdb_name"/"pdb_guid"/"pdb_age"]` (crash dumps and
  raw images whose kernel image headers are in memory) -> the PDB directly;
- the kernel image's identity only (triage dumps: the driver list names ntoskrnl.exe with its
  TimeDateStamp and SizeOfImage; crash dump headers carry `kernel_timestamp` and
  `kernel_size_of_image`) -> the image from the symbol server, its RSDS record, then the PDB.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import NotFoundError
from pykd_ext.symbols.fetch import FetchOptions, Found, fetch_image, fetch_pdb
from pykd_ext.symbols.path import SymbolPath

KERNEL_IMAGES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe")


@dataclass
class KernelIdentity:
    """How a target names its kernel for a symbol server: the PDB (name, GUID, age) and/or the image
    (name, timestamp, size)."""

    pdb: Optional[Tuple[str, str, int]] = None          # (name, GUID, age)
    image: Optional[Tuple[str, int, int]] = None        # (file name, TimeDateStamp, SizeOfImage)


def kernel_identity(extra: Dict[str, Any]) -> KernelIdentity:
    ident = KernelIdentity()
    name, guid, age = extra.get("pdb_name"), extra.get("pdb_guid"), extra.get("pdb_age")
    if isinstance(guid, str) and isinstance(age, int):
        ident.pdb = (str(name or "ntkrnlmp.pdb").replace("\\", "/").rsplit("/", 1)[-1], guid, age)
    stamp, size = extra.get("kernel_timestamp"), extra.get("kernel_size_of_image")
    if isinstance(stamp, int) and isinstance(size, int) and size > 0:
        ident.image = ("ntoskrnl.exe", stamp, size)
    for driver in extra.get("drivers") or []:
        if isinstance(driver, dict) and str(driver.get("name", "")).lower() in KERNEL_IMAGES:
            if isinstance(driver.get("timestamp"), int) and isinstance(driver.get("size"), int):
                ident.image = (str(driver["name"]), driver["timestamp"], driver["size"])
            break
    return ident


def fetch_kernel_pdb(extra: Dict[str, Any], spath: SymbolPath,
                     options: Optional[FetchOptions] = None) -> List[Found]:
    """The kernel PDB of a target (and the image it came through, if any): a list of what was
    found, the PDB last."""
    ident = kernel_identity(extra)
    if ident.pdb is not None:
        return [fetch_pdb(spath, ident.pdb[0], ident.pdb[1], ident.pdb[2], options)]
    if ident.image is None:
        raise NotFoundError("the target names no kernel PDB (no CodeView record) and no kernel "
                            "image identity (TimeDateStamp, SizeOfImage)")
    image = fetch_image(spath, ident.image[0], ident.image[1], ident.image[2], options)
    from pykd_ext.errors import DumpFormatError
    from pykd_ext.targets.pe import parse_pe_headers
    try:
        with open(image.path, "rb") as fh:
            cv = parse_pe_headers(fh.read(1 << 26), mapped=False).debug_codeview
    except (OSError, DumpFormatError) as err:
        raise NotFoundError("kernel image %s unreadable: %s" % (image.path, err)) from None
    if cv is None:
        raise NotFoundError("kernel image %s has no CodeView record" % image.path)
    return [image, fetch_pdb(spath, cv.pdb_name.replace("\\", "/").rsplit("/", 1)[-1], cv.guid,
                             cv.age, options)]
