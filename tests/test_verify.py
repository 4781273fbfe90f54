"""tools.verify against a moto-built stack (AWS checks) and a loopback fake site (HTTP checks).

No traffic leaves the machine: moto's `mock_aws` answers boto3 in-process, the fake site listens
on 127.0.0.1 with an ephemeral port, and proxies are switched off."""

from __future__ import annotations

import io
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from monitoring_harness import shape
from moto import mock_aws
from verify_fixtures import REGION, Clients, FakeSite, build_stack

from tools import verify
from userdata.metric_catalog import catalogue

AWS_CHECKS = [
    "lb instance",
    "lb public dns",
    "web node count",
    "web-1 instance",
    "web-2 instance",
    "web AZ spread",
    "db sg ingress",
    "lb sg world ingress",
    "web sg world ingress",
    "db sg world ingress",
    "db primary",
    "db replica",
    "db replication",
]
MONITORING_CHECKS = [
    "alarm topic",
    "health check topic",
    "health check",
    *(f"alarm {spec.key}" for spec in catalogue(shape(2)).alarms),
    "alarm states",
    "dashboard",
    "db events",
    "log groups",
]
HTTP_CHECKS = ["http health", "http round robin", "http write, read back"]


@pytest.fixture(scope="module", autouse=True)
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake AWS credentials and region, no real AWS config or endpoint, no HTTP proxy."""
    empty = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            env.delenv(name, raising=False)
        for name in ("http_proxy", "https_proxy", "all_proxy"):
            env.delenv(name, raising=False)
            env.delenv(name.upper(), raising=False)
        env.setenv("NO_PROXY", "*")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="module")
def clients(offline_env: None) -> Iterator[Clients]:
    """One moto account for the module; each test builds its own stack (own VPC) in it."""
    with mock_aws():
        yield Clients()


_stacks = itertools.count(1)


@pytest.fixture
def stack(clients: Clients) -> Callable[..., dict[str, Any]]:
    """build_stack with a prefix of its own, so that stacks do not meet."""

    def build(**options: Any) -> dict[str, Any]:
        return build_stack(clients, f"web-infra-s{next(_stacks)}", **options)

    return build


def aws_checks(clients: Clients, raw: dict[str, Any]) -> dict[str, verify.Check]:
    outputs = verify.parse_outputs(json.dumps(raw))
    return {c.check: c for c in verify.check_aws(outputs, clients)}


def instance_id(clients: Clients, raw: dict[str, Any], private_ip: str) -> str:
    reservations = clients.ec2.describe_instances(
        Filters=[
            {"Name": "vpc-id", "Values": [raw["vpc_id"]]},
            {"Name": "private-ip-address", "Values": [private_ip]},
        ]
    )["Reservations"]
    return str(reservations[0]["Instances"][0]["InstanceId"])


def failing(checks: dict[str, verify.Check]) -> set[str]:
    return {name for name, c in checks.items() if not c.ok}


def raw_outputs_for(url: str, nodes: int = 2) -> dict[str, Any]:
    """Outputs JSON for the HTTP checks only: the AWS fields are placeholders."""
    return {
        "url": url,
        "load_balancer_public_ip": "127.0.0.1",
        "load_balancer_public_dns": "localhost",
        "web_private_ips": [f"10.0.10.{10 + n}" for n in range(nodes)],
        "db_primary_endpoint": "p.x.us-east-1.rds.amazonaws.com:3306",
        "db_replica_endpoint": "r.x.us-east-1.rds.amazonaws.com:3306",
        "vpc_id": "vpc-1",
        "public_subnet_ids": ["subnet-1"],
        "private_subnet_ids": ["subnet-2"],
        "security_group_ids": {"load_balancer": "sg-1", "web": "sg-2", "database": "sg-3"},
        "alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:web-infra-dev-alarms",
        "health_check_alarm_topic_arn": "arn:aws:sns:us-east-1:123456789012:web-infra-dev-alarms",
        "dashboard_url": "https://us-east-1.console.aws.amazon.com/cloudwatch/home"
        "?region=us-east-1#dashboards/dashboard/web-infra-dev",
        "health_check_id": "00000000-0000-0000-0000-000000000000",
    }


def outputs_for(url: str, nodes: int = 2) -> verify.Outputs:
    return verify.parse_outputs(json.dumps(raw_outputs_for(url, nodes)))


def http_checks(
    site: FakeSite, *, timeout: float = 2.0, read_back: float = 2.0
) -> dict[str, verify.Check]:
    with site.serve() as url:
        checks = verify.check_http(
            outputs_for(url, len(site.nodes)), timeout=timeout, read_back_seconds=read_back
        )
    return {c.check: c for c in checks}


# --- AWS -------------------------------------------------------------------------------------

Stack = Callable[..., dict[str, Any]]


def test_design_stack_passes_every_aws_check(clients: Clients, stack: Stack) -> None:
    checks = aws_checks(clients, stack())
    assert list(checks) == AWS_CHECKS + MONITORING_CHECKS
    assert failing(checks) == set(), verify.render_table(list(checks.values()))
    assert checks["web AZ spread"].found == "us-east-1a: web-1, us-east-1b: web-2"
    assert checks["db sg ingress"].found == "tcp/3306 from web sg"
    assert checks["db sg world ingress"].found == "nothing open to the world"
    assert checks["db replication"].found.startswith("replica's source is web-infra-s")


def test_missing_replica_fails_the_replica_lines(clients: Clients, stack: Stack) -> None:
    raw = stack(replica=False)
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"db replica", "db replication"}
    replica_id = raw["db_replica_endpoint"].split(".")[0]
    assert checks["db replica"].found == f"{replica_id}: not found"
    assert checks["db replication"].found == "no replica (!), primary lists nothing (!)"


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_a_publicly_accessible_database_fails(clients: Clients, stack: Stack, role: str) -> None:
    """A database with a public address is one security-group slip away from the internet."""
    raw = stack()
    identifier = raw[f"db_{role}_endpoint"].split(".")[0]
    clients.rds.modify_db_instance(DBInstanceIdentifier=identifier, PubliclyAccessible=True)
    checks = aws_checks(clients, raw)
    assert failing(checks) == {f"db {role}"}
    assert "publicly accessible (!)" in checks[f"db {role}"].found


def test_database_group_open_to_the_world(clients: Clients, stack: Stack) -> None:
    raw = stack()
    clients.ec2.authorize_security_group_ingress(
        GroupId=raw["security_group_ids"]["database"],
        IpProtocol="tcp",
        FromPort=3306,
        ToPort=3306,
        CidrIp="0.0.0.0/0",
    )
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"db sg ingress", "db sg world ingress"}
    assert "tcp/3306 from 0.0.0.0/0 (!)" in checks["db sg ingress"].found
    assert checks["db sg world ingress"].found == "tcp/3306 from 0.0.0.0/0 (!)"


def test_database_group_admitting_a_cidr_fails_even_inside_the_vpc(
    clients: Clients, stack: Stack
) -> None:
    raw = stack()
    clients.ec2.authorize_security_group_ingress(
        GroupId=raw["security_group_ids"]["database"],
        IpProtocol="tcp",
        FromPort=3306,
        ToPort=3306,
        CidrIp="10.0.0.0/16",
    )
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"db sg ingress"}
    assert checks["db sg ingress"].found == "tcp/3306 from 10.0.0.0/16 (!), tcp/3306 from web sg"


def test_database_group_admitting_all_traffic_from_the_web_group(
    clients: Clients, stack: Stack
) -> None:
    raw = stack()
    groups = raw["security_group_ids"]
    clients.ec2.authorize_security_group_ingress(
        GroupId=groups["database"],
        IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": groups["web"]}]}],
    )
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"db sg ingress"}
    assert "all traffic from web sg (!)" in checks["db sg ingress"].found


def test_ssh_open_to_the_world_on_the_web_group(clients: Clients, stack: Stack) -> None:
    raw = stack()
    clients.ec2.authorize_security_group_ingress(
        GroupId=raw["security_group_ids"]["web"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            }
        ],
    )
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"web sg world ingress"}
    assert checks["web sg world ingress"].found == "tcp/22 from ::/0 (!)"
    assert checks["lb sg world ingress"].ok
    assert checks["lb sg world ingress"].found == (
        "tcp/80 from 0.0.0.0/0 ::/0, tcp/443 from 0.0.0.0/0 ::/0"
    )


def test_stopped_web_node(clients: Clients, stack: Stack) -> None:
    raw = stack()
    clients.ec2.stop_instances(InstanceIds=[instance_id(clients, raw, raw["web_private_ips"][1])])
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"web-2 instance"}
    assert ": stopped (!), Role=web," in checks["web-2 instance"].found
    assert checks["web-1 instance"].ok


def test_web_nodes_in_one_az(clients: Clients, stack: Stack) -> None:
    checks = aws_checks(clients, stack(web_azs=("us-east-1a", "us-east-1a")))
    assert failing(checks) == {"web AZ spread"}
    assert checks["web AZ spread"].found == "us-east-1a: web-1 web-2"


def test_outputs_naming_nodes_in_the_wrong_order(clients: Clients, stack: Stack) -> None:
    raw = stack()
    raw["web_private_ips"].reverse()
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"web-1 instance", "web-2 instance"}
    assert "-web-2 (!)" in checks["web-1 instance"].found


def test_wrong_public_ip_in_outputs(clients: Clients, stack: Stack) -> None:
    raw = stack()
    raw["load_balancer_public_ip"] = "203.0.113.9"
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"lb instance", "lb public dns"}
    assert "holds 203.0.113.9; Role=load-balancer: i-" in checks["lb instance"].found


class _Unreachable:
    """A session whose every AWS call fails as if the endpoint were down."""

    def client(self, service: str, **_options: Any) -> Any:
        return self

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def call(*_args: Any, **_kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")

        return call


def test_aws_errors_fail_the_checks_they_stop() -> None:
    outputs = outputs_for("http://127.0.0.1:9")
    checks = verify.check_aws(outputs, _Unreachable())
    assert [(c.check, c.ok) for c in checks] == [
        ("load balancer", False),
        ("web nodes", False),
        ("security groups", False),
        ("database", False),
        ("monitoring", False),
    ]
    assert checks[0].found.startswith("AWS error: Could not connect")


# --- monitoring ------------------------------------------------------------------------------


def alarm_of(clients: Clients, name: str) -> dict[str, Any]:
    (alarm,) = clients.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return dict(alarm)


def put_back(clients: Clients, alarm: dict[str, Any], **changes: Any) -> None:
    """Write an alarm again as it was, but for `changes` (as an edit in the console would)."""
    keys = [
        "AlarmName",
        "AlarmDescription",
        "ComparisonOperator",
        "Threshold",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "TreatMissingData",
        "AlarmActions",
        "OKActions",
        "Namespace",
        "MetricName",
        "Dimensions",
        "Period",
        "Statistic",
        "ExtendedStatistic",
        "Metrics",
    ]
    fields = {k: alarm[k] for k in keys if alarm.get(k) not in (None, [], "")}
    clients.client("cloudwatch").put_metric_alarm(**{**fields, **changes})


def test_a_missing_alarm_fails_on_its_own_line(clients: Clients, stack: Stack) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    clients.client("cloudwatch").delete_alarms(AlarmNames=[f"{prefix}-web-2-memory"])
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"alarm web-2-memory"}
    assert checks["alarm web-2-memory"].found == "not found"
    assert checks["alarm web-2-memory"].expected.startswith("Average > 90 in 5 of 5 periods")


def test_the_pairs_elastic_ip_alarms_are_checked(clients: Clients, stack: Stack) -> None:
    """Two load balancers running: the catalogue expects the pair's alarms, and a missing one
    fails on its own line; a single load balancer's stack expects neither."""
    raw = stack(pair=True)
    checks = aws_checks(clients, raw)
    assert failing(checks) == set(), verify.render_table(list(checks.values()))
    assert checks["alarm lb-no-address-holder"].expected.startswith(
        "Maximum < 1 in 2 of 2 periods of 60 s"
    )
    assert checks["alarm lb-address-moved"].expected.startswith("Sum >= 1 in 1 of 1 periods")
    for host in ("load-balancer-1", "load-balancer-2"):  # the instance alarms watch each
        for alarm in ("cpu", "memory", "disk", "instance-check", "system-check-recover"):
            assert checks[f"alarm {host}-{alarm}"].ok, checks[f"alarm {host}-{alarm}"]
    assert "alarm load-balancer-cpu" not in checks
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    clients.client("cloudwatch").delete_alarms(AlarmNames=[f"{prefix}-lb-no-address-holder"])
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"alarm lb-no-address-holder"}
    assert "alarm lb-address-moved" not in aws_checks(clients, stack())


