"""The metric catalogue on its own: RDS sizing, the published connection limits it estimates,
and the shape checks that stop a bad stack description early."""

from __future__ import annotations

import math

import pytest
from monitoring_harness import shape

from userdata.metric_catalog import (
    LOG_SOURCES,
    Metric,
    StackShape,
    catalogue,
    estimated_max_connections,
    instance_ref,
    log_sources,
    rds_class_memory_gib,
)
from userdata.metric_catalog.table import ALARMS, EXPRESSIONS, METRICS, WIDGETS
from userdata.scripts import elastic_address


@pytest.mark.parametrize(
    ("instance_class", "gib"),
    [
        ("db.t4g.micro", 1),
        ("db.t3.small", 2),
        ("db.t4g.2xlarge", 32),
        ("db.m7g.large", 8),
        ("db.m5.24xlarge", 384),
        ("db.r6g.2xlarge", 64),
        ("db.r7i.xlarge", 32),
        ("db.x2g.xlarge", 64),
    ],
)
def test_rds_class_memory(instance_class: str, gib: float) -> None:
    assert rds_class_memory_gib(instance_class) == gib


@pytest.mark.parametrize("instance_class", ["db.x2iedn.xlarge", "db.m5.metal", "t3.micro", ""])
def test_unknown_classes_ask_for_the_memory(instance_class: str) -> None:
    with pytest.raises(ValueError, match="set db_memory_gib"):
        rds_class_memory_gib(instance_class)


@pytest.mark.parametrize(
    ("gib", "published"),
    # MySQL on RDS with the default max_connections, as observed on 1, 2, 4 and 8 GiB classes.
    [(1, 66), (2, 150), (4, 312), (8, 648)],
)
def test_connection_estimate_is_close_and_never_above_the_published_limit(
    gib: float, published: int
) -> None:
    estimate = estimated_max_connections(gib)
    assert estimate <= published
    assert estimate >= 0.9 * published


def test_an_explicit_memory_sizes_an_unknown_class() -> None:
    stack = StackShape("p", "eu-west-1", ("web-1",), "a", "b", "db.x2iedn.xlarge", 20, 128)
    alarm = catalogue(stack).alarm("db-primary-freeable-memory")
    assert alarm.threshold == int(128 * 1024**3 * 0.05)


