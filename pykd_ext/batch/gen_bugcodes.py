"""Generate `bugcheck_codes.tsv` from Microsoft's "Bug Check Code Reference" (docs as data).

Why: a batch report names every bugcheck and says what its four parameters mean, and which of
them holds the faulting code address the blame rules look at. Those facts must come from the
published reference, not from memory, so this generator reads a checkout of the public
MicrosoftDocs/windows-driver-docs repository (CC-BY-4.0) and writes one row per code:
- the code and symbolic name from the index page `debugger/bug-check-code-reference2.md`;
- each parameter's description from the code's own page (markdown or HTML parameter table),
  shortened to its first sentence; "has the same meaning and parameters as bug check 0x7E"
  pages (the `_M` variants) inherit the parameters of the code they name;
- a role per parameter, derived from its description by the rules in `ROLE_RULES` below (so a
  reader can check every role against the text stored beside it).

Run: `python -m pykd_ext.batch.gen_bugcodes DOCS_CHECKOUT [--out FILE] [--check]`.
`--check` compares instead of writing (exit 1 on a difference).
"""
import argparse
import html
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "bugcheck_codes.tsv")
SUBCODES_OUT = os.path.join(HERE, "bugcheck_subcodes.tsv")
DOCS_DIR = "windows-driver-docs-pr/debugger"
INDEX_PAGE = DOCS_DIR + "/bug-check-code-reference2.md"
COLUMNS = ("code", "name", "page", "param1", "param2", "param3", "param4", "roles")
SUBCODE_COLUMNS = ("code", "value", "param2", "param3", "param4", "cause")
#: descriptions are cut to this many characters (the page has the rest)
MAX_TEXT = 200

#: (role, pattern over the lower-cased parameter description), first match wins
ROLE_RULES: Tuple[Tuple[str, str], ...] = (
    ("exception_record", r"(address of|pointer to) the exception record"),
    ("context_record", r"(address of|pointer to) the context record"),
    ("trap_frame", r"(address of|pointer to) the trap frame|^trap frame"),
    ("fault_address", r"address (where|at which) the exception occurred"
                      r"|instruction pointer at the time"
                      r"|address of the (faulting )?instruction"
                      r"|address that referenced (the )?memory"
                      r"|instruction address"),
    ("exception_code", r"exception code|^the exception that caused"),
    ("referenced_address", r"^memory (address )?referenced|^address referenced"
                           r"|virtual address (that|which) (was )?referenced"),
)

_INDEX_ROW = re.compile(r"^\|\s*(0x[0-9A-Fa-f]+)\s*\|\s*\[\*\*(.+?)\*\*\]\(([^)]+)\)")
_SAME_AS = re.compile(r"same meaning and parameters as \[\*\*bug check (0x[0-9A-Fa-f]+)\*\*\]",
                      re.I)
_HTML_ROW = re.compile(r"<tr[^>]*>\s*<td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td>", re.S | re.I)


def _git_show(checkout: str, path: str) -> Optional[str]:
    """A file of the checkout: from the work tree, or from HEAD of a bare mirror."""
    on_disk = os.path.join(checkout, path)
    if os.path.exists(on_disk):
        with open(on_disk, "r", encoding="utf-8") as handle:
            return handle.read()
    try:
        out = subprocess.run(["git", "--git-dir", checkout, "show", "HEAD:" + path],
                             capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.decode("utf-8", "replace")


def _commit(checkout: str) -> str:
    for args in (["git", "-C", checkout, "rev-parse", "HEAD"],
                 ["git", "--git-dir", checkout, "rev-parse", "HEAD"]):
        try:
            return subprocess.run(args, capture_output=True, check=True).stdout.decode().strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return "unknown"


def clean_text(raw: str) -> str:
    """Markdown/HTML cell → one line of plain text, first sentence, bounded."""
    text = re.sub(r"<br\s*/?>|</p>|</li>", " ", raw, flags=re.I)
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)       # links keep their text
    text = html.unescape(text).replace("\\_", "_").replace("\\", "")
    text = text.replace("**", "").replace("`", "")
    text = " ".join(text.replace("\t", " ").split())
    cut = re.search(r"(?<=[a-z0-9)\]])\.\s", text)
    if cut and cut.start() > 10:
        text = text[:cut.start() + 1]
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT - 1].rstrip() + "…"
    return text


def _section(page: str) -> str:
    """The page's "... Parameters" section (the whole page when it has none)."""
    match = re.search(r"^#+ .*parameters?\s*$", page, re.I | re.M)
    if not match:
        return page
    section = page[match.end():]
    nxt = re.search(r"^## ", section, re.M)
    return section[:nxt.start()] if nxt else section


