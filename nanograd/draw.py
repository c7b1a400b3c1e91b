"""Pictures of the computation graph, written as SVG by hand (no graphviz, no other dependency).

Backward frees the graph as it walks it, so record it first, then backpropagate, then draw:

    import numpy as np
    from nanograd import Tensor, trace
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    w = Tensor(np.array([0.5, 0.25]), requires_grad=True)
    loss = (x * w).tanh().sum()
    g = trace(loss)              # walks the graph and asks every node to keep its gradient
    loss.backward()
    g.draw("graph.svg", names={x: "x", w: "w"})   # each box: op (or name), shape, data, grad

`draw(loss, "graph.svg")` traces and draws in one go; called before backward it shows values only.
`names` also takes a Module's `named_parameters()`, so a GPT's weights read `transformer.h.0.attn.c_attn.weight`.
In Jupyter, a Graph shows itself (`g` as the last line of a cell).

Layout (a small Sugiyama layout): each op sits in the column of its longest path from a leaf, each leaf just
left of its first consumer, the root rightmost. Edges that skip columns pass through invisible waypoints,
and a few sweeps reorder each column by the mean position of its neighbours, so fewer edges cross.
Tensors with at most 4 elements print their values; bigger ones print mean and std, and their gradient's norm.
With `collapse=True` (the default) a chain of shape-only ops (reshape, transpose, getitem, unbind) becomes one
small box, and a scalar constant joins its op's label ("* 0.125"): a 1-layer GPT's loss takes 37 boxes instead
of 40.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from .tensor import Tensor

SHAPE_OPS = {"reshape", "transpose", "getitem", "unbind"}
COMMUTATIVE = {"+", "*"}  # the other ops number their inputs: a - b is not b - a
FONT, SMALL, CHAR = 12, 11, 0.64  # px; monospace, so a line is CHAR * size wide per character
LINE, PAD, GAP_X, GAP_Y, MARGIN = 15, 7, 56, 16, 20
FILL = {"op": "#ffffff", "leaf": "#dbeafe", "const": "#eeeeee", "shape": "#f4f4f4"}
LEGEND = ("blue box: a leaf that requires grad · grey: constants and shape ops · blue text: data · "
          "red text: grad (after backward) · μ σ: mean, std · ‖g‖: norm · small numbers: argument order")
COLOR = {"title": "#111111", "shape": "#777777", "data": "#1d4ed8", "grad": "#b91c1c"}


class Graph:
    """A recorded graph: `nodes` (Tensors, root first), `edges` (parent index, child index, argument position)."""

    def __init__(self, nodes, edges, cut=()):
        self.nodes, self.edges, self.cut = nodes, edges, set(cut)  # cut: nodes whose inputs lie beyond max_depth

    def draw(self, path, names=None, collapse=True) -> str:
        """Write the picture to `path` (an .svg file) and return the path."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg(names, collapse))
        return str(path)

    def _repr_svg_(self):  # Jupyter
        return self.svg()

    def svg(self, names=None, collapse=True) -> str:
        """The picture as an SVG document (a string)."""
        boxes, edges = self._boxes(_labels(names), collapse)
        return _render(boxes, edges)

    def _boxes(self, labels, collapse):
        """Display boxes (dicts of lines and style) and edges between them, after the optional collapsing."""
        nodes, n = self.nodes, len(self.nodes)
        parents, children = [[] for _ in range(n)], [[] for _ in range(n)]
        for p, c, k in self.edges:
            parents[c].append((k, p))
            children[p].append(c)
        box, hidden, folded, chains = list(range(n)), set(), {}, {}
        if collapse:
            for i, t in enumerate(nodes):  # scalar constants join their op's label
                if i and not parents[i] and not t.requires_grad and t.size == 1 and id(t) not in labels \
                        and len(children[i]) == 1:
                    hidden.add(i)
                    c = children[i][0]
                    folded.setdefault(c, []).extend((k, _num(t.data.item())) for k, p in parents[c] if p == i)
            for i in _topological(n, parents):  # chains of shape ops become one box
                if i and nodes[i].op in SHAPE_OPS and id(nodes[i]) not in labels and len(parents[i]) == 1:
                    p = parents[i][0][1]
                    box[i] = box[p] if box[p] in chains and children[p] == [i] else i
                    chains.setdefault(box[i], []).append(i)
        shown = sorted({box[i] for i in range(n) if i not in hidden})
        number = {b: j for j, b in enumerate(shown)}
        out = []
        for b in shown:
            t = nodes[chains[b][-1] if b in chains else b]
            if b in chains:  # only the ops and the shape: a view holds the same numbers as its input
                lines = [(s, "shape") for s in _wrap("·".join(nodes[i].op for i in chains[b]), 18, "·")]
                out.append(dict(lines=lines + [(_shape(t), "shape")], kind="shape", tensor=t, cut=False))
                continue
            title, name = t.op or ("leaf" if t.requires_grad else "const"), labels.get(id(t))
            for k, value in sorted(folded.get(b, [])):
                title = f"{value} {title}" if k == 0 else f"{title} {value}"
            lines = [(s, "title") for s in _wrap(name, 22, ".")] if name else []
            if not name or t.op:  # a named op reads "name" then "= op"
                lines.append((f"= {title}" if name else title, "title"))
            kind = "op" if t.op else "leaf" if t.requires_grad else "const"
            out.append(dict(lines=lines + [(_shape(t), "shape")] + _values(t), kind=kind, tensor=t, cut=b in self.cut))
        return out, [(number[box[p]], number[box[c]], k) for p, c, k in sorted(self.edges, key=lambda e: e[2])
                     if p not in hidden and box[p] != box[c]]


