"""Changes without downtime, under mocks: the dependency graph `pulumi up` follows.

Pulumi creates a replacement, updates whatever refers to it, and deletes the old resource at the
end of the update. These tests check the graph that turns that into a safe rollout: traffic
reaches a host only through its readiness gate, batches wait for the batch before them, the
load balancer does not change with the node count, and the database survives its own changes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json

import pytest
from conftest import ProgramRun, Registration, run_program

from components import dns_propagation
from components.internal_dns import RECORD_TTL_SECONDS, SWITCH_WAIT_SECONDS
from settings.web_tier import rollout_batches, web_node_names
from userdata.cloud_config import parse

INSTANCE = "aws:ec2/instance:Instance"
GATE = "pulumi-python:dynamic/readiness:ReadinessGate"
RECORD = "aws:route53/record:Record"
RDS = "aws:rds/instance:Instance"
DRAIN = "pulumi-python:dynamic/dns:Drain"


@pytest.fixture(scope="module")
def seven_nodes() -> ProgramRun:
    return run_program(
        {"webNodeCount": 7, "rollingBatchSize": 3, "dbInstanceClass": "db.t4g.medium"}
    )


def gate_of(run: ProgramRun, host: str) -> Registration:
    (gate,) = [g for g in run.of_type(GATE) if g.inputs["host"] == host]
    return gate


LOAD_BALANCERS = ["load-balancer-1", "load-balancer-2"]


def instance_of(run: ProgramRun, host: str) -> Registration:
    role = "load-balancer" if host.startswith("load-balancer") else "web"
    (instance,) = [i for i in run.instances(role) if i.name.endswith(f"-{host}")]
    return instance


def record_of(run: ProgramRun, label: str) -> Registration:
    (record,) = [r for r in run.of_type(RECORD) if r.inputs["name"].startswith(f"{label}.")]
    return record


def test_each_gate_waits_for_its_own_instance_and_exact_userdata(
    seven_nodes: ProgramRun,
) -> None:
    """The gate must name the instance it guards and the digest of the userdata that instance
    was given; anything else lets an old or wrong boot open the gate."""
    for host in [*LOAD_BALANCERS, *web_node_names(7)]:
        instance, gate = instance_of(seven_nodes, host), gate_of(seven_nodes, host)
        assert gate.inputs["instance_id"] == instance.id, host
        assert gate.inputs["private_ip"] == instance.outputs["privateIp"], host
        digest = hashlib.sha256(instance.inputs["userData"].encode()).hexdigest()
        assert gate.inputs["userdata_sha256"] == digest, host
        assert gate.inputs["timeout_seconds"] == 15 * 60, "default readiness timeout"
        assert gate.inputs["region"] == "eu-west-1", host
        assert seven_nodes.depends_on(gate, instance), host
        # The host reports to the parameter the gate reads, under the stack's own path.
        runcmd = parse(instance.inputs["userData"])["runcmd"]
        report = runcmd[-1]
        assert report[:2] == ["python3", "/usr/local/lib/web-infra/report_ready.py"], host
        assert report[report.index("--parameter") + 1] == gate.inputs["parameter_name"], host
        assert gate.inputs["parameter_name"] == f"/web-infra-dev/ready/{host}", host


def test_traffic_reaches_a_host_only_through_its_gate(seven_nodes: ProgramRun) -> None:
    """Each DNS record and the Elastic IP association depend on their host's gate, so the
    switch to a new host happens only once it serves."""
    for host in web_node_names(7):
        record, gate = record_of(seven_nodes, host), gate_of(seven_nodes, host)
        assert seven_nodes.depends_on(record, gate), f"{host}'s record skips its gate"
        assert record.inputs["records"] == [gate.outputs["private_ip"]], host
    # A single load balancer: its record and the Elastic IP follow its gate.
    single = run_program({"webNodeCount": 2, "loadBalancerCount": 1})
    record, gate = record_of(single, "load-balancer-1"), gate_of(single, "load-balancer-1")
    assert single.depends_on(record, gate)
    assert record.inputs["records"] == [gate.outputs["private_ip"]]
    association = single.one("aws:ec2/eipAssociation:EipAssociation")
    assert single.depends_on(association, gate)
    assert association.inputs["instanceId"] == instance_of(single, "load-balancer-1").id
    assert association.inputs["allowReassociation"] is True, "the address moves in one call"
    eip = single.one("aws:ec2/eip:Eip", "load-balancer")
    assert "instance" not in eip.inputs, "the address is associated only behind the gate"


def test_the_pair_is_replaced_one_at_a_time_at_fixed_addresses(seven_nodes: ProgramRun) -> None:
    """The pair's hosts find each other by records made before either boots, at fixed
    addresses (one per public subnet); a fixed address is on one instance at a time, so a
    changed host is deleted first while its peer serves, and the second host is replaced only
    after the first one's replacement passed its gate. The program never associates the
    address: keepalived's holder does (elastic_address.py)."""
    assert seven_nodes.of_type("aws:ec2/eipAssociation:EipAssociation") == []
    subnets = {s.id: s.inputs["cidrBlock"] for s in seven_nodes.of_type("aws:ec2/subnet:Subnet")}
    addresses = []
    for host in LOAD_BALANCERS:
        instance, record = instance_of(seven_nodes, host), record_of(seven_nodes, host)
        address = instance.inputs["privateIp"]
        assert record.inputs["records"] == [address], host
        assert seven_nodes.depends_on(instance, record), f"{host} boots before its record"
        assert instance.delete_before_replace, f"{host}: its fixed address would be taken"
        assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network(
            subnets[instance.inputs["subnetId"]]
        ), host
        addresses.append(address)
    assert addresses == ["10.20.0.10", "10.20.64.10"], "the 11th of each public subnet"
    first, second = (instance_of(seven_nodes, h) for h in LOAD_BALANCERS)
    assert first.inputs["subnetId"] != second.inputs["subnetId"], "one per zone"
    assert seven_nodes.depends_on(second, gate_of(seven_nodes, LOAD_BALANCERS[0]))
    parameter = seven_nodes.one("aws:ssm/parameter:Parameter", "load-balancer-elastic-ip")
    allocation = seven_nodes.one("aws:ec2/eip:Eip", "load-balancer").outputs["allocationId"]
    assert parameter.inputs["name"] == "/web-infra-dev/load-balancer/elastic-ip"
    assert parameter.inputs["insecureValue"] == allocation


