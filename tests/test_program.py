"""The whole program under Pulumi mocks: the architecture it declares, tier by tier."""

from __future__ import annotations

import ipaddress
import json
import re

import pulumi
import pytest
from conftest import ProgramRun, run_program
from pulumi.runtime import rpc

from components.stack_outputs import STACK_OUTPUTS
from tools.mocked_program import ACCOUNT, REGION
from userdata.cloud_config import file_content, parse

INSTANCE = "aws:ec2/instance:Instance"
RDS = "aws:rds/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"


@pytest.fixture(scope="module")
def five_nodes() -> ProgramRun:
    return run_program({"webNodeCount": 5, "dbInstanceClass": "db.t4g.medium"})


def haproxy_servers(run: ProgramRun) -> list[tuple[str, str]]:
    load_balancer = run.instances("load-balancer")[0]
    document = parse(load_balancer.inputs["userData"])
    (config,) = [f for f in document["write_files"] if f["path"] == "/etc/haproxy/haproxy.cfg"]
    return re.findall(r"^\s+server (\S+) (\S+)", file_content(config).decode(), re.MULTILINE)


def group_id(run: ProgramRun, role: str) -> str:
    return str(run.outputs["security_group_ids"][role])


@pytest.fixture(scope="module")
def twenty_nodes() -> ProgramRun:
    return run_program({"webNodeCount": 20, "dbInstanceClass": "db.t4g.medium"})


@pytest.mark.parametrize("count", [2, 5, 20])
def test_the_load_balancer_does_not_depend_on_the_node_count(
    count: int, default_run: ProgramRun, five_nodes: ProgramRun, twenty_nodes: ProgramRun
) -> None:
    """Guards against scaling replacing HAProxy: its userdata must be byte-identical for any
    webNodeCount, with a slot per possible node that follows that node's DNS name."""
    run = {2: default_run, 5: five_nodes, 20: twenty_nodes}[count]
    assert len(run.instances("load-balancer")) == 2, "a pair by default"
    assert len(run.instances("web")) == count
    for load_balancer, reference in zip(
        run.instances("load-balancer"), default_run.instances("load-balancer"), strict=True
    ):
        assert load_balancer.inputs["userData"] == reference.inputs["userData"]
    servers = haproxy_servers(run)
    assert [name for name, _ in servers] == [f"web-{i}" for i in range(1, 21)]
    assert all(address == f"{name}.dev.web-infra.internal:80" for name, address in servers), (
        "each slot follows its node's record"
    )
    assert "balance roundrobin" in load_balancer.inputs["userData"]
    assert len(run.outputs["web_private_ips"]) == count


