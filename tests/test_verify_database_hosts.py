"""tools.verify on a `dbMode: ec2` stack: the database hosts as EC2 sees them (moto).

The stack is the RDS design of verify_fixtures with its database moved onto two EC2 hosts, as
components/database_hosts.py makes them: Role=database, Name=<prefix>-database-N, a private
subnet per zone, the database group (which also admits the other host: replication), and an
encrypted data volume at /dev/sdf. The outputs name the hosts' private records.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from verify_fixtures import REGION, Clients, admit, build_stack, launch, put_alarm

from tools import verify
from tools.verify.aws import aws_session
from tools.verify.cli import check_aws
from tools.verify.database_hosts import check_database_hosts
from userdata.metric_catalog import HEALTH_CHECK, StackShape, catalogue, instance_ref

ZONES = ("us-east-1a", "us-east-1b")
_stacks = itertools.count(1)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with mock_aws():
        yield Clients()


def ec2_mode_stack(
    clients: Clients, *, zones: tuple[str, str] = ZONES, encrypted: bool = True
) -> dict[str, Any]:
    """The design with its database on two hosts: outputs as `pulumi stack output --json`."""
    prefix = f"web-infra-e{next(_stacks)}"
    raw = build_stack(clients, prefix, replica=False)
    ec2 = clients.ec2
    db_sg = raw["security_group_ids"]["database"]
    admit(ec2, db_sg, 3306, db_sg)  # database-1 and database-2 to each other
    subnets = ec2.describe_subnets(SubnetIds=raw["private_subnet_ids"])["Subnets"]
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
    for index, zone in enumerate(zones, start=1):
        name = f"{prefix}-database-{index}"
        instance = launch(ec2, name, "database", by_zone[zone], db_sg, instance_type="t4g.small")
        volume = ec2.create_volume(
            AvailabilityZone=zone, Size=20, VolumeType="gp3", Encrypted=encrypted
        )
        ec2.attach_volume(
            VolumeId=volume["VolumeId"], InstanceId=instance["InstanceId"], Device="/dev/sdf"
        )
    zone_name = f"{prefix}.internal"
    outputs = {
        **raw,
        "db_primary_endpoint": f"database-1.{zone_name}:3306",
        "db_replica_endpoint": f"database-2.{zone_name}:3306",
    }
    watch_database_hosts(clients, prefix, outputs)
    return outputs


DATABASE_HOSTS = ("database-1", "database-2")


def watch_database_hosts(
    clients: Clients,
    prefix: str,
    outputs: dict[str, Any],
    hosts: tuple[str, str] = ("database-1", "database-2"),
) -> None:
    """What the monitoring component makes without RDS, through the APIs: the catalogue's
    alarms of the hosts that run the database, and the dashboard of the stack with its
    database on them (database-1 and database-2, or web-1 and web-2 with colocated)."""
    instances = [
        instance
        for reservation in clients.ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    ]
    refs = {HEALTH_CHECK: outputs["health_check_id"]}
    for instance in instances:
        name = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get("Name", "")
        if name.startswith(f"{prefix}-"):
            refs[instance_ref(name.removeprefix(f"{prefix}-"))] = instance["InstanceId"]
    shape = StackShape(
        prefix, REGION, ("web-1", "web-2"), "database-1", "database-2", "db.t4g.micro", 20,
        db_on_rds=False, database_hosts=hosts,
    )  # fmt: skip
    plan = catalogue(shape)
    cloudwatch = clients.client("cloudwatch")
    for spec in plan.alarms:
        if spec.key.startswith(hosts):
            put_alarm(cloudwatch, spec, prefix, refs, outputs["alarm_topic_arn"])
    cloudwatch.put_dashboard(
        DashboardName=prefix, DashboardBody=json.dumps(plan.dashboard_body(refs))
    )


def database_checks(clients: Clients, raw: dict[str, Any]) -> dict[str, verify.Check]:
    outputs = verify.parse_outputs(json.dumps(raw))
    return {c.check: c for c in check_database_hosts(clients.ec2, outputs)}


def test_the_database_hosts_pass_and_rds_is_not_asked(clients: Clients) -> None:
    raw = ec2_mode_stack(clients)
    checks = {c.check: c for c in check_aws(verify.parse_outputs(json.dumps(raw)), clients)}
    database = ["db primary", "db replica", "db hosts AZ spread"]
    assert [name for name in checks if name.startswith("db ")][-3:] == database
    assert "db replication" not in checks  # RDS's source link: no such thing here
    bad = {name: c.found for name, c in checks.items() if name.startswith("db") and not c.ok}
    assert bad == {}
    assert checks["db sg ingress"].found == "tcp/3306 from web sg, tcp/3306 from db sg"
    assert "and db sg (replication)" in checks["db sg ingress"].expected
    assert checks["db hosts AZ spread"].found == "database-1: us-east-1a, database-2: us-east-1b"
    assert "encrypted data volume vol-" in checks["db primary"].found


def test_an_unencrypted_data_volume_fails_its_host(clients: Clients) -> None:
    checks = database_checks(clients, ec2_mode_stack(clients, encrypted=False))
    assert {n for n, c in checks.items() if not c.ok} == {"db primary", "db replica"}
    assert "unencrypted data volume" in checks["db replica"].found


def test_both_hosts_in_one_zone_fail_the_spread(clients: Clients) -> None:
    checks = database_checks(clients, ec2_mode_stack(clients, zones=(ZONES[0], ZONES[0])))
    assert {n for n, c in checks.items() if not c.ok} == {"db hosts AZ spread"}


def test_a_terminated_host_fails_its_line_only(clients: Clients) -> None:
    raw = ec2_mode_stack(clients)
    replica = clients.ec2.describe_instances(
        Filters=[{"Name": "tag:Name", "Values": ["*-database-2"]}]
    )["Reservations"][0]["Instances"][0]
    clients.ec2.terminate_instances(InstanceIds=[replica["InstanceId"]])
    checks = database_checks(clients, raw)
    assert checks["db replica"].found.startswith("0 Role=database instances named *-database-2")
    assert not checks["db replica"].ok
    assert checks["db primary"].ok


def test_without_a_region_the_alarm_topics_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    raw = {
        "url": "https://www.example.com/",
        "load_balancer_public_ip": "203.0.113.10",
        "load_balancer_public_dns": "ec2-203-0-113-10.compute-1.amazonaws.com",
        "web_private_ips": ["10.0.10.10", "10.0.11.10"],
        "db_primary_endpoint": "database-1.web-infra-dev.internal:3306",
        "db_replica_endpoint": "database-2.web-infra-dev.internal:3306",
        "vpc_id": "vpc-1",
        "public_subnet_ids": ["subnet-1"],
        "private_subnet_ids": ["subnet-2"],
        "security_group_ids": {"load_balancer": "sg-1", "web": "sg-2", "database": "sg-3"},
        "alarm_topic_arn": "arn:aws:sns:eu-west-3:123456789012:web-infra-dev-alarms",
        "health_check_alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:x",
        "dashboard_url": "https://eu-west-3.console.aws.amazon.com/cloudwatch/home"
        "?region=eu-west-3#dashboards/dashboard/web-infra-dev",
        "health_check_id": "00000000-0000-0000-0000-000000000000",
    }
    session = aws_session(verify.parse_outputs(json.dumps(raw)))
    assert session.region_name == "eu-west-3"


def monitoring_checks(clients: Clients, raw: dict[str, Any]) -> dict[str, verify.Check]:
    return {c.check: c for c in check_aws(verify.parse_outputs(json.dumps(raw)), clients)}


DATABASE_HOST_ALARMS = [
    f"{host}-{kind}"
    for host in DATABASE_HOSTS
    for kind in ("cpu", "memory", "disk", "instance-check", "system-check-recover", "data-disk")
] + ["database-2-replication-lag", "database-2-replication-stopped"]


def test_the_database_hosts_alarms_and_dashboard_lines_are_expected(clients: Clients) -> None:
    checks = monitoring_checks(clients, ec2_mode_stack(clients))
    for key in DATABASE_HOST_ALARMS:
        assert checks[f"alarm {key}"].ok, (key, checks[f"alarm {key}"].found)
    assert "alarm database-1-replication-lag" not in checks, "the primary does not replicate"
    assert not [name for name in checks if name.startswith("alarm db-")], "no RDS to watch"
    assert checks["dashboard"].ok, checks["dashboard"].found
    assert "db events" not in checks


def test_a_missing_replication_alarm_fails_by_name(clients: Clients) -> None:
    raw = ec2_mode_stack(clients)
    prefix = raw["dashboard_url"].rsplit("/", 1)[-1]
    clients.client("cloudwatch").delete_alarms(
        AlarmNames=[f"{prefix}-database-2-replication-stopped"]
    )
    checks = monitoring_checks(clients, raw)
    failed = {name for name, check in checks.items() if name.startswith("alarm ") and not check.ok}
    assert failed == {"alarm database-2-replication-stopped"}
    assert checks["alarm database-2-replication-stopped"].found == "not found"


def test_an_alarm_on_another_hosts_instance_fails(clients: Clients) -> None:
    """The instance alarms must watch the host's own instance, found by its Name tag."""
    raw = ec2_mode_stack(clients)
    prefix = raw["dashboard_url"].rsplit("/", 1)[-1]
    cloudwatch = clients.client("cloudwatch")
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"{prefix}-database-1-cpu"])["MetricAlarms"]
    web = clients.ec2.describe_instances(
        Filters=[{"Name": "tag:Name", "Values": [f"{prefix}-web-1"]}]
    )["Reservations"][0]["Instances"][0]["InstanceId"]
    keep = ("AlarmName", "ComparisonOperator", "Threshold", "EvaluationPeriods", "AlarmActions")
    cloudwatch.put_metric_alarm(
        **{k: alarm[k] for k in keep},
        Namespace="AWS/EC2",
        MetricName="CPUUtilization",
        Statistic="Average",
        Period=300,
        DatapointsToAlarm=3,
        Dimensions=[{"Name": "InstanceId", "Value": web}],
    )
    checks = monitoring_checks(clients, raw)
    assert not checks["alarm database-1-cpu"].ok
    assert checks["alarm database-2-cpu"].ok