def test_an_alarm_without_an_action_fails_on_its_own_line(clients: Clients, stack: Stack) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    alarm = alarm_of(clients, f"{prefix}-lb-5xx-rate")
    put_back(clients, {**alarm, "AlarmActions": []})
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"alarm lb-5xx-rate"}
    assert "no action to the topic (!)" in checks["alarm lb-5xx-rate"].found
    assert checks["alarm lb-5xx-rate"].found.startswith("IF(requests >= 10, 100 * errors")


def test_a_threshold_changed_by_hand_and_a_lost_recover_action(
    clients: Clients, stack: Stack
) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    healthy = alarm_of(clients, f"{prefix}-lb-healthy-nodes-below-count")
    put_back(clients, healthy, Threshold=1.0)
    recover = alarm_of(clients, f"{prefix}-web-1-system-check-recover")
    put_back(clients, recover, AlarmActions=[raw["alarm_topic_arn"]])
    checks = aws_checks(clients, raw)
    assert failing(checks) == {
        "alarm lb-healthy-nodes-below-count",
        "alarm web-1-system-check-recover",
    }
    assert "< 1 (!)" in checks["alarm lb-healthy-nodes-below-count"].found
    assert "no recover action (!)" in checks["alarm web-1-system-check-recover"].found
    assert checks["alarm web-2-system-check-recover"].found.endswith("recovers")


