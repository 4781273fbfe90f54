"""The Monitoring component under the AWS-like mocks: alarms, topic wiring, the outside-in check,
log groups and the dashboard, for 2 and 5 web nodes."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from monitoring_harness import (
    ALARM,
    AWS_METRICS,
    COLOCATED_HOSTS,
    DATABASE_HOSTS,
    PREFIX,
    PRIMARY,
    PUBLIC_HOST,
    REPLICA,
    TOPIC,
    MonitoringRun,
    body_of,
    dashboard_metrics,
    instance_id,
    published_by_agent,
    run_monitoring,
    shape,
)

from components.monitoring import MonitoringArgs
from userdata.metric_catalog import GIB, LOAD_BALANCER
from userdata.scripts import database_node

RECOVER = "arn:aws:automate:eu-west-1:ec2:recover"


@pytest.fixture(scope="module")
def two() -> MonitoringRun:
    return run_monitoring(2, email="ops@example.com")


@pytest.fixture(scope="module")
def five() -> MonitoringRun:
    return run_monitoring(5)


def run_for(count: int, two: MonitoringRun, five: MonitoringRun) -> MonitoringRun:
    return two if count == 2 else five


def per_host_keys(host: str) -> set[str]:
    return {f"{host}-{k}" for k in ("cpu", "memory", "disk", "instance-check")} | {
        f"{host}-system-check-recover"
    }


@pytest.mark.parametrize("count", [2, 5])
def test_every_alarm_exists_and_follows_the_node_count(
    count: int, two: MonitoringRun, five: MonitoringRun
) -> None:
    """Guards against a tier without alarms, and against per-node alarms that miss a node."""
    run = run_for(count, two, five)
    names = set(run.alarms())
    web = [f"web-{i}" for i in range(1, count + 1)]
    expected = {
        "site-health-check",
        "lb-healthy-nodes-below-count",
        "lb-no-healthy-nodes",
        "lb-5xx-rate",
        "lb-latency-p95",
        *(f"{node}-5xx" for node in web),
        *per_host_keys(LOAD_BALANCER),
        *(key for node in web for key in per_host_keys(node)),
        *(f"db-{db}-{k}" for db in ("primary", "replica") for k in ("cpu", "free-storage")),
        *(f"db-{db}-{k}" for db in ("primary", "replica") for k in ("freeable-memory",)),
        *(f"db-{db}-connections" for db in ("primary", "replica")),
        "db-replica-lag",
    }
    assert names == {f"{PREFIX}-{key}" for key in expected}
    assert len(names) == 19 + 6 * count
    below = run.alarms()[f"{PREFIX}-lb-healthy-nodes-below-count"].inputs
    assert below["threshold"] == count, "warning fires below webNodeCount"
    assert below["comparisonOperator"] == "LessThanThreshold"
    none = run.alarms()[f"{PREFIX}-lb-no-healthy-nodes"].inputs
    assert (none["threshold"], none["comparisonOperator"]) == (1, "LessThanThreshold")


def test_every_alarm_notifies_the_topic_of_its_region(two: MonitoringRun) -> None:
    """An alarm without an action reaches nobody; one in us-east-1 cannot notify eu-west-1."""
    topic_arn = two.outputs["alarm_topic_arn"]
    east_arn = two.outputs["health_check_alarm_topic_arn"]
    assert topic_arn != east_arn
    provider = two.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-east-1"
    for name, alarm in two.alarms().items():
        inputs = alarm.inputs
        in_east = name.endswith("site-health-check")
        wanted = east_arn if in_east else topic_arn
        assert wanted in inputs["alarmActions"], f"{name}: no action to its topic"
        assert inputs["okActions"] == [wanted], name
        if in_east:
            assert "pulumi:providers:aws::us-east-1::" in (alarm.provider or ""), name
        else:
            assert not alarm.provider, f"{name}: should use the stack's default provider"
        assert inputs["alarmDescription"].startswith(("[warning]", "[critical]")), name
        assert "Why: " in inputs["alarmDescription"], name


def test_the_site_is_checked_from_outside_and_alarms_in_us_east_1(two: MonitoringRun) -> None:
    check = two.one("aws:route53/healthCheck:HealthCheck").inputs
    assert (check["type"], check["fqdn"], check["port"]) == ("HTTP", PUBLIC_HOST, 80)
    assert check["resourcePath"] == "/health"
    alarm = two.alarms()[f"{PREFIX}-site-health-check"].inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Route53", "HealthCheckStatus")
    assert alarm["dimensions"] == {"HealthCheckId": two.outputs["health_check_id"]}
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (1, "LessThanThreshold")
    assert alarm["treatMissingData"] == "breaching"


def test_email_subscribes_both_topics(two: MonitoringRun) -> None:
    subscriptions = two.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert {(s.inputs["protocol"], s.inputs["endpoint"]) for s in subscriptions} == {
        ("email", "ops@example.com")
    }
    assert {s.inputs["topic"] for s in subscriptions} == {
        two.outputs["alarm_topic_arn"],
        two.outputs["health_check_alarm_topic_arn"],
    }
    assert len(two.of_type(TOPIC)) == 2


def test_a_stack_in_us_east_1_has_one_topic_and_no_email_without_an_address() -> None:
    run = run_monitoring(2, region="us-east-1")
    assert len(run.of_type(TOPIC)) == 1
    assert run.outputs["alarm_topic_arn"] == run.outputs["health_check_alarm_topic_arn"]
    assert run.of_type("aws:sns/topicSubscription:TopicSubscription") == []
    assert run.of_type("pulumi:providers:aws") == []


def test_status_check_alarms_recover_every_instance(five: MonitoringRun) -> None:
    """A hardware fault is EC2's to fix, not a page: every host's system check recovers it."""
    for host in (LOAD_BALANCER, *five.web_nodes):
        inputs = five.alarms()[f"{PREFIX}-{host}-system-check-recover"].inputs
        assert inputs["metricName"] == "StatusCheckFailed_System"
        assert inputs["dimensions"] == {"InstanceId": instance_id(host)}
        assert RECOVER in inputs["alarmActions"], host
        assert five.outputs["alarm_topic_arn"] in inputs["alarmActions"], host
    recovering = [a for a in five.alarms().values() if RECOVER in a.inputs["alarmActions"]]
    assert len(recovering) == 6


def test_a_pairs_instance_alarms_watch_each_load_balancer() -> None:
    """With the pair, status checks, CPU, memory and disk watch load-balancer-1 and
    load-balancer-2, each its own instance, and each agent publishes what its alarms read."""
    run = run_monitoring(2, pair=True)
    alarms = run.alarms()
    assert not [name for name in alarms if name.startswith(f"{PREFIX}-load-balancer-c")]
    for host in ("load-balancer-1", "load-balancer-2"):
        for kind in ("cpu", "instance-check", "system-check-recover"):
            inputs = alarms[f"{PREFIX}-{host}-{kind}"].inputs
            assert inputs["dimensions"] == {"InstanceId": instance_id(host)}, (host, kind)
        assert RECOVER in alarms[f"{PREFIX}-{host}-system-check-recover"].inputs["alarmActions"]
        published = published_by_agent(shape(2, pair=True), host)
        for kind in ("memory", "disk"):
            inputs = alarms[f"{PREFIX}-{host}-{kind}"].inputs
            assert inputs["dimensions"]["Node"] == host
            metric = (
                inputs["namespace"],
                inputs["metricName"],
                frozenset(inputs["dimensions"].items()),
            )
            assert metric in published, (host, kind, "the agent does not publish it")


@pytest.mark.parametrize("given", [{}, {"load-balancer-1": "i-1"}])
def test_a_pair_without_each_instance_id_is_refused(given: dict[str, str]) -> None:
    args = MonitoringArgs(
        name_prefix=PREFIX,
        region="us-east-1",
        public_host=PUBLIC_HOST,
        web_instance_ids={"web-1": "i-0"},
        load_balancer_instance_id="i-1",
        db_primary_identifier=PRIMARY,
        db_replica_identifier=REPLICA,
        db_instance_class="db.t4g.micro",
        db_allocated_storage_gb=20,
        load_balancer_names=("load-balancer-1", "load-balancer-2"),
        load_balancer_instance_ids=given,
    )
    with pytest.raises(ValueError, match="load_balancer_instance_ids"):
        args.check()


def test_thresholds_that_depend_on_the_stack(two: MonitoringRun) -> None:
    alarms = two.alarms()
    storage = alarms[f"{PREFIX}-db-primary-free-storage"].inputs
    assert storage["threshold"] == 4 * GIB, "20 % of 20 GiB"
    assert storage["dimensions"] == {"DBInstanceIdentifier": PRIMARY}
    connections = alarms[f"{PREFIX}-db-replica-connections"].inputs
    assert connections["threshold"] == 48, "80 % of db.t4g.micro's ~61 connections"
    lag = alarms[f"{PREFIX}-db-replica-lag"].inputs
    assert (lag["metricName"], lag["dimensions"]) == (
        "ReplicaLag",
        {"DBInstanceIdentifier": REPLICA},
    )
    latency = alarms[f"{PREFIX}-lb-latency-p95"].inputs
    assert latency["extendedStatistic"] == "p95"
    assert "statistic" not in latency
    memory = alarms[f"{PREFIX}-web-2-memory"].inputs
    assert memory["dimensions"] == {"Node": "web-2"}
    assert memory["namespace"] == f"WebInfra/{PREFIX}"


def test_the_error_rate_alarm_is_a_guarded_ratio(two: MonitoringRun) -> None:
    inputs = two.alarms()[f"{PREFIX}-lb-5xx-rate"].inputs
    queries = {q["id"]: q for q in inputs["metricQueries"]}
    assert queries["signal"]["expression"] == ("IF(requests >= 10, 100 * errors / requests, 0)")
    assert queries["signal"]["returnData"] is True
    errors = queries["errors"]["metric"]
    assert (errors["metricName"], errors["dimensions"], errors["stat"]) == (
        "haproxy_frontend_http_responses_total",
        {"proxy": "http", "code": "5xx"},
        "Sum",
    )
    assert queries["requests"]["metric"]["metricName"] == "haproxy_frontend_http_requests_total"
    assert inputs["threshold"] == 1.0


def published(
    count: int, health_check_id: str, *, database_hosts: bool = False
) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """Every metric something publishes in this stack: each host's agent (read back from its
    config), and AWS for our instances, databases and health check; with database hosts, the
    replica's replication report (the script's own names) instead of RDS."""
    stack = shape(count, database_hosts=database_hosts)
    found = set()
    for host in stack.hosts:
        found |= published_by_agent(stack, host)
    for host in stack.hosts:
        for name in ("CPUUtilization", "StatusCheckFailed_Instance", "StatusCheckFailed_System"):
            found.add(("AWS/EC2", name, frozenset({("InstanceId", instance_id(host))})))
    if database_hosts:
        replica = frozenset({(database_node.NODE_DIMENSION, DATABASE_HOSTS[1])})
        for name in (database_node.RUNNING_METRIC, database_node.LAG_METRIC):
            found.add((stack.namespace, name, replica))
    for db in () if database_hosts else (PRIMARY, REPLICA):
        for namespace, name in AWS_METRICS:
            if namespace == "AWS/RDS" and (name != "ReplicaLag" or db == REPLICA):
                found.add((namespace, name, frozenset({("DBInstanceIdentifier", db)})))
    found.add(("AWS/Route53", "HealthCheckStatus", frozenset({("HealthCheckId", health_check_id)})))
    return found


@pytest.mark.parametrize("count", [2, 5])
def test_dashboard_reads_only_published_metrics_and_follows_the_node_count(
    count: int, two: MonitoringRun, five: MonitoringRun
) -> None:
    """Guards against a dashboard line (or an alarm) on a metric no agent or AWS publishes:
    a name, a dimension or a label value that drifted from the agent's config."""
    run = run_for(count, two, five)
    body = body_of(run)
    lines = dashboard_metrics(body)
    known = published(count, run.outputs["health_check_id"])
    unpublished = [(title, m) for title, m in lines if m not in known]
    assert unpublished == [], unpublished
    for alarm in run.alarms().values():
        inputs = alarm.inputs
        queries = inputs.get("metricQueries") or [
            {"metric": {k: inputs[k] for k in ("namespace", "metricName", "dimensions")}}
        ]
        for query in queries:
            if "metric" in query:
                metric = query["metric"]
                key = (
                    metric["namespace"],
                    metric["metricName"],
                    frozenset(metric["dimensions"].items()),
                )
                assert key in known, f"{inputs['name']} reads {key}, which nothing publishes"
    titles = [w["properties"]["title"] for w in body["widgets"]]
    for topic in ("Traffic", "Errors", "Latency", "Healthy web nodes", "Database", "Replica lag"):
        assert any(t.startswith(topic) for t in titles), topic
    per_node = {m[2] for _, m in lines if m[1] == "nginx_http_requests_total"}
    assert per_node == {frozenset({("Node", f"web-{i}")}) for i in range(1, count + 1)}
    healthy = next(w for w in body["widgets"] if w["properties"]["title"].startswith("Healthy"))
    assert healthy["properties"]["annotations"]["horizontal"][0]["value"] == count