def colocated_stack(clients: Clients, *, encrypted: bool = True) -> dict[str, Any]:
    """The design with its database on web-1 and web-2 (`dbMode: colocated`): their data
    volumes at /dev/sdf, the web group admitting 3306 from itself; the outputs name web-1's
    and web-2's records."""
    prefix = f"web-infra-c{next(_stacks)}"
    raw = build_stack(clients, prefix, replica=False)
    ec2 = clients.ec2
    web_sg = raw["security_group_ids"]["web"]
    admit(ec2, web_sg, 3306, web_sg)  # the web nodes to each other (web-1 and web-2's databases)
    for name in ("web-1", "web-2"):
        (node,) = ec2.describe_instances(
            Filters=[{"Name": "tag:Name", "Values": [f"{prefix}-{name}"]}]
        )["Reservations"][0]["Instances"]
        volume = ec2.create_volume(
            AvailabilityZone=node["Placement"]["AvailabilityZone"],
            Size=20,
            VolumeType="gp3",
            Encrypted=encrypted,
        )
        ec2.attach_volume(
            VolumeId=volume["VolumeId"], InstanceId=node["InstanceId"], Device="/dev/sdf"
        )
    zone_name = f"{prefix}.internal"
    outputs = {
        **raw,
        "db_primary_endpoint": f"web-1.{zone_name}:3306",
        "db_replica_endpoint": f"web-2.{zone_name}:3306",
    }
    watch_database_hosts(clients, prefix, outputs, hosts=("web-1", "web-2"))
    return outputs