def trace(root: Tensor, max_depth: int | None = None) -> Graph:
    """Record the graph that made `root` (call before backward) and keep every node's gradient through backward.

    max_depth: record only nodes at most this many ops away from root; the ones at the edge are drawn dashed."""
    if root._freed:
        raise RuntimeError("trace the graph before backward frees it: g = trace(loss); loss.backward(); g.draw(...)")
    index, nodes, depth, edges, cut = {id(root): 0}, [root], [0], [], set()
    for i, t in enumerate(nodes):  # breadth first: the list grows as parents are found
        if t._parents:
            t.retain_grad()
            if max_depth is not None and depth[i] >= max_depth:
                cut.add(i)
                continue
        for k, p in enumerate(t._parents):
            if id(p) not in index:
                index[id(p)] = len(nodes)
                nodes.append(p)
                depth.append(depth[i] + 1)
            edges.append((index[id(p)], i, k))
    return Graph(nodes, edges, cut)


def draw(root: Tensor, path, names=None, collapse=True, max_depth=None) -> str:
    """Trace and draw at once. Before backward this shows values only; for gradients too, use
    `g = trace(loss); loss.backward(); g.draw(path)`."""
    return trace(root, max_depth).draw(path, names, collapse)


def _labels(names) -> dict:
    """{id(tensor): label} from a dict {Tensor or id: label}, {label: Tensor}, or (label, Tensor) pairs."""
    pairs = [(b, a) if isinstance(a, str) else (a, b)
             for a, b in (names.items() if isinstance(names, dict) else names or ())]
    return {a if isinstance(a, int) else id(a): str(b) for a, b in pairs}


def _num(v) -> str:
    return f"{v:.4g}"


def _shape(t) -> str:
    return "scalar" if t.ndim == 0 else "shape " + "×".join(map(str, t.shape))


def _values(t) -> list:
    lines = []
    for label, a, style in (("data", t.data, "data"), ("grad", t.grad, "grad")):
        if a is None or a.size == 0:
            continue
        if a.size <= 4:
            v = [_num(x) for x in np.asarray(a, dtype=float).ravel()]
            lines.append((f"{label} {v[0] if a.ndim == 0 else '[' + ', '.join(v) + ']'}", style))
        else:  # too many numbers to print: their mean and spread, and the gradient's size
            lines.append((f"data μ={a.mean():.3g} σ={a.std():.3g}" if style == "data"
                          else f"grad ‖g‖={np.linalg.norm(a):.3g}", style))
    return lines


def _wrap(text: str, width: int, sep: str) -> list:
    """Split `text` after `sep` into lines of at most `width` characters where possible."""
    lines = [""]
    for part in [p + sep for p in text.split(sep)[:-1]] + [text.split(sep)[-1]]:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return lines