def test_dashboard_fits_one_screen(five: MonitoringRun) -> None:
    body = body_of(five)
    assert all(w["x"] + w["width"] <= 24 for w in body["widgets"])
    assert max(w["y"] + w["height"] for w in body["widgets"]) <= 20
    health = next(w for w in body["widgets"] if "Outside-in" in w["properties"]["title"])
    assert health["properties"]["region"] == "us-east-1", "Route 53 metrics live there"
    assert five.outputs["dashboard_url"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        f"#dashboards/dashboard/{PREFIX}"
    )


def test_log_groups_have_a_retention_and_are_split_by_role(two: MonitoringRun) -> None:
    groups = {g.inputs["name"]: g.inputs for g in two.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {
        f"/{PREFIX}/load-balancer/{log}" for log in ("haproxy", "cloud-init", "metrics")
    } | {
        f"/{PREFIX}/web/{log}"
        for log in ("nginx-access", "nginx-error", "app", "cloud-init", "metrics")
    }
    for name, inputs in groups.items():
        assert inputs["retentionInDays"] == (3 if name.endswith("/metrics") else 30), name
    assert len(two.outputs["log_group_arns"]["web"]) == 5
    assert len(two.outputs["log_group_arns"]["load-balancer"]) == 3


def test_database_events_reach_the_topic(two: MonitoringRun) -> None:
    subscription = two.one("aws:rds/eventSubscription:EventSubscription").inputs
    assert subscription["snsTopic"] == two.outputs["alarm_topic_arn"]
    assert subscription["sourceIds"] == [PRIMARY, REPLICA]
    assert set(subscription["eventCategories"]) == {
        "failover",
        "failure",
        "low storage",
        "read replica",
    }


def test_preview_knows_every_alarm_and_the_dashboard_shape() -> None:
    """On a new stack's first preview the alarms are all listed (ids come later)."""
    run = run_monitoring(3, preview=True)
    assert len(run.of_type(ALARM)) == 19 + 6 * 3
    assert all(a.inputs.get("threshold") is not None for a in run.of_type(ALARM))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"log_retention_days": 10}, "log_retention_days=10: CloudWatch Logs allows 1, 3, 5"),
        ({"alarm_email": "not-an-address"}, "alarm_email='not-an-address'"),
        ({"health_path": "health"}, "must start with '/'"),
        ({"health_check_provider": None}, 'aws.Provider("...", region="us-east-1")'),
        ({"db_instance_class": "db.x2iedn.xlarge"}, "set db_memory_gib"),
    ],
)
def test_bad_arguments_are_named_with_the_fix(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "name_prefix": PREFIX,
        "region": "eu-west-1",
        "public_host": PUBLIC_HOST,
        "web_instance_ids": {"web-1": "i-1", "web-2": "i-2"},
        "load_balancer_instance_id": "i-0",
        "db_primary_identifier": PRIMARY,
        "db_replica_identifier": REPLICA,
        "db_instance_class": "db.t4g.micro",
        "db_allocated_storage_gb": 20,
        "health_check_provider": object(),
    }
    arguments.update(change)
    args = MonitoringArgs(**arguments)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape(message)):
        args.check()


