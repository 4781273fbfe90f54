"""Post-deploy check: does the running stack match the web-infra design?

    pulumi stack output --json | python -m tools.verify --outputs -
    python -m tools.verify --outputs outputs.json [--json] [--skip-http] [--skip-aws]

`pulumi up` succeeding proves that AWS accepted the resources, not that the result is the
design: a node can be stopped, a security group can have been widened by hand, the replica can
be missing, HAProxy can be sending every request to one node. This command reads the stack's
outputs and checks the live stack, one line per check, and exits 1 if any check fails (2 if
the outputs JSON cannot be read or lacks keys, naming them).

AWS (boto3 with the standard environment: credentials, region, `AWS_ENDPOINT_URL`; the region
falls back to the one in the RDS endpoint):
  * the load balancer: the instance holding `load_balancer_public_ip` in the VPC is running,
    tagged `Role=load-balancer`, in a public subnet, in the load balancer group, and its public
    DNS name is `load_balancer_public_dns`;
  * the web tier: as many `Role=web` instances in the VPC as `web_private_ips` (at least 2);
    each node (found by private IP, in node order web-1, web-2, ...) is running, tagged
    `Role=web` and `Name=*-web-N`, in a private subnet, in the web group, with no public IP; the
    nodes span at least two availability zones (so one AZ outage leaves the site up);
  * security groups: the database group admits only tcp/3306 and only from the web group (no
    CIDR, no other port); none of the three groups opens anything but tcp/80 and tcp/443 to
    0.0.0.0/0 or ::/0;
  * the database: the primary (identifier = endpoint host before the first dot) is an available
    MySQL instance with backups (retention > 0 days), encrypted storage, not publicly
    accessible, in the database group, at the endpoint the outputs give; the replica likewise
    (without the backup rule); the replica's source is the primary and the primary lists it;
  * monitoring (the metric catalogue, `userdata/metric_catalog/`, says what to expect for
    this stack's node count, DB class and storage): the alarm topic and the health-check
    alarms' topic exist and someone confirmed a subscription; the Route 53 health check
    requests the load balancer's health path; every expected alarm exists, one line each, with
    its metric, dimensions, statistic, threshold and window, and an action to its topic (the
    system-check alarms also the EC2 recover action); every alarm has data and none fires; the
    dashboard shows exactly the catalogue's lines; RDS events go to the topic; every log group
    exists with a retention.

HTTP (urllib, short timeouts; `--skip-http` for offline use), through `url`:
  * `GET /health` answers 200;
  * round robin: 2*N consecutive `GET /api/messages` are all answered 200 with `X-Served-By`,
    every node web-1..web-N answers at least once and no node answers two requests in a row
    (what HAProxy's `balance roundrobin` gives on a quiet site; heavy concurrent traffic can
    make this line fail spuriously: run it again);
  * a message written with `POST /api/messages` is read back with `GET /api/messages` within
    `--read-back-seconds` (replication to the replica is asynchronous). This leaves one
    message, `tools.verify <time> <token>`, in the database.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import math
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from typing import Any

from components.stack_outputs import SECURITY_GROUP_KEYS, STACK_OUTPUTS
from userdata.metric_catalog import (
    COMPARISON_SIGNS,
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

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

MONITORING_OUTPUTS = (
    "alarm_topic_arn",
    "health_check_alarm_topic_arn",
    "dashboard_url",
    "health_check_id",
)
"""Outputs of the monitoring component; `metrics_namespace` is read too when present."""
# Stacks deployed before HTTPS existed lack these; their absence means "no domain".
HTTPS_KEYS = ("https_enabled", "https_url")
REQUIRED_KEYS = tuple(
    key for key in dict.fromkeys((*STACK_OUTPUTS, *MONITORING_OUTPUTS)) if key not in HTTPS_KEYS
)
GROUP_LABELS = {"load_balancer": "lb sg", "web": "web sg", "database": "db sg"}
MIN_WEB_NODES = 2
MIN_WEB_AZS = 2
MYSQL_PORT = 3306
WORLD_OPEN_PORTS = frozenset({80, 443})
# Every state but terminated: a stopped node is still a node of the stack, and a wrong one.
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
MAX_BODY_BYTES = 1 << 20
USER_AGENT = "web-infra-verify/1"
BAD = " (!)"  # marks the fact in `found` that makes a check fail


class OutputsError(ValueError):
    """The outputs JSON cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class Endpoint:
    """`host:port` of an RDS instance, as the outputs give it."""

    host: str
    port: int

    @property
    def identifier(self) -> str:
        """The DB instance identifier: the host's first label."""
        return self.host.split(".", 1)[0]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MonitoringOutputs:
    """Where the monitoring component's resources are."""

    alarm_topic_arn: str
    health_check_alarm_topic_arn: str
    dashboard_url: str
    health_check_id: str
    metrics_namespace: str | None = None

    @property
    def region(self) -> str:
        """The stack's region, from the dashboard's console URL (`?region=...`)."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.dashboard_url).query)
        return query.get("region", [""])[0]

    @property
    def dashboard_name(self) -> str:
        """The dashboard's name; the catalogue names it like the stack's name prefix."""
        fragment = urllib.parse.urlsplit(self.dashboard_url).fragment
        match = re.fullmatch(r"dashboards(?:/dashboard/|:name=)([^/&]+)", fragment)
        return urllib.parse.unquote(match.group(1)) if match else ""


@dataclass(frozen=True)
class Outputs:
    """The parts of `pulumi stack output --json` that the checks use."""

    url: str
    load_balancer_public_ip: str
    load_balancer_public_dns: str
    web_private_ips: tuple[str, ...]
    db_primary_endpoint: Endpoint
    db_replica_endpoint: Endpoint
    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    security_group_ids: Mapping[str, str]
    monitoring: MonitoringOutputs
    https_enabled: bool = False
    """The site has a domain and a CA's certificate (then `https_url` is https://<domain>)."""
    https_url: str = ""

    @property
    def web_node_names(self) -> tuple[str, ...]:
        """web-1, web-2, ...: the names the nodes answer with in `X-Served-By`."""
        return tuple(f"web-{i}" for i in range(1, len(self.web_private_ips) + 1))


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    check: str
    expected: str
    found: str
    ok: bool