def test_web_nodes_alternate_between_two_zones_without_public_addresses(
    five_nodes: ProgramRun,
) -> None:
    private_subnets = five_nodes.outputs["private_subnet_ids"]
    zone_of = {
        s.id: s.inputs["availabilityZone"] for s in five_nodes.of_type("aws:ec2/subnet:Subnet")
    }
    # In node order: registrations arrive as their inputs resolve, in no fixed order.
    nodes = sorted(
        five_nodes.instances("web"), key=lambda n: int(n.inputs["tags"]["Name"].rsplit("-")[-1])
    )
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
    rules = [r for r in default_run.of_type(INGRESS) if r.inputs["ipProtocol"] == "tcp"]
    # The pair's VRRP: from the load balancers' own group only, in and out.
    vrrp = [r for r in default_run.of_type(INGRESS) + default_run.of_type(EGRESS) if r not in rules]
    vrrp = [r for r in vrrp if r.inputs["ipProtocol"] != "tcp"]
    balancers = group_id(default_run, "load_balancer")
    assert sorted((r.type, r.inputs["ipProtocol"]) for r in vrrp) == [
        (EGRESS, "112"),
        (INGRESS, "112"),
    ]
    for rule in vrrp:
        assert rule.inputs["securityGroupId"] == balancers, rule.name
        assert rule.inputs["referencedSecurityGroupId"] == balancers, rule.name
    single = run_program({"loadBalancerCount": 1})
    assert [r for r in single.of_type(INGRESS) if r.inputs["ipProtocol"] != "tcp"] == []
    by_group: dict[str, set[tuple[int, str]]] = {}
    for rule in rules:
        source = rule.inputs.get("cidrIpv4") or rule.inputs["referencedSecurityGroupId"]
        by_group.setdefault(rule.inputs["securityGroupId"], set()).add(
            (rule.inputs["fromPort"], source)
        )
        assert rule.inputs["fromPort"] == rule.inputs["toPort"], rule.name
    bootstrap = default_run.one("aws:ec2/securityGroup:SecurityGroup", "database-bootstrap").id
    assert by_group == {
        group_id(default_run, "load_balancer"): {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")},
        group_id(default_run, "web"): {(80, group_id(default_run, "load_balancer"))},
        group_id(default_run, "database"): {
            (3306, group_id(default_run, "web")),
            (3306, bootstrap),
        },
    }
    assert not any(r.inputs["fromPort"] == 22 for r in rules), "no SSH by default"
    database_egress = [
        r
        for r in default_run.of_type(EGRESS)
        if r.inputs["securityGroupId"] == group_id(default_run, "database")
    ]
    assert database_egress == []


def test_every_instance_is_hardened(five_nodes: ProgramRun) -> None:
    instances = five_nodes.of_type(INSTANCE)
    assert len(instances) == 7, "5 web nodes and the load-balancer pair"
    for instance in instances:
        metadata = instance.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required", f"{instance.name}: IMDSv2 only"
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True, instance.name
        assert instance.inputs["userDataReplaceOnChange"] is True, instance.name
        assert instance.inputs["iamInstanceProfile"], instance.name
        assert instance.inputs["tags"]["Role"] in ("load-balancer", "web"), instance.name
        assert instance.inputs["tags"]["Name"].startswith("web-infra-dev-"), instance.name
        assert instance.inputs["ami"] == "ami-0a1b2c3d4e5f60718", "Canonical's amd64 image"


def test_images_are_pinned_per_architecture_or_looked_up() -> None:
    pinned = run_program(
        {"amiIds": {"amd64": "ami-0123456789abcdef0"}, "loadBalancerInstanceType": "t4g.micro"}
    )
    assert {i.inputs["ami"] for i in pinned.instances("web")} == {"ami-0123456789abcdef0"}
    assert {i.inputs["ami"] for i in pinned.instances("load-balancer")} == {
        "ami-0f1e2d3c4b5a69788"
    }, "arm64 is not pinned: looked up (once for both load balancers)"
    lookups = [args["name"] for token, args in pinned.mocks.calls if "/getParameter:" in token]
    assert [name.split("/")[-4] for name in lookups] == ["arm64"], "no lookup for a pinned arch"
    assert all("/ubuntu/server/24.04/" in name for name in lookups)
    both = run_program(
        {"amiIds": {"amd64": "ami-0123456789abcdef0", "arm64": "ami-0fedcba9876543210"}}
    )
    assert [t for t, _ in both.mocks.calls if "/getParameter:" in t] == []


def test_a_new_image_replaces_instances_instead_of_being_ignored(
    default_run: ProgramRun,
) -> None:
    """`ignore_changes: [ami]` made every later replacement reuse the first deploy's image, so
    an image bump never rolled out; the image must be a normal, reviewable input."""
    for instance in default_run.of_type(INSTANCE):
        assert "ami" not in instance.ignore_changes, instance.name
        assert instance.ignore_changes == [], instance.name


def test_each_host_has_a_role_granting_only_what_it_does(default_run: ProgramRun) -> None:
    """Each host writes only its own readiness report (a web node could mark another ready
    with a shared role); web nodes may read the app's database secret, the load balancer may
    not, and no host the master secret, which only the database bootstrap's role may read;
    Session Manager without AmazonSSMManagedInstanceCore's ssm:GetParameter(s) on `*`."""
    roles = {r.name for r in default_run.of_type("aws:iam/role:Role")}
    assert roles == {
        "web-infra-dev-web-web-1-identity-role",
        "web-infra-dev-web-web-2-identity-role",
        "web-infra-dev-load-balancer-1-identity-role",
        "web-infra-dev-load-balancer-2-identity-role",
        "web-infra-dev-database-bootstrap-role",
    }
    policies: dict[str, dict[str, dict[str, object]]] = {}
    for r in default_run.of_type("aws:iam/rolePolicy:RolePolicy"):
        policies.setdefault(r.inputs["role"], {})[r.inputs["name"]] = json.loads(r.inputs["policy"])
    primary = default_run.one(RDS, "primary")
    parameter_arns = {
        r.inputs["name"].rsplit("/", 1)[1]: r.outputs["arn"]
        for r in default_run.of_type("aws:ssm/parameter:Parameter")
        if "/ready/" in r.inputs["name"]
    }
    files = f"{default_run.one('aws:s3/bucket:Bucket').outputs['arn']}/files/*"

    def statements(policy: dict[str, object]) -> dict[str, object]:
        return {str(s["Action"]): s["Resource"] for s in policy["Statement"]}  # type: ignore[attr-defined]

    hosts = {"web-infra-dev-web-1": "web-1", "web-infra-dev-web-2": "web-2"}
    hosts |= {f"web-infra-dev-load-balancer-{i}": f"load-balancer-{i}" for i in (1, 2)}
    bootstrap_role = default_run.one("aws:iam/role:Role", "database-bootstrap").inputs["name"]
    bootstrap = policies[bootstrap_role]
    app_secret = default_run.one("aws:secretsmanager/secret:Secret", "app-secret").outputs["arn"]
    assert set(policies) == {*hosts, bootstrap_role}
    for role, host in hosts.items():
        by_label = policies[role]
        session = statements(by_label["session-manager"])
        assert session == {
            "ssm:UpdateInstanceInformation": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*",
            "['ssmmessages:CreateControlChannel', 'ssmmessages:CreateDataChannel', "
            "'ssmmessages:OpenControlChannel', 'ssmmessages:OpenDataChannel']": "*",
        }, role
        assert statements(by_label["boot"]) == {
            "s3:GetObject": files,
            "ssm:PutParameter": parameter_arns[host],
        }, role
        assert set(statements(by_label["metrics-agent"])) == {
            "cloudwatch:PutMetricData",
            "['logs:CreateLogStream', 'logs:PutLogEvents']",
        }, role
        secret = by_label.get("database-secret")
        if host.startswith("load-balancer"):
            assert secret is None, "the load balancer never reads the database secret"
            # The pair's address: which one (its own parameter), who holds it, and taking it
            # for this host's own instance only.
            address = default_run.one("aws:ssm/parameter:Parameter", "elastic-ip")
            assert statements(by_label["elastic-ip"]) == {
                "ssm:GetParameter": address.outputs["arn"],
                "ec2:DescribeAddresses": "*",
            }, role
            instance = default_run.one(INSTANCE, host)
            allocation = default_run.one("aws:ec2/eip:Eip", "load-balancer-eip").outputs[
                "allocationId"
            ]
            assert statements(by_label["claim-elastic-ip"]) == {
                "ec2:AssociateAddress": [
                    f"arn:aws:ec2:{REGION}:{ACCOUNT}:elastic-ip/{allocation}",
                    instance.outputs["arn"],
                ]
            }, role
        else:
            assert secret is not None, role
            # The app's own secret only: no RDS API, not the master secret.
            assert statements(secret) == {"secretsmanager:GetSecretValue": app_secret}, role

    master_secret = primary.outputs["masterUserSecrets"][0]["secretArn"]
    readers = [role for role, by_label in policies.items() if master_secret in json.dumps(by_label)]
    assert readers == [bootstrap_role], readers
    log_group = default_run.one("aws:cloudwatch/logGroup:LogGroup", "database-bootstrap")
    assert {label: statements(p) for label, p in bootstrap.items()} == {
        "permissions": {
            "secretsmanager:GetSecretValue": [master_secret, app_secret],
            "['logs:CreateLogStream', 'logs:PutLogEvents']": f"{log_group.outputs['arn']}:*",
        }
    }
    (attachment,) = default_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs == {
        "role": bootstrap_role,
        "policyArn": "arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess",
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


def test_without_a_domain_https_is_self_signed_and_no_public_record_is_made(
    default_run: ProgramRun,
) -> None:
    outputs = default_run.outputs
    assert outputs["https_enabled"] is False
    assert outputs["https_url"] == f"https://{outputs['load_balancer_public_dns']}"
    assert not default_run.of_type("web-infra:site_record:SiteRecord")


def test_a_domain_makes_the_site_https_and_its_record_points_at_the_elastic_ip() -> None:
    """The site's URL becomes https://<domain>; with a public zone the program creates the
    A record the ACME CA resolves, at the Elastic IP (not at an instance's own address)."""
    run = run_program(
        {
            "domain": "www.example.com",
            "acmeEmail": "ops@example.com",
            "publicZoneId": "Z0PUBLIC12345",
        }
    )
    assert run.outputs["https_enabled"] is True
    assert run.outputs["url"] == run.outputs["https_url"] == "https://www.example.com"
    (record,) = [
        r
        for r in run.of_type("aws:route53/record:Record")
        if r.inputs.get("zoneId") == "Z0PUBLIC12345"
    ]
    assert record.inputs["name"] == "www.example.com"
    assert record.inputs["type"] == "A"
    assert record.inputs["records"] == [run.outputs["load_balancer_public_ip"]]
    assert run.of_type("web-infra:site_record:SiteRecord"), "the component, as without a domain"
    without_zone = run_program({"domain": "www.example.com", "acmeEmail": "ops@example.com"})
    assert not [
        r
        for r in without_zone.of_type("aws:route53/record:Record")
        if r.inputs.get("name") == "www.example.com"
    ], "no publicZoneId: the domain's DNS is managed elsewhere"


def test_with_a_domain_the_load_balancers_share_a_certificate_secret_only_they_may_use() -> None:
    """One secret, named at preview and made empty (the hosts write it); each load balancer's
    role may read and write exactly that secret, as a boot policy its instance waits for; no
    other role names it. Without a domain there is none."""
    run = run_program({"domain": "www.example.com", "acmeEmail": "ops@example.com"})
    secret = run.one("aws:secretsmanager/secret:Secret", "load-balancer-certificate")
    assert secret.inputs["name"] == "web-infra-dev/load-balancer/certificate"
    assert secret.inputs["recoveryWindowInDays"] == 0
    assert not [
        v
        for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
        if v.inputs["secretId"] == secret.outputs["arn"]
    ], "no value from the program"
    users = {}
    for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        if secret.outputs["arn"] in policy.inputs["policy"]:
            users[policy.inputs["role"]] = (
                policy.inputs["name"],
                json.loads(policy.inputs["policy"]),
            )
    assert set(users) == {f"web-infra-dev-load-balancer-{i}" for i in (1, 2)}
    for role, (label, document) in users.items():
        assert label == "site-certificate", role
        assert document["Statement"] == [
            {
                "Sid": "ShareTheSiteCertificate",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                "Resource": secret.outputs["arn"],
            }
        ], role
        host = role.removeprefix("web-infra-dev-")
        policy = run.one("aws:iam/rolePolicy:RolePolicy", f"{host}-identity-site-certificate")
        assert run.depends_on(run.one(INSTANCE, host), policy), f"{host} boots into it"
    without = run_program().of_type("aws:secretsmanager/secret:Secret")
    assert [s.inputs["name"] for s in without] == ["web-infra-dev/database/app-user"]


def test_every_aws_resource_carries_the_stacks_default_tags(default_run: ProgramRun) -> None:
    providers = {p.name: p for p in default_run.of_type("pulumi:providers:aws")}
    assert set(providers) == {"aws", "aws-us-east-1"}, "the stack's, and one for Route 53's alarm"
    for provider in providers.values():
        # A provider's nested inputs reach the engine as JSON strings.
        assert json.loads(provider.inputs["defaultTags"])["tags"] == {
            "Project": "web-infra",
            "Stack": "dev",
            "ManagedBy": "pulumi",
        }
    assert providers["aws"].inputs["region"] == "eu-west-1"
    assert providers["aws-us-east-1"].inputs["region"] == "us-east-1"
    aws_resources = [r for r in default_run.registrations if r.type.startswith("aws:")]
    not_through_provider = [
        r.name
        for r in aws_resources
        if not any(f"pulumi:providers:aws::{name}::" in (r.provider or "") for name in providers)
    ]
    assert not_through_provider == []
    in_us_east_1 = {
        r.type
        for r in aws_resources
        if "pulumi:providers:aws::aws-us-east-1::" in (r.provider or "")
    }
    assert in_us_east_1 <= {"aws:cloudwatch/metricAlarm:MetricAlarm", "aws:sns/topic:Topic"}


def test_no_secret_or_computed_value_in_any_userdata(five_nodes: ProgramRun) -> None:
    """Guards against a password or an AWS-assigned value slipping into cloud-init."""
    secret_arn = five_nodes.one(RDS, "primary").outputs["masterUserSecrets"][0]["secretArn"]
    computed = [
        secret_arn,
        five_nodes.one("random:index/randomPassword:RandomPassword").outputs["result"],
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
    assert len(instances) == 5
    for instance in instances:
        userdata = instance.inputs.get("userData")
        assert isinstance(userdata, str), f"{instance.name}: userdata unknown at preview"
        assert rpc.UNKNOWN not in userdata, instance.name
        assert userdata.startswith("#cloud-config\n")
    # ...while what AWS computes really is unknown here, so the check above means something.
    # (The pair's fixed addresses are the program's own, known at preview.)
    web_1 = next(i for i in instances if i.name.endswith("-web-1"))
    assert "privateIp" not in web_1.outputs
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
        ({"adminCidrs": []}, "web-infra:adminCidrs is no longer a setting"),
        ({"aws": "assumeRoles"}, "aws:assumeRoles is not honoured"),
    ],
)
def test_bad_config_stops_before_any_resource(config: dict[str, object], named: str) -> None:
    if config == {"aws": "assumeRoles"}:
        with pytest.raises(pulumi.RunError, match=re.escape(named)):
            run_program({}, aws_config={"aws:assumeRoles": '[{"roleArn": "arn:x"}]'})
    else:
        with pytest.raises(pulumi.RunError, match=re.escape(named)):
            run_program(config)
    # No resource may be registered: a half-built stack is worse than none.
    mocks = pulumi.runtime.settings.SETTINGS.monitor.mocks
    assert [r for r in mocks.registrations if r.type != "pulumi:providers:aws"] == []
    assert mocks.registrations == []


@pytest.mark.parametrize("vpc_cidr", ["10.0.0.0/16", "192.168.7.0/24"])
def test_the_documented_vpc_sizes_split_into_four_subnets(vpc_cidr: str) -> None:
    """/16 and /24 are the documented edges of `vpcCidr`: both make two public and two private
    subnets inside the VPC that do not overlap."""
    run = run_program({"vpcCidr": vpc_cidr})
    vpc = ipaddress.IPv4Network(vpc_cidr)
    subnets = [
        ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in run.of_type("aws:ec2/subnet:Subnet")
    ]
    assert len(subnets) == 4
    assert all(subnet.subnet_of(vpc) for subnet in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])


