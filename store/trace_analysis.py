"""Jaeger's other trace views over a :class:`store.traces.TraceOutline`: trace statistics (per service
and operation: count, errors, total and self time) and trace comparison (two traces merged into one
tree of service/operation paths, with the differences of counts and durations).

Pure functions: the caller reads the outlines (``traces.outline``). Both views see one tree: a span
whose parent is not stored is a root, so is a span that names itself as its parent, and a cycle of
parents (bad data) is cut above its earliest span, which becomes a root. Everything is O(n log n) in
the number of spans and nothing recurses: a 100,000-span trace takes a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from store.trace_tree import Tree, tree
from store.traces import TraceOutline

Presence = Literal["both", "a", "b"]


# -- trace statistics --------------------------------------------------------------------------


@dataclass
class Stat:
    """Counts and durations (ns) of a group of spans: one operation, one service, or the trace."""

    count: int = 0
    errors: int = 0
    total_ns: int = 0
    self_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def merge(self, other: Stat) -> None:
        """Count the spans of ``other`` in."""
        if other.count:
            self.min_ns = other.min_ns if self.count == 0 else min(self.min_ns, other.min_ns)
            self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.errors += other.errors
        self.total_ns += other.total_ns
        self.self_ns += other.self_ns


@dataclass(frozen=True)
class OperationStats:
    service: str
    operation: str
    stat: Stat


@dataclass(frozen=True)
class ServiceStats:
    """One service's subtotal and its operations (sorted by name unless re-sorted)."""

    service: str
    stat: Stat
    operations: list[OperationStats]


@dataclass(frozen=True)
class TraceStatistics:
    """Per service and operation, per service, and for the whole trace."""

    services: list[ServiceStats]
    total: Stat = field(default_factory=Stat)
    duration_ns: int = 0  # first start to last end

    @property
    def operations(self) -> list[OperationStats]:
        return [op for group in self.services for op in group.operations]


def self_times(outline: TraceOutline, spans: Tree | None = None) -> list[int]:
    """Each span's self time (ns): its duration minus the length of the union of its direct
    children's intervals clipped to its own interval (Jaeger's trace statistics' "self time")."""
    spans = spans or tree(outline)
    starts = outline.starts
    lengths = [d if d > 0 else 0 for d in outline.durations]
    out = list(lengths)
    for i, kids in spans.children.items():
        lo = starts[i]
        hi = lo + lengths[i]
        if len(kids) == 1:  # the common case, without sorting
            c = kids[0]
            out[i] = lengths[i] - max(0, min(starts[c] + lengths[c], hi) - max(starts[c], lo))
            continue
        clipped = sorted(
            (max(starts[c], lo), min(starts[c] + lengths[c], hi))
            for c in kids
            if starts[c] < hi and starts[c] + lengths[c] > lo
        )
        covered, run_start, run_end = 0, lo, lo
        for start, end in clipped:
            if start > run_end:
                covered += run_end - run_start
                run_start = start
            if end > run_end:
                run_end = end
        out[i] = lengths[i] - covered - (run_end - run_start)
    return out


def statistics(outline: TraceOutline) -> TraceStatistics:
    """Trace statistics of ``outline``: services by name, each with its operations by name."""
    keys = sorted(set(zip(outline.services, outline.names, strict=True)))
    rank = {key: r for r, key in enumerate(keys)}
    stats = [Stat(min_ns=-1) for _ in keys]  # -1: no span yet
    own = self_times(outline)
    for key, length, self_time, status in zip(
        zip(outline.services, outline.names, strict=True),
        outline.durations,
        own,
        outline.statuses,
        strict=True,
    ):
        stat = stats[rank[key]]
        length = length if length > 0 else 0
        stat.count += 1
        stat.total_ns += length
        stat.self_ns += self_time
        if length > stat.max_ns:
            stat.max_ns = length
        if length < stat.min_ns or stat.min_ns < 0:
            stat.min_ns = length
        if status == "ERROR":
            stat.errors += 1
    groups: dict[str, ServiceStats] = {}
    total = Stat()
    for (service, name), stat in zip(keys, stats, strict=True):
        group = groups.get(service)
        if group is None:
            group = groups[service] = ServiceStats(service, Stat(), [])
        group.operations.append(OperationStats(service, name, stat))
        group.stat.merge(stat)
        total.merge(stat)
    return TraceStatistics(list(groups.values()), total, duration(outline))


def duration(outline: TraceOutline) -> int:
    """The trace's duration (ns): first start to last end; 0 for an empty outline."""
    if not len(outline):
        return 0
    ends = (s + max(d, 0) for s, d in zip(outline.starts, outline.durations, strict=True))
    return max(ends) - min(outline.starts)


#: The orders of the statistics page: ?sort= value -> (label, key; larger first, name: A to Z).
SORTS: dict[str, tuple[str, Callable[[Stat, str], tuple]]] = {
    "self": ("self time", lambda s, name: (-s.self_ns, name)),
    "total": ("total duration", lambda s, name: (-s.total_ns, name)),
    "count": ("span count", lambda s, name: (-s.count, name)),
    "name": ("name", lambda s, name: (name,)),
}


def sorted_statistics(stats: TraceStatistics, sort: str) -> TraceStatistics:
    """``stats`` with services and the operations in each ordered by :data:`SORTS` ``[sort]``."""
    key = SORTS[sort][1]
    groups = [
        ServiceStats(g.service, g.stat, sorted(g.operations, key=lambda op: key(op.stat, op.operation)))
        for g in stats.services
    ]
    groups.sort(key=lambda g: key(g.stat, g.service))
    return TraceStatistics(groups, stats.total, stats.duration_ns)


