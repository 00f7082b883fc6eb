"""A trace's spans as a tree: the waterfall's row order, depths and critical path.

Works on a :class:`store.traces.TraceOutline` (columns, no attributes), so a 100,000-span trace is laid
out in one pass over plain lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.traces import TraceOutline


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
    that ends last, repeatedly the child that ends last.

    A span whose parent is not stored is another root; spans in a parent cycle (bad data) become roots
    too, so every stored span has exactly one row.
    """
    n = len(spans)
    if not n:
        return TraceTree([], [], [], [], [], [], 0, 0)
    index: dict[str, int] = {}
    for i, span_id in enumerate(spans.span_ids):
        index.setdefault(span_id, i)
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    for i, parent_id in enumerate(spans.parent_ids):  # start order: children lists are in start order
        parent = index.get(parent_id) if parent_id else None
        if parent is None or parent == i:
            roots.append(i)
        else:
            children[parent].append(i)
    starts = spans.starts
    ends = [s + d for s, d in zip(starts, spans.durations, strict=True)]

    order: list[int] = []
    depth: list[int] = []
    parent_row: list[int] = []
    row_of = [-1] * n

    def walk(start: int) -> None:
        stack = [(start, 0, -1)]
        while stack:
            i, d, up = stack.pop()
            if row_of[i] >= 0:
                continue
            row_of[i] = len(order)
            order.append(i)
            depth.append(d)
            parent_row.append(up)
            stack.extend((c, d + 1, row_of[i]) for c in reversed(children[i]))

    for r in roots:
        walk(r)
    for i in range(n):  # not reached from a root: a cycle of parents
        if row_of[i] < 0:
            roots.append(i)
            walk(i)

    real_roots = [r for r in roots if not spans.parent_ids[r]] or roots
    critical: list[int] = []
    on_path: set[int] = set()
    current: int | None = max(real_roots, key=lambda r: (ends[r], -starts[r]))
    while current is not None and current not in on_path:
        on_path.add(current)
        critical.append(current)
        kids = children[current]
        current = max(kids, key=lambda c: (ends[c], -starts[c])) if kids else None

    return TraceTree(
        order=order,
        depth=depth,
        parent_row=parent_row,
        has_children=[bool(children[i]) for i in order],
        orphan=[bool(spans.parent_ids[i]) and spans.parent_ids[i] not in index for i in order],
        critical=critical,
        start_ns=min(starts),
        end_ns=max(ends),
    )