def test_the_app_user_is_made_by_a_function_in_the_vpc_after_the_primary(
    default_run: ProgramRun,
) -> None:
    """The bootstrap must run once the primary and its firewall path exist, from the private
    subnets, with the handler and PyMySQL in its code, and again when the password or the code
    changes; the app's secret must not wait for RDS (the web tier's policy names it)."""
    primary = default_run.one(RDS, "primary")
    function = default_run.one("aws:lambda/function:Function", "database-bootstrap")
    invocation = default_run.one("aws:lambda/invocation:Invocation", "database-bootstrap")
    secret = default_run.one("aws:secretsmanager/secret:Secret", "app-secret")
    version = default_run.one("aws:secretsmanager/secretVersion:SecretVersion", "app-secret")
    private = set(default_run.outputs["private_subnet_ids"])
    bootstrap_group = default_run.one("aws:ec2/securityGroup:SecurityGroup", "database-bootstrap")

    assert set(function.inputs["vpcConfig"]["subnetIds"]) == private
    assert function.inputs["vpcConfig"]["securityGroupIds"] == [bootstrap_group.id]
    assert function.inputs["handler"] == "app_db_user.handler"
    assert function.inputs["runtime"].startswith("python3.")
    files = function.inputs["code"].assets
    assert {"app_db_user.py", "pymysql/__init__.py", "pymysql/connections.py"} <= set(files)
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]

    assert default_run.depends_on(invocation, primary), "runs once the primary is available"
    for rule in default_run.of_type(INGRESS) + default_run.of_type(EGRESS):
        if "bootstrap" in rule.name:
            assert default_run.depends_on(invocation, rule), f"{invocation.name} after {rule.name}"
    assert default_run.depends_on(invocation, default_run.one("aws:ec2/route:Route", "private-a"))
    assert invocation.inputs["triggers"] == {
        "app_secret_version": version.outputs["versionId"],
        "code": function.outputs["codeSha256"],
    }
    event = json.loads(invocation.inputs["input"])
    assert event == {
        "host": primary.outputs["address"],
        "port": 3306,
        "database": "webapp",
        "master_secret_arn": primary.outputs["masterUserSecrets"][0]["secretArn"],
        "app_secret_arn": secret.outputs["arn"],
    }
    password = default_run.one("random:index/randomPassword:RandomPassword").outputs["result"]
    assert password not in json.dumps(invocation.inputs), "the function reads the secret itself"
    stored = version.inputs["secretString"]
    # Marked secret: encrypted in the state and hidden in every preview diff.
    assert stored[rpc._special_sig_key] == rpc._special_secret_sig, "the value is a secret"
    assert json.loads(stored["value"]) == {"username": "webapp_app", "password": password}

    web_secret_policies = [
        r
        for r in default_run.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.inputs["name"] == "database-secret"
    ]
    assert len(web_secret_policies) == 2, "one per web node"
    for early in (secret, version, *web_secret_policies):
        assert not default_run.depends_on(early, primary), f"{early.name} waits for RDS"
