"""The service map's layered layout (``ui/map_layout.py``): boxes never overlap, callers stand left of
their callees (but for the edges that close a cycle), long edges go around boxes, and the same graph
always gives the same picture."""

from __future__ import annotations

import random
import re

from ui import map_layout
from ui.map_layout import Layout, layout

SHOP = [
    ("frontend", "checkout"),
    ("frontend", "catalog"),
    ("checkout", "pay"),
    ("checkout", "inventory"),
    ("pay", "bank"),
    ("inventory", "db"),
    ("catalog", "db"),
    ("frontend", "db"),  # spans three layers
    ("nightly-batch", "db"),  # called by nobody
    ("pay", "checkout"),  # a callback: closes a cycle
]


def _overlap(a: map_layout.Box, b: map_layout.Box) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def _no_overlap(placed: Layout) -> None:
    boxes = sorted(placed.boxes.values(), key=lambda b: b.name)
    for i, a in enumerate(boxes):
        assert a.x >= 0 and a.y >= 0
        assert a.x + a.width <= placed.width and a.y + a.height <= placed.height, a
        for b in boxes[i + 1 :]:
            assert not _overlap(a, b), (a, b)


def _random_graph(seed: int, n: int, m: int) -> tuple[list[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    names = [f"svc-{i:03d}" for i in range(n)]
    return names, [(rng.choice(names), rng.choice(names)) for _ in range(m)]


def test_boxes_never_overlap_and_stay_inside_the_drawing() -> None:
    _no_overlap(layout(["lonely"], SHOP))
    for seed in range(20):
        _no_overlap(layout(*_random_graph(seed, 5 + seed * 3, 10 + seed * 6)))


def test_layers_follow_the_call_direction() -> None:
    placed = layout([], SHOP)
    box = placed.boxes
    for caller, callee in SHOP:
        if (caller, callee) != ("pay", "checkout"):
            assert box[caller].layer < box[callee].layer, (caller, callee)
            assert box[caller].x + box[caller].width < box[callee].x
    assert [box[n].layer for n in ("frontend", "checkout", "pay", "bank")] == [0, 1, 2, 3]
    # A service nobody calls stands just left of its callee, not in the first column.
    assert box["nightly-batch"].layer == box["db"].layer - 1 > 0
    # The callback is the one edge drawn backwards: from pay's left side to checkout's right side.
    routes = {(r.caller, r.callee): r for r in placed.routes}
    assert [k for k, r in routes.items() if r.reversed] == [("pay", "checkout")]
    back = routes["pay", "checkout"].points
    assert back[0][0] == box["pay"].x and back[-1][0] == box["checkout"].x + box["checkout"].width
    # Forward routes leave the caller's right side and end on the callee's left side.
    for (caller, callee), route in routes.items():
        if not route.reversed:
            (x0, y0), (x1, y1) = route.points[0], route.points[-1]
            assert x0 == box[caller].x + box[caller].width and box[caller].y <= y0 <= box[caller].y + 46
            assert x1 == box[callee].x and box[callee].y <= y1 <= box[callee].y + 46


def test_every_cycle_is_broken_and_random_graphs_respect_the_direction_of_the_rest() -> None:
    for seed in range(20):
        names, edges = _random_graph(seed, 12, 30)
        placed = layout(names, edges)
        assert {(r.caller, r.callee) for r in placed.routes} == {(a, b) for a, b in edges if a != b}
        for r in placed.routes:
            a, b = placed.boxes[r.caller], placed.boxes[r.callee]
            assert (a.layer < b.layer) != r.reversed, (seed, r)


def test_a_long_edge_passes_beside_the_boxes_of_the_layers_it_crosses() -> None:
    placed = layout([], SHOP)
    route = next(r for r in placed.routes if (r.caller, r.callee) == ("frontend", "db"))
    box = placed.boxes
    # Through checkout's and pay's columns: two points per crossed layer, at one height each.
    assert len(route.points) == 2 + 2 * (box["db"].layer - box["frontend"].layer - 1)
    for (x0, y0), (x1, y1) in zip(route.points[1:-1:2], route.points[2:-1:2], strict=True):
        assert y0 == y1 and x1 - x0 == map_layout.NODE_WIDTH
        for b in box.values():
            if b.x == x0:
                assert not b.y <= y0 <= b.y + b.height, (b.name, y0)
    assert re.fullmatch(r"M[\d.]+,[\d.]+( (C[\d., ]+|L[\d.]+,[\d.]+))+", route.path())


def test_the_layout_is_deterministic_whatever_the_input_order() -> None:
    names, edges = _random_graph(7, 30, 60)
    first = layout(names, edges)
    rng = random.Random(1)
    for _ in range(5):
        shuffled_names, shuffled_edges = names[:], edges + edges[:5]  # repeated pairs change nothing
        rng.shuffle(shuffled_names)
        rng.shuffle(shuffled_edges)
        again = layout(shuffled_names, shuffled_edges)
        assert again == first


def test_ordering_removes_crossings_a_naive_order_has() -> None:
    # By name, a1 -> z2 and z1 -> a2 cross; the barycentre sweeps put them side by side.
    placed = layout([], [("a1", "z2"), ("z1", "a2")])
    b = placed.boxes
    assert (b["a1"].y < b["z1"].y) == (b["z2"].y < b["a2"].y)


def test_services_without_calls_and_self_calls_are_placed_alone() -> None:
    placed = layout(["solo", "loop"], [("loop", "loop")])
    assert placed.routes == [] and set(placed.boxes) == {"solo", "loop"}
    assert {b.layer for b in placed.boxes.values()} == {0}
    _no_overlap(placed)
    empty = layout([], [])
    assert empty.boxes == {} and empty.routes == [] and empty.width > 0


def test_a_tree_of_two_hundred_services_has_one_layer_per_call_depth() -> None:
    names = [f"svc-{i:03d}" for i in range(200)]
    edges = [(names[(i - 1) // 5], names[i]) for i in range(1, 200)]
    placed = layout(names, edges)
    # Depths 0 to 4: 1 + 5 + 25 + 125 services, then the last 44.
    depth = {0: 0}
    for i in range(1, 200):
        depth[i] = depth[(i - 1) // 5] + 1
    assert all(placed.boxes[n].layer == depth[i] for i, n in enumerate(names))
    _no_overlap(placed)