def _topological(n, parents) -> list:
    """Node indices, every node after its parents (Kahn's algorithm)."""
    children, waiting = [[] for _ in range(n)], [0] * n
    for c, ps in enumerate(parents):
        for p in {p for _, p in ps}:
            children[p].append(c)
            waiting[c] += 1
    order = [i for i in range(n) if not waiting[i]]
    for i in order:  # the list grows as nodes become ready
        for c in children[i]:
            waiting[c] -= 1
            if not waiting[c]:
                order.append(c)
    return order


def _layout(boxes, edges):
    """Place the boxes (sets their x, y: top left, w, h); return each edge's waypoints and the picture's size."""
    n, parents = len(boxes), [[] for _ in boxes]
    for p, c, k in edges:
        parents[c].append((k, p))
    layer = [0] * n
    for i in _topological(n, parents):
        layer[i] = max((layer[p] + 1 for _, p in parents[i]), default=0)
    for p, c, _ in sorted(edges, key=lambda e: -layer[e[1]]):  # a leaf sits just left of its first consumer
        if not parents[p]:
            layer[p] = layer[c] - 1
    # Vertices: the boxes, then one waypoint per column an edge skips.
    height = [len(b["lines"]) * LINE + PAD for b in boxes]
    vlayer, near, routes = list(layer), [[] for _ in range(n)], []
    for p, c, _ in edges:
        route = [p]
        for col in range(layer[p] + 1, layer[c]):
            vlayer.append(col), height.append(0), near.append([])
            route.append(len(vlayer) - 1)
        route.append(c)
        for a, b in zip(route, route[1:]):
            near[a].append(b), near[b].append(a)
        routes.append(route)
    columns = [[v for v in range(len(vlayer)) if vlayer[v] == col] for col in range(max(layer) + 1)]
    pos = {v: j for col in columns for j, v in enumerate(col)}
    for sweep in range(6):  # barycentre ordering, alternately left-to-right and right-to-left
        step = 1 if sweep % 2 == 0 else -1
        for col in columns[::step]:
            key = {v: np.mean([pos[u] for u in near[v] if vlayer[u] == vlayer[v] - step] or [pos[v]]) for v in col}
            col.sort(key=key.get)
            pos.update((v, j) for j, v in enumerate(col))
    y = dict.fromkeys(range(len(vlayer)), 0.0)  # the first sweep stacks each column, later ones straighten edges
    for sweep in range(12):  # pull every vertex towards its neighbours, keeping the order and the gaps
        for col in columns[:: 1 if sweep % 2 == 0 else -1]:
            want = [np.mean([y[u] for u in near[v]]) if near[v] else y[v] for v in col]
            gaps = [(height[a] + height[b]) / 2 + (GAP_Y if height[a] and height[b] else GAP_Y / 2)
                    for a, b in zip(col, col[1:])]
            y.update(zip(col, _pack(want, gaps)))
    top = min(y[v] - height[v] / 2 for v in y)
    width = [max((_width(boxes[v]) for v in col if v < n), default=0) for col in columns]
    left = np.concatenate([[MARGIN], MARGIN + np.cumsum(np.add(width, GAP_X))])
    for i, b in enumerate(boxes):
        b["w"], b["h"] = _width(b), height[i]
        b["x"], b["y"] = left[layer[i]] + (width[layer[i]] - b["w"]) / 2, y[i] - top + MARGIN - height[i] / 2
    points = [[(left[vlayer[v]], y[v] - top + MARGIN), (left[vlayer[v]] + width[vlayer[v]], y[v] - top + MARGIN)]
              for v in range(len(vlayer))]
    bottom = max(y[v] + height[v] / 2 for v in y) - top + 2 * MARGIN
    return [[pt for v in route[1:-1] for pt in points[v]] for route in routes], left[-1] - GAP_X + MARGIN, bottom


