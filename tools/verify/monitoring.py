"""The monitoring checks of `tools.verify`: the topics, the outside-in health check, every
alarm the metric catalogue expects for this stack, the dashboard, RDS events and log groups."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.verify.aws import db_instance, live_instances, tags_of
from tools.verify.outputs import Outputs, on_rds
from tools.verify.report import Check, Facts
from userdata.metric_catalog import (
    COMPARISON_SIGNS,
    DATABASE,
    DB_EVENT_CATEGORIES,
    HEALTH_CHECK,
    HEALTH_CHECK_REGION,
    LOAD_BALANCER,
    LOG_SOURCES,
    AlarmSpec,
    Catalogue,
    Metric,
    Ref,
    StackShape,
    catalogue,
    db_event_subscription_name,
    instance_ref,
)


@dataclass(frozen=True)
class _Monitored:
    """The live stack as the catalogue sees it: what it expects, and the ids AWS assigned."""

    catalogue: Catalogue | None
    refs: dict[Ref, str]
    problem: str = ""
    """Why thresholds that depend on the database cannot be checked (no DB instance found)."""


def _monitored(ec2: Any, rds: Any, outputs: Outputs) -> _Monitored:
    # The alarms follow the hosts' names (web-1, ...), so the instances are found by their Name
    # tag, whatever order the outputs list addresses in.
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    refs: dict[Ref, str] = {HEALTH_CHECK: outputs.monitoring.health_check_id}
    primary_id = outputs.db_primary_endpoint.identifier
    replica_id = outputs.db_replica_endpoint.identifier
    # Without RDS the endpoints name the hosts that run the database (database-1, database-2,
    # or web-1 and web-2 with dbMode colocated): their data volume and replication alarms are
    # expected, and the instance alarms of database hosts that are no web node.
    database_hosts = () if on_rds(outputs) else (primary_id, replica_id)
    hosts = tuple(dict.fromkeys((LOAD_BALANCER, *outputs.web_node_names, *database_hosts)))
    roles = {"Name": "tag:Role", "Values": ["load-balancer", "web", DATABASE]}
    load_balancers: set[str] = set()
    for instance in live_instances(ec2, [vpc, roles]):
        tags = tags_of(instance)
        name = tags.get("Name", "")
        for host in hosts:
            if name.endswith(f"-{host}"):
                refs[instance_ref(host)] = str(instance["InstanceId"])
        numbered = re.search(rf"-({LOAD_BALANCER}-[12])$", name)
        if tags.get("Role") == "load-balancer" and numbered:
            load_balancers.add(numbered.group(1))
            # A pair's instance alarms watch each host by its name; a single load balancer's
            # are the catalogue's one `load-balancer` host.
            refs[instance_ref(numbered.group(1))] = str(instance["InstanceId"])
            if numbered.group(1) == f"{LOAD_BALANCER}-1":
                refs[instance_ref(LOAD_BALANCER)] = str(instance["InstanceId"])
    # The database hosts (dbMode: ec2) have no RDS instance to size the RDS alarms by.
    sized: dict[str, Any] | None = {"DBInstanceClass": "-", "AllocatedStorage": 1}
    if on_rds(outputs):
        sized = db_instance(rds, primary_id) or db_instance(rds, replica_id)
    if sized is None:
        return _Monitored(None, refs, f"neither {primary_id} nor {replica_id} exists")
    shape = StackShape(
        name_prefix=outputs.monitoring.dashboard_name,
        region=outputs.monitoring.region,
        web_nodes=outputs.web_node_names,
        db_primary=primary_id,
        db_replica=replica_id,
        db_instance_class=str(sized.get("DBInstanceClass", "?")),
        db_allocated_storage_gb=int(sized.get("AllocatedStorage") or 1),
        metrics_namespace=outputs.monitoring.metrics_namespace,
        db_on_rds=on_rds(outputs),
        # Two running load balancers are the pair: its Elastic IP alarms are expected too.
        load_balancers=tuple(sorted(load_balancers)),
        database_hosts=database_hosts,
    )
    try:
        return _Monitored(catalogue(shape), refs)
    except ValueError as error:
        return _Monitored(None, refs, str(error))


def check_monitoring(session: Any, config: Any, outputs: Outputs) -> list[Check]:
    """Topics, the outside-in check, every alarm, the dashboard, RDS events and log groups."""
    monitoring = outputs.monitoring
    region = monitoring.region

    def client(service: str, in_region: str = region) -> Any:
        return session.client(service, region_name=in_region, config=config)

    checks = [
        check_topic("alarm topic", client("sns"), monitoring.alarm_topic_arn),
        check_topic(
            "health check topic",
            client("sns", HEALTH_CHECK_REGION),
            monitoring.health_check_alarm_topic_arn,
        ),
        check_health_check(client("route53", HEALTH_CHECK_REGION), outputs),
    ]
    monitored = _monitored(client("ec2"), client("rds"), outputs)
    if monitored.catalogue is None:
        return [
            *checks,
            Check("alarms", "the catalogue's alarms", f"cannot tell: {monitored.problem}", False),
        ]
    checks += check_alarms(
        {region: client("cloudwatch"), HEALTH_CHECK_REGION: client("cloudwatch", "us-east-1")},
        monitored,
        outputs,
    )
    checks.append(check_dashboard(client("cloudwatch"), monitored))
    if on_rds(outputs):  # the database hosts send no RDS events
        checks.append(check_db_events(client("rds"), outputs))
    checks.append(check_log_groups(client("logs"), monitored.catalogue.shape.name_prefix))
    return checks


def check_topic(name: str, sns: Any, arn: str) -> Check:
    """The topic exists and at least one confirmed subscriber reads it."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    expected = "exists, at least one confirmed subscription"
    try:
        sns.get_topic_attributes(TopicArn=arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NotFound", "NotFoundException"):
            return Check(name, expected, f"{arn}: not found", False)
        raise
    facts = Facts()
    facts.add(arn.rsplit(":", 1)[-1])
    subscriptions = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
        subscriptions += page.get("Subscriptions", [])
    confirmed = [s for s in subscriptions if str(s.get("SubscriptionArn", "")).startswith("arn:")]
    pending = len(subscriptions) - len(confirmed)
    protocols = sorted({str(s.get("Protocol")) for s in confirmed})
    facts.add(f"{len(confirmed)} confirmed ({', '.join(protocols) or 'none'})", bool(confirmed))
    if pending:
        facts.add(f"{pending} pending confirmation")
    return facts.check(name, expected)


def check_health_check(route53: Any, outputs: Outputs) -> Check:
    """Route 53 requests the load balancer's health path over HTTP on port 80."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    host = outputs.load_balancer_public_dns
    expected = f"HTTP {host}:80/health"
    health_check_id = outputs.monitoring.health_check_id
    try:
        found = route53.get_health_check(HealthCheckId=health_check_id)["HealthCheck"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchHealthCheck":
            return Check("health check", expected, f"{health_check_id}: not found", False)
        raise
    config = found.get("HealthCheckConfig", {})
    facts = Facts()
    kind = str(config.get("Type", "?"))
    facts.add(kind, kind == "HTTP")
    target = str(config.get("FullyQualifiedDomainName") or config.get("IPAddress") or "?")
    facts.add(
        f"{target}:{config.get('Port')}{config.get('ResourcePath', '')}",
        target.lower() in (host.lower(), outputs.load_balancer_public_ip)
        and config.get("Port") == 80
        and config.get("ResourcePath") == "/health",
    )
    if config.get("Disabled"):
        facts.add("disabled", False)
    return facts.check("health check", expected, f"{health_check_id}: ")


def _dimensions_text(dimensions: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(dimensions.items()))


def _alarm_dimensions(entry: Mapping[str, Any]) -> dict[str, str]:
    return {str(d["Name"]): str(d["Value"]) for d in entry.get("Dimensions", [])}


def _signal_facts(spec: AlarmSpec, alarm: Mapping[str, Any], refs: Mapping[Ref, str]) -> Facts:
    facts = Facts()
    if isinstance(spec.signal, Metric):
        wanted = spec.signal.resolved_dimensions(refs)
        found = _alarm_dimensions(alarm)
        name = str(alarm.get("MetricName", "-"))
        facts.add(
            f"{name}[{_dimensions_text(found)}]",
            (alarm.get("Namespace"), name, found)
            == (spec.signal.namespace, spec.signal.name, wanted),
        )
        statistic = str(alarm.get("ExtendedStatistic") or alarm.get("Statistic") or "-")
        facts.add(
            f"{statistic}/{alarm.get('Period')} s",
            statistic == spec.statistic and alarm.get("Period") == spec.period,
        )
        return facts
    queries = {str(q["Id"]): q for q in alarm.get("Metrics", [])}
    expression = next((q.get("Expression") for q in queries.values() if q.get("ReturnData")), "-")
    good = expression == spec.signal.expression
    for source in spec.signal.inputs:
        stat = queries.get(source.id, {}).get("MetricStat", {})
        metric = stat.get("Metric", {})
        good = good and (
            metric.get("Namespace"),
            metric.get("MetricName"),
            _alarm_dimensions(metric),
            stat.get("Stat"),
            stat.get("Period"),
        ) == (
            source.metric.namespace,
            source.metric.name,
            source.metric.resolved_dimensions(refs),
            source.statistic,
            spec.period,
        )
    facts.add(f"{expression} over {', '.join(sorted(queries))}", good)
    return facts


def _alarm_check(
    spec: AlarmSpec, alarm: Mapping[str, Any] | None, refs: Mapping[Ref, str], topic: str
) -> Check:
    recover = f"arn:aws:automate:{spec.region or ''}"
    expected = f"{spec.rule()}; notifies the topic" + (
        "; recovers the instance" if spec.recover_instance else ""
    )
    name = f"alarm {spec.key}"
    if alarm is None:
        return Check(name, expected, "not found", False)
    missing_refs = [r.key for m in spec.metrics for r in m.refs() if r not in refs]
    if missing_refs:
        return Check(name, expected, f"cannot tell: no {', '.join(missing_refs)}", False)
    facts = _signal_facts(spec, alarm, refs)
    threshold = float(alarm.get("Threshold", math.nan))
    comparison = str(alarm.get("ComparisonOperator", "?"))
    facts.add(
        f"{COMPARISON_SIGNS.get(comparison, comparison)} {threshold:g}",
        comparison == spec.comparison and math.isclose(threshold, spec.threshold),
    )
    window = (
        alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods"),
        alarm.get("EvaluationPeriods"),
    )
    facts.add(
        f"{window[0]} of {window[1]}",
        window == (spec.datapoints_to_alarm, spec.evaluation_periods),
    )
    actions = [str(a) for a in alarm.get("AlarmActions", [])]
    facts.add(
        "notifies the topic" if topic in actions else "no action to the topic", topic in actions
    )
    if spec.recover_instance:
        recovers = any(a.startswith(recover) and a.endswith(":ec2:recover") for a in actions)
        facts.add("recovers" if recovers else "no recover action", recovers)
    if alarm.get("ActionsEnabled") is False:
        facts.add("actions disabled", False)
    return facts.check(name, expected)


def check_alarms(
    cloudwatch: Mapping[str, Any], monitored: _Monitored, outputs: Outputs
) -> list[Check]:
    """One line per alarm the catalogue expects, then one line for their states."""
    assert monitored.catalogue is not None
    plan = monitored.catalogue
    prefix = plan.shape.name_prefix
    found: dict[str, dict[str, Any]] = {}
    for region in {plan.shape.region, HEALTH_CHECK_REGION}:
        paginator = cloudwatch[region].get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNamePrefix=f"{prefix}-", AlarmTypes=["MetricAlarm"]):
            for alarm in page.get("MetricAlarms", []):
                found[str(alarm["AlarmName"])] = alarm
    checks = []
    states: dict[str, list[str]] = {}
    for spec in plan.alarms:
        in_east = spec.region == HEALTH_CHECK_REGION
        topic = (
            outputs.monitoring.health_check_alarm_topic_arn
            if in_east
            else outputs.monitoring.alarm_topic_arn
        )
        alarm = found.get(spec.name(prefix))
        checks.append(_alarm_check(spec, alarm, monitored.refs, topic))
        if alarm is not None:
            states.setdefault(str(alarm.get("StateValue", "?")), []).append(spec.key)
    found_text = ", ".join(
        f"{len(keys)} {state}" + ("" if state == "OK" else f" ({' '.join(keys)})")
        for state, keys in sorted(states.items())
    )
    checks.append(
        Check(
            "alarm states",
            "all OK: every metric arrives and nothing fires",
            found_text or "no alarms",
            set(states) == {"OK"},
        )
    )
    return checks


def dashboard_lines(body: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(namespace, metric, dimensions) of every metric line of a dashboard body."""
    lines = set()
    for widget in body.get("widgets", []):
        for row in widget.get("properties", {}).get("metrics", []):
            names = [str(item) for item in row if not isinstance(item, dict)]
            if len(names) >= 2:
                pairs = dict(zip(names[2::2], names[3::2], strict=False))
                lines.add((names[0], names[1], _dimensions_text(pairs)))
    return lines


def check_dashboard(cloudwatch: Any, monitored: _Monitored) -> Check:
    """The dashboard exists and shows exactly the catalogue's lines for this stack."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    assert monitored.catalogue is not None
    plan = monitored.catalogue
    name = plan.shape.name_prefix
    wanted = dashboard_lines(plan.dashboard_body(monitored.refs))
    expected = f"{name}: the catalogue's {len(wanted)} lines, no other"
    try:
        raw = cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in (
            "ResourceNotFound",
            "ResourceNotFoundException",
        ):
            return Check("dashboard", expected, f"{name}: not found", False)
        raise
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as error:
        return Check("dashboard", expected, f"body is not JSON: {error}", False)
    found = dashboard_lines(body)
    facts = Facts()
    facts.add(f"{len(body.get('widgets', []))} widgets, {len(found)} lines")
    for label, lines in (("missing", wanted - found), ("not in the catalogue", found - wanted)):
        if lines:
            shown = "; ".join(f"{m}[{d}]" for _, m, d in sorted(lines)[:3])
            more = f" and {len(lines) - 3} more" if len(lines) > 3 else ""
            facts.add(f"{label}: {shown}{more}", False)
    return facts.check("dashboard", expected)


def check_db_events(rds: Any, outputs: Outputs) -> Check:
    """RDS sends failover, failure, storage and replication events of both DBs to the topic."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    name = db_event_subscription_name(outputs.monitoring.dashboard_name)
    sources = {outputs.db_primary_endpoint.identifier, outputs.db_replica_endpoint.identifier}
    expected = f"{name}: {', '.join(DB_EVENT_CATEGORIES)} of both DBs to the topic"
    try:
        (found,) = rds.describe_event_subscriptions(SubscriptionName=name)["EventSubscriptionsList"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "SubscriptionNotFound":
            return Check("db events", expected, f"{name}: not found", False)
        raise
    facts = Facts()
    topic = str(found.get("SnsTopicArn", "-"))
    facts.add(
        "to the topic" if topic == outputs.monitoring.alarm_topic_arn else f"to {topic}",
        topic == outputs.monitoring.alarm_topic_arn,
    )
    listed = set(found.get("SourceIdsList", []))
    facts.add(f"sources {' '.join(sorted(listed)) or '-'}", sources <= listed)
    categories = set(found.get("EventCategoriesList", []))
    missing = set(DB_EVENT_CATEGORIES) - categories
    facts.add(f"lacks {', '.join(sorted(missing))}" if missing else "every category", not missing)
    facts.add("enabled" if found.get("Enabled") else "disabled", bool(found.get("Enabled")))
    return facts.check("db events", expected)


def check_log_groups(logs: Any, name_prefix: str) -> Check:
    """Every log group of the catalogue exists and keeps events for a bounded time."""
    groups: dict[str, dict[str, Any]] = {}
    for page in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=f"/{name_prefix}/"
    ):
        for group in page.get("logGroups", []):
            groups[str(group["logGroupName"])] = group
    facts = Facts()
    days: set[int] = set()
    for source in LOG_SOURCES:
        name = source.group_name(name_prefix)
        group = groups.get(name)
        if group is None:
            facts.add(f"{name} missing", False)
        elif not group.get("retentionInDays"):
            facts.add(f"{name} keeps events forever", False)
        else:
            days.add(int(group["retentionInDays"]))
    if facts.ok:
        shown = "/".join(str(d) for d in sorted(days, reverse=True))
        facts.add(f"{len(LOG_SOURCES)} groups, retention {shown} days")
    expected = f"{len(LOG_SOURCES)} groups under /{name_prefix}/, each with a retention"
    return facts.check("log groups", expected)
