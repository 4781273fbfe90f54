"""Draw the architecture diagram (`docs/architecture.png`) from the Pulumi program itself.

Why: a hand-drawn diagram drifts the day someone adds a web node or moves a subnet. This one
is built from what the program registers: `tools.mocked_program.run_program` runs the real
`__main__.py` under AWS-like mocks, and `architecture_model` reads the recorded registrations
(subnets and their CIDRs and zones, the instances and the subnet each is launched in, the RDS
primary and the replica that names it as its source, the security-group rules that admit each
flow, HAProxy's frontend and backend from the load balancer's userdata) into a small typed
model. `render` then draws that model with the `diagrams` package (Graphviz `dot`).

What it draws: users on the internet; the VPC with its public and private subnets (CIDR and
availability zone); HAProxy with its Elastic IP and the NAT gateway in a public subnet; every
web node (Nginx + gunicorn) in the private subnet it is launched in; the MySQL primary and its
read replica in the RDS subnet group; the private Route 53 zone. Edges: users -> load
balancer, load balancer -> each web node, each web node -> primary (writes) and -> replica
(reads), primary -> replica (asynchronous replication).

The model is also written next to the image as sorted JSON (`docs/architecture.model.json`):
PNG bytes differ between Graphviz versions, the model does not, so the tests compare it with a
freshly built model to tell whether the committed drawing is out of date.

    uv run python -m tools.diagram [--web-nodes N] [--output docs/architecture.png]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from diagrams import Cluster as DiagramCluster  # type: ignore[import-untyped]
from diagrams import Diagram
from diagrams import Edge as DiagramEdge
from diagrams import Node as DiagramNode
from diagrams.aws import compute, database, general, network  # type: ignore[import-untyped]

from tools.mocked_program import ROOT, ProgramRun, Registration, run_program
from userdata import cloud_config

DEFAULT_OUTPUT = ROOT / "docs" / "architecture.png"
STACK = "dev"
INTERNET = "0.0.0.0/0"

PROVIDER = "pulumi:providers:aws"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
READINESS_GATE = "pulumi-python:dynamic/readiness:ReadinessGate"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
DB_INSTANCE = "aws:rds/instance:Instance"
DB_SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
ZONE = "aws:route53/zone:Zone"

# What runs on an instance, by its Role tag (the userdata installs it).
SOFTWARE = {"load-balancer": "HAProxy", "web": "Nginx + gunicorn"}
ENGINES = {"mysql": "MySQL", "mariadb": "MariaDB", "postgres": "PostgreSQL"}
BALANCE = {"roundrobin": "round robin", "leastconn": "least connections", "source": "source hash"}

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


# --- Reading the registrations ---------------------------------------------------------------


def _natural(text: str) -> list[int | str]:
    """Sort key that puts web-2 before web-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _one(run: ProgramRun, typ: str) -> Registration:
    found = run.of_type(typ)
    if len(found) != 1:
        raise ModelError(f"expected one {typ}, the program registered {len(found)}")
    return found[0]


def _admits(run: ProgramRun, group: str, port: int, *, source: str) -> bool:
    """Whether security group `group` admits TCP `port` from a group id or a CIDR `source`."""
    for rule in run.of_type(INGRESS_RULE):
        inputs = rule.inputs
        if inputs.get("securityGroupId") != group:
            continue
        if source not in (inputs.get("referencedSecurityGroupId"), inputs.get("cidrIpv4")):
            continue
        if inputs.get("ipProtocol") == "-1":
            return True
        if inputs.get("ipProtocol") == "tcp" and (
            int(inputs["fromPort"]) <= port <= int(inputs["toPort"])
        ):
            return True
    return False


def _groups(registration: Registration) -> list[str]:
    return list(registration.inputs.get("vpcSecurityGroupIds", []))


def _admits_any(run: ProgramRun, target: Registration, port: int, sources: Sequence[str]) -> bool:
    return any(
        _admits(run, group, port, source=source) for group in _groups(target) for source in sources
    )


@dataclass(frozen=True)
class HaproxyConfig:
    """The parts of the load balancer's haproxy.cfg (in its userdata) that the diagram shows."""

    frontend_ports: tuple[int, ...]
    balance: str
    servers: dict[str, int]
    """Backend server name (the web node's host name) -> port."""


HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"


def haproxy_config(user_data: str) -> HaproxyConfig:
    """Read haproxy.cfg out of the load balancer's cloud-config, as cloud-init would write it."""
    files = cloud_config.parse(user_data).get("write_files", [])
    config = next((f for f in files if f.get("path") == HAPROXY_CFG), None)
    if config is None:
        raise ModelError(f"the load balancer's userdata writes no {HAPROXY_CFG}")
    text = cloud_config.file_content(config).decode()
    # Public binds only: `bind *:80`, not the stats page on 127.0.0.1.
    public_binds = re.findall(r"^\s*bind\s+(?:\*|0\.0\.0\.0|::)?:(\d+)\s*$", text, re.M)
    balance = re.search(r"^\s*balance\s+(\S+)", text, re.M)
    servers = re.findall(r"^\s*server\s+(\S+)\s+\S+:(\d+)", text, re.M)
    return HaproxyConfig(
        frontend_ports=tuple(sorted({int(port) for port in public_binds})),
        balance=BALANCE.get(balance.group(1), balance.group(1)) if balance else "",
        servers={name: int(port) for name, port in servers},
    )


@dataclass(frozen=True)
class _Stack:
    """What the helpers below share: the naming prefix, the VPC and where each subnet is drawn."""

    project: str
    stack: str
    region: str
    vpc: Registration
    subnet_clusters: dict[str, str]
    """Subnet id -> cluster id."""

    def short(self, name: str) -> str:
        """web-infra-dev-web-1 -> web-1"""
        return name.removeprefix(f"{self.project}-{self.stack}-")


def _stack(run: ProgramRun) -> _Stack:
    # The stack's own provider (another, for us-east-1, only carries the outside-in alarm).
    (provider,) = [p for p in run.of_type(PROVIDER) if p.name == "aws"]
    default_tags = provider.inputs.get("defaultTags") or {}
    if isinstance(default_tags, str):
        default_tags = json.loads(default_tags)
    tags = default_tags.get("tags", {})
    vpc = _one(run, VPC)
    subnet_clusters = {
        subnet.id: f"{subnet.inputs['tags']['Tier']}-{subnet.inputs['availabilityZone']}"
        for subnet in run.of_type(SUBNET)
        if subnet.inputs.get("vpcId") == vpc.id
    }
    return _Stack(
        project=tags.get("Project", "web-infra"),
        stack=tags.get("Stack", "?"),
        region=provider.inputs.get("region", "?"),
        vpc=vpc,
        subnet_clusters=subnet_clusters,
    )


def _network_clusters(run: ProgramRun, stack: _Stack) -> list[Cluster]:
    """The VPC, its subnets (public first, then by zone) and the RDS subnet groups in it."""
    cidr = stack.vpc.inputs["cidrBlock"]
    clusters = [Cluster("vpc", "vpc", f"VPC {cidr}  ({stack.region})", parent=None, cidr=cidr)]
    subnets = sorted(
        (s for s in run.of_type(SUBNET) if s.id in stack.subnet_clusters),
        key=lambda s: (s.inputs["tags"]["Tier"] != "public", s.inputs["availabilityZone"]),
    )
    for subnet in subnets:
        tier = subnet.inputs["tags"]["Tier"]
        zone = subnet.inputs["availabilityZone"]
        cidr = subnet.inputs["cidrBlock"]
        clusters.append(
            Cluster(
                id=stack.subnet_clusters[subnet.id],
                kind="subnet",
                label=f"{tier} subnet  {zone}  {cidr}",
                parent="vpc",
                cidr=cidr,
                availability_zone=zone,
                tier=tier,
            )
        )
    for group in sorted(run.of_type(DB_SUBNET_GROUP), key=lambda g: g.name):
        members = tuple(stack.subnet_clusters[s] for s in group.inputs["subnetIds"])
        zones = sorted({c.availability_zone or "?" for c in clusters if c.id in members})
        tiers = "/".join(sorted({c.tier or "?" for c in clusters if c.id in members}))
        clusters.append(
            Cluster(
                id=_db_group_cluster(group),
                kind="db-subnet-group",
                label=f"RDS subnet group: {tiers} subnets in {', '.join(zones)}",
                parent="vpc",
                subnets=members,
            )
        )
    return clusters


