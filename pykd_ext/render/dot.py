"""A structure diagram (boxes of fields, arrows between pointer fields) as Graphviz DOT, SVG or PNG.

Why its own module: `diagram` draws kernel structures with values read from a dump, and those
values (image names, command lines, module paths) are written by whoever owns the machine. A DOT
file is a program for Graphviz: a `"` closes a string, `\\l` is an escape, `<`/`>` open HTML
labels, `]` ends an attribute list. So nothing from the dump is ever spliced into DOT text:
- every box is an HTML-like label built here, where each value is first made visible
  (`render.escape.escape_text`: control and bidi characters as `\\x1b`...) and then written as
  XML character data (`&`, `<`, `>`, `"`, `'` and every non-ASCII character as `&#N;`), so the
  label is pure ASCII with no markup but ours;
- node names are our own counters (`n0`, `n1`...), ports `p0`, `p1`...; edge labels are field
  names and offsets from the layouts, escaped the same way;
- the DOT text itself is written by the `graphviz` package (`Digraph`, which quotes identifiers)
  and rendered by Graphviz's `dot` through it (`Digraph.pipe`), never through a shell.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from pykd_ext.errors import PykdExtError
from pykd_ext.render.escape import escape_text

#: Header colours per structure family (fill of the title cell).
COLOURS = {"process": "#cfe2ff", "thread": "#d1e7dd", "user": "#fff3cd", "security": "#f8d7da",
           "object": "#e2e3e5"}
#: The rendered formats and the Graphviz output format each asks for.
FORMATS = {"svg": "svg", "png": "png", "dot": None}


def xml_text(value: Any) -> str:
    """`value` as ASCII XML character data: escaped for a terminal first, then entity-encoded."""
    text = escape_text(value if isinstance(value, str) else str(value))
    out = []
    for char in text:
        code = ord(char)
        if char in "&<>\"'" or code > 0x7E or code < 0x20:
            out.append("&#%d;" % code)
        else:
            out.append(char)
    return "".join(out)


@dataclass
class Row:
    """One field line of a box: `field` (with its offset), its value, and a port when an arrow
    leaves from it."""

    field: str
    value: str
    port: Optional[str] = None


@dataclass
class Node:
    """One structure in a diagram: its rows (fields) and what links it to other nodes."""

    id: str
    type_name: str
    address: Optional[int]
    family: str
    rows: List[Row] = field(default_factory=list)
    note: str = ""

    def add(self, name: str, value: Any, offset: Optional[int] = None, link: bool = False) -> Optional[str]:
        """Add a field line; returns its port name when `link` (an arrow leaves from it)."""
        label = name if offset is None else "+0x%03x %s" % (offset, name)
        port = "p%d" % len(self.rows) if link else None
        self.rows.append(Row(label, _value_text(value), port))
        return port

    def record(self) -> Dict[str, Any]:
        return {"kind": "node", "id": self.id, "type": self.type_name, "address": self.address,
                "fields": [{"field": r.field, "value": r.value} for r in self.rows], "note": self.note}


@dataclass
class Edge:
    """One pointer drawn in a diagram, from a node's row (port) to another node."""

    tail: str
    port: Optional[str]
    head: str
    label: str
    style: str = "solid"

    def record(self) -> Dict[str, Any]:
        return {"kind": "edge", "from": self.tail, "port": self.port, "to": self.head,
                "label": self.label}


class Diagram:
    """Boxes and arrows, deduplicated by (structure type, address)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.nodes: List[Node] = []
        self.edges: List[Edge] = []
        self._by_address: Dict[Tuple[str, int], Node] = {}

    def node(self, type_name: str, address: Optional[int], family: str) -> Tuple[Node, bool]:
        """(the box of `type_name` at `address`, whether it is new)."""
        if address is not None:
            found = self._by_address.get((type_name, address))
            if found is not None:
                return found, False
        made = Node("n%d" % len(self.nodes), type_name, address, family)
        self.nodes.append(made)
        if address is not None:
            self._by_address[(type_name, address)] = made
        return made, True

    def edge(self, tail: Node, port: Optional[str], head: Node, label: str, style: str = "solid") -> None:
        self.edges.append(Edge(tail.id, port, head.id, label, style))

    def records(self) -> List[Dict[str, Any]]:
        return [n.record() for n in self.nodes] + [e.record() for e in self.edges]


def _value_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return "%x" % value if value > 0xFFFF else str(value)
    marker = getattr(value, "marker", None)
    if marker is not None:
        return str(marker)
    return str(value)


def node_label(node: Node) -> str:
    """The HTML-like label of a box (every dump-derived string through `xml_text`)."""
    head = xml_text(node.type_name)
    if node.address is not None:
        head += " " + xml_text("%016x" % node.address)
    parts = ['<<table border="0" cellborder="1" cellspacing="0" cellpadding="3">',
             '<tr><td colspan="2" bgcolor="%s"><b>%s</b></td></tr>' % (COLOURS[node.family], head)]
    for row in node.rows:
        port = ' port="%s"' % row.port if row.port else ""
        parts.append('<tr><td align="left">%s</td><td align="left"%s>%s</td></tr>'
                     % (xml_text(row.field), port, xml_text(row.value)))
    if node.note:
        parts.append('<tr><td colspan="2"><i>%s</i></td></tr>' % xml_text(node.note))
    parts.append("</table>>")
    return "".join(parts)


def to_graph(diagram: Diagram) -> Any:
    """A `graphviz.Digraph` of the diagram (the `graphviz` package: the `[diagram]` extra)."""
    try:
        import graphviz
    except ImportError:
        raise PykdExtError("diagram needs the graphviz package: pip install 'pykd-ext[diagram]'") from None
    graph = graphviz.Digraph("process", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                                     "label": "<%s>" % xml_text(diagram.title)},
                             node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    for node in diagram.nodes:
        graph.node(node.id, label=node_label(node))
    for edge in diagram.edges:
        tail = "%s:%s" % (edge.tail, edge.port) if edge.port else edge.tail
        graph.edge(tail, edge.head, label="<%s>" % xml_text(edge.label), style=edge.style)
    return graph


def dot_source(diagram: Diagram) -> str:
    """The DOT text (indented with spaces: a tab would print as `\\x09` on a terminal)."""
    return str(to_graph(diagram).source).replace("\t", "  ")


def render(diagram: Diagram, fmt: str) -> bytes:
    """The diagram rendered by Graphviz (`dot`): SVG or PNG bytes; DOT source for "dot"."""
    if fmt == "dot":
        return dot_source(diagram).encode("ascii")
    graph = to_graph(diagram)
    import graphviz
    try:
        return bytes(graph.pipe(format=FORMATS[fmt]))
    except graphviz.ExecutableNotFound:
        raise PykdExtError("diagram --%s needs Graphviz's dot program (Debian: apt-get install graphviz)"
                           % fmt) from None
    except graphviz.CalledProcessError as err:
        raise PykdExtError("Graphviz could not render the diagram: %s"
                           % (err.stderr or b"").decode("ascii", "replace").strip()[:300]) from None


__all__ = ["Diagram", "Edge", "Node", "Row", "dot_source", "node_label", "render", "to_graph", "xml_text"]
