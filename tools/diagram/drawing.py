"""Drawing the architecture model as a PNG with the `diagrams` package (Graphviz `dot`).

Changes when the drawing's look changes: styles, layout hints, the order `dot` is handed the
nodes in, or a Graphviz upgrade. What is drawn comes from the model alone.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from diagrams import Cluster as DiagramCluster  # type: ignore[import-untyped]
from diagrams import Diagram
from diagrams import Edge as DiagramEdge
from diagrams import Node as DiagramNode
from diagrams.aws import compute, database, general, network  # type: ignore[import-untyped]

from tools.diagram.model import Cluster, EdgeKind, Model, Node, NodeKind

EDGE_STYLE: dict[EdgeKind, dict[str, str]] = {
    "http": {"color": "#2E7D32", "style": "bold"},
    "write": {"color": "#C62828", "style": "solid"},
    "read": {"color": "#1565C0", "style": "solid"},
    "replication": {"color": "#6A1B9A", "style": "dashed"},
}
# Labels of the web nodes' database edges sit by the web node (mid-edge they would pile up at
# the database), turned away from each other: nodes drawn above the database turn them one
# way, nodes below the other (the writes edge is the steeper one either way).
TAIL_LABELS: set[EdgeKind] = {"write", "read"}
TAIL_LABEL_ANGLE = 16
CLUSTER_STYLE: dict[str, dict[str, str]] = {
    "vpc": {"bgcolor": "#F4F6F8", "pencolor": "#546E7A", "fontsize": "15", "margin": "16"},
    "public": {"bgcolor": "#E8F5E9", "pencolor": "#66BB6A", "fontsize": "13", "margin": "28"},
    "private": {"bgcolor": "#E3F2FD", "pencolor": "#42A5F5", "fontsize": "13", "margin": "28"},
    "db-subnet-group": {
        "bgcolor": "#FFF8E1",
        "pencolor": "#FFB300",
        "fontsize": "13",
        "margin": "28",
    },
}


NODE_CLASSES: dict[NodeKind, Any] = {
    "users": general.Users,
    "load-balancer": network.ElasticLoadBalancing,
    "web": compute.EC2,
    "db-primary": database.RDSMysqlInstance,
    "db-replica": database.RDSMysqlInstance,
    "nat-gateway": network.NATGateway,
    "dns-zone": network.Route53HostedZone,
}
GRAPH_ATTRS = {
    "splines": "spline",  # ortho cannot place edge labels
    "pad": "0.4",
    "nodesep": "0.6",
    "ranksep": "1.3",
    "fontsize": "22",
    "labelloc": "t",
}
NODE_ATTRS = {"fontsize": "12"}
EDGE_ATTRS = {"fontsize": "11", "penwidth": "1.4"}


_Item = TypeVar("_Item", Node, Cluster)


def _emission_order(parent: Cluster, items: list[_Item]) -> list[_Item]:
    """The order to hand `dot` a cluster's contents in: layout only, the model is unchanged.

    `dot` orders a rank to minimise crossings; every web node has the same edges, so the order
    it reads them in decides. With dot 2.43, private subnets and their nodes read in reverse
    come out top-down as in the model: zone a above zone b, web-1 above web-3.
    """
    if parent.kind == "subnet" and parent.tier == "private":
        return items[::-1]
    private = iter([c for c in items if isinstance(c, Cluster) and c.tier == "private"][::-1])
    return [next(private) if isinstance(c, Cluster) and c.tier == "private" else c for c in items]


def render(model: Model, output: Path) -> Path:
    """Draw `model` as a PNG at `output` (Graphviz `dot` must be installed); returns its path.

    Nodes keep the model's ids as Graphviz ids and are emitted in a fixed order (see
    `_emission_order`), so the same model gives the same drawing with the same Graphviz. The
    image is drawn in a scratch directory and copied: `diagrams` writes, then deletes, a DOT
    file beside its output.
    """
    drawn: dict[str, Any] = {}
    private = [c.id for c in model.clusters if c.tier == "private"]
    # Nodes in the first half of the private subnets are drawn above the database.
    upper = {
        n.id: private.index(n.cluster) < len(private) / 2
        for n in model.nodes
        if n.cluster in private
    }

    def draw_node(node: Node) -> None:
        drawn[node.id] = NODE_CLASSES[node.kind](node.label, nodeid=node.id)

    def draw_cluster(cluster: Cluster) -> None:
        with DiagramCluster(cluster.label, graph_attr=CLUSTER_STYLE[cluster.tier or cluster.kind]):
            for node in _emission_order(cluster, model.nodes_in(cluster.id)):
                draw_node(node)
            children = model.children(cluster.id)
            if not children and not model.nodes_in(cluster.id):
                # Graphviz drops an empty cluster; keep the subnet on the drawing.
                DiagramNode(
                    "(no instances)",
                    nodeid=f"empty-{cluster.id}",
                    shape="plaintext",
                    fixedsize="false",
                    width="0",
                    height="0",
                    fontcolor="#78909C",
                    fontsize="11",
                )
            for child in _emission_order(cluster, children):
                draw_cluster(child)

    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "architecture"
        with Diagram(
            model.title,
            filename=str(target),
            outformat="png",
            direction="LR",
            show=False,
            graph_attr=GRAPH_ATTRS,
            node_attr=NODE_ATTRS,
            edge_attr=EDGE_ATTRS,
        ):
            for node in model.nodes_in(None):
                draw_node(node)
            for cluster in model.children(None):
                draw_cluster(cluster)
            for edge in model.edges:
                style = EDGE_STYLE[edge.kind]
                label = {"label": edge.label}
                if edge.kind in TAIL_LABELS:
                    turn = -1 if upper.get(edge.source, False) else 1
                    turn *= 1 if edge.kind == "write" else -1
                    label = {
                        "taillabel": edge.label,
                        "labeldistance": "9",
                        "labelangle": str(turn * TAIL_LABEL_ANGLE),
                    }
                edge_style = DiagramEdge(fontcolor=style["color"], **EDGE_ATTRS, **style, **label)
                drawn[edge.source] >> edge_style >> drawn[edge.target]
        shutil.copyfile(target.with_suffix(".png"), output)
    return output