def test_colocated_web_1_and_web_2_pass_as_the_database_and_rds_is_not_asked(
    clients: Clients,
) -> None:
    raw = colocated_stack(clients)
    checks = {c.check: c for c in check_aws(verify.parse_outputs(json.dumps(raw)), clients)}
    bad = {name: c.found for name, c in checks.items() if name.startswith("db") and not c.ok}
    assert bad == {}
    assert "db replication" not in checks
    assert "Role=web, Name=*-web-1, private subnet, web sg" in checks["db primary"].expected
    assert "encrypted data volume vol-" in checks["db replica"].found
    assert checks["db hosts AZ spread"].found == "web-1: us-east-1a, web-2: us-east-1b"
    assert "replication" not in checks["db sg ingress"].expected


def test_colocated_a_node_without_its_encrypted_data_volume_fails(clients: Clients) -> None:
    checks = database_checks(clients, colocated_stack(clients, encrypted=False))
    assert {n for n, c in checks.items() if not c.ok} == {"db primary", "db replica"}
    assert "unencrypted data volume" in checks["db primary"].found
    raw = colocated_stack(clients)
    (volume,) = clients.ec2.describe_volumes(
        Filters=[{"Name": "attachment.device", "Values": ["/dev/sdf"]}]
    )["Volumes"][-1:]
    (attachment,) = volume["Attachments"]
    clients.ec2.detach_volume(
        VolumeId=volume["VolumeId"], InstanceId=attachment["InstanceId"], Device="/dev/sdf"
    )
    checks = database_checks(clients, raw)
    assert {n for n, c in checks.items() if not c.ok} == {"db replica"}
    assert "no volume at /dev/sdf" in checks["db replica"].found


COLOCATED_ALARMS = [
    "web-1-data-disk",
    "web-2-data-disk",
    "web-2-replication-lag",
    "web-2-replication-stopped",
]


def test_colocated_web_1_and_web_2_s_database_alarms_and_dashboard_lines_are_expected(
    clients: Clients,
) -> None:
    checks = monitoring_checks(clients, colocated_stack(clients))
    for key in COLOCATED_ALARMS:
        assert checks[f"alarm {key}"].ok, (key, checks[f"alarm {key}"].found)
    assert "alarm web-1-replication-lag" not in checks, "the primary does not replicate"
    assert "alarm web-3-data-disk" not in checks
    assert not [name for name in checks if name.startswith(("alarm database-", "alarm db-"))]
    failed = {name: c.found for name, c in checks.items() if name.startswith("alarm") and not c.ok}
    assert failed == {}
    assert checks["dashboard"].ok, checks["dashboard"].found


def test_colocated_a_missing_data_volume_alarm_fails_by_name(clients: Clients) -> None:
    raw = colocated_stack(clients)
    prefix = raw["dashboard_url"].rsplit("/", 1)[-1]
    clients.client("cloudwatch").delete_alarms(AlarmNames=[f"{prefix}-web-1-data-disk"])
    checks = monitoring_checks(clients, raw)
    failed = {name for name, check in checks.items() if name.startswith("alarm ") and not check.ok}
    assert failed == {"alarm web-1-data-disk"}
