"""A trace's spans as a tree: parent links with bad data made whole (:func:`tree`, which the trace
statistics and comparison use too), and the waterfall's rows, depths and critical path (:func:`build`).

Works on a :class:`store.traces.TraceOutline` (columns, no attributes): a 100,000-span trace is laid
out in a fraction of a second, and nothing recurses.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.traces import TraceOutline


@dataclass(frozen=True)
class Tree:
    """Parent links of an outline's spans by position, with cycles broken."""

    parents: list[int]  # -1: a root
    children: dict[int, list[int]]  # spans with children only; each list in outline (start) order
    roots: list[int]
    order: list[int]  # every span once, each after its parent


def tree(outline: TraceOutline) -> Tree:
    """The span tree of ``outline``; every span is reachable from exactly one root."""
    n = len(outline)
    ids = outline.span_ids
    index = dict(zip(reversed(ids), range(n - 1, -1, -1), strict=True))  # a duplicated id: the first
    get = index.get
    parents = [get(p, -1) if p else -1 for p in outline.parent_ids]
    roots: list[int] = []
    children: dict[int, list[int]] = {}
    for i, parent in enumerate(parents):
        if parent == i:
            parents[i] = parent = -1
        if parent < 0:
            roots.append(i)
        else:
            kids = children.get(parent)
            if kids is None:
                children[parent] = [i]
            else:
                kids.append(i)
    order = list(roots)
    _descend(order, 0, children)  # one parent per span: no span is reached twice
    if len(order) < n:
        seen = bytearray(n)
        for i in order:
            seen[i] = 1
        for i in range(n):
            if not seen[i]:
                # No root reaches i: above it is a cycle of parents. Its earliest span becomes a root.
                cut = min(_cycle_above(i, parents))
                children[parents[cut]].remove(cut)
                parents[cut] = -1
                roots.append(cut)
                first = len(order)
                order.append(cut)
                _descend(order, first, children)
                for j in order[first:]:
                    seen[j] = 1
    return Tree(parents, children, roots, order)


def _cycle_above(i: int, parents: list[int]) -> list[int]:
    """The spans of the cycle that the parents of ``i`` run into (``i`` has no root above it)."""
    walked: dict[int, int] = {}
    while i not in walked:
        walked[i] = len(walked)
        i = parents[i]
    return list(walked)[walked[i] :]


def _descend(order: list[int], first: int, children: dict[int, list[int]]) -> None:
    """Append everything below ``order[first:]`` to ``order``, breadth first (no recursion: a
    chain may be 100,000 spans deep)."""
    k = first
    while k < len(order):
        kids = children.get(order[k])
        if kids:
            order.extend(kids)
        k += 1


@dataclass(frozen=True)
class TraceTree:
    """The rows of a waterfall. ``order[r]`` is the outline index of row ``r``; the other lists are per
    row; ``critical`` holds outline indices, root first."""

    order: list[int]
    depth: list[int]
    parent_row: list[int]  # -1 for a root
    has_children: list[bool]
    orphan: list[bool]  # has a parent id whose span is not stored
    critical: list[int]
    start_ns: int
    end_ns: int

    def __len__(self) -> int:
        return len(self.order)


def build(spans: TraceOutline) -> TraceTree:
    """Rows in tree order (children by start time), their depths, and the critical path: from the root
    that ends last, repeatedly the child that ends last. Roots as :func:`tree` finds them: every
    stored span has exactly one row."""
    n = len(spans)
    if not n:
        return TraceTree([], [], [], [], [], [], 0, 0)
    links = tree(spans)
    children = links.children
    starts = spans.starts
    ends = [s + d for s, d in zip(starts, spans.durations, strict=True)]
    order: list[int] = []
    depth: list[int] = []
    parent_row: list[int] = []
    for root in links.roots:
        stack = [(root, 0, -1)]
        while stack:  # depth first without recursion: a chain may be 100,000 spans deep
            i, d, up = stack.pop()
            row = len(order)
            order.append(i)
            depth.append(d)
            parent_row.append(up)
            stack.extend((c, d + 1, row) for c in reversed(children.get(i, ())))

    stored = set(spans.span_ids)
    real_roots = [r for r in links.roots if not spans.parent_ids[r]] or links.roots
    critical: list[int] = []
    current: int | None = max(real_roots, key=lambda r: (ends[r], -starts[r]))
    while current is not None:
        critical.append(current)
        kids = children.get(current)
        current = max(kids, key=lambda c: (ends[c], -starts[c])) if kids else None

    return TraceTree(
        order=order,
        depth=depth,
        parent_row=parent_row,
        has_children=[i in children for i in order],
        orphan=[bool(spans.parent_ids[i]) and spans.parent_ids[i] not in stored for i in order],
        critical=critical,
        start_ns=min(starts),
        end_ns=max(ends),
    )