def _pack(want, gaps) -> np.ndarray:
    """Positions closest to `want` (least squares) that keep the order and at least `gaps` between neighbours:
    isotonic regression (pool adjacent violators) on the positions with the gaps taken out."""
    offset = np.concatenate([[0.0], np.cumsum(gaps)])
    blocks = []  # [mean, count] of runs that share one position
    for v in np.subtract(want, offset):
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, c1), (m0, c0) = blocks.pop(), blocks.pop()
            blocks.append([(m0 * c0 + m1 * c1) / (c0 + c1), c0 + c1])
    return np.array([m for m, c in blocks for _ in range(c)]) + offset


def _width(box) -> float:
    return max(len(s) * CHAR * (FONT if style == "title" else SMALL) for s, style in box["lines"]) + 2 * PAD


def _render(boxes, edges) -> str:
    waypoints, width, height = _layout(boxes, edges)  # also sets each box's x, y, w, h
    legend = _wrap(LEGEND, max(30, int((width - 2 * MARGIN) / (CHAR * 10))), " · ")
    width, height = max(width, max(map(len, legend)) * CHAR * 10 + 2 * MARGIN), height + LINE * len(legend)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
           f'height="{height:.0f}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#555"/></marker></defs>',
           f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    # Each input arrives at its own port on the left side: in argument order, or for + and * in the order the
    # edges come in from above, so they do not cross.
    arrive = [via[-1][1] if via else boxes[p]["y"] + boxes[p]["h"] / 2 for (p, _, _), via in zip(edges, waypoints)]
    ports = {}
    for e in sorted(range(len(edges)), key=lambda e: arrive[e] if boxes[edges[e][1]]["tensor"].op in COMMUTATIVE
                    else edges[e][2]):
        ports.setdefault(edges[e][1], []).append(e)
    for e, ((p, c, k), via) in enumerate(zip(edges, waypoints)):
        a, b, ks = boxes[p], boxes[c], ports[c]
        end = (b["x"], b["y"] + b["h"] * (ks.index(e) + 1) / (len(ks) + 1))
        pts = [(a["x"] + a["w"], a["y"] + a["h"] / 2)] + via + [end]
        d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
        for j, ((x0, y0), (x1, y1)) in enumerate(zip(pts, pts[1:])):  # curves between columns, straight across
            m = (x1 - x0) / 2
            d += f" L{x1:.1f},{y1:.1f}" if j % 2 else f" C{x0 + m:.1f},{y0:.1f} {x1 - m:.1f},{y1:.1f} {x1:.1f},{y1:.1f}"
        out.append(f'<path class="edge" d="{d}" fill="none" stroke="#555" stroke-width="1.2" '
                   'marker-end="url(#arrow)"/>')
        if len(ks) > 1 and b["tensor"].op not in COMMUTATIVE and b["kind"] != "shape":
            out.append(f'<text x="{end[0] - 4:.1f}" y="{end[1] - 3:.1f}" font-size="9" fill="#888" '
                       f'text-anchor="end">{k + 1}</text>')
    for i, b in enumerate(boxes):
        t = b["tensor"]
        tip = f"{t.op or 'leaf'} {t.dtype} {tuple(t.shape)}"
        dash = ' stroke-dasharray="4,3"' if b["cut"] else ""
        out.append(f'<g><title>{escape(tip)}</title><rect class="node" x="{b["x"]:.1f}" y="{b["y"]:.1f}" '
                   f'width="{b["w"]:.1f}" height="{b["h"]:.1f}" rx="5" fill="{FILL[b["kind"]]}" stroke="#333" '
                   f'stroke-width="{2.4 if i == 0 else 1}"{dash}/>')
        for j, (s, style) in enumerate(b["lines"]):
            font = f'font-size="{FONT}" font-weight="bold"' if style == "title" else f'font-size="{SMALL}"'
            out.append(f'<text x="{b["x"] + PAD:.1f}" y="{b["y"] + PAD / 2 + LINE * (j + 0.75):.1f}" {font} '
                       f'fill="{COLOR[style]}">{escape(s)}</text>')
        out.append("</g>")
    for j, s in enumerate(legend):
        out.append(f'<text x="{MARGIN}" y="{height - MARGIN / 2 - LINE * (len(legend) - 1 - j):.0f}" font-size="10" '
                   f'fill="#888">{escape(s)}</text>')
    out.append("</svg>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"