def test_alarm_states_show_what_fires(clients: Clients, stack: Stack) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    clients.client("cloudwatch").set_alarm_state(
        AlarmName=f"{prefix}-db-replica-lag", StateValue="ALARM", StateReason="test"
    )
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"alarm states"}
    assert checks["alarm states"].found == f"1 ALARM (db-replica-lag), {30} OK"


def test_a_dashboard_without_a_node_and_a_topic_nobody_reads(
    clients: Clients, stack: Stack
) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    cloudwatch = clients.client("cloudwatch")
    body = json.loads(cloudwatch.get_dashboard(DashboardName=prefix)["DashboardBody"])
    for widget in body["widgets"]:
        metrics = widget["properties"]["metrics"]
        widget["properties"]["metrics"] = [row for row in metrics if "web-2" not in row]
    cloudwatch.put_dashboard(DashboardName=prefix, DashboardBody=json.dumps(body))
    sns = clients.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=raw["alarm_topic_arn"])[
        "Subscriptions"
    ]:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"dashboard", "alarm topic", "health check topic"}
    assert checks["dashboard"].found.startswith("11 widgets, 20 lines, missing: ")
    assert "; mem_used_percent[Node=web-2] and" in checks["dashboard"].found
    assert checks["dashboard"].found.endswith(" and 1 more (!)")
    assert "0 confirmed (none) (!)" in checks["alarm topic"].found


