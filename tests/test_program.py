"""The whole program under Pulumi mocks: the architecture it declares, tier by tier."""

from __future__ import annotations

import json
import re

import pulumi
import pytest
from conftest import ProgramRun, run_program
from pulumi.runtime import rpc

from components.stack_outputs import STACK_OUTPUTS
from userdata.cloud_config import file_content, parse

INSTANCE = "aws:ec2/instance:Instance"
RDS = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"


@pytest.fixture(scope="module")
def five_nodes() -> ProgramRun:
    return run_program({"webNodeCount": 5})


def haproxy_servers(run: ProgramRun) -> list[tuple[str, str]]:
    (load_balancer,) = run.instances("load-balancer")
    document = parse(load_balancer.inputs["userData"])
    (config,) = [f for f in document["write_files"] if f["path"] == "/etc/haproxy/haproxy.cfg"]
    return re.findall(r"^\s+server (\S+) (\S+)", file_content(config).decode(), re.MULTILINE)


def group_id(run: ProgramRun, role: str) -> str:
    return str(run.outputs["security_group_ids"][role])


@pytest.mark.parametrize("count", [2, 5])
def test_one_load_balancer_round_robins_over_exactly_the_web_nodes(
    count: int, default_run: ProgramRun, five_nodes: ProgramRun
) -> None:
    """Guards against a backend list that drifts from webNodeCount (a node never served)."""
    run = default_run if count == 2 else five_nodes
    assert len(run.instances("load-balancer")) == 1
    assert len(run.instances("web")) == count
    servers = haproxy_servers(run)
    assert [name for name, _ in servers] == [f"web-{i}" for i in range(1, count + 1)]
    assert all(address.endswith(".dev.web-infra.internal:80") for _, address in servers)
    (load_balancer,) = run.instances("load-balancer")
    assert "balance roundrobin" in load_balancer.inputs["userData"]
    assert len(run.outputs["web_private_ips"]) == count


def test_web_nodes_alternate_between_two_zones_without_public_addresses(
    five_nodes: ProgramRun,
) -> None:
    private_subnets = five_nodes.outputs["private_subnet_ids"]
    zone_of = {
        s.id: s.inputs["availabilityZone"] for s in five_nodes.of_type("aws:ec2/subnet:Subnet")
    }
    nodes = five_nodes.instances("web")
    assert [n.inputs["tags"]["Name"] for n in nodes] == [
        f"web-infra-dev-web-{i}" for i in range(1, 6)
    ]
    assert all(n.inputs["subnetId"] in private_subnets for n in nodes)
    assert all(n.inputs["associatePublicIpAddress"] is False for n in nodes), (
        "web nodes are private"
    )
    zones = [zone_of[n.inputs["subnetId"]] for n in nodes]
    assert zones == ["eu-west-1a", "eu-west-1b"] * 2 + ["eu-west-1a"], "round the zones"


def test_replica_replicates_from_the_primary_which_keeps_backups(default_run: ProgramRun) -> None:
    primary = default_run.one(RDS, "primary")
    replica = default_run.one(RDS, "replica")
    assert replica.inputs["replicateSourceDb"] == primary.inputs["identifier"]
    assert primary.inputs["backupRetentionPeriod"] >= 1, "RDS needs backups on a replica's source"
    assert primary.inputs["manageMasterUserPassword"] is True
    assert primary.inputs["skipFinalSnapshot"] is False
    assert primary.inputs["finalSnapshotIdentifier"]
    assert replica.inputs["skipFinalSnapshot"] is True
    for key in ("engine", "username", "password", "dbName", "manageMasterUserPassword"):
        assert key not in replica.inputs, (
            f"the replica must not set {key}: it comes from the source"
        )
    for db in (primary, replica):
        assert db.inputs["storageEncrypted"] is True, db.name
        assert db.inputs["publiclyAccessible"] is False, db.name
        assert db.inputs["vpcSecurityGroupIds"] == [group_id(default_run, "database")], db.name
    assert "password" not in primary.inputs


