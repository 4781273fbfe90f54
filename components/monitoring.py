"""Monitoring for one stack: where alarms go, what watches the site from outside, an alarm for
every tier, log groups with a retention, and a one-screen dashboard.

Every alarm and every dashboard line comes from the metric catalogue
(`userdata/metric_catalog/`), so a threshold is written once and the dashboard shows the
line the alarm watches. Alarms notify one SNS topic per stack (its ARN is an output, for other
stacks' subscribers: chat, paging); an optional e-mail address subscribes to it.

The outside-in check is a Route 53 health check on the public URL's health path. Route 53 runs
health checks globally but publishes their metrics only in us-east-1, and an alarm can notify
only a topic in its own region: so its alarm, and a second topic for it, live in us-east-1
(through `health_check_provider`) unless the stack itself is there.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from userdata.metric_catalog import (
    DB_EVENT_CATEGORIES,
    HEALTH_CHECK,
    HEALTH_CHECK_REGION,
    LOG_RETENTION_DAYS_ALLOWED,
    LOG_SOURCES,
    ROLES,
    AlarmSpec,
    Catalogue,
    Metric,
    Ref,
    StackShape,
    catalogue,
    dashboard_name,
    dashboard_url,
    db_event_subscription_name,
    instance_ref,
    rds_class_memory_gib,
)

HEALTH_CHECK_PORT = 80
HEALTH_CHECK_INTERVAL_SECONDS = 30
"""Standard interval; 10 s costs extra (a "fast interval" option) and the alarm waits minutes."""
HEALTH_CHECK_FAILURE_THRESHOLD = 3
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class MonitoringArgs:
    name_prefix: str
    """Physical names start with it: `web-infra-dev` gives the topic `web-infra-dev-alarms`."""
    region: str
    """The stack's region (alarms, topic, log groups and dashboard live there)."""
    public_host: pulumi.Input[str]
    """The public URL's host name, e.g. the load balancer's public DNS name."""
    web_instance_ids: Mapping[str, pulumi.Input[str]]
    """Each web node's EC2 instance id by node name (web-1, web-2, ...), in node order; its
    length is webNodeCount."""
    load_balancer_instance_id: pulumi.Input[str]
    """The HAProxy instance's id (status checks, CPU and the recover action)."""
    db_primary_identifier: str
    """The RDS primary's DB instance identifier."""
    db_replica_identifier: str
    """The read replica's DB instance identifier."""
    db_instance_class: str
    """RDS class of both: sets the memory and connection thresholds."""
    db_allocated_storage_gb: int
    """The primary's storage: sets the free-storage threshold (20 % of it)."""
    https: bool = False
    """Check over HTTPS on port 443 (with a domain: plain HTTP only answers its redirect)."""
    health_path: str = "/health"
    """Path the outside-in check requests; must answer 2xx/3xx when the site works."""
    alarm_email: str | None = None
    """An address to subscribe to the alarm topic(s); AWS e-mails it a confirmation link."""
    log_retention_days: int = 30
    """Days the log groups keep events; one of CloudWatch Logs' allowed values (1, 3, 5, 7,
    14, 30, 60, 90, ...)."""
    metrics_namespace: str | None = None
    """Namespace of the agent's metrics; None means `WebInfra/<name_prefix>`. The agent config
    and its IAM policy must be built with the same value (both read it from the catalogue)."""
    db_memory_gib: float | None = None
    """The DB class's memory in GiB, for a class the catalogue cannot size itself."""
    health_check_provider: pulumi.ProviderResource | None = None
    """An `aws.Provider` for us-east-1, where Route 53's health-check metrics are: the
    outside-in alarm and its topic are created with it. Required unless `region` is us-east-1;
    give it the same default tags as the stack's provider."""
    databases: Sequence[pulumi.Resource] = ()
    """What creates the two DB instances: the event subscription waits for it, because RDS
    refuses a subscription to an instance that does not exist yet (SourceNotFound). Empty
    only when the instances exist already (another stack's, or in tests)."""
    rds_events: bool = True
    """The database is RDS: subscribe to its instances' events and watch its metrics; False
    with `dbMode: ec2` (no RDS instance to watch)."""
    load_balancer_names: Sequence[str] = ()
    """The pair's host names (`load-balancer-1`, `load-balancer-2`): its Elastic IP alarms and
    dashboard widget follow them, and each host's instance alarms (status checks, CPU, memory,
    disk) watch each. Empty (or one name) for a single load balancer."""
    load_balancer_instance_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Each of the pair's instance ids by host name (every name of `load_balancer_names`);
    a single load balancer's is `load_balancer_instance_id`."""
    database_host_instance_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """The instance ids of the hosts that run the stack's own MariaDB, by host name, the
    primary's then the replica's: `database-1` and `database-2` with `dbMode: ec2` (each gets
    its instance alarms too), `web-1` and `web-2` with `colocated` (their instance alarms are
    the web nodes'). Each gets its data volume's alarm, the replica its replication alarms.
    Empty with RDS."""

    def shape(self) -> StackShape:
        return StackShape(
            name_prefix=self.name_prefix,
            region=self.region,
            web_nodes=tuple(self.web_instance_ids),
            db_primary=self.db_primary_identifier,
            db_replica=self.db_replica_identifier,
            db_instance_class=self.db_instance_class,
            db_allocated_storage_gb=self.db_allocated_storage_gb,
            db_memory_gib=self.db_memory_gib,
            metrics_namespace=self.metrics_namespace,
            db_on_rds=self.rds_events,
            load_balancers=tuple(self.load_balancer_names),
            database_hosts=tuple(self.database_host_instance_ids),
        )

    def check(self) -> None:
        """Raise ValueError naming every bad argument and what to pass instead."""
        problems = []
        if self.log_retention_days not in LOG_RETENTION_DAYS_ALLOWED:
            allowed = ", ".join(map(str, LOG_RETENTION_DAYS_ALLOWED))
            problems.append(
                f"log_retention_days={self.log_retention_days}: CloudWatch Logs allows {allowed}"
            )
        if self.alarm_email is not None and not _EMAIL.match(self.alarm_email):
            problems.append(f"alarm_email={self.alarm_email!r}: expected an address like ops@x.io")
        if not self.health_path.startswith("/"):
            problems.append(f"health_path={self.health_path!r}: must start with '/'")
        if self.region != HEALTH_CHECK_REGION and self.health_check_provider is None:
            problems.append(
                f"health_check_provider: the stack is in {self.region}, but Route 53 publishes "
                f"health-check metrics only in {HEALTH_CHECK_REGION}; pass "
                f'aws.Provider("...", region="{HEALTH_CHECK_REGION}") so the outside-in alarm '
                "can be created there"
            )
        if not self.web_instance_ids:
            problems.append("web_instance_ids: empty; pass each web node's instance id by name")
        hosts = list(self.database_host_instance_ids)
        if hosts and (self.rds_events or len(hosts) != 2):
            problems.append(
                f"database_host_instance_ids: {hosts}; pass the primary's and the replica's "
                "instance ids by host name, and only when the database is not RDS "
                "(rds_events=False)"
            )
        # The pair alone: a bad database hosts' argument is named above, not by StackShape.
        pair = dataclasses.replace(self, database_host_instance_ids={}).shape().pair
        if pair and sorted(self.load_balancer_instance_ids) != sorted(pair):
            problems.append(
                f"load_balancer_instance_ids: {sorted(self.load_balancer_instance_ids)}; pass "
                f"each of the pair's instance ids by name ({', '.join(pair)}): their instance "
                "alarms watch each"
            )
        if self.db_memory_gib is None:
            try:
                rds_class_memory_gib(self.db_instance_class)
            except ValueError as error:
                problems.append(f"db_instance_class: {error}")
        if problems:
            raise ValueError("invalid MonitoringArgs:\n  " + "\n  ".join(problems))