def test_batches_wait_for_the_gates_of_the_batch_before(seven_nodes: ProgramRun) -> None:
    """A release whose canary never serves must not touch another node: every node of a
    batch is created only after every gate of the previous batch."""
    batches = rollout_batches(web_node_names(7), 3)
    assert [len(b) for b in batches] == [1, 3, 3]
    for earlier, later in itertools.pairwise(batches):
        for node in later:
            for before in earlier:
                assert seven_nodes.depends_on(
                    instance_of(seven_nodes, node), gate_of(seven_nodes, before)
                ), f"{node} does not wait for {before}'s gate"
    # ...and nodes of the same batch do not wait for each other.
    for first, second in [("web-2", "web-3"), ("web-5", "web-7")]:
        assert not seven_nodes.depends_on(
            instance_of(seven_nodes, second), gate_of(seven_nodes, first)
        )


def test_old_hosts_are_deleted_only_after_haproxy_followed_the_switch(
    seven_nodes: ProgramRun,
) -> None:
    """Pulumi deletes replaced hosts at the end of the update; the wait on the web nodes'
    records keeps it from ending before HAProxy re-resolved them."""
    (wait,) = seven_nodes.of_type("pulumi-python:dynamic/dns:PropagationWait")
    for node in web_node_names(7):
        assert seven_nodes.depends_on(wait, record_of(seven_nodes, node)), node
    assert set(wait.inputs["records"]) == set(web_node_names(7))
    assert wait.inputs["seconds"] == SWITCH_WAIT_SECONDS
    assert wait.inputs["seconds"] > RECORD_TTL_SECONDS, "longer than resolvers cache a record"
    for node in web_node_names(7):
        assert record_of(seven_nodes, node).inputs["ttl"] == RECORD_TTL_SECONDS


def test_instances_wait_for_egress_rules_but_roles_do_not_wait_for_nat(
    default_run: ProgramRun,
) -> None:
    """Cloud-init installs packages at once: an instance booting before its egress rules or
    the NAT route fails its first boot. Roles need neither, so they are not delayed."""
    nat = default_run.one("aws:ec2/natGateway:NatGateway")
    egress = default_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    for instance in default_run.of_type(INSTANCE):
        assert default_run.depends_on(instance, nat), instance.name
        for rule in egress:
            assert default_run.depends_on(instance, rule), f"{instance.name}: {rule.name}"
    for role in default_run.of_type("aws:iam/role:Role"):
        assert not default_run.depends_on(role, nat), role.name