def test_alarm_descriptions_fit_cloudwatch(five: MonitoringRun) -> None:
    for alarm in five.of_type(ALARM):
        assert len(alarm.inputs["alarmDescription"]) <= 1024
        assert len(alarm.inputs["name"]) <= 255
    assert json.dumps(body_of(five)).count('"type": "metric"') == len(body_of(five)["widgets"])


def test_with_a_domain_the_outside_in_check_follows_https_on_the_domain() -> None:
    """With a domain, plain HTTP only answers its 301, which Route 53 counts as healthy: the
    check must ask for the site itself."""
    from tools.mocked_program import run_program  # noqa: PLC0415

    run = run_program({"domain": "www.example.com", "acmeEmail": "ops@example.com"})
    check = run.one("aws:route53/healthCheck:HealthCheck")
    assert (check.inputs["type"], check.inputs["port"]) == ("HTTPS", 443)
    assert check.inputs["fqdn"] == "www.example.com"
    plain = run_program().one("aws:route53/healthCheck:HealthCheck")
    assert (plain.inputs["type"], plain.inputs["port"]) == ("HTTP", 80)


# --- dbMode ec2: the database on hosts of the stack's own -------------------------------------


@pytest.fixture(scope="module")
def on_hosts() -> MonitoringRun:
    return run_monitoring(2, database_hosts=True)


