"""Reading the architecture model from the program's registrations.

`tools.mocked_program.run_program` runs the real `__main__.py` under AWS-like mocks; this reads
what it recorded (subnets and their CIDRs and zones, the instances and the subnet each is
launched in, the RDS primary and the replica that names it as its source, the security-group
rules that admit each flow, HAProxy's frontend and backend from the load balancer's userdata).
Changes when the program's resources change shape; how the model is drawn is `drawing`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.diagram.model import Cluster, Edge, EdgeKind, Model, ModelError, Node, NodeKind
from tools.mocked_program import ProgramRun, Registration
from userdata import cloud_config

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
VOLUME_ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"

# What runs on an instance, by its Role tag (the userdata installs it).
SOFTWARE = {"load-balancer": "HAProxy", "web": "Nginx + gunicorn", "database": "MariaDB"}
ENGINES = {"mysql": "MySQL", "mariadb": "MariaDB", "postgres": "PostgreSQL"}
BALANCE = {"roundrobin": "round robin", "leastconn": "least connections", "source": "source hash"}


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


MYSQL_PORT = 3306


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


def _front(run: ProgramRun, stack: _Stack) -> tuple[list[Registration], list[Node], list[Edge]]:
    """Users, the load balancers (one, or the pair sharing the Elastic IP) and the flows
    HAProxy serves publicly."""
    load_balancers = sorted(
        run.instances("load-balancer"), key=lambda r: _natural(r.inputs["tags"]["Name"])
    )
    if len(load_balancers) not in (1, 2):
        raise ModelError(f"expected one or two load balancers, found {len(load_balancers)}")
    nodes = [Node("users", "users", "Users\n(internet)", None)]
    edges = []
    for lb in load_balancers:
        lb_id = stack.short(lb.inputs["tags"]["Name"])
        # One: the Elastic IP's association is a resource, behind the gate. A pair: the holder
        # keepalived elects associates it (elastic_address.py).
        associated = any(a.inputs.get("instanceId") == lb.id for a in run.of_type(EIP_ASSOCIATION))
        extra = "\nElastic IP" if associated else ""
        if len(load_balancers) == 2:
            extra = "\nElastic IP when keepalived's master"
        nodes.append(
            Node(
                lb_id,
                "load-balancer",
                _instance_label(run, stack, lb, extra),
                stack.subnet_clusters[lb.inputs["subnetId"]],
            )
        )
        haproxy = haproxy_config(lb.inputs["userData"])
        edges += [
            Edge("users", lb_id, "http", f"HTTP :{port}")
            for port in haproxy.frontend_ports
            if _admits_any(run, lb, port, [INTERNET])
        ]
    return load_balancers, nodes, edges


def _web_tier(
    run: ProgramRun, stack: _Stack, load_balancers: Sequence[Registration]
) -> tuple[list[Registration], list[Node], list[Edge]]:
    """Every web node in the subnet it is launched in, and each HAProxy's flow to it."""
    web_nodes = sorted(run.instances("web"), key=lambda r: _natural(r.inputs["tags"]["Name"]))
    nodes: list[Node] = []
    edges: list[Edge] = []
    for web in web_nodes:
        web_id = stack.short(web.inputs["tags"]["Name"])
        cluster = stack.subnet_clusters[web.inputs["subnetId"]]
        nodes.append(Node(web_id, "web", _instance_label(run, stack, web), cluster))
    for lb in load_balancers:
        haproxy = haproxy_config(lb.inputs["userData"])
        balance = f" ({haproxy.balance})" if haproxy.balance else ""
        lb_id = stack.short(lb.inputs["tags"]["Name"])
        for web in web_nodes:
            web_id = stack.short(web.inputs["tags"]["Name"])
            port = haproxy.servers.get(web_id)
            if port is not None and _admits_any(run, web, port, _groups(lb)):
                edges.append(Edge(lb_id, web_id, "http", f"HTTP :{port}{balance}"))
    return web_nodes, nodes, edges


