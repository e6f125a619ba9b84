#!/usr/bin/env python3
"""Print every import cycle inside the `pykd_ext` package; exit 1 when there is one.

Why our own small script: the layers (memory < targets < layouts < kernel < finders < commands <
render/cli) are only real if no module reaches back up, and an import placed inside a function to
dodge a cycle is still a cycle of design. So every `import` statement counts, wherever it stands
(module level, function body, `if TYPE_CHECKING:` excepted: those are annotations, not imports).

Usage: python .ci/import_cycles.py [PACKAGE_DIR]   (default: pykd_ext beside this folder)
"""
import ast
import os
import sys
from typing import Dict, Iterator, List, Set

PACKAGE = "pykd_ext"
#: generated data modules installed into the package from outside it (`structs/`): they import
#: only `layouts.cons`, so they are leaves, not a way back up
EXTERNAL = ("pykd_ext.structs",)


def _modules(root: str) -> Dict[str, str]:
    """Dotted module name -> file path, for every .py file of the package."""
    out: Dict[str, str] = {}
    base = os.path.dirname(root)
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), base)[:-3].replace(os.sep, ".")
            if rel.endswith(".__init__"):
                rel = rel[: -len(".__init__")]
            out[rel] = os.path.join(folder, name)
    return out


def _type_checking_lines(tree: ast.AST) -> Set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks (imports there are for annotations only)."""
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _imports(module: str, path: str, known: Dict[str, str]) -> Iterator[str]:
    with open(path, "r", encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    skip = _type_checking_lines(tree)
    is_package = path.endswith("__init__.py")
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep])
                stem = base + ("." + node.module if node.module else "")
            else:
                stem = node.module or ""
            # `from package import submodule` depends on the submodule, not on the package's
            # __init__; `from module import name` depends on the module
            names = []
            for alias in node.names:
                full = "%s.%s" % (stem, alias.name)
                names.append(full if full in known else stem)
        for name in names:
            if name.startswith(EXTERNAL):
                continue
            # the longest known module the name starts with (a `from x import function` counts as x)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith(PACKAGE):
                yield name


def graph(root: str) -> Dict[str, Set[str]]:
    known = _modules(root)
    return {m: set(_imports(m, p, known)) for m, p in known.items()}


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    found: List[List[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def main(argv: List[str]) -> int:
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), PACKAGE)
    found = cycles(graph(root))
    for component in found:
        print("import cycle (%d modules): %s" % (len(component), ", ".join(component)))
    if not found:
        print("no import cycles in %s" % PACKAGE)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
