"""The blame rules of batch triage, and the crash buckets they give.

Rules (issue 13; in this order, the first that names a non-kernel module wins):
1. **Fault address.** The bugcheck parameter whose documented role is `fault_address` (the code
   address where the exception occurred / that referenced memory: 0x1E, 0x7E, 0x1000007E, 0x3B,
   0x50, 0xD1, 0x0A, ...; roles from Microsoft's reference, see `bugcodes`), then the address the
   dump's own records state: the EXCEPTION_RECORD a parameter points at (`exception_record`), the
   CONTEXT one points at (`context_record`: its Rip), the trap frame (`trap_frame`: its Rip), and
   the exception record of the dump header or user-dump stream (except the STATUS_BREAKPOINT
   KeBugCheckEx raises for every bugcheck). An address inside a loaded module that is not the
   kernel blames that module.
2. **Stack.** Otherwise the first non-kernel module among the crashing thread's frames: the
   faulting context's instruction pointer, then the return-address candidates of the stack scan
   (`stackscan`: marked as a scan, not an unwind).
3. **Kernel.** Otherwise the kernel image itself (ntoskrnl.exe or the name the dump gives it).

"Kernel" is the NT kernel image and the HAL (`modules.KERNEL_IMAGE_NAMES`, `HAL_NAMES`, and
whatever module holds the KDBG's KernBase). Buckets: `<bugcheck name>_<blamed module>` and the
finer `<bugcheck name>_<blamed module>+0x<offset>` (offset of the blamed address in the module).
"""
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from pykd_ext.batch import bugcodes
from pykd_ext.batch.modules import ModuleMap

#: ntstatus.h STATUS_BREAKPOINT: what KeBugCheckEx's own breakpoint leaves in the dump header's
#: exception record for every bugcheck (both real triage dumps), so it never blames anything.
STATUS_BREAKPOINT = 0x80000003

Reader = Callable[[str, int], Optional[int]]   # (what, address) -> code address, or None


def candidate_addresses(code: Optional[int], parameters: List[int], read_record: Reader,
                        header_exception: Optional[Dict[str, Any]]) -> Iterator[Tuple[str, int]]:
    """(where it came from, address) of every fault address rule 1 considers, in order.

    A generator: records a parameter points at are read only when the addresses before them
    did not already name a non-kernel module."""
    entry = bugcodes.lookup(code)
    if entry is not None:
        for role in ("fault_address", "exception_record", "context_record", "trap_frame"):
            for number, found in sorted(entry.roles.items()):
                if found != role or number > len(parameters):
                    continue
                value = parameters[number - 1]
                if role == "fault_address":
                    yield "parameter %d" % number, value
                    continue
                address = read_record(role, value)
                if address is not None:
                    yield "%s (parameter %d)" % (role.replace("_", " "), number), address
    if header_exception:
        address = header_exception.get("address")
        exception_code = header_exception.get("code")
        if isinstance(address, int) and address and exception_code != STATUS_BREAKPOINT:
            yield "exception record", address


def blame(code: Optional[int], parameters: List[int], modules: ModuleMap,
          frames: List[Dict[str, Any]], read_record: Reader,
          header_exception: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Apply the rules; returns blamed_module/offset/address, blame_source, fault_address,
    fault_location (the first rule-1 address, blamed or not)."""
    result: Dict[str, Any] = {"blamed_module": None, "blamed_offset": None, "blamed_address": None,
                              "blame_source": None, "fault_address": None, "fault_location": None}
    candidates = candidate_addresses(code, parameters, read_record, header_exception)
    for source, address in candidates:
        if result["fault_address"] is None:
            result["fault_address"] = address
            result["fault_location"] = modules.describe(address)
        found = modules.find(address)
        if found is not None and not modules.is_kernel(found[0]):
            result.update(blamed_module=found[0], blamed_offset=found[1], blamed_address=address,
                          blame_source=source)
            return result
    for item in frames:
        module = item.get("module")
        if module and not modules.is_kernel(module):
            result.update(blamed_module=module, blamed_offset=item.get("offset"),
                          blamed_address=item.get("address"),
                          blame_source="stack scan" if item.get("source") == "scan" else "context")
            return result
    if len(modules) == 0:
        result["blame_source"] = "no module list"
        return result
    result["blamed_module"] = modules.kernel_image
    result["blame_source"] = "kernel"
    address = result["fault_address"]
    found = modules.find(address) if address is not None else None
    if found is not None and modules.is_kernel(found[0]):
        result["blamed_module"], result["blamed_offset"] = found
        result["blamed_address"] = address
    return result


def bucket_names(name: Optional[str], blamed: Optional[str], offset: Optional[int]) -> Tuple[str, str]:
    """(`<name>_<module>`, `<name>_<module>+0x<offset>`); unknown parts are spelled out."""
    coarse = "%s_%s" % (name or "NO_BUGCHECK", blamed or "unknown")
    fine = coarse + ("+0x%x" % offset if isinstance(offset, int) else "")
    return coarse, fine