def test_each_database_host_has_its_instance_alarms_and_its_data_volumes(
    on_hosts: MonitoringRun,
) -> None:
    """Status checks (recovering the instance), CPU, memory, root disk and the data volume's
    disk watch database-1 and database-2, each its own instance or `Node`, and each agent
    publishes what its alarms read. RDS's alarms and events are not made: nothing feeds them."""
    alarms = on_hosts.alarms()
    for host in DATABASE_HOSTS:
        published = published_by_agent(shape(2, database_hosts=True), host)
        assert per_host_keys(host) | {f"{host}-data-disk"} <= {
            name.removeprefix(f"{PREFIX}-") for name in alarms
        }
        for kind in ("cpu", "instance-check", "system-check-recover"):
            inputs = alarms[f"{PREFIX}-{host}-{kind}"].inputs
            assert inputs["dimensions"] == {"InstanceId": instance_id(host)}, (host, kind)
        assert RECOVER in alarms[f"{PREFIX}-{host}-system-check-recover"].inputs["alarmActions"]
        assert (
            alarms[f"{PREFIX}-{host}-instance-check"]
            .inputs["alarmDescription"]
            .startswith("[critical]")
        )
        for kind, path in (("memory", None), ("disk", "/"), ("data-disk", "/srv/database")):
            inputs = alarms[f"{PREFIX}-{host}-{kind}"].inputs
            assert inputs["dimensions"]["Node"] == host
            assert inputs["dimensions"].get("path") == path, kind
            metric = (
                inputs["namespace"],
                inputs["metricName"],
                frozenset(inputs["dimensions"].items()),
            )
            assert metric in published, (host, kind, "the agent does not publish it")
        data = alarms[f"{PREFIX}-{host}-data-disk"].inputs
        assert (data["comparisonOperator"], data["threshold"]) == ("GreaterThanThreshold", 80.0)
        assert "MariaDB" in alarms[f"{PREFIX}-{host}-memory"].inputs["alarmDescription"]
    assert not [name for name in alarms if name.startswith(f"{PREFIX}-db-")]
    assert not on_hosts.of_type("aws:rds/eventSubscription:EventSubscription")


