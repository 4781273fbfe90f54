"""What the architecture drawing shows, as typed data: clusters, placed nodes, labelled edges.

Changes when the drawing is to show something new (another kind of node or flow). The model is
also the drawing's fingerprint: it is written as sorted JSON beside the image, and the tests
compare it with a freshly read model to tell whether the committed drawing is out of date.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

NodeKind = Literal[
    "users", "load-balancer", "web", "db-primary", "db-replica", "nat-gateway", "dns-zone"
]
ClusterKind = Literal["vpc", "subnet", "db-subnet-group"]
EdgeKind = Literal["http", "write", "read", "replication"]


class ModelError(ValueError):
    """The registrations do not describe the architecture the diagram expects."""


@dataclass(frozen=True)
class Cluster:
    id: str
    kind: ClusterKind
    label: str
    parent: str | None
    cidr: str | None = None
    availability_zone: str | None = None
    tier: str | None = None
    """`public` or `private` for a subnet (its Tier tag)."""
    subnets: tuple[str, ...] = ()
    """For the RDS subnet group: the ids of the subnet clusters it spans."""


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    label: str
    cluster: str | None
    """The innermost cluster the node is drawn in; None for the internet."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str


@dataclass(frozen=True)
class Model:
    """What the diagram shows, in a fixed order; `render` draws it, the tests read it."""

    title: str
    clusters: tuple[Cluster, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def cluster(self, cluster_id: str) -> Cluster:
        return next(c for c in self.clusters if c.id == cluster_id)

    def nodes_of(self, kind: NodeKind) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def edges_between(self, source: str, target: str) -> list[Edge]:
        return [e for e in self.edges if e.source == source and e.target == target]

    def children(self, parent: str | None) -> list[Cluster]:
        return [c for c in self.clusters if c.parent == parent]

    def nodes_in(self, cluster: str | None) -> list[Node]:
        return [n for n in self.nodes if n.cluster == cluster]

    def to_json(self) -> str:
        """The model as stable, sorted JSON: the fingerprint committed beside the image."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