# -- trace comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareNode:
    """All spans of trace A and of trace B at one path of (service, operation) pairs from a root."""

    position: int  # in tree order
    depth: int  # 0: a root
    parent: int  # position of the parent node; -1 for a root
    service: str
    operation: str
    count_a: int
    count_b: int
    total_a_ns: int
    total_b_ns: int

    @property
    def presence(self) -> Presence:
        if self.count_a and self.count_b:
            return "both"
        return "a" if self.count_a else "b"

    @property
    def count_diff(self) -> int:
        return self.count_b - self.count_a

    @property
    def total_diff_ns(self) -> int:
        return self.total_b_ns - self.total_a_ns

    @property
    def total_diff_percent(self) -> float | None:
        """B's total against A's, in percent of A's; None when A has no time at this path."""
        return 100 * self.total_diff_ns / self.total_a_ns if self.total_a_ns else None


@dataclass(frozen=True)
class TraceComparison:
    """The merged tree as columns, in tree order: children right under their parent, siblings by
    (service, operation). Columns, as in ``TraceOutline``: a list of 100,000 node objects would keep
    the garbage collector busy; iterate for :class:`CompareNode` values."""

    depths: list[int]
    parents: list[int]  # position of the parent node; -1 for a root
    services: list[str]
    operations: list[str]
    counts_a: list[int]
    counts_b: list[int]
    totals_a_ns: list[int]
    totals_b_ns: list[int]
    spans_a: int
    spans_b: int
    duration_a_ns: int
    duration_b_ns: int

    def __len__(self) -> int:
        return len(self.depths)

    def node(self, i: int) -> CompareNode:
        return CompareNode(
            i,
            self.depths[i],
            self.parents[i],
            self.services[i],
            self.operations[i],
            self.counts_a[i],
            self.counts_b[i],
            self.totals_a_ns[i],
            self.totals_b_ns[i],
        )

    def __iter__(self) -> Iterator[CompareNode]:
        return (self.node(i) for i in range(len(self)))

    @property
    def only_a(self) -> int:
        """Nodes with spans of A and none of B."""
        return sum(1 for a, b in zip(self.counts_a, self.counts_b, strict=True) if a and not b)

    @property
    def only_b(self) -> int:
        """Nodes with spans of B and none of A."""
        return sum(1 for a, b in zip(self.counts_a, self.counts_b, strict=True) if b and not a)


def compare(a: TraceOutline, b: TraceOutline) -> TraceComparison:
    """Traces ``a`` and ``b`` merged by path (Jaeger's trace comparison): every span with the same
    path of (service, operation) pairs from its root is one node, counted for its trace."""
    names = sorted(set(zip(a.services, a.names, strict=True)) | set(zip(b.services, b.names, strict=True)))
    rank = {key: r for r, key in enumerate(names)}
    width = len(names)
    # A path is a number: its parent's node times ``width`` plus the rank of its (service, operation);
    # node 0 is above the roots. Sorted, the numbers list siblings together, by name.
    path_node: dict[int, int] = {}
    paths = [0]  # by node
    most = len(a) + len(b) + 1
    counts, totals = ([0] * most, [0] * most), ([0] * most, [0] * most)
    for side, outline in enumerate((a, b)):
        spans = tree(outline)
        ops = [rank[key] for key in zip(outline.services, outline.names, strict=True)]
        node_of = [0] * (len(outline) + 1)  # [-1], the parent of a root: node 0
        parents, durations = spans.parents, outline.durations
        count, total = counts[side], totals[side]
        for i in spans.order:
            path = node_of[parents[i]] * width + ops[i]
            node = path_node.get(path)
            if node is None:
                node = path_node[path] = len(paths)
                paths.append(path)
            node_of[i] = node
            count[node] += 1
            if durations[i] > 0:
                total[node] += durations[i]
    below: dict[int, list[int]] = {}  # node -> its children, last by name first
    for path in sorted(paths[1:], reverse=True):
        kids = below.get(path // width)
        if kids is None:
            below[path // width] = [path_node[path]]
        else:
            kids.append(path_node[path])
    order: list[int] = []  # depth first, siblings by name
    stack = list(below.get(0, ()))
    while stack:
        node = stack.pop()
        order.append(node)
        kids = below.get(node)
        if kids:
            stack.extend(kids)
    ups = [paths[node] // width for node in order]
    position_of, depth_of = [-1] * len(paths), [-1] * len(paths)
    for position, (node, up) in enumerate(zip(order, ups, strict=True)):
        position_of[node] = position
        depth_of[node] = depth_of[up] + 1
    keys = [names[paths[node] % width] for node in order]
    return TraceComparison(
        depths=[depth_of[node] for node in order],
        parents=[position_of[up] for up in ups],
        services=[key[0] for key in keys],
        operations=[key[1] for key in keys],
        counts_a=[counts[0][node] for node in order],
        counts_b=[counts[1][node] for node in order],
        totals_a_ns=[totals[0][node] for node in order],
        totals_b_ns=[totals[1][node] for node in order],
        spans_a=len(a),
        spans_b=len(b),
        duration_a_ns=duration(a),
        duration_b_ns=duration(b),
    )