@pytest.mark.parametrize(
    ("web_nodes", "storage", "message"),
    [((), 20, "web_nodes is empty"), (("web-1", "web-1"), 20, "repeats"), (("web-1",), 0, "GiB")],
)
def test_a_bad_shape_is_refused(web_nodes: tuple[str, ...], storage: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackShape("p", "eu-west-1", web_nodes, "a", "b", "db.t4g.micro", storage)


def test_every_alarm_explains_itself() -> None:
    for alarm in catalogue(shape(3, pair=True)).alarms:
        description = alarm.description()
        assert len(description) < 1024, f"{alarm.key}: CloudWatch would cut its reason short"
        assert description.startswith(f"[{alarm.severity}] ")
        assert " Fires at: " in description
        assert len(alarm.why) > 40, alarm.key
        assert alarm.datapoints_to_alarm <= alarm.evaluation_periods, alarm.key


def test_every_database_host_alarm_explains_itself_in_its_own_terms() -> None:
    """The database hosts' memory and root disk reasons name what runs there, not Nginx."""
    stack = catalogue(shape(2, database_hosts=True))
    for host in ("database-1", "database-2"):
        for kind in ("memory", "disk", "data-disk"):
            alarm = stack.alarm(f"{host}-{kind}")
            assert "MariaDB" in alarm.why, alarm.key
            assert "Nginx" not in alarm.why, alarm.key
            assert "gunicorn" not in alarm.why, alarm.key
            assert len(alarm.description()) < 1024
    assert "gunicorn" in stack.alarm("web-1-memory").why, "the web nodes keep their reason"


def test_the_data_volume_alarm_matches_rds_free_storage() -> None:
    """Used over 80 % is RDS's under 20 % free, on the same allocated storage."""
    on_rds = catalogue(shape(2)).alarm("db-primary-free-storage")
    data = catalogue(shape(2, database_hosts=True)).alarm("database-1-data-disk")
    assert math.isclose(on_rds.threshold, (1 - data.threshold / 100) * 20 * 1024**3)
    assert "4 GiB of 20 GiB" in data.why
    assert data.rule() == "Maximum > 80 in 1 of 1 periods of 300 s"


@pytest.mark.parametrize(
    ("names", "on_rds", "message"),
    [
        (("database-1",), False, "a primary and a replica"),
        (("database-1", "database-1"), False, "a primary and a replica"),
        (("database-1", "database-2"), True, "the database is on RDS"),
    ],
)
def test_bad_database_hosts_are_refused(names: tuple[str, ...], on_rds: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackShape(
            "p", "eu-west-1", ("web-1",), "a", "b", "db.t4g.micro", 20,
            db_on_rds=on_rds, database_hosts=names,
        )  # fmt: skip


def test_colocated_database_hosts_are_watched_once_as_hosts() -> None:
    """Web nodes that run the database (the same script) keep their one set of host alarms and
    get the data volume's and the replica's alarms."""
    stack = catalogue(
        StackShape(
            "p", "eu-west-1", ("web-1", "web-2"), "a", "b", "db.t4g.micro", 20,
            db_on_rds=False, database_hosts=("web-1", "web-2"),
        )
    )  # fmt: skip
    assert stack.shape.hosts == ("load-balancer", "web-1", "web-2")
    keys = {a.key for a in stack.alarms}
    assert {"web-1-data-disk", "web-2-data-disk", "web-2-replication-stopped"} <= keys
    assert "web-1-replication-lag" not in keys
    assert len([k for k in keys if k.endswith("-cpu")]) == 3


def test_unknown_role_and_host_are_named() -> None:
    with pytest.raises(ValueError, match="roles are load-balancer, web"):
        log_sources("database")
    with pytest.raises(KeyError, match="no alarm 'lb-nothing'"):
        catalogue(shape(2)).alarm("lb-nothing")
    assert {s.role for s in LOG_SOURCES} == {"load-balancer", "web"}


def test_every_metric_of_the_table_is_read_and_every_key_is_known() -> None:
    """Guards the table against a metric nobody watches (the agent would publish it for
    nothing) and against a signal, line or threshold naming a record that does not exist."""
    metric_keys = {m.key for m in METRICS}
    expression_keys = {e.key for e in EXPRESSIONS}
    read = {a.signal for group in ALARMS for a in group.alarms}
    read |= {line.key for widget in WIDGETS for line in widget.lines}
    read |= {metric for e in EXPRESSIONS for _, metric, _ in e.inputs}
    assert read - metric_keys - expression_keys == set(), "unknown keys"
    assert metric_keys - read == set(), "metrics in the table that nothing reads"
    assert len(metric_keys) == len(METRICS), "a metric key repeats"
    alarm_keys = {a.key for a in catalogue(shape(2, pair=True)).alarms}
    alarm_keys |= {a.key for a in catalogue(shape(2, pair=True, database_hosts=True)).alarms}
    drawn = {
        key.format(host="load-balancer-1", db_host="database-1", replica_host="database-2")
        for w in WIDGETS
        for key in w.thresholds
    }
    assert drawn <= alarm_keys, f"widgets draw unknown alarms: {sorted(drawn - alarm_keys)}"


def test_the_pairs_records_exist_only_with_a_pair() -> None:
    """Who holds the Elastic IP: two alarms and a widget line per host with the pair, none with
    one load balancer (nothing publishes those metrics then)."""
    pair = catalogue(shape(2, pair=True))
    single = catalogue(shape(2))
    pair_keys = {"lb-no-address-holder", "lb-address-moved"}
    assert pair_keys <= {a.key for a in pair.alarms}
    assert not pair_keys & {a.key for a in single.alarms}
    assert len(pair.widgets) == len(single.widgets) + 1
    no_holder, moved = pair.alarm("lb-no-address-holder"), pair.alarm("lb-address-moved")
    assert no_holder.severity == "critical"
    assert moved.severity == "warning"
    assert isinstance(no_holder.signal, Metric)
    assert isinstance(moved.signal, Metric)
    assert (no_holder.signal.namespace, no_holder.signal.name) == (
        "WebInfra/web-infra-dev",
        "ElasticIpHeld",
    )
    assert no_holder.signal.dimensions == (), "both hosts' reports, in the pair's series"
    assert no_holder.rule() == "Maximum < 1 in 2 of 2 periods of 60 s"
    assert no_holder.treat_missing_data == "breaching", "both hosts report every minute"
    assert moved.signal.name == "ElasticIpTakeovers"
    assert moved.rule() == "Sum >= 1 in 1 of 1 periods of 300 s"
    assert moved.treat_missing_data == "notBreaching", "sent only when one happens"
    (widget,) = [w for w in pair.widgets if "Elastic IP" in w.title]
    lines = [(m.name, dict(m.dimensions)) for m in widget.metrics]
    assert ("ElasticIpHeld", {"Node": "load-balancer-1"}) in lines
    assert ("ElasticIpHeld", {"Node": "load-balancer-2"}) in lines
    # elastic_address.py publishes them, not the agent: its config stays as it was.
    for host in ("load-balancer", "load-balancer-1", "load-balancer-2"):
        assert all(m.name not in ("ElasticIpHeld", "ElasticIpTakeovers")
                   for m in pair.agent_metrics(host))  # fmt: skip
    # Each of the pair publishes HAProxy's series as a single load balancer does (the alarms
    # read both together), and its own memory and disk under its own name.
    alone = single.agent_metrics("load-balancer")
    for host in ("load-balancer-1", "load-balancer-2"):
        published = pair.agent_metrics(host)
        assert [m for m in published if m.source.prometheus] == [
            m for m in alone if m.source.prometheus
        ]
        own = {(m.name, dict(m.dimensions)["Node"]) for m in published if not m.source.prometheus}
        assert own == {("mem_used_percent", host), ("disk_used_percent", host)}


INSTANCE_ALARMS = ("cpu", "memory", "disk", "instance-check", "system-check-recover")


def test_each_load_balancer_of_the_pair_has_its_own_instance_alarms() -> None:
    """Status checks, CPU, memory and disk watch load-balancer-1 and load-balancer-2 alike, as
    the single load balancer's watch it: same rule, severity and tier, each its own instance
    (or `Node`), and each recovers its own instance."""
    pair = catalogue(shape(2, pair=True))
    single = catalogue(shape(2))
    keys = {a.key for a in pair.alarms}
    assert not {f"load-balancer-{kind}" for kind in INSTANCE_ALARMS} & keys
    for host in ("load-balancer-1", "load-balancer-2"):
        for kind in INSTANCE_ALARMS:
            alarm, alone = pair.alarm(f"{host}-{kind}"), single.alarm(f"load-balancer-{kind}")
            assert (alarm.rule(), alarm.severity, alarm.tier) == (
                alone.rule(),
                alone.severity,
                alone.tier,
            )
            assert isinstance(alarm.signal, Metric)
            dimensions = dict(alarm.signal.dimensions)
            if "InstanceId" in dimensions:
                assert dimensions["InstanceId"] == instance_ref(host)
            else:
                assert dimensions["Node"] == host
        assert pair.alarm(f"{host}-instance-check").severity == "critical"
        assert pair.alarm(f"{host}-system-check-recover").recover_instance == host
    assert instance_ref("load-balancer") not in pair.refs(), "nothing watches a third host"


def test_the_metrics_are_the_names_elastic_address_publishes() -> None:
    """The catalogue and the script name the metrics and the dimension alike."""
    by_key = {m.key: m for m in METRICS}
    assert by_key["lb-address-held"].name == elastic_address.HELD_METRIC
    assert by_key["pair-address-held"].name == elastic_address.HELD_METRIC
    assert by_key["pair-address-takeovers"].name == elastic_address.TAKEOVERS_METRIC
    assert by_key["lb-address-held"].dimensions == ((elastic_address.NODE_DIMENSION, "{lb}"),)


@pytest.mark.parametrize("names", [("a", "b", "c"), ("a", "a")])
def test_a_bad_pair_is_refused(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="one load balancer or a pair"):
        StackShape("p", "eu-west-1", ("web-1",), "a", "b", "db.t4g.micro", 20, load_balancers=names)