def _markdown_tables(section: str) -> List[List[List[str]]]:
    """Markdown tables of a section as rows of raw cells (separator rows dropped)."""
    tables: List[List[List[str]]] = []
    current: List[List[str]] = []
    for line in section.splitlines() + [""]:
        stripped = line.strip()
        if "|" in stripped and not stripped.startswith("<"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def parameters_of(page: str) -> Tuple[Dict[int, str], List[Dict[str, str]]]:
    """(parameter number -> description, subcode rows) from the page's parameter tables.

    A "Parameter | Description" table (markdown or HTML) gives the four meanings; a
    "Parameter 1 | Parameter 2 | Parameter 3 | Parameter 4 | Cause" table gives one row per
    value of parameter 1 (the meanings of 2-4 depend on it)."""
    section = _section(page)
    out: Dict[int, str] = {}
    subcodes: List[Dict[str, str]] = []
    for row in _HTML_ROW.finditer(section):
        number = clean_text(row.group(1))
        if number in ("1", "2", "3", "4") and int(number) not in out:
            out[int(number)] = clean_text(row.group(2))
    for table in _markdown_tables(section):
        header = [clean_text(c).lower() for c in table[0]]
        if header[:2] == ["parameter 1", "parameter 2"] and len(header) >= 4:
            for cells in table[1:]:
                cells = cells + [""] * (5 - len(cells))
                subcodes.append({"value": clean_text(cells[0]), "param2": clean_text(cells[1]),
                                 "param3": clean_text(cells[2]), "param4": clean_text(cells[3]),
                                 "cause": clean_text(cells[4]) if len(header) > 4 else ""})
            continue
        for cells in table[1:]:
            if len(cells) >= 2 and cells[0] in ("1", "2", "3", "4") and int(cells[0]) not in out:
                out[int(cells[0])] = clean_text(cells[1])
    if subcodes and 1 not in out:
        lead = re.search(r"[*_]?Parameter 1[*_]? ([^.|]*\.)", section)
        if lead:
            out[1] = clean_text("Parameter 1 " + lead.group(1))
    return out, subcodes


def role_of(text: str) -> Optional[str]:
    lowered = text.lower()
    for role, pattern in ROLE_RULES:
        if re.search(pattern, lowered):
            return role
    return None


def generate(checkout: str) -> Tuple[List[Dict[str, str]], List[Dict[str, str]], str]:
    """(one row per code, one row per documented value of parameter 1, docs commit)."""
    index = _git_show(checkout, INDEX_PAGE)
    if index is None:
        raise SystemExit("no %s in %s" % (INDEX_PAGE, checkout))
    rows: List[Dict[str, str]] = []
    subrows: List[Dict[str, str]] = []
    same_as: Dict[int, int] = {}
    params: Dict[int, Dict[int, str]] = {}
    subcodes: Dict[int, List[Dict[str, str]]] = {}
    for line in index.splitlines():
        match = _INDEX_ROW.match(line.strip())
        if not match:
            continue
        code = int(match.group(1), 16)
        name = match.group(2).replace("\\_", "_").strip()
        page_name = match.group(3).split("#")[0]
        page = _git_show(checkout, DOCS_DIR + "/" + page_name) or ""
        alias = _SAME_AS.search(page)
        if alias:
            same_as[code] = int(alias.group(1), 16)
        params[code], subcodes[code] = parameters_of(page)
        rows.append({"code": "0x%08X" % code, "name": name, "page": page_name})
    for row in rows:
        code = int(row["code"], 16)
        source = code if params.get(code) or subcodes.get(code) else same_as.get(code, code)
        found = params.get(source) or {}
        roles = []
        for number in (1, 2, 3, 4):
            text = found.get(number, "")
            row["param%d" % number] = text
            role = role_of(text) if text else None
            if role:
                roles.append("%d:%s" % (number, role))
        row["roles"] = ",".join(roles)
        for sub in subcodes.get(source) or []:
            subrows.append(dict(sub, code=row["code"]))
    return rows, subrows, _commit(checkout)


def _header(commit: str) -> List[str]:
    return ["# Extracted from Microsoft's \"Bug Check Code Reference\" (MicrosoftDocs/windows-driver-docs,",
            "# commit %s, windows-driver-docs-pr/debugger/bug-check-*.md)," % commit,
            "# licensed CC-BY-4.0 (see NOTICE-bugcheck-codes). Changes: descriptions shortened to",
            "# their first sentence; roles derived by pykd_ext/batch/gen_bugcodes.py. Regenerate, do not edit."]


def render(rows: List[Dict[str, str]], commit: str, columns: Tuple[str, ...] = COLUMNS) -> str:
    lines = _header(commit) + ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join(row[c].replace("\t", " ") for c in columns))
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("checkout", help="windows-driver-docs work tree or bare git mirror")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--subcodes-out", default=SUBCODES_OUT)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    rows, subrows, commit = generate(args.checkout)
    outputs = ((args.out, render(rows, commit)),
               (args.subcodes_out, render(subrows, commit, SUBCODE_COLUMNS)))
    if args.check:
        stale = []
        for path, text in outputs:
            with open(path, "r", encoding="utf-8") as handle:
                if handle.read() != text:
                    stale.append(path)
        print("up to date" if not stale else "differ from the docs: %s" % ", ".join(stale))
        return 1 if stale else 0
    for path, text in outputs:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    print("wrote %d codes and %d parameter-1 rows" % (len(rows), len(subrows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
