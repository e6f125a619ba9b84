"""The HTML report, rendered by headless Chromium: what a person sees, and that it is inert.

Independent sources: the browser's own DOM and screenshot (Debian's chromium), the database's
counts, the hostile names planted in a forged dump, and a loopback proxy that counts every
connection the browser makes while showing the page (there must be none).
"""
import hashlib
import html.parser
import random
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List

from batch_helpers import chromium, environment_without_proxies, query
from pykd_ext.batch.report import write_report
from pykd_ext.batch.store import Store
from pykd_ext.batch.worker import run_task
from pykd_ext.forge.triage_dump import random_crash, write_triage_dump

#: names a hostile dump may carry (no '/' or '\\': the triage reader keeps a path's last part;
#: ImageFileName holds 14 characters)
HOSTILE_DRIVER = "<script>alert(1)&x.sys"
HOSTILE_PROCESS = "<i>evil</i>.x"
WIDTH, HEIGHT = 1280, 1800


class _Elements(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: List[str] = []
        self.text: List[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _hostile_dump(folder: Path) -> str:
    rng = random.Random(77)
    while True:
        plan = random_crash(rng, versions=("10.0.19041.1288",))
        if plan.expected_source == "parameter":
            break
    for driver in plan.crash.drivers:
        if driver.name == plan.expected_blame:
            driver.name = HOSTILE_DRIVER
    plan.crash.process_name = HOSTILE_PROCESS
    path = str(folder / "hostile.dmp")
    write_triage_dump(plan.crash, path)
    return path


def _report(corpus: Dict[str, Any], tmp_path: Path) -> Dict[str, Any]:
    db = str(tmp_path / "report.duckdb")
    paths = [_hostile_dump(tmp_path)] + [f.path for f in corpus["facts"][:6]] + sorted(corpus["bad"])[:2]
    store = Store(db)
    try:
        for path in paths:
            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            store.write([run_task({"sha256": sha, "paths": [(path, Path(path).stat().st_size)]})])
    finally:
        store.close()
    report = str(tmp_path / "report.html")
    write_report(db, report)
    return {"db": db, "html": report, "paths": paths}


#: Chromium's own background services (time, component updates, sign-in): the browser contacts
#: them for an empty page too, whatever flags disable; requests the page made would name its URLs.
CHROMIUM_SERVICE_DOMAINS = (".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com")


class _CountingProxy:
    """A loopback HTTP proxy that answers nothing: it records the host of every request the
    browser sends through it (so nothing leaves the machine, and we see what was asked)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hosts: List[str] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(2)
            try:
                line = conn.recv(512).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                line = ""
            conn.close()
            parts = line.split()
            target = parts[1] if len(parts) > 1 else line
            host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
            self.hosts.append(host)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def _browser(args: List[str], proxy_port: int, cwd: Path) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync", "--disable-default-apps",
               "--proxy-server=http://127.0.0.1:%d" % proxy_port,
               "--user-data-dir=%s" % (cwd / "chromium-profile")] + args
    return subprocess.run(command, capture_output=True, timeout=120, cwd=str(cwd),
                          env=environment_without_proxies())


def test_report_in_headless_chromium(corpus: Dict[str, Any], tmp_path: Path) -> None:
    made = _report(corpus, tmp_path)
    url = Path(made["html"]).resolve().as_uri()
    proxy = _CountingProxy()
    try:
        dom_run = _browser(["--dump-dom", url], proxy.port, tmp_path)
        shot = tmp_path / "report.png"
        shot_run = _browser(["--screenshot=%s" % shot, "--window-size=%d,%d" % (WIDTH, HEIGHT),
                             url], proxy.port, tmp_path)
    finally:
        proxy.close()
    assert dom_run.returncode == 0 and shot_run.returncode == 0, shot_run.stderr[-500:]
    page_requests = [h for h in proxy.hosts if not h.endswith(CHROMIUM_SERVICE_DOMAINS)]
    assert page_requests == []                         # the page fetched nothing
    source = Path(made["html"]).read_text(encoding="utf-8")
    for needle in ("src=", "@import", "<link", "<script", "<iframe"):
        assert needle not in source
    assert source.count("url(") == source.count("url(#")        # SVG clip paths: in-page ids
    hrefs = [part.split('"', 1)[0] for part in source.split('href="')[1:]]
    assert hrefs and all(h.startswith("#") for h in hrefs)     # in-page links only

    parsed = _Elements()
    parsed.feed(dom_run.stdout.decode("utf-8"))
    text = " ".join(parsed.text)
    assert "script" not in parsed.tags and "i" not in parsed.tags
    assert parsed.tags.count("svg") == 4                # bugchecks, modules, builds, time
    assert HOSTILE_DRIVER in text and HOSTILE_PROCESS in text      # shown as text
    buckets = query(made["db"], "SELECT bucket, count(*) FROM dumps WHERE status = 'ok' GROUP BY bucket")
    for bucket, _count in buckets:
        assert bucket in text
    total, errors = query(made["db"], "SELECT count(*), count(*) FILTER (WHERE status <> 'ok') FROM dumps")[0]
    assert "%d dump file(s)" % total in text and "%d error row(s)" % errors in text
    assert "Blamed modules" in text and "Crashes over time" in text

    from PIL import Image
    with Image.open(str(shot)) as image:
        assert image.size == (WIDTH, HEIGHT)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 16     # text and charts, not a blank page
        # the first chart's blue bars are on the page
        assert any(abs(r - 0x4A) < 8 and abs(g - 0x78) < 8 and abs(b - 0xB5) < 8
                   for _, (r, g, b) in (colours or image.convert("RGB").getcolors(1 << 24)))