def test_the_replicas_replication_alarms_match_rds_modes_lag_and_fire_on_silence(
    two: MonitoringRun, on_hosts: MonitoringRun
) -> None:
    alarms = on_hosts.alarms()
    replication = sorted(name for name in alarms if "-replication-" in name)
    assert replication == [
        f"{PREFIX}-database-2-replication-lag",
        f"{PREFIX}-database-2-replication-stopped",
    ], "the primary has no replication to watch"
    lag = alarms[f"{PREFIX}-database-2-replication-lag"].inputs
    on_rds = two.alarms()[f"{PREFIX}-db-replica-lag"].inputs
    same = ("comparisonOperator", "threshold", "period", "evaluationPeriods", "statistic")
    assert {k: lag[k] for k in same} == {k: on_rds[k] for k in same}
    assert (lag["metricName"], lag["dimensions"]) == (
        database_node.LAG_METRIC,
        {"Node": "database-2"},
    )
    stopped = alarms[f"{PREFIX}-database-2-replication-stopped"].inputs
    assert (stopped["metricName"], stopped["dimensions"]) == (
        database_node.RUNNING_METRIC,
        {"Node": "database-2"},
    )
    assert (stopped["statistic"], stopped["comparisonOperator"], stopped["threshold"]) == (
        "Minimum",
        "LessThanThreshold",
        1,
    )
    # The replica reports every minute while MariaDB runs: silence is no replication.
    assert stopped["treatMissingData"] == "breaching"
    assert lag["treatMissingData"] == "missing", "no lag while stopped: the other alarm's"
    assert (stopped["evaluationPeriods"], stopped["datapointsToAlarm"]) == (3, 3)
    for inputs in (lag, stopped):
        assert inputs["namespace"] == f"WebInfra/{PREFIX}"
        assert inputs["alarmActions"] == [on_hosts.outputs["alarm_topic_arn"]]


