"""A layered (Sugiyama-style) layout of the service map, left to right by call depth.

Pure Python and deterministic: the same services and edges always give the same picture, whatever
the order they come in, so a page reload never reshuffles the map. The steps are the classic ones:

1. Cycles are broken by a depth-first search from the services nobody calls (then by name): an
   edge closing a cycle is laid out reversed, and drawn from the caller back to its callee.
2. Layers: the longest call path from a caller-only service; a caller-only service then moves right
   next to its nearest callee, so a batch job calling the database directly is not stuck far left.
3. Edges spanning several layers pass through placeholder points, one per layer, which take part
   in the ordering: long edges go around boxes rather than through them.
4. Order within a layer: barycentre sweeps down and up, keeping the order with fewest crossings.
5. Vertical positions: each layer in turn is pulled towards its neighbours' centres by an isotonic
   regression (pool adjacent violators), which keeps the order and the minimum gap exactly, so boxes
   never overlap.

grandalf (PyPI) does the same; it is not used because its output depends on insertion order, it
lays out each connected component separately and leaves their packing to the caller, and it has not
had a release since 2023. The ~200 lines here are the whole algorithm, and tests/test_map_layout.py
checks its promises.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

#: Box size of a service and the gaps between layers (columns) and boxes, in SVG user units (px).
NODE_WIDTH = 220
NODE_HEIGHT = 46
LAYER_GAP = 96
NODE_GAP = 20
#: Gap kept around a placeholder point of a long edge.
DUMMY_GAP = 10
MARGIN = 12
#: Ordering sweeps (each one down and one up); more rarely removes another crossing.
SWEEPS = 6
#: How far a reversed edge (one closing a cycle) is drawn beside the path a forward twin would take.
REVERSED_OFFSET = 7.0


@dataclass(frozen=True)
class Box:
    """A service's box: top-left corner, size and layer (column, 0 = leftmost)."""

    name: str
    layer: int
    x: float
    y: float
    width: float
    height: float

    @property
    def cy(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True)
class Route:
    """An edge's polyline from the caller's box to the callee's; ``reversed``: it closes a cycle and
    runs right to left."""

    caller: str
    callee: str
    points: tuple[tuple[float, float], ...]
    reversed: bool

    def path(self) -> str:
        """SVG path data: horizontal-tangent cubic curves between points, straight lines along one
        row (through a placeholder's column)."""
        (x0, y0), rest = self.points[0], self.points[1:]
        parts = [f"M{x0:.1f},{y0:.1f}"]
        for x1, y1 in rest:
            if y1 == y0:
                parts.append(f"L{x1:.1f},{y1:.1f}")
            else:
                mid = (x0 + x1) / 2
                parts.append(f"C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f}")
            x0, y0 = x1, y1
        return " ".join(parts)


@dataclass(frozen=True)
class Layout:
    """Boxes by service name, one route per distinct caller -> callee pair, and the drawing's size."""

    boxes: dict[str, Box]
    routes: list[Route]
    width: float
    height: float