def test_readiness_reports_live_in_parameters_the_program_owns(default_run: ProgramRun) -> None:
    parameters = {
        p.inputs["name"]: p
        for p in default_run.of_type("aws:ssm/parameter:Parameter")
        if "/ready/" in p.inputs["name"]
    }
    assert set(parameters) == {
        "/web-infra-dev/ready/load-balancer-1",
        "/web-infra-dev/ready/load-balancer-2",
        "/web-infra-dev/ready/web-1",
        "/web-infra-dev/ready/web-2",
    }
    for name, parameter in parameters.items():
        assert parameter.ignore_changes == ["insecureValue"], f"{name}: hosts write the value"
        assert parameter.delete_before_replace is True, f"{name}: a fixed name"
        assert json.loads(parameter.inputs["insecureValue"]) == {}, "no report yet"


def test_the_database_survives_its_own_changes(default_run: ProgramRun) -> None:
    primary, replica = default_run.one(RDS, "primary"), default_run.one(RDS, "replica")
    for db in (primary, replica):
        assert db.inputs["allocatedStorage"] == 20, f"{db.name}: the replica fills up first"
        assert db.inputs["maxAllocatedStorage"] == 100, f"{db.name}: storage autoscaling"
        assert db.inputs["storageType"] == "gp3", db.name
        assert db.delete_before_replace is True, f"{db.name}: a fixed identifier"
        assert db.inputs["applyImmediately"] is False, f"{db.name}: maintenance window"
    suffix = default_run.one("random:index/randomId:RandomId")
    snapshot = primary.inputs["finalSnapshotIdentifier"]
    assert snapshot == f"web-infra-dev-primary-final-{suffix.outputs['hex']}"
    assert suffix.inputs["keepers"] == {"identifier": "web-infra-dev-primary"}
    immediate = run_program({"dbApplyImmediately": True})
    assert immediate.one(RDS, "primary").inputs["applyImmediately"] is True


def test_the_provider_honours_the_stacks_aws_settings() -> None:
    """An explicit provider does not read aws:* config by itself: without passing them on, a
    deploy would silently use another profile or account than the stack says."""
    run = run_program(
        {},
        aws_config={
            "aws:profile": "prod-deployer",
            "aws:allowedAccountIds": '["123456789012"]',
            "aws:defaultTags": '{"tags": {"CostCenter": "42"}}',
        },
    )
    (provider,) = [p for p in run.of_type("pulumi:providers:aws") if p.name == "aws"]
    assert provider.inputs["profile"] == "prod-deployer"
    assert json.loads(provider.inputs["allowedAccountIds"]) == ["123456789012"]
    tags = json.loads(provider.inputs["defaultTags"])["tags"]
    assert tags == {
        "CostCenter": "42",
        "Project": "web-infra",
        "Stack": "dev",
        "ManagedBy": "pulumi",
    }
    assert {g.inputs["profile"] for g in run.of_type(GATE)} == {"prod-deployer"}, (
        "gates talk to AWS with the stack's profile too"
    )