@dataclass
class _Facts:
    """What was found for one check, fact by fact; the check passes if every fact is good."""

    items: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, text: str, ok: bool = True) -> None:
        self.items.append((text, ok))

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.items)

    def check(self, name: str, expected: str, prefix: str = "") -> Check:
        found = ", ".join(text if ok else text + BAD for text, ok in self.items)
        return Check(name, expected, prefix + found, self.ok)


# --- outputs ---------------------------------------------------------------------------------


def _monitoring_outputs(
    raw: Mapping[str, Any], string: Callable[[str], str], problems: list[str]
) -> MonitoringOutputs:
    monitoring = MonitoringOutputs(
        alarm_topic_arn=string("alarm_topic_arn"),
        health_check_alarm_topic_arn=string("health_check_alarm_topic_arn"),
        dashboard_url=string("dashboard_url"),
        health_check_id=string("health_check_id"),
        metrics_namespace=raw.get("metrics_namespace") or None,
    )
    for key in ("alarm_topic_arn", "health_check_alarm_topic_arn"):
        value = getattr(monitoring, key)
        if value and not re.fullmatch(r"arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+", value):
            problems.append(f"{key}: expected an SNS topic ARN, got {value!r}")
    if monitoring.dashboard_url and not (monitoring.region and monitoring.dashboard_name):
        problems.append(
            "dashboard_url: expected a CloudWatch console URL with ?region=... and "
            f"#dashboards/dashboard/<name>, got {monitoring.dashboard_url!r}"
        )
    return monitoring