def _db_group_cluster(group: Registration) -> str:
    return f"db-subnet-group-{group.outputs.get('name', group.id)}"


def _instance_label(run: ProgramRun, stack: _Stack, instance: Registration, extra: str = "") -> str:
    software = SOFTWARE.get(instance.inputs["tags"]["Role"], "EC2")
    # A readiness gate: traffic reaches the instance only once it reported that it serves.
    gated = any(g.inputs.get("instance_id") == instance.id for g in run.of_type(READINESS_GATE))
    return (
        f"{stack.short(instance.inputs['tags']['Name'])}\n"
        f"{software} · {instance.inputs['instanceType']}{extra}"
        + ("\nreadiness-gated" if gated else "")
    )


def _front(run: ProgramRun, stack: _Stack) -> tuple[Registration, list[Node], list[Edge]]:
    """Users, the load balancer (with its Elastic IP) and the flows HAProxy serves publicly."""
    load_balancers = run.instances("load-balancer")
    if len(load_balancers) != 1:
        raise ModelError(f"expected one load balancer, found {len(load_balancers)}")
    lb = load_balancers[0]
    lb_id = stack.short(lb.inputs["tags"]["Name"])
    # The Elastic IP is associated with the instance through its own resource, behind the gate.
    eip = any(a.inputs.get("instanceId") == lb.id for a in run.of_type(EIP_ASSOCIATION))
    nodes = [
        Node("users", "users", "Users\n(internet)", None),
        Node(
            lb_id,
            "load-balancer",
            _instance_label(run, stack, lb, "\nElastic IP" if eip else ""),
            stack.subnet_clusters[lb.inputs["subnetId"]],
        ),
    ]
    haproxy = haproxy_config(lb.inputs["userData"])
    edges = [
        Edge("users", lb_id, "http", f"HTTP :{port}")
        for port in haproxy.frontend_ports
        if _admits_any(run, lb, port, [INTERNET])
    ]
    return lb, nodes, edges


def _web_tier(
    run: ProgramRun, stack: _Stack, lb: Registration
) -> tuple[list[Registration], list[Node], list[Edge]]:
    """Every web node in the subnet it is launched in, and HAProxy's flow to it."""
    haproxy = haproxy_config(lb.inputs["userData"])
    balance = f" ({haproxy.balance})" if haproxy.balance else ""
    lb_id = stack.short(lb.inputs["tags"]["Name"])
    web_nodes = sorted(run.instances("web"), key=lambda r: _natural(r.inputs["tags"]["Name"]))
    nodes: list[Node] = []
    edges: list[Edge] = []
    for web in web_nodes:
        web_id = stack.short(web.inputs["tags"]["Name"])
        cluster = stack.subnet_clusters[web.inputs["subnetId"]]
        nodes.append(Node(web_id, "web", _instance_label(run, stack, web), cluster))
        port = haproxy.servers.get(web_id)
        if port is not None and _admits_any(run, web, port, _groups(lb)):
            edges.append(Edge(lb_id, web_id, "http", f"HTTP :{port}{balance}"))
    return web_nodes, nodes, edges