class Monitoring(pulumi.ComponentResource):
    alarm_topic_arn: pulumi.Output[str]
    health_check_alarm_topic_arn: pulumi.Output[str]
    health_check_id: pulumi.Output[str]
    dashboard_url: str
    dashboard_name: str
    log_group_names: dict[str, str]
    """Log group name by source key (`web/nginx-access`, ...)."""
    log_group_arns: dict[str, list[pulumi.Output[str]]]
    """The log groups' ARNs by role (`load-balancer`, `web`), for each role's agent policy."""
    alarm_names: list[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("web-infra:monitoring:Monitoring", name, None, opts)
        args.check()
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix
        self.catalogue: Catalogue = catalogue(args.shape())

        topic = aws.sns.Topic(f"{name}-alarms", name=f"{prefix}-alarms", opts=child)
        if args.region == HEALTH_CHECK_REGION:
            health_check_topic = topic
            us_east_1 = child
        else:
            us_east_1 = pulumi.ResourceOptions(parent=self, provider=args.health_check_provider)
            health_check_topic = aws.sns.Topic(
                f"{name}-health-check-alarms",
                name=f"{prefix}-health-check-alarms",
                opts=us_east_1,
            )
        if args.alarm_email:
            targets = [("alarms", topic, child)]
            if health_check_topic is not topic:
                targets.append(("health-check-alarms", health_check_topic, us_east_1))
            for key, target, target_opts in targets:
                aws.sns.TopicSubscription(
                    f"{name}-{key}-email",
                    topic=target.arn,
                    protocol="email",
                    endpoint=args.alarm_email,
                    opts=target_opts,
                )

        health_check = aws.route53.HealthCheck(
            f"{name}-site",
            type="HTTPS" if args.https else "HTTP",
            fqdn=args.public_host,
            port=443 if args.https else HEALTH_CHECK_PORT,
            resource_path=args.health_path,
            request_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            failure_threshold=HEALTH_CHECK_FAILURE_THRESHOLD,
            tags={"Name": f"{prefix}-site"},
            opts=child,
        )

        refs: dict[Ref, pulumi.Input[str]] = {
            HEALTH_CHECK: health_check.id,
            instance_ref("load-balancer"): args.load_balancer_instance_id,
            **{instance_ref(host): i for host, i in args.load_balancer_instance_ids.items()},
            **{instance_ref(node): i for node, i in args.web_instance_ids.items()},
            **{instance_ref(host): i for host, i in args.database_host_instance_ids.items()},
        }
        self.alarm_names = []
        for spec in self.catalogue.alarms:
            in_us_east_1 = spec.region == HEALTH_CHECK_REGION
            self._alarm(
                name,
                spec,
                refs,
                (health_check_topic if in_us_east_1 else topic).arn,
                us_east_1 if in_us_east_1 else child,
            )
            self.alarm_names.append(spec.name(prefix))

        self.log_group_names = {}
        self.log_group_arns = {role: [] for role in ROLES}
        for source in LOG_SOURCES:
            group = aws.cloudwatch.LogGroup(
                f"{name}-{source.key.replace('/', '-')}",
                name=source.group_name(prefix),
                retention_in_days=source.retention_days(args.log_retention_days),
                opts=child,
            )
            self.log_group_names[source.key] = source.group_name(prefix)
            self.log_group_arns[source.role].append(group.arn)

        needed = self.catalogue.dashboard_refs()
        self.dashboard_name = dashboard_name(prefix)
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=self.dashboard_name,
            dashboard_body=pulumi.Output.all(*[refs[r] for r in needed]).apply(
                lambda values: json.dumps(
                    self.catalogue.dashboard_body(dict(zip(needed, values, strict=True)))
                )
            ),
            opts=child,
        )
        self.dashboard_url = dashboard_url(args.region, prefix)

        # RDS refuses a subscription to instances that do not exist (SourceNotFound).
        if args.rds_events:
            aws.rds.EventSubscription(
                f"{name}-db-events",
                name=db_event_subscription_name(prefix),
                sns_topic=topic.arn,
                source_type="db-instance",
                source_ids=[args.db_primary_identifier, args.db_replica_identifier],
                event_categories=list(DB_EVENT_CATEGORIES),
                enabled=True,
                # The identifiers above are plain strings (the alarms need them at preview), so
                # they carry no dependency of their own.
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.databases)),
            )

        self.alarm_topic_arn = topic.arn
        self.health_check_alarm_topic_arn = health_check_topic.arn
        self.health_check_id = health_check.id
        self.register_outputs(
            {
                "alarm_topic_arn": self.alarm_topic_arn,
                "health_check_alarm_topic_arn": self.health_check_alarm_topic_arn,
                "health_check_id": self.health_check_id,
                "dashboard_url": self.dashboard_url,
                "log_group_names": self.log_group_names,
                "alarm_names": self.alarm_names,
            }
        )

    def _alarm(
        self,
        name: str,
        spec: AlarmSpec,
        refs: Mapping[Ref, pulumi.Input[str]],
        topic_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions,
    ) -> aws.cloudwatch.MetricAlarm:
        actions: list[pulumi.Input[str]] = [topic_arn]
        if spec.recover_instance:
            actions.append(f"arn:aws:automate:{self.catalogue.shape.region}:ec2:recover")
        signal: dict[str, Any]
        if isinstance(spec.signal, Metric):
            signal = {
                "namespace": spec.signal.namespace,
                "metric_name": spec.signal.name,
                "dimensions": _dimensions(spec.signal, refs),
                "period": spec.period,
            }
            if spec.statistic.startswith("p"):
                signal["extended_statistic"] = spec.statistic
            else:
                signal["statistic"] = spec.statistic
        else:
            expression = spec.signal
            signal = {
                "metric_queries": [
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id="signal",
                        expression=expression.expression,
                        label=expression.label,
                        return_data=True,
                    ),
                    *(
                        aws.cloudwatch.MetricAlarmMetricQueryArgs(
                            id=source.id,
                            return_data=False,
                            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                                namespace=source.metric.namespace,
                                metric_name=source.metric.name,
                                dimensions=_dimensions(source.metric, refs),
                                period=spec.period,
                                stat=source.statistic,
                            ),
                        )
                        for source in expression.inputs
                    ),
                ]
            }
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{spec.key}",
            name=spec.name(self.catalogue.shape.name_prefix),
            alarm_description=spec.description(),
            comparison_operator=spec.comparison,
            threshold=spec.threshold,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.treat_missing_data,
            alarm_actions=actions,
            ok_actions=[topic_arn],
            insufficient_data_actions=[topic_arn] if spec.notify_when_no_data else [],
            opts=opts,
            **signal,
        )


def _dimensions(metric: Metric, refs: Mapping[Ref, pulumi.Input[str]]) -> dict[str, Any]:
    return {key: refs[v] if isinstance(v, Ref) else v for key, v in metric.dimensions}
