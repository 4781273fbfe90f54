"""The architecture diagram: the model read from the program's registrations, its drawing, and
whether the committed `docs/architecture.png` still shows the architecture the program builds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import AwsMocks, ProgramRun, run_program
from system_tools import require

from tools.diagram.cli import fingerprint_path, main, stack_config
from tools.diagram.drawing import render
from tools.diagram.model import Model
from tools.diagram.registrations import DB_INSTANCE, INGRESS_RULE, architecture_model
from tools.mocked_program import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMMITTED_IMAGE = ROOT / "docs" / "architecture.png"
STALE = "docs/architecture.png is out of date: run `make diagram` and commit docs/"


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    """The dev stack as Pulumi.dev.yaml configures it (2 web nodes): what `make diagram` draws."""
    return run_program(stack_config())


@pytest.fixture(scope="module")
def four_run() -> ProgramRun:
    return run_program(stack_config(web_nodes=4))


@pytest.fixture(params=[2, 4], ids=lambda n: f"{n}-web-nodes")
def model(request: pytest.FixtureRequest, dev_run: ProgramRun, four_run: ProgramRun) -> Model:
    return architecture_model({2: dev_run, 4: four_run}[request.param])


def web_count(model: Model) -> int:
    return int(model.title.split(", ")[1].split()[0])


def one(model: Model, kind: str) -> str:
    (node,) = [n for n in model.nodes if n.kind == kind]
    return node.id


def test_draws_every_web_node_the_program_launches(model: Model) -> None:
    count = web_count(model)
    assert [n.id for n in model.nodes_of("web")] == [f"web-{i}" for i in range(1, count + 1)]
    assert model.title == f"web-infra (stack dev, {count} web nodes)"
    assert Counter(n.kind for n in model.nodes) == {
        "users": 1,
        "load-balancer": 2,  # the pair sharing the Elastic IP
        "web": count,
        "db-primary": 1,
        "db-replica": 1,
        "nat-gateway": 1,  # the dev stack has one NAT gateway
        "dns-zone": 1,
    }


def test_every_web_node_serves_from_the_load_balancer_and_uses_both_databases(
    model: Model,
) -> None:
    primary, replica = one(model, "db-primary"), one(model, "db-replica")
    balancers = [n.id for n in model.nodes_of("load-balancer")]
    assert balancers == ["load-balancer-1", "load-balancer-2"]
    for lb in balancers:
        assert [e.label for e in model.edges_between("users", lb)] == ["HTTP :80"]
    for web in model.nodes_of("web"):
        for lb in balancers:
            assert [e.label for e in model.edges_between(lb, web.id)] == [
                "HTTP :80 (round robin)"
            ], "both health-check and serve every node"
        assert [e.label for e in model.edges_between(web.id, primary)] == ["writes :3306"]
        assert [e.label for e in model.edges_between(web.id, replica)] == ["reads :3306"]
    assert [e.label for e in model.edges_between(primary, replica)] == ["async replication"]
    assert len(model.edges) == 2 + 4 * web_count(model) + 1


def test_web_nodes_are_split_over_the_two_private_subnets(model: Model) -> None:
    subnets = [model.cluster(n.cluster or "") for n in model.nodes_of("web")]
    assert {s.kind for s in subnets} == {"subnet"}
    assert {s.tier for s in subnets} == {"private"}
    per_zone = Counter(s.availability_zone or "" for s in subnets)
    assert sorted(per_zone) == ["eu-west-1a", "eu-west-1b"]
    assert max(per_zone.values()) - min(per_zone.values()) <= 1
    # Round the zones: web-1 in the first, web-2 in the second, ...
    assert [s.availability_zone for s in subnets[:2]] == ["eu-west-1a", "eu-west-1b"]


def test_load_balancer_nat_and_databases_sit_where_the_program_puts_them(model: Model) -> None:
    vpc = model.cluster("vpc")
    assert vpc.cidr == "10.20.0.0/16"
    subnets = [c for c in model.clusters if c.kind == "subnet"]
    assert [(c.tier, c.availability_zone, c.cidr) for c in subnets] == [
        ("public", "eu-west-1a", "10.20.0.0/18"),
        ("public", "eu-west-1b", "10.20.64.0/18"),
        ("private", "eu-west-1a", "10.20.128.0/18"),
        ("private", "eu-west-1b", "10.20.192.0/18"),
    ]
    assert all(c.parent == "vpc" for c in subnets)
    assert model.cluster(model.node(one(model, "nat-gateway")).cluster or "").tier == "public"
    balancers = [model.cluster(n.cluster or "") for n in model.nodes_of("load-balancer")]
    assert [(c.tier, c.availability_zone) for c in balancers] == [
        ("public", "eu-west-1a"),
        ("public", "eu-west-1b"),
    ], "one per zone"
    (group,) = [c for c in model.clusters if c.kind == "db-subnet-group"]
    assert [model.cluster(s).tier for s in group.subnets] == ["private", "private"]
    for kind in ("db-primary", "db-replica"):
        assert model.node(one(model, kind)).cluster == group.id
    assert model.node(one(model, "dns-zone")).cluster == "vpc"
    assert model.node("users").cluster is None


def test_model_is_consistent(model: Model) -> None:
    ids = [n.id for n in model.nodes]
    assert len(ids) == len(set(ids))
    clusters = {c.id for c in model.clusters}
    assert all(n.cluster is None or n.cluster in clusters for n in model.nodes)
    assert all(c.parent is None or c.parent in clusters for c in model.clusters)
    assert all({e.source, e.target} <= set(ids) for e in model.edges)


def test_the_model_follows_the_config_not_a_fixed_picture() -> None:
    model = architecture_model(run_program({"vpcCidr": "10.30.0.0/16", "natGateways": "perAz"}))
    assert model.cluster("vpc").cidr == "10.30.0.0/16"
    nats = [model.cluster(n.cluster or "") for n in model.nodes_of("nat-gateway")]
    assert [(c.availability_zone, c.cidr) for c in nats] == [
        ("eu-west-1a", "10.30.0.0/18"),
        ("eu-west-1b", "10.30.64.0/18"),
    ]


def test_flows_are_drawn_only_where_the_firewall_admits_them(dev_run: ProgramRun) -> None:
    """Edges come from the security-group rules: without the database's ingress rule the web
    tier may reach neither database, and the drawing says so."""
    kept = [
        r
        for r in dev_run.registrations
        if not (r.type == INGRESS_RULE and r.name.endswith("-database-in-3306"))
    ]
    assert len(kept) == len(dev_run.registrations) - 1
    model = architecture_model(ProgramRun(AwsMocks(registrations=kept), dev_run.outputs))
    assert {e.kind for e in model.edges} == {"http", "replication"}
    assert any(r.type == DB_INSTANCE for r in kept)


def test_render_writes_a_png(tmp_path: Path, four_run: ProgramRun) -> None:
    require("dot")
    model = architecture_model(four_run)
    image = render(model, tmp_path / "nested" / "architecture.png")
    assert image == tmp_path / "nested" / "architecture.png"
    data = image.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 50_000  # icons, clusters and labels; an empty graph is a few hundred
    assert sorted(p.name for p in image.parent.iterdir()) == ["architecture.png"]


def test_cli_writes_the_image_and_its_model(tmp_path: Path) -> None:
    require("dot")
    output = tmp_path / "architecture.png"
    assert main(["--web-nodes", "4", "--output", str(output)]) == 0
    assert output.read_bytes().startswith(PNG_SIGNATURE)
    fingerprint = fingerprint_path(output)
    assert fingerprint == tmp_path / "architecture.model.json"
    assert '"title": "web-infra (stack dev, 4 web nodes)"' in fingerprint.read_text()


def test_committed_diagram_matches_the_program(dev_run: ProgramRun) -> None:
    """PNG bytes depend on the Graphviz version; the model beside the image does not. (It is
    also how this test knows the model is the same from run to run of the program.)"""
    assert COMMITTED_IMAGE.is_file(), STALE
    assert COMMITTED_IMAGE.read_bytes().startswith(PNG_SIGNATURE), STALE
    committed = fingerprint_path(COMMITTED_IMAGE)
    assert committed.is_file(), STALE
    current = architecture_model(dev_run).to_json()
    if committed.read_text() != current:
        pytest.fail(STALE, pytrace=False)


def test_on_ec2_the_database_is_two_hosts_in_their_subnets_with_the_admitted_flows() -> None:
    """`dbMode: ec2`: no RDS; database-1 takes the writes, database-2 the reads, and the
    primary replicates to the replica, each flow drawn because the firewall admits it."""
    model = architecture_model(run_program(stack_config(db_mode="ec2")))
    primary, replica = one(model, "db-primary"), one(model, "db-replica")
    assert (primary, replica) == ("db-database-1", "db-database-2")
    labels = {n.id: n.label for n in model.nodes}
    assert "MariaDB" in labels[primary]
    assert "primary, data on its own EBS volume" in labels[primary]
    flows = {(e.source, e.target, e.kind) for e in model.edges}
    for web in ("web-1", "web-2"):
        assert (web, primary, "write") in flows
        assert (web, replica, "read") in flows
    assert (primary, replica, "replication") in flows
    clusters = {n.id: n.cluster for n in model.nodes}
    assert clusters[primary] != clusters[replica]  # one private subnet (zone) each


def test_colocated_the_database_is_drawn_on_web_1_and_web_2_with_the_admitted_flows() -> None:
    """`dbMode: colocated`: no RDS and no database host; web-1's MariaDB takes every node's
    writes and web-2's the reads, each beside its node (in its subnet), replicating."""
    model = architecture_model(run_program(stack_config(web_nodes=3, db_mode="colocated")))
    primary, replica = one(model, "db-primary"), one(model, "db-replica")
    assert (primary, replica) == ("db-web-1", "db-web-2")
    labels = {n.id: n.label for n in model.nodes}
    assert labels[primary] == "MariaDB primary on web-1\ndata on its own EBS volume"
    flows = {(e.source, e.target, e.kind) for e in model.edges}
    for web in ("web-1", "web-2", "web-3"):
        assert (web, primary, "write") in flows
        assert (web, replica, "read") in flows
    assert (primary, replica, "replication") in flows
    clusters = {n.id: n.cluster for n in model.nodes}
    assert (clusters[primary], clusters[replica]) == (clusters["web-1"], clusters["web-2"])