def _break_cycles(names: list[str], out: dict[str, list[str]], incoming: set[str]) -> set[tuple[str, str]]:
    """The edges a depth-first search finds closing a cycle (iterative: a 200-long chain is fine)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    roots = [n for n in names if n not in incoming] + names
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out[root]))]
        while stack:
            v, successors = stack[-1]
            w = next(successors, None)
            if w is None:
                state[v] = 2
                stack.pop()
            elif state.get(w) == 1:
                back.add((v, w))
            elif w not in state:
                state[w] = 1
                stack.append((w, iter(out[w])))
    return back


def _layers(names: list[str], dag: list[tuple[str, str]]) -> dict[str, int]:
    preds: dict[str, list[str]] = {n: [] for n in names}
    succs: dict[str, list[str]] = {n: [] for n in names}
    for a, b in dag:
        preds[b].append(a)
        succs[a].append(b)
    # Kahn's order with a heap: deterministic, and every predecessor comes first.
    waiting = {n: len(preds[n]) for n in names}
    ready = [n for n in names if not waiting[n]]
    heapq.heapify(ready)
    layer: dict[str, int] = {}
    while ready:
        v = heapq.heappop(ready)
        layer[v] = max((layer[p] + 1 for p in preds[v]), default=0)
        for w in succs[v]:
            waiting[w] -= 1
            if not waiting[w]:
                heapq.heappush(ready, w)
    for v in names:
        if not preds[v] and succs[v]:
            layer[v] = min(layer[w] for w in succs[v]) - 1
    return layer


def _crossings(upper: list[int], lower_pos: dict[int, int], down: dict[int, list[int]]) -> int:
    ends = [(i, lower_pos[w]) for i, v in enumerate(upper) for w in down[v]]
    return sum(1 for k, (a, b) in enumerate(ends) for c, d in ends[k + 1 :] if (a - c) * (b - d) < 0)


def _by_barycentre(row: list[int], ref_pos: dict[int, int], near: dict[int, list[int]]) -> list[int]:
    """``row`` sorted by the mean position of each one's neighbours in the reference layer; one
    without neighbours keeps its place, and ties keep their order."""

    def key(item: tuple[int, int]) -> tuple[float, int]:
        i, v = item
        linked = [ref_pos[w] for w in near[v]]
        return (sum(linked) / len(linked) if linked else i, i)

    return [v for _, v in sorted(enumerate(row), key=key)]


def _isotonic(desired: list[float], gaps: list[float]) -> list[float]:
    """Positions closest (least squares) to ``desired`` with ``pos[i+1] - pos[i] >= gaps[i]``.

    Shifting by the running sum of gaps turns it into a monotone regression, which pool adjacent
    violators solves exactly."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [mean, count]
    for d, o in zip(desired, offsets, strict=True):
        blocks.append([d - o, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    values = [m for m, c in blocks for _ in range(int(c))]
    return [v + o for v, o in zip(values, offsets, strict=True)]


def layout(
    nodes: Iterable[str],
    edges: Iterable[tuple[str, str]],
    node_width: float = NODE_WIDTH,
    node_height: float = NODE_HEIGHT,
) -> Layout:
    """Lay out ``nodes`` (services) and ``edges`` (caller, callee); services named only in an edge are
    added, calls of a service to itself and repeated pairs are dropped."""
    pairs = sorted({(a, b) for a, b in edges if a != b})
    names = sorted(set(nodes) | {a for a, _ in pairs} | {b for _, b in pairs})
    out: dict[str, list[str]] = {n: [] for n in names}
    for a, b in pairs:
        out[a].append(b)
    back = _break_cycles(names, out, {b for _, b in pairs})
    dag = sorted({(b, a) if (a, b) in back else (a, b) for a, b in pairs})
    layer_of = _layers(names, dag)

    # Graph of real services (ids 0..n-1) and placeholders (n..), each edge one layer long.
    ids = {n: i for i, n in enumerate(names)}
    layer = [layer_of[n] for n in names]
    down: dict[int, list[int]] = {i: [] for i in range(len(names))}
    up: dict[int, list[int]] = {i: [] for i in range(len(names))}
    chains: dict[tuple[str, str], list[int]] = {}
    for a, b in dag:
        chain = [ids[a]]
        for k in range(layer_of[a] + 1, layer_of[b]):
            layer.append(k)
            down[len(layer) - 1], up[len(layer) - 1] = [], []
            chain.append(len(layer) - 1)
        chain.append(ids[b])
        for v, w in zip(chain, chain[1:], strict=False):
            down[v].append(w)
            up[w].append(v)
        chains[a, b] = chain
    depth = max(layer, default=-1) + 1
    rows: list[list[int]] = [[] for _ in range(depth)]
    for v, k in enumerate(layer):  # real services by name, then placeholders in creation order
        rows[k].append(v)

    def total_crossings(order: list[list[int]]) -> int:
        pos = {v: i for row in order for i, v in enumerate(row)}
        return sum(_crossings(order[k], pos, down) for k in range(depth - 1))

    best, best_cost = [list(r) for r in rows], total_crossings(rows)
    for sweep in range(2 * SWEEPS):
        going_down = sweep % 2 == 0
        span = range(1, depth) if going_down else range(depth - 2, -1, -1)
        for k in span:
            ref = rows[k - 1] if going_down else rows[k + 1]
            rows[k] = _by_barycentre(rows[k], {v: i for i, v in enumerate(ref)}, up if going_down else down)
        cost = total_crossings(rows)
        if cost < best_cost:
            best, best_cost = [list(r) for r in rows], cost
    rows = best

    n_real = len(names)

    def height(v: int) -> float:
        return node_height if v < n_real else 0.0

    def gap(v: int, w: int) -> float:
        spacing = NODE_GAP if v < n_real and w < n_real else DUMMY_GAP
        return (height(v) + height(w)) / 2 + spacing

    # Centres: stacked first, then each layer pulled towards its neighbours' centres, both ways.
    centre: dict[int, float] = {}
    for row in rows:
        y = 0.0
        for i, v in enumerate(row):
            y += gap(row[i - 1], v) if i else height(v) / 2
            centre[v] = y
    for sweep in range(2 * SWEEPS):
        going_down = sweep % 2 == 0
        span = range(1, depth) if going_down else range(depth - 2, -1, -1)
        for k in span:
            row = rows[k]
            near = up if going_down else down
            desired = [sum(centre[w] for w in near[v]) / len(near[v]) if near[v] else centre[v] for v in row]
            placed = _isotonic(desired, [gap(row[i], row[i + 1]) for i in range(len(row) - 1)])
            centre.update(zip(row, placed, strict=True))
    top = min((centre[v] - height(v) / 2 for v in centre), default=0.0)
    shift = MARGIN - top

    def x_of(k: int) -> float:
        return MARGIN + k * (node_width + LAYER_GAP)

    boxes = {
        n: Box(n, layer[i], x_of(layer[i]), centre[i] + shift - node_height / 2, node_width, node_height)
        for i, n in enumerate(names)
    }
    routes = []
    for a, b in pairs:
        reversed_ = (a, b) in back
        chain = chains[(b, a) if reversed_ else (a, b)]
        dy = REVERSED_OFFSET if reversed_ else 0.0
        first, last = chain[0], chain[-1]
        points = [(x_of(layer[first]) + node_width, centre[first] + shift + dy)]
        for v in chain[1:-1]:
            y = centre[v] + shift + dy
            points += [(x_of(layer[v]), y), (x_of(layer[v]) + node_width, y)]
        points.append((x_of(layer[last]), centre[last] + shift + dy))
        if reversed_:
            points.reverse()
        routes.append(Route(a, b, tuple(points), reversed_))
    width = x_of(depth) - LAYER_GAP + MARGIN if depth else 2 * MARGIN
    bottom = max((centre[v] + height(v) / 2 for v in centre), default=0.0) + shift
    return Layout(boxes, routes, width, bottom + MARGIN + REVERSED_OFFSET)
