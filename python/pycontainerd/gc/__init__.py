"""Garbage collection tooling: nodes, the tri-colour mark, and what a collector offers.

containerd's ``gc`` package. A :class:`Node` is one collectable (or referring) object: a
resource type, its namespace and its key. :func:`tricolor` marks everything reachable from the
roots; the metadata store (:mod:`pycontainerd.metadata.gc`) supplies roots, references and
the sweep, and :mod:`pycontainerd.gc.scheduler` decides when to collect.

Resource types are small integers; the bits above :data:`RESOURCE_MAX` are the caller's to
use while marking (containerd marks "flat" references this way) and are stripped from the
reachable set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, NamedTuple, Protocol

__all__ = ["RESOURCE_MAX", "Collector", "Node", "Stats", "tricolor"]

#: The highest resource type; the bits above are flags for the reference function.
RESOURCE_MAX: Final = 0x1F


class Node(NamedTuple):
    """One object in the reference graph."""

    type: int
    namespace: str
    key: str


class Stats(Protocol):
    """What one collection reports."""

    def elapsed(self) -> float:
        """Seconds the collection counts against the pause threshold."""
        ...


class Collector(Protocol):
    """What the scheduler drives: containerd's ``collector`` interface."""

    def register_mutation_callback(self, fn: Callable[[bool], None]) -> None:
        """Have ``fn(dirty)`` called after every metadata change."""
        ...

    def garbage_collect(self) -> Stats: ...


def tricolor(
    roots: Iterable[Node],
    refs: Callable[[Node], Iterable[Node]],
    *,
    visited: set[Node] | None = None,
) -> set[Node]:
    """Every node reachable from ``roots`` through ``refs``, flags stripped.

    ``visited`` collects the nodes traced, with their flags (a node reached only as a flat
    reference has not had its references followed). Pass the set of an earlier mark to
    continue it: nodes in it are not traced again, nor returned. The walk is depth first on an
    explicit stack, so a long chain of references cannot overflow Python's stack.
    """
    grays = list(roots)
    if visited is None:
        visited = set()
    reachable: set[Node] = set()
    while grays:
        node = grays.pop()
        if node in visited:
            continue
        visited.add(node)
        for target in refs(node):
            if target not in visited:
                grays.append(target)
        plain = node if node.type <= RESOURCE_MAX else node._replace(type=node.type & RESOURCE_MAX)
        reachable.add(plain)
    return reachable