def _database(
    run: ProgramRun, stack: _Stack, web_nodes: Sequence[Registration]
) -> tuple[list[Node], list[Edge]]:
    """The database as the program runs it: RDS instances (`dbMode: rds`), the database
    hosts (`dbMode: ec2`) or web nodes with a data volume (`dbMode: colocated`)."""
    if run.of_type(DB_INSTANCE):
        return _rds_database(run, stack, web_nodes)
    if run.instances("database"):
        return _database_hosts(run, stack, web_nodes)
    return _colocated_database(run, stack, web_nodes)


def _database_hosts(
    run: ProgramRun, stack: _Stack, web_nodes: Sequence[Registration]
) -> tuple[list[Node], list[Edge]]:
    """database-1 (the primary) and database-2 (its replica), each in its private subnet, and
    the flows the firewall admits: writes to the first, reads from the second."""
    hosts = sorted(run.instances("database"), key=lambda r: _natural(r.inputs["tags"]["Name"]))
    if len(hosts) != 2:
        raise ModelError(f"expected no RDS instance and two database hosts, found {len(hosts)}")
    return _mariadb_pair(run, stack, web_nodes, hosts, "data on its own EBS volume")


def _colocated_database(
    run: ProgramRun, stack: _Stack, web_nodes: Sequence[Registration]
) -> tuple[list[Node], list[Edge]]:
    """The web nodes with a data volume attached (web-1 the primary, web-2 its replica), each
    database drawn beside its node, in the node's subnet."""
    attached = {a.inputs["instanceId"] for a in run.of_type(VOLUME_ATTACHMENT)}
    hosts = [web for web in web_nodes if web.id in attached]
    if len(hosts) != 2:
        raise ModelError(
            f"expected RDS, database hosts or two web nodes with a data volume, found {len(hosts)}"
        )
    return _mariadb_pair(run, stack, web_nodes, hosts, "data on its own EBS volume")


def _mariadb_pair(
    run: ProgramRun,
    stack: _Stack,
    web_nodes: Sequence[Registration],
    hosts: Sequence[Registration],
    where: str,
) -> tuple[list[Node], list[Edge]]:
    """MariaDB's primary (`hosts[0]`) and replica, and the flows the firewall admits."""
    primary, replica = hosts
    colocated = all(h.inputs["tags"]["Role"] == "web" for h in hosts)

    def label(host: Registration, role: str) -> str:
        if colocated:
            return f"MariaDB {role} on {stack.short(host.inputs['tags']['Name'])}\n{where}"
        return _instance_label(run, stack, host, f"\n{role}, {where}")

    roles: tuple[tuple[Registration, NodeKind, str], ...] = (
        (primary, "db-primary", "primary"),
        (replica, "db-replica", "read replica"),
    )
    primary_node, replica_node = (
        Node(
            f"db-{stack.short(host.inputs['tags']['Name'])}",
            kind,
            label(host, role),
            stack.subnet_clusters[host.inputs["subnetId"]],
        )
        for host, kind, role in roles
    )
    edges: list[Edge] = []
    for web in web_nodes:
        web_id = stack.short(web.inputs["tags"]["Name"])
        flows: tuple[tuple[Registration, Node, EdgeKind, str], ...] = (
            (primary, primary_node, "write", "writes"),
            (replica, replica_node, "read", "reads"),
        )
        for host, target, kind, verb in flows:
            if _admits_any(run, host, MYSQL_PORT, _groups(web)):
                edges.append(Edge(web_id, target.id, kind, f"{verb} :{MYSQL_PORT}"))
    if _admits_any(run, primary, MYSQL_PORT, _groups(replica)):
        edges.append(Edge(primary_node.id, replica_node.id, "replication", "GTID replication, TLS"))
    return [primary_node, replica_node], edges


def _rds_database(
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
    load_balancers, front_nodes, front_edges = _front(run, stack)
    web_nodes, web_tier_nodes, web_edges = _web_tier(run, stack, load_balancers)
    db_nodes, db_edges = _database(run, stack, web_nodes)
    nodes = [*front_nodes, *web_tier_nodes, *db_nodes, *_support(run, stack)]
    title = f"{stack.project} (stack {stack.stack}, {len(web_nodes)} web nodes)"
    return Model(title, tuple(clusters), tuple(nodes), (*front_edges, *web_edges, *db_edges))
