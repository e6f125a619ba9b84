"""The forged triage dumps read back through the same reader as the real ones, planted facts intact.

Independent sources: the values the forge planted (TriageFacts), and the real dumps' structure
(the same reader class, the same TRIAGE_DUMP64 block order, the same fields present).
"""
import struct
from pathlib import Path
from typing import Any, Dict

import pykd_ext as pk
from pykd_ext.layouts.kernel_versions import load_table
from pykd_ext.targets.opener import open_target

REAL = ("win10-19041-x64-triage.dmp", "win10-17763-x64-triage.dmp")


def test_planted_facts_come_back(corpus: Dict[str, Any]) -> None:
    for facts in corpus["facts"]:
        with pk.open(facts.path) as dump:
            info = dump.info
            assert info["container"] == "PAGEDU64" and info["dump_type"] == "triage"
            assert info["build"] == facts.build
            assert info["bugcheck_code"] == facts.bugcheck_code
            assert info["bugcheck_parameters"] == facts.bugcheck_parameters
            assert info["kernel_base"] == facts.kernel_base
            assert info["system_time"] == facts.system_time
            assert info["system_uptime"] == facts.system_uptime
            # kphdyn names the exact ntoskrnl version from the planted TimeDateStamp+SizeOfImage
            assert info["extra"]["kernel_version"] == facts.version
            assert info["extra"]["processor"] == facts.processor
            assert info["extra"]["thread"] == facts.thread
            assert info["extra"]["process"] == facts.process
            assert info["extra"]["prcb_source"] == "KiProcessorBlock[PRCB.Number]"
            assert dump.layouts.version == facts.version
            drivers = [(d["name"], d["base"], d["size"]) for d in dump.drivers()]
            assert sorted(drivers) == sorted((d["name"], d["base"], d["size"]) for d in facts.drivers)
            thread = dump.thread(facts.thread)
            assert (thread.tid, thread.pid) == (facts.tid, facts.pid)
            owner = thread.owner()
            assert owner is not None and (owner.name, owner.pid) == (facts.process_name, facts.pid)
            target = dump.session.target
            top, size = target.info().extra["stack"]
            assert (top, size) == (facts.top_of_stack, facts.stack_size)
            stack = target.kernel.read(top, size)
            for offset, value in facts.stack_words.items():
                assert struct.unpack_from("<Q", stack, offset)[0] == value
            assert bytes(target.kernel.read(facts.context_rip, 16)) == facts.fault_code
            context = target.info().extra["context"]
            assert (context["rip"], context["rsp"]) == (facts.context_rip, facts.context_rsp)


def test_kernel_identity_is_kphdyn_data(corpus: Dict[str, Any]) -> None:
    table = load_table()
    for facts in corpus["facts"][:4]:
        kernel = facts.drivers[0]
        entry = table.lookup(kernel["timestamp"], kernel["size"], "amd64")
        assert entry is not None and entry.version == facts.version


def test_same_reader_and_block_order_as_the_real_dumps(corpus: Dict[str, Any], real_dir: Path) -> None:
    """Real and forged files take the same path: same target class, same parts, same order."""
    def shape(path: str) -> Any:
        target = open_target(path)
        try:
            info = target.info()
            triage = info.extra["triage"]
            order = sorted((name for name in ("MmOffset", "PrcbOffset", "ProcessOffset",
                                              "ThreadOffset", "CallStackOffset",
                                              "DriverListOffset", "StringPoolOffset",
                                              "DataBlocksOffset") if triage[name]),
                           key=lambda name: triage[name])
            return (type(target).__module__, type(target).__name__, info.container,
                    info.dump_type, triage["ContextOffset"], triage["ExceptionOffset"],
                    info.extra["prcb_source"], order)
        finally:
            target.close()
    real = shape(str(real_dir / "kernel-triage" / REAL[0]))
    for facts in corpus["facts"][:5]:
        assert shape(facts.path) == real


def test_same_seed_same_files(tmp_path: Path, corpus: Dict[str, Any]) -> None:
    from pykd_ext.forge.triage_dump import write_corpus
    again = write_corpus(str(tmp_path), 3, seed=corpus["seed"], versions=corpus["versions"])
    for new, old in zip(again, corpus["facts"]):
        assert Path(new.path).read_bytes() == Path(old.path).read_bytes()