def _database(
    run: ProgramRun, stack: _Stack, web_nodes: Sequence[Registration]
) -> tuple[list[Node], list[Edge]]:
    """The primary, the replicas that name it as their source, and the flows between them."""
    databases = run.of_type(DB_INSTANCE)
    primaries = [d for d in databases if not d.inputs.get("replicateSourceDb")]
    if len(primaries) != 1:
        raise ModelError(f"expected one RDS primary, found {len(primaries)}")
    primary = primaries[0]
    replicas = sorted(
        (d for d in databases if d.inputs.get("replicateSourceDb") == primary.inputs["identifier"]),
        key=lambda d: d.inputs["identifier"],
    )
    engine = ENGINES.get(primary.inputs["engine"], primary.inputs["engine"])
    version = primary.inputs.get("engineVersion", "")
    group = next(
        g
        for g in run.of_type(DB_SUBNET_GROUP)
        if g.outputs.get("name", g.id) == primary.inputs["dbSubnetGroupName"]
    )
    # A replica in the source's region is launched in the source's subnet group.
    cluster = _db_group_cluster(group)

    def node(db: Registration, kind: NodeKind, role: str) -> Node:
        multi_az = " · Multi-AZ" if db.inputs.get("multiAz") else ""
        label = f"{engine} {version} {role}\n{db.inputs['instanceClass']}{multi_az}"
        return Node(f"db-{stack.short(db.inputs['identifier'])}", kind, label, cluster)

    primary_node = node(primary, "db-primary", "primary")
    replica_nodes = [(node(r, "db-replica", "read replica"), r) for r in replicas]
    edges: list[Edge] = []
    for web in web_nodes:
        web_id = stack.short(web.inputs["tags"]["Name"])
        flows: list[tuple[Registration, Node, EdgeKind, str]] = [
            (primary, primary_node, "write", "writes"),
            *((r, n, "read", "reads") for n, r in replica_nodes),
        ]
        for db, target, kind, verb in flows:
            port = int(db.outputs.get("port", 3306))
            if _admits_any(run, db, port, _groups(web)):
                edges.append(Edge(web_id, target.id, kind, f"{verb} :{port}"))
    edges += [
        Edge(primary_node.id, n.id, "replication", "async replication") for n, _ in replica_nodes
    ]
    return [primary_node, *(n for n, _ in replica_nodes)], edges


def _support(run: ProgramRun, stack: _Stack) -> list[Node]:
    """NAT gateways in the public subnets, the private zone associated with the VPC."""
    nodes = [
        Node(
            f"nat-{stack.subnet_clusters[nat.inputs['subnetId']]}",
            "nat-gateway",
            "NAT gateway\n(egress: apt, AWS APIs)",
            stack.subnet_clusters[nat.inputs["subnetId"]],
        )
        for nat in sorted(run.of_type(NAT_GATEWAY), key=lambda r: r.name)
    ]
    for zone in sorted(run.of_type(ZONE), key=lambda r: r.name):
        if stack.vpc.id in [v.get("vpcId") for v in zone.inputs.get("vpcs", [])]:
            name = zone.inputs["name"]
            nodes.append(Node(f"zone-{name}", "dns-zone", f"Route 53 private zone\n{name}", "vpc"))
    return nodes


def architecture_model(run: ProgramRun) -> Model:
    """The architecture as the program registers it: clusters, placed nodes, labelled edges."""
    stack = _stack(run)
    clusters = _network_clusters(run, stack)
    lb, front_nodes, front_edges = _front(run, stack)
    web_nodes, web_tier_nodes, web_edges = _web_tier(run, stack, lb)
    db_nodes, db_edges = _database(run, stack, web_nodes)
    nodes = [*front_nodes, *web_tier_nodes, *db_nodes, *_support(run, stack)]
    title = f"{stack.project} (stack {stack.stack}, {len(web_nodes)} web nodes)"
    return Model(title, tuple(clusters), tuple(nodes), (*front_edges, *web_edges, *db_edges))


# --- Drawing --------------------------------------------------------------------------------

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


# --- Command line ---------------------------------------------------------------------------


def stack_config(stack: str = STACK, web_nodes: int | None = None) -> dict[str, Any]:
    """The stack's `web-infra:` config from Pulumi.<stack>.yaml, with an optional override."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    namespace = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"] + ":"
    config = {
        key.removeprefix(namespace): value
        for key, value in (document.get("config") or {}).items()
        if key.startswith(namespace)
    }
    if web_nodes is not None:
        config["webNodeCount"] = web_nodes
    return config


def fingerprint_path(image: Path) -> Path:
    """docs/architecture.png -> docs/architecture.model.json"""
    return image.with_suffix(".model.json")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.diagram", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--web-nodes", type=int, help="web nodes to draw (default: the dev stack's)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if shutil.which("dot") is None:
        print(
            "Graphviz `dot` is not installed; run: sudo apt-get install graphviz (or `make setup`)",
            file=sys.stderr,
        )
        return 1
    model = architecture_model(run_program(stack_config(web_nodes=args.web_nodes), stack=STACK))
    image = render(model, args.output)
    fingerprint = fingerprint_path(image)
    fingerprint.write_text(model.to_json())
    for path in (image, fingerprint):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