def test_the_dashboard_shows_the_database_hosts_from_published_metrics(
    on_hosts: MonitoringRun,
) -> None:
    body = body_of(on_hosts)
    lines = dashboard_metrics(body)
    known = published(2, on_hosts.outputs["health_check_id"], database_hosts=True)
    assert [(title, m) for title, m in lines if m not in known] == []
    for alarm in on_hosts.alarms().values():
        inputs = alarm.inputs
        if "metricName" in inputs:
            key = (
                inputs["namespace"],
                inputs["metricName"],
                frozenset(inputs["dimensions"].items()),
            )
            assert key in known, f"{inputs['name']} reads {key}, which nothing publishes"
    titles = {title for title, _ in lines}
    assert not [t for t in titles if t.startswith(("Database CPU", "Replica lag", "Database c"))]
    by_title: dict[str, set[str]] = {}
    for title, (_, name, dimensions) in lines:
        by_title.setdefault(title, set()).add(f"{name} {dict(dimensions).get('Node') or ''}")
    assert by_title["Database hosts: CPU %"] == {"CPUUtilization "}
    cpu = [m for t, m in lines if t == "Database hosts: CPU %"]
    assert {dict(m[2])["InstanceId"] for m in cpu} == {instance_id(h) for h in DATABASE_HOSTS}
    assert by_title["Database hosts: data volume (/srv/database) used %"] == {
        "disk_used_percent database-1",
        "disk_used_percent database-2",
    }
    assert by_title["Replication lag (s)"] == {"ReplicationLagSeconds database-2"}
    assert by_title["Replication running (1) or stopped (0)"] == {"ReplicationRunning database-2"}
    memory = {dict(m[2])["Node"] for t, m in lines if m[1] == "mem_used_percent"}
    assert set(DATABASE_HOSTS) <= memory
    assert max(w["y"] + w["height"] for w in body["widgets"]) <= 20, "one screen"


def test_database_host_ids_only_without_rds() -> None:
    arguments: dict[str, object] = {
        "name_prefix": PREFIX,
        "region": "eu-west-1",
        "public_host": PUBLIC_HOST,
        "web_instance_ids": {"web-1": "i-1"},
        "load_balancer_instance_id": "i-0",
        "db_primary_identifier": PRIMARY,
        "db_replica_identifier": REPLICA,
        "db_instance_class": "db.t4g.micro",
        "db_allocated_storage_gb": 20,
        "health_check_provider": object(),
        "database_host_instance_ids": {"database-1": "i-5", "database-2": "i-6"},
    }
    with pytest.raises(ValueError, match="only when the database is not RDS"):
        MonitoringArgs(**arguments).check()  # type: ignore[arg-type]
    MonitoringArgs(**{**arguments, "rds_events": False}).check()  # type: ignore[arg-type]


# --- dbMode colocated: the database on web-1 and web-2 ------------------------------------------


def test_web_1_and_web_2_s_database_is_watched_without_a_second_set_of_host_alarms() -> None:
    """The data volumes and the replica's replication, on the nodes' own `Node`, each metric
    one their agent (or the replica's report) publishes; the nodes' instance alarms are the web
    nodes', made once, and web-3 is a plain web node."""
    run = run_monitoring(3, colocated=True)
    names = [r.inputs["name"].removeprefix(f"{PREFIX}-") for r in run.of_type(ALARM)]
    assert len(names) == len(set(names)), "an alarm made twice"
    stack = dataclasses.replace(shape(3), db_on_rds=False, database_hosts=COLOCATED_HOSTS)
    alarms = run.alarms()
    for host in COLOCATED_HOSTS:
        assert per_host_keys(host) <= set(names)
        inputs = alarms[f"{PREFIX}-{host}-data-disk"].inputs
        assert inputs["dimensions"]["Node"] == host
        metric = (
            inputs["namespace"],
            inputs["metricName"],
            frozenset(inputs["dimensions"].items()),
        )
        assert metric in published_by_agent(stack, host), (host, "the agent does not publish it")
    assert {n for n in names if "replication" in n} == {
        "web-2-replication-lag",
        "web-2-replication-stopped",
    }
    assert alarms[f"{PREFIX}-web-2-replication-lag"].inputs["dimensions"] == {"Node": "web-2"}
    assert "web-3-data-disk" not in names
    assert not [n for n in names if n.startswith(("database-", "db-"))], "nothing of RDS's"
