"""DML inside WinDbg: object addresses become `!py` links, plain text stays plain.

The truth for which addresses are EPROCESS/ETHREAD/token/job: the CLI's JSON records of the same
dump (process `address`/`token`/`job`, thread `address`/`process`) and what the forge planted.
"""
import json
import re
from typing import Any, Dict

from pykd_harness import run_cli, run_like_bootstrapper, script_path
from pykd_ext.windbg.dml import decorate, decorate_line, escape, link_targets
from pykd_ext.render.renderers import addresses_as_ints  # our JSON writes addresses as "0x..."

LINK = re.compile(r'<link cmd="!py (\w+) 0x([0-9a-f]+)">([^<]*)</link>')


def test_decorate_line_links_known_addresses_only() -> None:
    targets = {0xFFFFB30C8A027040: "process", 0xFFFFB30C8A029040: "thread"}
    line = "THREAD ffffb30c8a029040  Cid 027c.0060 owner 0xffffb30c8a027040 <not in dump> ffffb30c8a000000"
    out = decorate_line(line, targets)
    assert LINK.findall(out) == [("ethread", "ffffb30c8a029040", "ffffb30c8a029040"),
                                 ("eproc", "ffffb30c8a027040", "0xffffb30c8a027040")]
    assert "&lt;not in dump&gt;" in out and "ffffb30c8a000000" in out
    assert decorate_line("Base fffff804`7ba00000 x", {0xFFFFF8047BA00000: "job"}) == \
        'Base <link cmd="!py job 0xfffff8047ba00000">fffff804`7ba00000</link> x'
    assert escape('a&b"c') == "a&amp;b&quot;c"


def test_link_targets_from_records() -> None:
    records = [{"address": 0x1000, "pid": 4, "ppid": 0, "name": "System", "token": 0x2000, "job": 0},
               {"address": 0x3000, "tid": 8, "pid": 4, "process": 0x1000}]
    assert link_targets(records) == {0x1000: "process", 0x2000: "token", 0x3000: "thread"}
    assert decorate(["plain"], records, "!py -m pykd_ext ") == ["plain"]


def test_windbg_output_links_every_process(standin: Any, scenarios: Dict[int, Any]) -> None:
    path, planted = scenarios[19041].path, scenarios[19041].planted
    code, cli_json, _ = run_cli(["ps", "--target", path, "--format", "json"])
    assert code == 0
    listed = {rec["address"] for rec in addresses_as_ints(json.loads(cli_json))["records"]}
    assert listed and listed <= {p["address"] for p in planted.processes}

    standin._standin_configure(dump=path, windbg=True)
    out, _ = run_like_bootstrapper(script_path("ps"), [], windbg=True)
    links = LINK.findall(out)
    assert {int(a, 16) for cmd, a, _ in links if cmd == "eproc"} == listed
    assert all(text == "%016x" % int(a, 16) for _cmd, a, text in links)
    # without writedml the same script prints plain text, identical to the CLI
    standin._standin_configure(dump=path)
    plain, _ = run_like_bootstrapper(script_path("ps"), [])
    _, cli_text, _ = run_cli(["ps", "--target", path])
    assert plain == cli_text and "<link" not in plain
    # the DML form is the plain form plus markup
    assert re.sub(r"<[^>]+>", "", out).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == plain

    lsass = next(p for p in planted.processes if p["name"] == "lsass.exe")
    standin._standin_configure(dump=path, windbg=True)
    out, _ = run_like_bootstrapper(script_path("eproc"), ["lsass.exe"], windbg=True)
    kinds = {cmd for cmd, a, _ in LINK.findall(out)}
    assert ("eproc", "%x" % lsass["address"]) in {(c, a) for c, a, _ in LINK.findall(out)}
    assert "token" in kinds                                   # the Token line links to !py token
    out, _ = run_like_bootstrapper(script_path("threads"), ["lsass.exe"], windbg=True)
    thread_links = {int(a, 16) for cmd, a, _ in LINK.findall(out) if cmd == "ethread"}
    assert thread_links == {t["address"] for t in lsass["threads"]}
    assert standin._standin_calls().get("dprintln", 0) >= 1
    assert any(dml for _text, dml in standin._state.output)