def parse_outputs(text: str) -> Outputs:
    """Validate the JSON of `pulumi stack output --json`; raise `OutputsError` naming every
    missing or malformed key. Keys the checks do not use are ignored."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise OutputsError(f"the outputs are not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise OutputsError(f"the outputs must be a JSON object, not {type(raw).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise OutputsError(f"the outputs lack key(s): {', '.join(missing)}")
    problems: list[str] = []

    def string(key: str) -> str:
        value = raw[key]
        if isinstance(value, str) and value:
            return value
        problems.append(f"{key}: expected a non-empty string, got {value!r}")
        return ""

    def strings(key: str) -> tuple[str, ...]:
        value = raw[key]
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        problems.append(f"{key}: expected a list of non-empty strings, got {value!r}")
        return ()

    def endpoint(key: str) -> Endpoint:
        value = string(key)
        host, sep, port = value.rpartition(":")
        if value and (not sep or not host or not port.isdigit()):
            problems.append(f"{key}: expected 'host:port', got {value!r}")
        return Endpoint(host, int(port) if port.isdigit() else 0)

    url = string("url")
    if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        problems.append(f"url: expected an http:// or https:// URL, got {url!r}")
    groups = raw["security_group_ids"]
    security_group_ids: dict[str, str] = {}
    if not isinstance(groups, dict):
        problems.append(f"security_group_ids: expected an object, got {groups!r}")
    else:
        absent = [key for key in SECURITY_GROUP_KEYS if key not in groups]
        if absent:
            problems.append(f"security_group_ids: lacks key(s): {', '.join(absent)}")
        for key in SECURITY_GROUP_KEYS:
            value = groups.get(key)
            if key in groups and not (isinstance(value, str) and value):
                problems.append(f"security_group_ids.{key}: expected a group id, got {value!r}")
            security_group_ids[key] = value if isinstance(value, str) else ""
    monitoring = _monitoring_outputs(raw, string, problems)
    https_enabled, https_url = _https_outputs(raw, problems)
    outputs = Outputs(
        url=url.rstrip("/"),
        load_balancer_public_ip=string("load_balancer_public_ip"),
        load_balancer_public_dns=string("load_balancer_public_dns"),
        web_private_ips=strings("web_private_ips"),
        db_primary_endpoint=endpoint("db_primary_endpoint"),
        db_replica_endpoint=endpoint("db_replica_endpoint"),
        vpc_id=string("vpc_id"),
        public_subnet_ids=strings("public_subnet_ids"),
        private_subnet_ids=strings("private_subnet_ids"),
        security_group_ids=security_group_ids,
        monitoring=monitoring,
        https_enabled=https_enabled,
        https_url=https_url,
    )
    if problems:
        raise OutputsError("malformed outputs:\n  " + "\n  ".join(problems))
    return outputs


def _https_outputs(raw: Mapping[str, Any], problems: list[str]) -> tuple[bool, str]:
    enabled, url = raw.get("https_enabled", False), raw.get("https_url", "")
    if not isinstance(enabled, bool):
        problems.append(f"https_enabled: expected true or false, got {enabled!r}")
        enabled = False
    if not isinstance(url, str) or (url and urllib.parse.urlsplit(url).scheme != "https"):
        problems.append(f"https_url: expected an https:// URL, got {url!r}")
        url = ""
    if enabled and not url:
        problems.append("https_url: required when https_enabled is true")
    return enabled, url.rstrip("/")


# --- AWS -------------------------------------------------------------------------------------


def aws_session(outputs: Outputs, region: str | None = None) -> Any:
    """A boto3 session from the standard environment; region: `region`, else the environment's,
    else the one in the RDS endpoint (`<id>.<hash>.<region>.rds.amazonaws.com`)."""
    import boto3  # noqa: PLC0415 - `--skip-aws` and `--help` work without loading boto3

    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        labels = outputs.db_primary_endpoint.host.split(".")
        if len(labels) >= 5 and labels[-3:-1] == ["rds", "amazonaws"]:
            session = boto3.session.Session(region_name=labels[-4])
    return session


def check_aws(outputs: Outputs, session: Any) -> list[Check]:
    """Every AWS check, in report order. An AWS API error fails the checks it stopped."""
    from botocore.config import Config  # noqa: PLC0415

    # Fail in seconds, not minutes, when AWS (or AWS_ENDPOINT_URL) does not answer.
    config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})
    ec2 = session.client("ec2", config=config)
    rds = session.client("rds", config=config)
    checks: list[Check] = []
    checks += _guarded("load balancer", lambda: check_load_balancer(ec2, outputs))
    checks += _guarded("web nodes", lambda: check_web_nodes(ec2, outputs))
    checks += _guarded("security groups", lambda: check_security_groups(ec2, outputs))
    checks += _guarded("database", lambda: check_database(rds, outputs))
    checks += _guarded("monitoring", lambda: check_monitoring(session, config, outputs))
    return checks


def _guarded(what: str, run: Callable[[], list[Check]]) -> list[Check]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        return run()
    except (BotoCoreError, ClientError) as error:
        return [Check(what, "AWS answers", f"AWS error: {error}", False)]


def _instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances (not terminated) matching `filters`."""
    filters = [*filters, {"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            found.extend(reservation.get("Instances", []))
    return found


def _tags(resource: Mapping[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in resource.get("Tags", [])}


def _instance_facts(
    instance: Mapping[str, Any], outputs: Outputs, *, role: str, subnet: str, group: str
) -> _Facts:
    """Facts common to the load balancer and the web nodes: state, Role tag, subnet, group."""
    facts = _Facts()
    state = str(instance.get("State", {}).get("Name", "?"))
    facts.add(state, state == "running")
    actual_role = _tags(instance).get("Role", "-")
    facts.add(f"Role={actual_role}", actual_role == role)
    subnet_id = str(instance.get("SubnetId", "-"))
    if subnet_id in outputs.public_subnet_ids:
        facts.add("public subnet", subnet == "public")
    elif subnet_id in outputs.private_subnet_ids:
        facts.add("private subnet", subnet == "private")
    else:
        facts.add(f"subnet {subnet_id} not in outputs", False)
    group_ids = {str(g["GroupId"]) for g in instance.get("SecurityGroups", [])}
    wanted = outputs.security_group_ids[group]
    label = GROUP_LABELS[group]
    if wanted in group_ids:
        facts.add(label)
    else:
        facts.add(f"groups {','.join(sorted(group_ids)) or '-'} lack {label}", False)
    return facts


def check_load_balancer(ec2: Any, outputs: Outputs) -> list[Check]:
    """The instance holding the public IP is the running load balancer; its DNS name matches."""
    ip = outputs.load_balancer_public_ip
    expected = "running, Role=load-balancer, public subnet, lb sg"
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    holders = _instances(ec2, [vpc, {"Name": "ip-address", "Values": [ip]}])
    if len(holders) != 1:
        tagged = _instances(ec2, [vpc, {"Name": "tag:Role", "Values": ["load-balancer"]}])
        seen = ", ".join(
            f"{i['InstanceId']} has {i.get('PublicIpAddress', 'no public IP')}" for i in tagged
        )
        found = f"no instance in {outputs.vpc_id} holds {ip}"
        if seen:
            found += f"; Role=load-balancer: {seen}"
        return [
            Check("lb instance", expected, found, False),
            Check("lb public dns", outputs.load_balancer_public_dns, "no instance", False),
        ]
    instance = holders[0]
    facts = _instance_facts(
        instance, outputs, role="load-balancer", subnet="public", group="load_balancer"
    )
    dns = str(instance.get("PublicDnsName") or "-")
    return [
        facts.check("lb instance", expected, prefix=f"{instance['InstanceId']}: "),
        Check(
            "lb public dns",
            outputs.load_balancer_public_dns,
            dns,
            dns.lower() == outputs.load_balancer_public_dns.lower(),
        ),
    ]


def check_web_nodes(ec2: Any, outputs: Outputs) -> list[Check]:
    """Node count, each node by private IP, and the spread over availability zones."""
    vpc = {"Name": "vpc-id", "Values": [outputs.vpc_id]}
    wanted = len(outputs.web_private_ips)
    tagged = _instances(ec2, [vpc, {"Name": "tag:Role", "Values": ["web"]}])
    checks = [
        Check(
            "web node count",
            f"{wanted} Role=web instances (as web_private_ips), at least {MIN_WEB_NODES}",
            f"{len(tagged)} Role=web instances, {wanted} web_private_ips",
            len(tagged) == wanted >= MIN_WEB_NODES,
        )
    ]
    zones: dict[str, list[str]] = {}
    for name, ip in zip(outputs.web_node_names, outputs.web_private_ips, strict=True):
        expected = f"running, Role=web, Name=*-{name}, private subnet, web sg, no public IP"
        matches = _instances(ec2, [vpc, {"Name": "private-ip-address", "Values": [ip]}])
        if len(matches) != 1:
            found = f"{len(matches)} instances with private IP {ip} in {outputs.vpc_id}"
            checks.append(Check(f"{name} instance", expected, found, False))
            continue
        instance = matches[0]
        facts = _instance_facts(instance, outputs, role="web", subnet="private", group="web")
        node_name = _tags(instance).get("Name", "-")
        facts.items.insert(2, (f"Name={node_name}", node_name.endswith(f"-{name}")))
        public_ip = instance.get("PublicIpAddress")
        facts.add(f"public IP {public_ip}" if public_ip else "no public IP", not public_ip)
        checks.append(facts.check(f"{name} instance", expected, f"{instance['InstanceId']}: "))
        zone = str(instance.get("Placement", {}).get("AvailabilityZone", "?"))
        zones.setdefault(zone, []).append(name)
    spread = ", ".join(f"{zone}: {' '.join(names)}" for zone, names in sorted(zones.items()))
    checks.append(
        Check(
            "web AZ spread",
            f"web nodes in >= {MIN_WEB_AZS} AZs",
            spread or "no web node found",
            len(zones) >= MIN_WEB_AZS,
        )
    )
    return checks


def _protocol(permission: Mapping[str, Any]) -> str:
    protocol = str(permission.get("IpProtocol", "?"))
    return {"6": "tcp", "17": "udp", "1": "icmp"}.get(protocol, protocol)


def _ports(permission: Mapping[str, Any]) -> str:
    protocol = _protocol(permission)
    if protocol == "-1":
        return "all traffic"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    if low in (None, -1) or (protocol in ("tcp", "udp") and (low, high) == (0, 65535)):
        return f"{protocol}/all"
    return f"{protocol}/{low}" if low == high else f"{protocol}/{low}-{high}"


def _is_single_port(permission: Mapping[str, Any], ports: Iterable[int]) -> bool:
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return _protocol(permission) == "tcp" and low == high and low in set(ports)


def _sources(permission: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Every source of a rule: CIDRs, prefix lists, groups (ours by label)."""
    sources = [str(r["CidrIp"]) for r in permission.get("IpRanges", [])]
    sources += [str(r["CidrIpv6"]) for r in permission.get("Ipv6Ranges", [])]
    sources += [str(p["PrefixListId"]) for p in permission.get("PrefixListIds", [])]
    for pair in permission.get("UserIdGroupPairs", []):
        group_id = str(pair.get("GroupId", "?"))
        sources.append(labels.get(group_id, group_id))
    return sources


def _is_world(source: str) -> bool:
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen == 0
    except ValueError:
        return False


def check_security_groups(ec2: Any, outputs: Outputs) -> list[Check]:
    """The database group admits MySQL from the web group only; nothing but 80/443 is public."""
    ids = outputs.security_group_ids
    labels = {ids[key]: GROUP_LABELS[key] for key in SECURITY_GROUP_KEYS}
    response = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": sorted(set(ids.values()))}]
    )
    groups = {str(g["GroupId"]): g for g in response.get("SecurityGroups", [])}
    checks: list[Check] = []

    db_expected = f"only tcp/{MYSQL_PORT} from web sg ({ids['web']})"
    database = groups.get(ids["database"])
    if database is None:
        checks.append(Check("db sg ingress", db_expected, f"{ids['database']} not found", False))
    else:
        facts = _Facts()
        for permission in database.get("IpPermissions", []):
            mysql = _is_single_port(permission, [MYSQL_PORT])
            for source in _sources(permission, labels):
                good = mysql and source == GROUP_LABELS["web"]
                facts.add(f"{_ports(permission)} from {source}", good)
        if not facts.items:
            facts.add("no ingress rules", False)
        elif not any(ok for _, ok in facts.items):
            facts.add("nothing from web sg", False)
        checks.append(facts.check("db sg ingress", db_expected))

    for key in SECURITY_GROUP_KEYS:
        name = f"{GROUP_LABELS[key]} world ingress"
        expected = "at most tcp/80, tcp/443 from 0.0.0.0/0, ::/0"
        group = groups.get(ids[key])
        if group is None:
            checks.append(Check(name, expected, f"{ids[key]} not found", False))
            continue
        facts = _Facts()
        for permission in group.get("IpPermissions", []):
            web = _is_single_port(permission, WORLD_OPEN_PORTS)
            world = [source for source in _sources(permission, labels) if _is_world(source)]
            if world:
                facts.add(f"{_ports(permission)} from {' '.join(world)}", web)
        if not facts.items:
            facts.add("nothing open to the world")
        checks.append(facts.check(name, expected))
    return checks


def _db_instance(rds: Any, identifier: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        response = rds.describe_db_instances(DBInstanceIdentifier=identifier)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "DBInstanceNotFound":
            return None
        raise
    instances: list[dict[str, Any]] = response.get("DBInstances", [])
    return instances[0] if instances else None


def _db_facts(db: Mapping[str, Any], endpoint: Endpoint, outputs: Outputs) -> _Facts:
    facts = _Facts()
    status = str(db.get("DBInstanceStatus", "?"))
    facts.add(status, status == "available")
    engine = str(db.get("Engine", "?"))
    facts.add(engine, engine == "mysql")
    facts.add(*(("encrypted", True) if db.get("StorageEncrypted") else ("not encrypted", False)))
    public = db.get("PubliclyAccessible") is True
    facts.add("publicly accessible" if public else "not public", not public)
    group_ids = {str(g.get("VpcSecurityGroupId")) for g in db.get("VpcSecurityGroups", [])}
    if outputs.security_group_ids["database"] in group_ids:
        facts.add("db sg")
    else:
        facts.add(f"groups {','.join(sorted(group_ids)) or '-'} lack db sg", False)
    address = db.get("Endpoint") or {}
    actual = f"{address.get('Address', '-')}:{address.get('Port', '-')}"
    if actual == str(endpoint):
        facts.add("endpoint matches")
    else:
        facts.add(f"endpoint {actual}", False)
    return facts


def check_database(rds: Any, outputs: Outputs) -> list[Check]:
    """Primary and replica state, and the replication link both ways."""
    primary_id = outputs.db_primary_endpoint.identifier
    replica_id = outputs.db_replica_endpoint.identifier
    common = "available, mysql, encrypted, not public, db sg, endpoint matches"
    primary_expected = f"{common}, backups > 0 days"
    link_expected = f"replica's source is {primary_id}, primary lists {replica_id}"
    checks: list[Check] = []

    primary = _db_instance(rds, primary_id)
    if primary is None:
        checks.append(Check("db primary", primary_expected, f"{primary_id}: not found", False))
    else:
        facts = _db_facts(primary, outputs.db_primary_endpoint, outputs)
        days = int(primary.get("BackupRetentionPeriod") or 0)
        facts.add(f"backups {days} days", days > 0)
        checks.append(facts.check("db primary", primary_expected, f"{primary_id}: "))

    replica = _db_instance(rds, replica_id)
    if replica is None:
        checks.append(Check("db replica", common, f"{replica_id}: not found", False))
    else:
        facts = _db_facts(replica, outputs.db_replica_endpoint, outputs)
        checks.append(facts.check("db replica", common, f"{replica_id}: "))

    link = _Facts()
    source = (replica or {}).get("ReadReplicaSourceDBInstanceIdentifier")
    if replica is None:
        link.add("no replica", False)
    else:
        # The source is an identifier in the same region, an ARN across regions.
        source_id = str(source).rsplit(":", 1)[-1] if source else "-"
        link.add(f"replica's source is {source_id}", source_id == primary_id)
    if primary is not None:
        listed = [str(r) for r in primary.get("ReadReplicaDBInstanceIdentifiers", [])]
        shown = ", ".join(listed) or "nothing"
        link.add(f"primary lists {shown}", replica_id in listed)
    else:
        link.add("no primary", False)
    checks.append(link.check("db replication", link_expected))
    return checks


# --- monitoring ------------------------------------------------------------------------------


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
    hosts = (LOAD_BALANCER, *outputs.web_node_names)
    roles = {"Name": "tag:Role", "Values": ["load-balancer", "web"]}
    for instance in _instances(ec2, [vpc, roles]):
        name = _tags(instance).get("Name", "")
        for host in hosts:
            if name.endswith(f"-{host}"):
                refs[instance_ref(host)] = str(instance["InstanceId"])
    primary_id = outputs.db_primary_endpoint.identifier
    replica_id = outputs.db_replica_endpoint.identifier
    sized = _db_instance(rds, primary_id) or _db_instance(rds, replica_id)
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
    facts = _Facts()
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
    facts = _Facts()
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


def _signal_facts(spec: AlarmSpec, alarm: Mapping[str, Any], refs: Mapping[Ref, str]) -> _Facts:
    facts = _Facts()
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
    facts = _Facts()
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
    facts = _Facts()
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
    facts = _Facts()
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


# --- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    served_by: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpFailure(Exception):
    """No HTTP response at all: refused, reset, timed out, bad URL."""


def http_request(
    method: str, url: str, *, timeout: float, payload: object | None = None
) -> HttpResponse:
    """One request with a short timeout; any HTTP status is a response, not an exception."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - scheme checked in parse_outputs
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return HttpResponse(
                response.status, response.headers.get("X-Served-By"), response.read(MAX_BODY_BYTES)
            )
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(
                error.code, error.headers.get("X-Served-By"), error.read(MAX_BODY_BYTES)
            )
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise HttpFailure(str(reason) or type(error).__name__) from None


def check_http(outputs: Outputs, *, timeout: float, read_back_seconds: float) -> list[Check]:
    """Health, round robin over every node, and a write read back through the load balancer."""
    return [
        check_health(outputs.url, timeout),
        check_round_robin(outputs.url, outputs.web_node_names, timeout),
        check_write_read(outputs.url, timeout, read_back_seconds),
    ]


def check_health(url: str, timeout: float) -> Check:
    expected = "200"
    try:
        response = http_request("GET", f"{url}/health", timeout=timeout)
    except HttpFailure as error:
        return Check("http health", expected, f"no answer: {error}", False)
    by = f" from {response.served_by}" if response.served_by else ""
    return Check("http health", expected, f"{response.status}{by}", response.status == 200)


def check_round_robin(url: str, nodes: Sequence[str], timeout: float) -> Check:
    """2*N GETs: all 200 with X-Served-By, every node answers, none twice in a row."""
    count = 2 * len(nodes)
    names = ", ".join(nodes) if len(nodes) <= 3 else f"{nodes[0]}..{nodes[-1]}"
    expected = f"{count} GETs: each of {names} answers, none twice in a row"
    answers: list[str | None] = []
    seen: list[str] = []
    for _ in range(count):
        try:
            response = http_request("GET", f"{url}/api/messages", timeout=timeout)
        except HttpFailure as error:
            seen.append(f"({error})")
            answers.append(None)
            continue
        node = response.served_by
        note = "" if response.status == 200 else f"[{response.status}]"
        try:
            body_node = response.json().get("served_by")
        except (ValueError, AttributeError):
            body_node = None
        if node is not None and body_node not in (None, node):
            note += f"[body: {body_node}]"
        seen.append(f"{node or '?'}{note}")
        answers.append(node if response.status == 200 and not note else None)
    problems: list[str] = [] if nodes else ["no web nodes in the outputs"]
    if None in answers:
        problems.append("not every GET answered 200 with X-Served-By")
    missing = [node for node in nodes if node not in answers]
    if missing:
        problems.append(f"never answered: {', '.join(missing)}")
    strangers = sorted({a for a in answers if a is not None and a not in nodes})
    if strangers:
        problems.append(f"unknown: {', '.join(strangers)}")
    repeats = [
        str(i)
        for i, (a, b) in enumerate(itertools.pairwise(answers), start=2)
        if a is not None and a == b
    ]
    if repeats:
        problems.append(f"same node as the GET before at GET {', '.join(repeats)}")
    found = " ".join(seen) + (f" ({'; '.join(problems)})" if problems else "")
    return Check("http round robin", expected, found, not problems)


def _message_of(body: Any) -> Mapping[str, Any] | None:
    """The new message in a POST answer: the body itself or its `message` member."""
    if isinstance(body, dict):
        if "id" in body and "text" in body:
            return body
        inner = body.get("message")
        if isinstance(inner, dict) and "id" in inner and "text" in inner:
            return inner
    return None


def check_write_read(url: str, timeout: float, read_back_seconds: float) -> Check:
    """POST a message, then GET until it is listed (replication lag) or time runs out."""
    expected = f"POST 201 with id; listed by GET within {read_back_seconds:g} s"
    name = "http write, read back"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = f"tools.verify {stamp} {uuid.uuid4().hex[:12]}"
    try:
        response = http_request(
            "POST", f"{url}/api/messages", timeout=timeout, payload={"text": text}
        )
    except HttpFailure as error:
        return Check(name, expected, f"POST: no answer: {error}", False)
    try:
        message = _message_of(response.json())
    except ValueError:
        message = None
    if response.status != 201 or message is None:
        return Check(name, expected, f"POST {response.status}, no message with id in body", False)
    message_id = message["id"]
    found = f"POST 201 id={message_id}"
    started = time.monotonic()
    last = "no GET answered"
    while True:
        try:
            page = http_request("GET", f"{url}/api/messages?limit=100", timeout=timeout)
            body = page.json()
            listed = body.get("messages") if isinstance(body, dict) else None
            listed = listed if isinstance(listed, list) else []
            source = body.get("read_from", "?") if isinstance(body, dict) else "?"
            last = f"GET {page.status} from {page.served_by or '?'} ({source})"
            if page.status == 200 and any(
                isinstance(m, dict)
                and str(m.get("id")) == str(message_id)
                and m.get("text") == text
                for m in listed
            ):
                waited = time.monotonic() - started
                return Check(name, expected, f"{found}; read after {waited:.1f} s, {last}", True)
        except (HttpFailure, ValueError) as error:
            last = f"GET failed: {error}"
        if time.monotonic() - started >= read_back_seconds:
            break
        time.sleep(min(0.2, read_back_seconds / 10))
    return Check(
        name, expected, f"{found}; not listed after {read_back_seconds:g} s, {last}", False
    )


# --- the site's certificate (with a domain) ---------------------------------------------------

CERTIFICATE_MIN_DAYS = 14  # certbot renews 30 days ahead: 14 left means two weeks of failures


def check_certificate(
    https_url: str,
    *,
    timeout: float,
    ca_file: str | None = None,
    address: str | None = None,
    min_days: int = CERTIFICATE_MIN_DAYS,
) -> Check:
    """The certificate the site serves: trusted (the system's roots, or `ca_file`), made out to
    the site's name, with at least `min_days` left. `address`: connect there instead of
    resolving the name (the name still goes in SNI and is checked)."""
    parts = urllib.parse.urlsplit(https_url)
    host, port = parts.hostname or "", parts.port or 443
    expected = f"trusted, names {host}, >= {min_days} days left"
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with (
            socket.create_connection((address or host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate: dict[str, Any] = dict(tls.getpeercert() or {})
    except ssl.SSLCertVerificationError as error:
        return Check("https certificate", expected, f"not trusted: {error.verify_message}", False)
    except (OSError, ssl.SSLError) as error:
        return Check("https certificate", expected, f"no TLS answer: {error}", False)
    facts = _Facts()
    issuer = dict(item[0] for item in certificate.get("issuer", ()))
    facts.add(f"issuer {issuer.get('organizationName') or issuer.get('commonName', '?')}")
    names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    facts.add(f"names {' '.join(names)}", True)  # the handshake checked the name already
    left = (ssl.cert_time_to_seconds(str(certificate["notAfter"])) - time.time()) / 86400
    facts.add(f"{left:.0f} days left", left >= min_days)
    return facts.check("https certificate", expected)


# --- report and command line ------------------------------------------------------------------


def render_table(checks: Sequence[Check]) -> str:
    """Plain-text table: check, expected, found, ok (`yes` / `NO`), columns aligned."""
    rows = [("check", "expected", "found", "ok")]
    rows += [(c.check, c.expected, c.found, "yes" if c.ok else "NO") for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[3]]))
    lines.insert(1, "  ".join("-" * w for w in [*widths, 2]))
    return "\n".join(lines)


def summary(checks: Sequence[Check]) -> str:
    failed = [c.check for c in checks if not c.ok]
    if not failed:
        return f"{len(checks)} checks, all passed"
    return f"{len(checks)} checks, {len(failed)} failed: {', '.join(failed)}"


def run_checks(
    outputs: Outputs,
    *,
    session: Any | None = None,
    skip_aws: bool = False,
    skip_http: bool = False,
    timeout: float = 5.0,
    read_back_seconds: float = 5.0,
) -> list[Check]:
    checks: list[Check] = []
    if not skip_aws:
        checks += check_aws(outputs, session if session is not None else aws_session(outputs))
    if not skip_http:
        checks += check_http(outputs, timeout=timeout, read_back_seconds=read_back_seconds)
        if outputs.https_enabled:
            checks.append(check_certificate(outputs.https_url, timeout=timeout))
    return checks


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.verify",
        description="Check a deployed web-infra stack against the design.",
        epilog="Exit status: 0 all checks pass, 1 a check failed, 2 unusable outputs.",
    )
    parser.add_argument(
        "--outputs",
        required=True,
        metavar="FILE",
        help="JSON of `pulumi stack output --json`; `-` reads standard input",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--skip-aws", action="store_true", help="do not call the AWS APIs")
    parser.add_argument("--skip-http", action="store_true", help="do not call the site")
    parser.add_argument("--region", help="AWS region (default: environment, then RDS endpoint)")
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="per HTTP request (default 5)"
    )
    parser.add_argument(
        "--read-back-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="how long to poll for a written message (default 5)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.skip_aws and args.skip_http:
        parser.error("--skip-aws and --skip-http together leave nothing to check")
    try:
        if args.outputs == "-":
            text = sys.stdin.read()
        else:
            with open(args.outputs, encoding="utf-8") as f:
                text = f.read()
        outputs = parse_outputs(text)
    except (OSError, UnicodeDecodeError) as error:
        print(f"tools.verify: cannot read the outputs: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputsError as error:
        print(f"tools.verify: {args.outputs}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    session = None
    if not args.skip_aws:
        session = aws_session(outputs, args.region)
    checks = run_checks(
        outputs,
        session=session,
        skip_aws=args.skip_aws,
        skip_http=args.skip_http,
        timeout=args.timeout,
        read_back_seconds=args.read_back_seconds,
    )
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render_table(checks))
        print(summary(checks))
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
