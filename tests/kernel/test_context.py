"""KernelContext: globals from symbols agree with the dump's own statements; fallbacks without
symbols use the header and the KDBG block; the contract's record keys are exactly what we emit."""
from pathlib import Path
from typing import Any

import pytest

from planted import run_json
from pykd_ext.kernel.context import KernelContext
from pykd_ext.layouts.select import choose_for_target
from pykd_ext.targets.opener import open_target

TRIAGE = ("win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp")

PROCESS_KEYS = {"address", "pid", "ppid", "name", "image_path", "session_id", "create_time",
                "create_time_raw", "exit_time", "exit_time_raw", "exit_status", "threads_active",
                "threads_listed", "handle_count", "dtb", "user_dtb", "peb", "wow64", "peb32", "token",
                "job", "protection", "signature_level", "section_signature_level", "kind", "kind_flags",
                "found_by", "layout"}
THREAD_KEYS = {"address", "tid", "pid", "process", "state", "wait_reason", "wait_mode", "alertable",
               "wait_objects", "priority", "base_priority", "io_priority", "page_priority",
               "ideal_processor", "affinity", "context_switches", "kernel_time", "user_time",
               "wait_start_tick", "teb", "start_address", "win32_start_address", "start_module",
               "stack_init", "stack_base", "stack_limit", "stack_current", "create_time",
               "create_time_raw", "exit_time", "thread_flags", "running_on", "impersonating", "layout"}


class NoSymbols:
    """The same layouts with the global RVAs taken away (a types-only layout)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def has_symbol(self, name: str) -> bool:
        return False

    def symbol_rva(self, name: str) -> int:
        raise AssertionError("no symbols here")


@pytest.mark.parametrize("name", TRIAGE)
def test_globals_from_symbols_match_the_dump_and_fallbacks_work(real_dir: Path, name: str) -> None:
    target = open_target(str(real_dir / "kernel-triage" / name))
    try:
        info = target.info()
        layouts = choose_for_target(target)
        ctx = KernelContext(target, layouts)
        # the dump's own statement of a global always wins; the symbol RVA is used when it agrees
        # (19041: the fingerprinted revision has the dump's RVAs) and overruled with a note when
        # it does not (17763: the chosen layout is another revision of the build)
        address, how = ctx.resolve_global("PsActiveProcessHead")
        assert address == info.ps_active_process_head == info.kdbg["PsActiveProcessHead"]
        rva = layouts.symbol_rva("PsActiveProcessHead")
        if info.kernel_base + rva == address:
            assert how == "symbol"
        else:
            assert how == "header" and ctx.rva_mismatch
            assert any(n.startswith("PsActiveProcessHead: the layout's RVA") for n in ctx.notes)
        assert ctx.resolve_global("PspCidTable")[0] == info.kdbg["PspCidTable"]
        bare = KernelContext(target, NoSymbols(layouts))
        assert bare.resolve_global("PsActiveProcessHead") == (info.ps_active_process_head, "header")
        assert bare.resolve_global("PspCidTable") == (info.kdbg["PspCidTable"], "kdbg")
        assert bare.resolve_global("KiProcessorBlock") == (info.kdbg["KiProcessorBlock"], "kdbg")
        assert bare.resolve_global("ObHeaderCookie") == (None, "unknown")
        # the processors are found either way, and the dump's PRCB is among them
        assert info.extra["prcb"] in [p.prcb for p in bare.processors()]
    finally:
        target.close()


def test_record_keys_are_the_contract_keys(world: Any) -> None:
    for command in ("ps", "eproc 0n700", "pstree"):
        argv = command.split() + ["--target", world.path]
        for rec in run_json(argv)["records"]:
            extra = {"depth"} if command == "pstree" else set()
            assert set(rec) == PROCESS_KEYS | extra, command
    for command in ("threads", "ethread 0n704"):
        for rec in run_json(command.split() + ["--target", world.path])["records"]:
            # issue 12: `ethread` (and `threads -v`) add the thread's kernel stack; issue 17 its
            # scheduling facts (kernel/scheduling.py)
            extra = {"stack", "scheduling"} if command.startswith("ethread") else set()
            assert set(rec) == THREAD_KEYS | extra, command
    doc = run_json(["ps", "--target", world.path])
    assert doc["meta"]["globals"]["PsActiveProcessHead"]["from"] == "symbol"
    assert doc["meta"]["layout"]["method"] == "pdb-guid"