def test_a_failed_gate_replaces_its_instance_on_the_next_run() -> None:
    """After a gate failed, the next `pulumi up` must replace exactly the failed instance (its
    failure record becomes the instance's replacement trigger); with no failure the trigger
    stays the same on every run, so nothing is replaced."""
    first = run_program()
    for host in [*LOAD_BALANCERS, *web_node_names(2)]:
        instance, gate = instance_of(first, host), gate_of(first, host)
        assert instance.replacement_trigger == "none", f"{host}: no failure recorded yet"
        record = f"/web-infra-dev/gate-failures/{host}"
        assert gate.inputs["failure_record"] == record, host
        (parameter,) = [
            p for p in first.of_type("aws:ssm/parameter:Parameter") if p.inputs["name"] == record
        ]
        assert first.depends_on(gate, parameter), f"{host}: the gate writes the record"
        assert parameter.inputs["insecureValue"] == "none", host
        assert parameter.ignore_changes == ["insecureValue"], f"{host}: the gate writes it"
    (lookup,) = [args for token, args in first.mocks.calls if token.endswith("getParametersByPath")]
    assert lookup["path"] == "/web-infra-dev/gate-failures"
    for policy in first.of_type("aws:iam/rolePolicy:RolePolicy"):
        # Only the deployer writes failure records: a host must not be able to cancel or
        # trigger its own replacement.
        assert "gate-failures" not in policy.inputs["policy"], policy.name

    # web-2's gate failed on instance i-0failed; another stack's record is not this stack's.
    second = run_program(
        ssm_parameters={
            "/web-infra-dev/gate-failures/web-2": "i-0failed",
            "/web-infra-prod/gate-failures/web-1": "i-0other",
            "/web-infra-dev/gate-failures/old/web-1": "i-0nested",
        }
    )
    assert instance_of(second, "web-2").replacement_trigger == "i-0failed"
    for host in [*LOAD_BALANCERS, "web-1"]:
        assert instance_of(second, host).replacement_trigger == "none", host


def deletion_waves(run: ProgramRun, condemned: set[str]) -> list[set[str]]:
    """The order the engine deletes `condemned` URNs in: waves, each run in parallel and the
    next begun when it finished; a resource only after everything that depends on it (pulumi
    pkg/resource/deploy/step_generator.go, ScheduleDeletes)."""
    left, waves = set(condemned), []
    while left:
        # Those no remaining condemned resource depends on.
        wave = {u for u in left if not any(u in run.by_urn(o).dependencies for o in left)}
        assert wave, "a dependency cycle"
        waves.append(wave)
        left -= wave
    return waves


def test_a_removed_node_leaves_dns_and_haproxy_follows_before_it_is_terminated() -> None:
    """Scaling down deletes a node's record, then waits while HAProxy lets go of the name, then
    terminates the node. Without the drain the instance is terminated as soon as the record's
    delete returns, while resolvers still hand out the cached address: HAProxy would keep
    sending requests to a terminated node for up to 20 s."""
    three, two = run_program({"webNodeCount": 3}), run_program({"webNodeCount": 2})
    removed = {r.urn for r in three.registrations} - {r.urn for r in two.registrations}
    waves = deletion_waves(three, removed)

    def wave_of(registration: Registration) -> int:
        return next(i for i, wave in enumerate(waves) if registration.urn in wave)

    record, gate, instance = (
        record_of(three, "web-3"),
        gate_of(three, "web-3"),
        instance_of(three, "web-3"),
    )
    (drain,) = [d for d in three.of_type(DRAIN) if d.inputs["host"] == "web-3"]
    assert {record.urn, drain.urn, gate.urn, instance.urn} <= removed
    assert wave_of(record) < wave_of(drain) < wave_of(gate) < wave_of(instance), waves
    assert drain.inputs["seconds"] == SWITCH_WAIT_SECONDS

    # Every web node has its drain between its gate and its record; the load balancer, which
    # HAProxy does not resolve, has none.
    for host in web_node_names(3):
        (drain,) = [d for d in three.of_type(DRAIN) if d.inputs["host"] == host]
        record, gate = record_of(three, host), gate_of(three, host)
        assert three.depends_on(record, drain), host
        assert three.depends_on(drain, gate), host
        assert record.inputs["records"] == [gate.outputs["private_ip"]], host
    assert len(three.of_type(DRAIN)) == 3


def test_only_removing_a_node_waits_in_its_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drain waits when deleted (its node was removed), never when created or updated (a
    replaced node's new address is waited for by the propagation wait)."""
    slept: list[float] = []
    monkeypatch.setattr("components.dns_propagation.time.sleep", slept.append)
    provider = dns_propagation.DrainProvider()
    props = {"host": "web-3", "address": "10.20.128.12", "seconds": SWITCH_WAIT_SECONDS}
    assert provider.create(props).outs == props
    moved = {**props, "address": "10.20.129.40"}
    diff = provider.diff("drain-web-3", props, moved)
    assert diff.changes
    assert not diff.replaces, "a new address must not delete the drain"
    assert not provider.diff("drain-web-3", props, {**props, "__provider": "new code"}).changes
    provider.update("drain-web-3", props, moved)
    assert slept == []
    provider.delete("drain-web-3", moved)
    assert slept == [SWITCH_WAIT_SECONDS]