def test_missing_health_check_events_and_retention(clients: Clients, stack: Stack) -> None:
    raw = stack()
    prefix = raw["dashboard_url"].rsplit("/", 1)[1]
    clients.client("route53").delete_health_check(HealthCheckId=raw["health_check_id"])
    clients.rds.delete_event_subscription(SubscriptionName=f"{prefix}-db-events")
    clients.client("logs").delete_retention_policy(logGroupName=f"/{prefix}/web/app")
    checks = aws_checks(clients, raw)
    assert failing(checks) == {"health check", "db events", "log groups"}
    assert checks["health check"].found.endswith(": not found")
    assert checks["db events"].found == f"{prefix}-db-events: not found"
    assert checks["log groups"].found == f"/{prefix}/web/app keeps events forever (!)"


def test_a_stack_without_monitoring_fails_every_monitoring_line(
    clients: Clients, stack: Stack
) -> None:
    checks = aws_checks(clients, stack(monitoring=False))
    assert failing(checks) == set(MONITORING_CHECKS)
    assert checks["alarm lb-no-healthy-nodes"].found == "not found"
    assert checks["alarm states"].found == "no alarms"


def test_monitoring_outputs_are_required_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = raw_outputs_for("http://x")
    del raw["alarm_topic_arn"]
    raw["dashboard_url"] = "https://example.com/"
    assert verify.main(["--outputs", write(tmp_path, raw), "--skip-aws"]) == 2
    err = capsys.readouterr().err
    assert "lack key(s): alarm_topic_arn" in err
    raw = raw_outputs_for("http://x")
    raw["dashboard_url"] = "https://example.com/"
    raw["health_check_alarm_topic_arn"] = "topic"
    assert verify.main(["--outputs", write(tmp_path, raw), "--skip-aws"]) == 2
    err = capsys.readouterr().err
    assert "dashboard_url: expected a CloudWatch console URL" in err
    assert "health_check_alarm_topic_arn: expected an SNS topic ARN, got 'topic'" in err


# --- HTTP ------------------------------------------------------------------------------------


def test_http_round_robin_and_read_back() -> None:
    site = FakeSite(replication_lag=0.3)
    checks = http_checks(site)
    assert list(checks) == HTTP_CHECKS
    assert failing(checks) == set(), checks
    assert checks["http round robin"].found == "web-2 web-1 web-2 web-1"
    assert "read after 0." in checks["http write, read back"].found
    # The read-back had to wait for "replication": at least one GET did not list the message.
    assert sum(r.startswith("GET /api/messages?limit=") for r in site.requests) >= 2