def test_firewall_admits_only_what_each_tier_needs(default_run: ProgramRun) -> None:
    rules = default_run.of_type(INGRESS)
    by_group: dict[str, set[tuple[int, str]]] = {}
    for rule in rules:
        source = rule.inputs.get("cidrIpv4") or rule.inputs["referencedSecurityGroupId"]
        by_group.setdefault(rule.inputs["securityGroupId"], set()).add(
            (rule.inputs["fromPort"], source)
        )
        assert rule.inputs["fromPort"] == rule.inputs["toPort"], rule.name
    assert by_group == {
        group_id(default_run, "load_balancer"): {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")},
        group_id(default_run, "web"): {(80, group_id(default_run, "load_balancer"))},
        group_id(default_run, "database"): {(3306, group_id(default_run, "web"))},
    }
    assert not any(r.inputs["fromPort"] == 22 for r in rules), "no SSH by default"
    database_egress = [
        r
        for r in default_run.of_type(EGRESS)
        if r.inputs["securityGroupId"] == group_id(default_run, "database")
    ]
    assert database_egress == []


def test_admin_cidrs_open_ssh_to_those_cidrs_only() -> None:
    run = run_program({"adminCidrs": ["203.0.113.0/24"]})
    ssh = [r for r in run.of_type(INGRESS) if r.inputs["fromPort"] == 22]
    assert {r.inputs["cidrIpv4"] for r in ssh} == {"203.0.113.0/24"}
    assert {r.inputs["securityGroupId"] for r in ssh} == {
        group_id(run, "load_balancer"),
        group_id(run, "web"),
    }


def test_every_instance_is_hardened(five_nodes: ProgramRun) -> None:
    instances = five_nodes.of_type(INSTANCE)
    assert len(instances) == 6
    for instance in instances:
        metadata = instance.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required", f"{instance.name}: IMDSv2 only"
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True, instance.name
        assert instance.inputs["userDataReplaceOnChange"] is True, instance.name
        assert instance.inputs["iamInstanceProfile"], instance.name
        assert instance.inputs["tags"]["Role"] in ("load-balancer", "web"), instance.name
        assert instance.inputs["tags"]["Name"].startswith("web-infra-dev-"), instance.name
        assert instance.inputs["ami"] == "ami-0a1b2c3d4e5f60718", "Canonical's amd64 image"


def test_ami_follows_override_and_architecture() -> None:
    run = run_program({"amiId": "ami-0123456789abcdef0", "loadBalancerInstanceType": "t4g.micro"})
    assert {i.inputs["ami"] for i in run.of_type(INSTANCE)} == {"ami-0123456789abcdef0"}
    graviton = run_program({"loadBalancerInstanceType": "t4g.micro"})
    (load_balancer,) = graviton.instances("load-balancer")
    assert load_balancer.inputs["ami"] == "ami-0f1e2d3c4b5a69788", "arm64 image for Graviton"
    parameters = [args["name"] for token, args in graviton.mocks.calls if "getParameter" in token]
    assert sorted(p.split("/")[-4] for p in parameters) == ["amd64", "arm64"], "one per arch"
    assert all("/ubuntu/server/24.04/" in name for name in parameters)
    overridden = [t for t, _ in run.mocks.calls if "getParameter" in t]
    assert overridden == [], "an amiId override needs no lookup"


def test_web_role_reads_only_the_primary_secret(default_run: ProgramRun) -> None:
    policy = json.loads(default_run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    primary = default_run.one(RDS, "primary")
    statements = {s["Action"]: s["Resource"] for s in policy["Statement"]}
    assert statements == {
        "rds:DescribeDBInstances": primary.outputs["arn"],
        "secretsmanager:GetSecretValue": primary.outputs["masterUserSecrets"][0]["secretArn"],
    }
    attachments = default_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {a.inputs["policyArn"] for a in attachments} == {
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    }


def test_private_zone_names_every_host(default_run: ProgramRun) -> None:
    records = {
        r.inputs["name"]: (r.inputs["type"], r.inputs["records"])
        for r in default_run.of_type("aws:route53/record:Record")
    }
    ips = default_run.outputs["web_private_ips"]
    assert records["web-1.dev.web-infra.internal"] == ("A", [ips[0]])
    assert records["web-2.dev.web-infra.internal"] == ("A", [ips[1]])
    primary_host = default_run.outputs["db_primary_endpoint"].split(":")[0]
    replica_host = default_run.outputs["db_replica_endpoint"].split(":")[0]
    assert records["db-primary.dev.web-infra.internal"] == ("CNAME", [primary_host])
    assert records["db-replica.dev.web-infra.internal"] == ("CNAME", [replica_host])
    zone = default_run.one("aws:route53/zone:Zone")
    assert zone.inputs["vpcs"] == [{"vpcId": default_run.outputs["vpc_id"]}], "private zone"


def test_missing_names_are_not_cached_for_long(default_run: ProgramRun) -> None:
    """Hosts look up names before RDS exists; a 900 s negative cache would keep the stack
    broken for 15 minutes after `pulumi up`."""
    soa = [r for r in default_run.of_type("aws:route53/record:Record") if r.inputs["type"] == "SOA"]
    assert len(soa) == 1
    assert soa[0].inputs["allowOverwrite"] is True, "Route 53 made the SOA; take it over"
    (value,) = soa[0].inputs["records"]
    assert value == "ns-1536.awsdns-00.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 10"
    assert min(soa[0].inputs["ttl"], int(value.split()[-1])) <= 10


@pytest.mark.parametrize(("mode", "gateways"), [("single", 1), ("perAz", 2)])
def test_nat_gateways_follow_the_setting(mode: str, gateways: int) -> None:
    run = run_program({"natGateways": mode})
    nat = run.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nat) == gateways
    routes = [r for r in run.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert len(routes) == 2, "each private subnet routes out through a NAT gateway"


def test_every_output_of_the_contract_is_exported(default_run: ProgramRun) -> None:
    assert set(default_run.outputs) == set(STACK_OUTPUTS)
    outputs = default_run.outputs
    assert outputs["url"] == f"http://{outputs['load_balancer_public_dns']}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", outputs["load_balancer_public_ip"])
    assert outputs["db_primary_endpoint"].endswith(":3306")
    assert set(outputs["security_group_ids"]) == {"load_balancer", "web", "database"}
    assert len(outputs["public_subnet_ids"]) == len(outputs["private_subnet_ids"]) == 2


def test_every_aws_resource_carries_the_stacks_default_tags(default_run: ProgramRun) -> None:
    (provider,) = default_run.of_type("pulumi:providers:aws")
    # A provider's nested inputs reach the engine as JSON strings.
    assert json.loads(provider.inputs["defaultTags"])["tags"] == {
        "Project": "web-infra",
        "Stack": "dev",
        "ManagedBy": "pulumi",
    }
    assert provider.inputs["region"] == "eu-west-1"
    aws_resources = [r for r in default_run.registrations if r.type.startswith("aws:")]
    not_through_provider = [
        r.name for r in aws_resources if "pulumi:providers:aws::aws::" not in (r.provider or "")
    ]
    assert not_through_provider == []


def test_no_secret_or_computed_value_in_any_userdata(five_nodes: ProgramRun) -> None:
    """Guards against a password or an AWS-assigned value slipping into cloud-init."""
    secret_arn = five_nodes.one(RDS, "primary").outputs["masterUserSecrets"][0]["secretArn"]
    computed = [
        secret_arn,
        five_nodes.outputs["db_primary_endpoint"],
        *five_nodes.outputs["web_private_ips"],
        five_nodes.outputs["vpc_id"],
    ]
    for instance in five_nodes.of_type(INSTANCE):
        userdata = instance.inputs["userData"]
        document = parse(userdata)
        files = {f["path"]: file_content(f).decode() for f in document["write_files"]}
        for value in computed:
            assert value not in userdata, f"{instance.name} userdata contains {value}"
            assert not any(value in text for text in files.values()), instance.name
        for path, text in files.items():
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"{instance.name}: key in {path}"
            if not path.endswith(".py"):  # the app's code names a password variable, no value
                assert "password" not in text.lower(), f"{instance.name}: {path}"


def test_userdata_is_known_at_preview_on_a_new_stack() -> None:
    """A PR's preview must show the real config, so userdata may not wait on AWS."""
    run = run_program({"webNodeCount": 3}, preview=True)
    instances = run.of_type(INSTANCE)
    assert len(instances) == 4
    for instance in instances:
        userdata = instance.inputs.get("userData")
        assert isinstance(userdata, str), f"{instance.name}: userdata unknown at preview"
        assert rpc.UNKNOWN not in userdata, instance.name
        assert userdata.startswith("#cloud-config\n")
    # ...while what AWS computes really is unknown here, so the check above means something.
    assert "privateIp" not in instances[0].outputs
    assert run.outputs == {}, "outputs depend on AWS and stay unknown at preview"


def test_replacing_a_web_node_does_not_touch_the_load_balancer() -> None:
    """HAProxy names web nodes, so their new addresses leave its userdata (and it) as is."""
    first = run_program({"vpcCidr": "10.20.0.0/16"})
    second = run_program({"vpcCidr": "10.30.0.0/16"})
    lb_first = first.instances("load-balancer")[0].inputs["userData"]
    lb_second = second.instances("load-balancer")[0].inputs["userData"]
    assert first.outputs["web_private_ips"] != second.outputs["web_private_ips"]
    assert lb_first == lb_second


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"webNodeCount": 1}, "web-infra:webNodeCount = '1'"),
        ({"dbMode": "aurora"}, "web-infra:dbMode = 'aurora'"),
        ({"vpcCidr": "10.0.0.0/33"}, "web-infra:vpcCidr = '10.0.0.0/33'"),
        ({"natGateways": "many"}, "web-infra:natGateways = 'many'"),
    ],
)
def test_bad_config_stops_before_any_resource(config: dict[str, object], named: str) -> None:
    with pytest.raises(pulumi.RunError, match=re.escape(named)):
        run_program(config)
    # No resource may be registered: a half-built stack is worse than none.
    mocks = pulumi.runtime.settings.SETTINGS.monitor.mocks
    assert [r for r in mocks.registrations if r.type != "pulumi:providers:aws"] == []
    assert mocks.registrations == []
