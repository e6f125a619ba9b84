"""32-bit x86 paging (PAE or not): kept as a name for callers; the walker is
`paged.PagedAddressSpace` in mode `paging_modes.X86_PAE` / `X86_NONPAE`, not-present entries are
decoded by `pte.decode_not_present`."""
from pykd_ext.memory.paged import X86AddressSpace  # noqa: F401
from pykd_ext.memory.pte import software_pte_from_layouts  # noqa: F401