def test_http_round_robin_with_three_nodes() -> None:
    checks = http_checks(FakeSite(nodes=("web-1", "web-2", "web-3"), replication_lag=0.0))
    assert failing(checks) == set()
    assert checks["http round robin"].found == "web-2 web-3 web-1 web-2 web-3 web-1"


def test_node_taken_out_of_rotation_fails_round_robin() -> None:
    checks = http_checks(FakeSite(down=frozenset({"web-2"}), replication_lag=0.0))
    assert failing(checks) == {"http round robin"}
    found = checks["http round robin"].found
    assert found.startswith("web-1 web-1 web-1 web-1 (")
    assert "never answered: web-2" in found
    assert "same node as the GET before at GET 2, 3, 4" in found


def test_node_that_never_answers_fails_round_robin() -> None:
    site = FakeSite(hung=frozenset({"web-2"}), replication_lag=0.0)
    checks = http_checks(site, timeout=0.3, read_back=1.0)
    assert not checks["http round robin"].ok
    assert "never answered: web-2" in checks["http round robin"].found
    assert "timed out" in checks["http round robin"].found


def test_write_never_replicated_fails_read_back() -> None:
    checks = http_checks(FakeSite(lose_writes=True), read_back=0.5)
    assert failing(checks) == {"http write, read back"}
    assert "not listed after 0.5 s" in checks["http write, read back"].found


def test_nothing_listening() -> None:
    with FakeSite().serve() as url:
        pass  # the port is closed again: connections are refused
    checks = verify.check_http(outputs_for(url), timeout=0.5, read_back_seconds=0.2)
    assert [c.ok for c in checks] == [False, False, False]
    assert checks[0].found.startswith("no answer:")


# --- outputs and command line ----------------------------------------------------------------


def write(tmp_path: Path, raw: object) -> str:
    path = tmp_path / "outputs.json"
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return str(path)


def test_missing_keys_exit_2_and_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {"url": "http://x", "vpc_id": "vpc-1"}
    assert verify.main(["--outputs", write(tmp_path, raw), "--skip-aws"]) == 2
    err = capsys.readouterr().err
    assert "load_balancer_public_ip" in err
    assert "security_group_ids" in err
    assert "lack key(s): load_balancer_public_ip," in err, "present keys are not named"
    assert " url," not in err
    assert "vpc_id" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "not JSON"),
    ],
)
def test_unreadable_outputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    assert verify.main(["--outputs", write(tmp_path, text)]) == 2
    assert message in capsys.readouterr().err


def test_malformed_values_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = raw_outputs_for("http://x")
    raw.update(
        web_private_ips="10.0.0.1",
        db_replica_endpoint="no-port",
        security_group_ids={"web": "sg-2", "load_balancer": "sg-1"},
    )
    assert verify.main(["--outputs", write(tmp_path, raw)]) == 2
    err = capsys.readouterr().err
    assert "web_private_ips: expected a list" in err
    assert "db_replica_endpoint: expected 'host:port'" in err
    assert "security_group_ids: lacks key(s): database" in err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify.main(["--outputs", str(tmp_path / "absent.json")]) == 2
    assert "cannot read the outputs" in capsys.readouterr().err


def test_stdin_and_json_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeSite(replication_lag=0.0).serve() as url:
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(raw_outputs_for(url))))
        assert verify.main(["--outputs", "-", "--skip-aws", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert [c["check"] for c in report["checks"]] == HTTP_CHECKS


def test_end_to_end_table(
    clients: Clients, stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = stack()
    with FakeSite(replication_lag=0.2).serve() as url:
        raw["url"] = url
        assert verify.main(["--outputs", write(tmp_path, raw)]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split() == ["check", "expected", "found", "ok"]
        rows = lines[2:-1]
        total = len(AWS_CHECKS) + len(MONITORING_CHECKS) + len(HTTP_CHECKS)
        assert len(rows) == total
        assert all(row.endswith("  yes") for row in rows)
        assert lines[-1] == f"{total} checks, all passed"

        clients.ec2.stop_instances(
            InstanceIds=[instance_id(clients, raw, raw["web_private_ips"][0])]
        )
        assert verify.main(["--outputs", write(tmp_path, raw)]) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("web-1 instance")]
    assert row.endswith("  NO")
    assert out.splitlines()[-1] == f"{total} checks, 1 failed: web-1 instance"
