"""The Monitoring component on its own under the program's AWS-like mocks, and what publishes
each metric it reads, derived from the agent configs the hosts would run."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.monitoring import Monitoring, MonitoringArgs
from tools.mocked_program import REGION, AwsMocks, Registration
from userdata.cloudwatch_agent import agent_config, prometheus_config, prometheus_targets
from userdata.metric_catalog import LOAD_BALANCER, StackShape, catalogue

PREFIX = "web-infra-dev"
PRIMARY = f"{PREFIX}-primary"
REPLICA = f"{PREFIX}-replica"
DB_CLASS = "db.t4g.micro"
STORAGE_GB = 20
PUBLIC_HOST = "ec2-198-51-100-47.eu-west-1.compute.amazonaws.com"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"


def instance_id(host: str) -> str:
    return "i-0" + hashlib.sha256(host.encode()).hexdigest()[:16]


def nodes(count: int) -> tuple[str, ...]:
    return tuple(f"web-{i}" for i in range(1, count + 1))


PAIR = ("load-balancer-1", "load-balancer-2")
DATABASE_HOSTS = ("database-1", "database-2")
"""`dbMode: ec2`: the primary's host, then the replica's."""
COLOCATED_HOSTS = ("web-1", "web-2")
"""`dbMode: colocated`: the web nodes that run the primary, then the replica."""


def shape(
    count: int, region: str = REGION, *, pair: bool = False, database_hosts: bool = False
) -> StackShape:
    return StackShape(
        PREFIX, region, nodes(count), PRIMARY, REPLICA, DB_CLASS, STORAGE_GB,
        load_balancers=PAIR if pair else ("load-balancer-1",),
        db_on_rds=not database_hosts,
        database_hosts=DATABASE_HOSTS if database_hosts else (),
    )  # fmt: skip


@dataclass
class MonitoringRun:
    mocks: AwsMocks
    outputs: dict[str, Any]
    web_nodes: tuple[str, ...]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.mocks.registrations if r.type == typ]

    def one(self, typ: str, name_contains: str = "") -> Registration:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, found {len(found)}"
        return found[0]

    def alarms(self) -> dict[str, Registration]:
        return {r.inputs["name"]: r for r in self.of_type(ALARM)}


def run_monitoring(
    count: int = 2,
    *,
    region: str = REGION,
    email: str | None = None,
    with_provider: bool = True,
    preview: bool = False,
    pair: bool = False,
    database_hosts: bool = False,
    colocated: bool = False,
) -> MonitoringRun:
    """Construct `Monitoring` for a stack of `count` web nodes under the mocks; with
    `database_hosts`, its database on hosts of its own (`dbMode: ec2`), with `colocated` on
    web-1 and web-2."""
    db_hosts = DATABASE_HOSTS if database_hosts else COLOCATED_HOSTS if colocated else ()
    mocks = AwsMocks(preview=preview)
    pulumi.runtime.set_mocks(mocks, project="web-infra", stack="dev", preview=preview)
    pulumi.runtime.set_all_config({"aws:region": region})
    outputs: dict[str, Any] = {}
    web = nodes(count)

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        provider = (
            aws.Provider("us-east-1", region="us-east-1")
            if with_provider and region != "us-east-1"
            else None
        )
        monitoring = Monitoring(
            f"{PREFIX}-monitoring",
            MonitoringArgs(
                name_prefix=PREFIX,
                region=region,
                public_host=PUBLIC_HOST,
                web_instance_ids={node: instance_id(node) for node in web},
                load_balancer_instance_id=instance_id(LOAD_BALANCER),
                db_primary_identifier=PRIMARY,
                db_replica_identifier=REPLICA,
                db_instance_class=DB_CLASS,
                db_allocated_storage_gb=STORAGE_GB,
                alarm_email=email,
                health_check_provider=provider,
                load_balancer_names=PAIR if pair else ("load-balancer-1",),
                load_balancer_instance_ids={host: instance_id(host) for host in PAIR}
                if pair
                else {},
                rds_events=not db_hosts,
                database_host_instance_ids={host: instance_id(host) for host in db_hosts},
            ),
        )
        return pulumi.Output.all(
            alarm_topic_arn=monitoring.alarm_topic_arn,
            health_check_alarm_topic_arn=monitoring.health_check_alarm_topic_arn,
            health_check_id=monitoring.health_check_id,
            log_group_arns=pulumi.Output.all(
                **{role: pulumi.Output.all(*a) for role, a in monitoring.log_group_arns.items()}
            ),
            dashboard_url=monitoring.dashboard_url,
            log_group_names=monitoring.log_group_names,
            alarm_names=monitoring.alarm_names,
        ).apply(outputs.update)

    program()
    return MonitoringRun(mocks, outputs, web)


# --- what is published, from the publishers' own configuration ---------------------------------

AWS_METRICS = {
    # Documented by AWS: EC2 (basic monitoring and status checks), RDS, Route 53 health checks.
    ("AWS/EC2", "CPUUtilization"): ("InstanceId",),
    ("AWS/EC2", "StatusCheckFailed_Instance"): ("InstanceId",),
    ("AWS/EC2", "StatusCheckFailed_System"): ("InstanceId",),
    ("AWS/RDS", "CPUUtilization"): ("DBInstanceIdentifier",),
    ("AWS/RDS", "FreeStorageSpace"): ("DBInstanceIdentifier",),
    ("AWS/RDS", "FreeableMemory"): ("DBInstanceIdentifier",),
    ("AWS/RDS", "DatabaseConnections"): ("DBInstanceIdentifier",),
    ("AWS/RDS", "ReplicaLag"): ("DBInstanceIdentifier",),
    ("AWS/Route53", "HealthCheckStatus"): ("HealthCheckId",),
}

PublishedMetric = tuple[str, str, frozenset[tuple[str, str]]]


def _series_from_keep_rule(rule: dict[str, Any]) -> list[dict[str, str]]:
    """The label sets a keep rule lets through, from its alternation of literal values."""
    keys = rule["source_labels"]
    series = []
    for alternative in rule["regex"].split("|"):
        values = re.sub(r"\\(.)", r"\1", alternative).split(rule["separator"])
        series.append({k: v for k, v in zip(keys, values, strict=True) if v})
    return series


def published_by_agent(stack: StackShape, host: str) -> set[PublishedMetric]:
    """The CloudWatch metrics the agent on `host` would publish, read back from its config
    files (host inputs; Prometheus series kept by the scrape config, labelled by the sd file,
    turned into metrics by the EMF declarations)."""
    config = agent_config(catalogue(stack), host, stack.region)
    found: set[PublishedMetric] = set()
    metrics = config["metrics"]
    for plugin, entry in metrics["metrics_collected"].items():
        node = dict(entry["append_dimensions"])
        # The disk input: one series per file system (Ubuntu's root and a database host's data
        # volume are both ext4).
        sets = [node | {"path": p, "fstype": "ext4"} for p in entry.get("resources", [])]
        for dimensions in sets or [node]:
            for measurement in entry["measurement"]:
                found.add((metrics["namespace"], f"{plugin}_{measurement}", _frozen(dimensions)))
    if "logs" not in config:  # a database host: no exporter to scrape
        return found
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    emf = prometheus["emf_processor"]
    (job,) = prometheus_config(catalogue(stack), host)["scrape_configs"]
    (target,) = prometheus_targets(host)
    (keep,) = job["metric_relabel_configs"]
    for kept in _series_from_keep_rule(keep):
        labels = {**target["labels"], "job": job["job_name"], **kept}
        for declaration in emf["metric_declaration"]:
            source = ";".join(labels.get(k, "") for k in declaration["source_labels"])
            if not re.fullmatch(declaration["label_matcher"], source):
                continue
            selectors = declaration["metric_selectors"]
            if not any(re.fullmatch(s, labels["__name__"]) for s in selectors):
                continue
            for dimension_set in declaration["dimensions"]:
                if all(d in labels for d in dimension_set):
                    dimensions = {d: labels[d] for d in dimension_set}
                    found.add((emf["metric_namespace"], labels["__name__"], _frozen(dimensions)))
    return found


def _frozen(dimensions: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(dimensions.items())


def dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, PublishedMetric]]:
    """(widget title, metric) for every metric line of a dashboard body; expressions skipped."""
    found = []
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            names = [item for item in row if not isinstance(item, dict)]
            if not names:
                continue  # an expression
            namespace, name, *pairs = names
            dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
            found.append((widget["properties"]["title"], (namespace, name, _frozen(dimensions))))
    return found


def body_of(run: MonitoringRun) -> dict[str, Any]:
    dashboard = run.one("aws:cloudwatch/dashboard:Dashboard")
    body: dict[str, Any] = json.loads(dashboard.inputs["dashboardBody"])
    return body
