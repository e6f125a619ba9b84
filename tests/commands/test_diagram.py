"""`pykd-ext diagram`: SVGs drawn by Graphviz, read back from headless Chromium's DOM.

Independent sources: the forge's planted facts (addresses of the EPROCESS, threads, TEBs, PEB,
loader entries, tokens, handle table, jobs and silo, and which thread impersonates whom) and the
browser that parses and lays out the SVG. A process with a hostile ImageFileName (DOT and HTML
metacharacters, a terminal escape) must come out as inert text in its own box.
"""
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from pykd_ext.cli import run_command
from pykd_ext.forge import write_raw_image
from pykd_ext.forge.kernel_objects import build_scenario
from pykd_ext.forge.scenario import standard_scenario
from pykd_ext.render.escape import escape_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "batch"))
from batch_helpers import chromium, environment_without_proxies  # noqa: E402

#: 12 bytes (ImageFileName keeps 15): DOT quote/bracket/semicolon, HTML <, &, >, backslash, OSC
HOSTILE = 'x"];<&\\>\x1b]0;'


class SvgBoxes(HTMLParser):
    """The SVG's node and edge groups as Chromium serialised them: title -> texts."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: Dict[str, List[str]] = {}
        self.edges: List[str] = []
        self.errors = 0
        self._group: Any = None
        self._in: str = ""

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Any]]) -> None:
        cls = dict(attrs).get("class")
        if tag == "g" and cls in ("node", "edge"):
            self._group = [cls, None, []]
        elif tag == "parsererror":
            self.errors += 1
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._group is not None:
            kind, title, texts = self._group
            if kind == "node":
                self.nodes[title] = texts
            else:
                self.edges.append(title)
            self._group = None
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._group is None:
            return
        if self._in == "title":
            self._group[1] = data
        elif self._in == "text":
            self._group[2].append(data)


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    spec = standard_scenario()
    for proc in spec.processes:
        if proc.name == "explorer.exe":
            proc.name = HOSTILE
    machine, planted = build_scenario(spec, "win10")
    folder = tmp_path_factory.mktemp("diagram")
    path = str(folder / "guest.raw")
    write_raw_image(path, machine.phys)
    svgs = {}
    for key, spec_text in (("lsass", "lsass.exe"), ("job", "0n1040"), ("silo", "0n812"),
                           ("hostile", "0n3340")):
        svgs[key] = str(folder / ("%s.svg" % key))
        assert run_command(["diagram", spec_text, "--target", path, "--svg", svgs[key], "--quiet"]) == 0
    # one page with every drawing inline, and the hostile one opened as an SVG document itself
    page = folder / "page.html"
    bodies = [re.sub(r"^.*?(?=<svg)", "", Path(svgs[k]).read_text(encoding="ascii"), flags=re.S)
              for k in ("lsass", "job", "silo")]
    page.write_text("<!doctype html><html><body>%s</body></html>"
                    % "".join('<div id="%s">%s</div>' % (k, b) for k, b in zip(("lsass", "job", "silo"), bodies)),
                    encoding="ascii")
    doms = {}
    for name, url in (("page", page.resolve().as_uri()), ("hostile", Path(svgs["hostile"]).resolve().as_uri())):
        run = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update",
                              "--no-first-run", "--disable-sync", "--proxy-server=http://127.0.0.1:9",
                              "--user-data-dir=%s" % (folder / "profile"), "--dump-dom", url],
                             capture_output=True, timeout=120, env=environment_without_proxies())
        assert run.returncode == 0, run.stderr[-500:]
        doms[name] = run.stdout.decode("utf-8")
    parts = {}
    for key in ("lsass", "job", "silo"):
        section = doms["page"].split('<div id="%s">' % key, 1)[1].split("</svg>", 1)[0]
        parts[key] = _boxes(section)
    parts["hostile"] = _boxes(doms["hostile"])
    return {"planted": planted, "boxes": parts, "hostile_source": Path(svgs["hostile"]).read_bytes()}


def _boxes(dom: str) -> SvgBoxes:
    boxes = SvgBoxes()
    boxes.feed(dom)
    assert boxes.errors == 0 and boxes.nodes, "Chromium did not parse the SVG"
    return boxes


def _box(boxes: SvgBoxes, type_name: str, address: int) -> str:
    """The node id of the box titled `TYPE address` (exactly one)."""
    title = "%s %016x" % (type_name, address)
    found = [node for node, texts in boxes.nodes.items() if texts and texts[0] == title]
    assert len(found) == 1, (title, [t[:1] for t in boxes.nodes.values()])
    return found[0]


def _arrow(boxes: SvgBoxes, tail: str, head: str) -> bool:
    return any(re.fullmatch(r"%s(:p\d+)?->%s" % (tail, head), e) for e in boxes.edges)


def test_process_threads_tebs_peb_modules_token(guest: Dict[str, Any]) -> None:
    planted, boxes = guest["planted"], guest["boxes"]["lsass"]
    lsass = planted.by_name("lsass.exe")
    ep = _box(boxes, "_EPROCESS", lsass["address"])
    assert "PPL-Lsa" in boxes.nodes[ep] and str(lsass["pid"]) in boxes.nodes[ep]
    previous = ep
    for thread in lsass["threads"]:                     # the thread list, in list order
        node = _box(boxes, "_ETHREAD", thread["address"])
        assert _arrow(boxes, previous, node) and thread["state"] in boxes.nodes[node]
        teb = _box(boxes, "_TEB", lsass["user"]["tebs"][thread["tid"]]["address"])
        assert _arrow(boxes, node, teb)
        previous = node
    peb = _box(boxes, "_PEB", lsass["user"]["peb"])
    assert _arrow(boxes, ep, peb)
    ldr = _box(boxes, "_PEB_LDR_DATA", lsass["user"]["ldr"])
    assert _arrow(boxes, peb, ldr)
    previous = ldr
    for module in [m for m in lsass["user"]["modules"] if "load" in m["lists"]]:
        entry = _box(boxes, "_LDR_DATA_TABLE_ENTRY", module["entry"])
        assert module["path"] in boxes.nodes[entry] and _arrow(boxes, previous, entry)
        previous = entry
    security = planted.security
    token = _box(boxes, "_TOKEN", security["tokens"][636]["address"])
    assert _arrow(boxes, ep, token)
    texts = " ".join(boxes.nodes[token])
    assert security["tokens"][636]["user"] in texts and security["tokens"][636]["integrity"] in texts
    imp = security["impersonation"][100]                # the impersonating thread and its token
    imp_token = _box(boxes, "_TOKEN", imp["token"])
    assert _arrow(boxes, _box(boxes, "_ETHREAD", imp["thread"]), imp_token)
    assert imp["level"] in boxes.nodes[imp_token] and imp["user"] in " ".join(boxes.nodes[imp_token])
    table = _box(boxes, "_HANDLE_TABLE", lsass["handle_table"])
    assert _arrow(boxes, ep, table)


def test_job_chain_and_silo(guest: Dict[str, Any]) -> None:
    planted = guest["planted"]
    jobs = planted.security["jobs"]
    boxes = guest["boxes"]["job"]
    job, fact = next((a, f) for a, f in jobs.items() if 1040 in f["members"])
    ep = _box(boxes, "_EPROCESS", planted.process(1040)["address"])
    node = _box(boxes, "_EJOB", job)
    parent = _box(boxes, "_EJOB", fact["parent"])
    assert _arrow(boxes, ep, node) and _arrow(boxes, node, parent)
    assert "ACTIVE_PROCESS" in " ".join(boxes.nodes[node])
    boxes = guest["boxes"]["silo"]
    silo, fact = next((a, f) for a, f in jobs.items() if 812 in f["members"])
    assert fact["server_silo"]
    node = _box(boxes, "_EJOB", silo)
    assert _arrow(boxes, _box(boxes, "_EPROCESS", planted.process(812)["address"]), node)
    assert "server silo" in boxes.nodes[node] and fact["container_id"] in boxes.nodes[node]


def test_hostile_image_name_stays_text(guest: Dict[str, Any]) -> None:
    planted, boxes = guest["planted"], guest["boxes"]["hostile"]
    victim = planted.process(3340)
    assert victim["name"] == HOSTILE
    ep = _box(boxes, "_EPROCESS", victim["address"])
    assert escape_text(HOSTILE) in boxes.nodes[ep]      # shown whole, made visible, in its box
    assert all("\x1b" not in t for texts in boxes.nodes.values() for t in texts)
    assert all(re.fullmatch(r"n\d+", title) for title in boxes.nodes)       # no injected node
    assert all(re.fullmatch(r"n\d+(:p\d+)?->n\d+", e) for e in boxes.edges)  # nor edge
    assert len(boxes.edges) >= len(victim["threads"]) + 4
    source = guest["hostile_source"]
    assert b"\x1b" not in source and max(source) < 0x80
