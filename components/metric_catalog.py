"""Every metric this stack watches, where it comes from, and when it pages: one catalogue.

The alarms (`components/monitoring.py`), the dashboard, the CloudWatch agent's configuration
(`userdata/cloudwatch_agent.py`) and the post-deploy check (`tools.verify`) all take metric
names, dimensions and thresholds from here, so none of them is written twice: an alarm and the
dashboard line beside it are the same `Metric` object, and the agent publishes exactly the
Prometheus series the catalogue names.

Pure (no Pulumi, no AWS calls), so the userdata builders and `tools.verify` import it cheaply.
Values AWS assigns while the stack is created (instance ids, the health check's id) appear as
`Ref`s and are resolved late: by the component with Pulumi outputs, by `tools.verify` with what
it finds in the account.

Where the numbers come from:
  * the load balancer: HAProxy's built-in Prometheus exporter, scraped by the CloudWatch agent on
    the load balancer and sent as embedded-metric-format logs into the stack's namespace;
  * web nodes: Nginx's stub_status through prometheus-nginx-exporter (requests), HAProxy's
    per-server counters (5xx answered by each node), the agent's own mem/disk inputs;
  * AWS: EC2 (CPU, status checks), RDS (CPU, storage, memory, connections, replica lag) and
    Route 53 (the outside-in health check; its metrics exist only in us-east-1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

HEALTH_CHECK_REGION = "us-east-1"
"""Route 53 publishes health-check metrics only here, so the outside-in alarm lives here."""

LOAD_BALANCER = "load-balancer"
"""The load balancer's host name: its `Node` dimension and the `Name` tag's suffix."""

FRONTEND = "http"
"""HAProxy's public frontend (`frontend http` in haproxy.cfg)."""
BACKEND = "web"
"""HAProxy's backend of web nodes (`backend web`); its servers are named web-1, web-2, ..."""

ROOT_FILESYSTEM_TYPE = "ext4"
"""The root file system of Canonical's Ubuntu images; the agent tags disk metrics with it."""

GIB = 1024**3
MYSQL_BYTES_PER_CONNECTION = 12_582_880
"""RDS for MySQL's default `max_connections` is `{DBInstanceClassMemory/12582880}`."""


class Source(Enum):
    """Who publishes a metric. Agent sources are built into the agent config of their host."""

    HAPROXY = "HAProxy's Prometheus exporter, scraped by the CloudWatch agent"
    NGINX = "prometheus-nginx-exporter (Nginx stub_status), scraped by the CloudWatch agent"
    HOST = "the CloudWatch agent's mem and disk inputs"
    AWS = "AWS itself"

    @property
    def prometheus(self) -> bool:
        return self in (Source.HAPROXY, Source.NGINX)


@dataclass(frozen=True)
class Ref:
    """A dimension value AWS assigns when the stack is created, resolved late."""

    key: str


HEALTH_CHECK = Ref("health-check")


def instance_ref(host: str) -> Ref:
    """The EC2 instance id of `host` (load-balancer, web-1, ...)."""
    return Ref(f"instance:{host}")


DimensionValue = str | Ref


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric: namespace, name and dimensions, and who publishes it."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, DimensionValue], ...]
    source: Source
    label: str
    """How the dashboard names the line."""
    host: str | None = None
    """For agent-published metrics: the host whose agent publishes it."""
    unit: str | None = None
    """The CloudWatch unit the agent attaches (Prometheus series carry none of their own)."""
    region: str | None = None
    """None: the stack's region; `HEALTH_CHECK_REGION` for Route 53."""

    def refs(self) -> set[Ref]:
        return {value for _, value in self.dimensions if isinstance(value, Ref)}

    def resolved_dimensions(self, refs: Mapping[Ref, str]) -> dict[str, str]:
        """The dimensions with every `Ref` replaced; a missing `Ref` is a KeyError naming it."""
        resolved = {}
        for key, value in self.dimensions:
            if isinstance(value, Ref):
                if value not in refs:
                    raise KeyError(f"{self.name}: no value for {value.key}")
                resolved[key] = refs[value]
            else:
                resolved[key] = value
        return resolved


@dataclass(frozen=True)
class MetricInput:
    """One metric an expression reads, with the statistic it reads it with."""

    id: str
    metric: Metric
    statistic: str


@dataclass(frozen=True)
class Expression:
    """A CloudWatch metric-math expression over `MetricInput`s."""

    expression: str
    label: str
    inputs: tuple[MetricInput, ...]

    @property
    def region(self) -> str | None:
        return self.inputs[0].metric.region

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return tuple(i.metric for i in self.inputs)


Comparison = Literal[
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
]
MissingData = Literal["missing", "notBreaching", "breaching", "ignore"]
Severity = Literal["warning", "critical"]
COMPARISON_SIGNS: dict[str, str] = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


@dataclass(frozen=True)
class AlarmSpec:
    """An alarm: its signal, when it fires, and why that threshold means something."""

    key: str
    """Unique in the stack; the alarm is named `<name prefix>-<key>`."""
    tier: Literal["outside-in", "load-balancer", "web", "database"]
    severity: Severity
    summary: str
    """What is wrong when it fires, in one line."""
    why: str
    """Why this threshold and this window: what it means for users or for the operator."""
    signal: Metric | Expression
    statistic: str
    """Average, Sum, Minimum, Maximum or pNN for a metric; unused for an expression."""
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: Comparison
    threshold: float
    treat_missing_data: MissingData
    recover_instance: str | None = None
    """A host name: the alarm also asks EC2 to recover that instance (system check failures)."""
    notify_when_no_data: bool = False
    """Also notify when the metric stops arriving (the alarm goes to INSUFFICIENT_DATA)."""

    @property
    def region(self) -> str | None:
        return self.signal.region

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return (self.signal,) if isinstance(self.signal, Metric) else self.signal.metrics

    def name(self, name_prefix: str) -> str:
        return f"{name_prefix}-{self.key}"

    def rule(self) -> str:
        """The firing rule in words, e.g. `Minimum < 2 in 3 of 3 periods of 60 s`."""
        sign = COMPARISON_SIGNS[self.comparison]
        what = self.signal.label if isinstance(self.signal, Expression) else self.statistic
        return (
            f"{what} {sign} {_quantity(self.threshold)} in {self.datapoints_to_alarm} of "
            f"{self.evaluation_periods} periods of {self.period} s"
        )

    def description(self) -> str:
        """The alarm's description, which is also the notification's explanation."""
        text = f"[{self.severity}] {self.summary} Fires at: {self.rule()}. Why: {self.why}"
        return text[:1024]  # CloudWatch's limit


def _quantity(value: float) -> str:
    """A threshold for people: bytes as MiB, everything else as it is."""
    if value >= 1024**2:
        return f"{value / 1024**2:,.0f} MiB"
    return f"{value:g}"


@dataclass(frozen=True)
class StackShape:
    """What the catalogue needs to know about a stack; all known before anything exists."""

    name_prefix: str
    region: str
    web_nodes: tuple[str, ...]
    """web-1, web-2, ...: HAProxy's server names and the nodes' host names."""
    db_primary: str
    """The primary's DB instance identifier."""
    db_replica: str
    db_instance_class: str
    db_allocated_storage_gb: int
    db_memory_gib: float | None = None
    """The class's memory; None looks it up from `db_instance_class` (`rds_class_memory_gib`)."""
    metrics_namespace: str | None = None
    """Where the agent publishes; None means `default_namespace(name_prefix)`."""

    def __post_init__(self) -> None:
        if not self.web_nodes:
            raise ValueError("StackShape.web_nodes is empty: a stack has at least one web node")
        if len(set(self.web_nodes)) != len(self.web_nodes):
            raise ValueError(f"StackShape.web_nodes repeats a name: {list(self.web_nodes)}")
        if self.db_allocated_storage_gb <= 0:
            raise ValueError("StackShape.db_allocated_storage_gb must be a positive number of GiB")

    @property
    def namespace(self) -> str:
        return self.metrics_namespace or default_namespace(self.name_prefix)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every EC2 host: the load balancer first, then the web nodes in order."""
        return (LOAD_BALANCER, *self.web_nodes)

    @property
    def memory_gib(self) -> float:
        if self.db_memory_gib is not None:
            return self.db_memory_gib
        return rds_class_memory_gib(self.db_instance_class)


def default_namespace(name_prefix: str) -> str:
    """The stack's own CloudWatch namespace; the agent's IAM policy is limited to it."""
    return f"WebInfra/{name_prefix}"


def dashboard_name(name_prefix: str) -> str:
    """One dashboard per stack, named like the stack; also the alarms' name prefix."""
    return name_prefix


def dashboard_url(region: str, name_prefix: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards/dashboard/{dashboard_name(name_prefix)}"
    )


def db_event_subscription_name(name_prefix: str) -> str:
    return f"{name_prefix}-db-events"


DB_EVENT_CATEGORIES = ("failover", "failure", "low storage", "read replica")
"""RDS event categories sent to the topic: a failover happened, the instance failed, storage is
(nearly) full, replication stopped or failed. Not `availability` (every maintenance restart)."""


# --- logs: what leaves each kind of host, and where it lands -----------------------------------

WEB = "web"
ROLES = (LOAD_BALANCER, WEB)
"""The kinds of host; each has its own log groups, so each role may write only its own."""

METRICS_LOG_RETENTION_DAYS = 3
"""The embedded-metric-format events the agent sends for Prometheus series are only a transport:
CloudWatch keeps the metrics themselves for 15 months, so the raw events go after 3 days."""

LOG_RETENTION_DAYS_ALLOWED = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
)  # fmt: skip


@dataclass(frozen=True)
class LogSource:
    """One log a role ships, and the log group it lands in (one stream per host)."""

    key: str
    """Unique: `<role>/<log>`, also the group name's tail."""
    role: str
    description: str
    file_path: str | None = None
    journald_unit: str | None = None
    metrics_transport: bool = False
    """The group the agent writes Prometheus series to (as embedded-metric-format events)."""

    def group_name(self, name_prefix: str) -> str:
        return f"/{name_prefix}/{self.key}"

    def retention_days(self, configured: int) -> int:
        return METRICS_LOG_RETENTION_DAYS if self.metrics_transport else configured


LOG_SOURCES = (
    LogSource(
        "load-balancer/haproxy",
        LOAD_BALANCER,
        "HAProxy's access log (httplog), through rsyslog",
        file_path="/var/log/haproxy.log",
    ),
    LogSource(
        "load-balancer/cloud-init",
        LOAD_BALANCER,
        "cloud-init's output: the first boot, step by step",
        file_path="/var/log/cloud-init-output.log",
    ),
    LogSource(
        "load-balancer/metrics",
        LOAD_BALANCER,
        "HAProxy's Prometheus series, as embedded-metric-format events",
        metrics_transport=True,
    ),
    LogSource(
        "web/nginx-access",
        WEB,
        "Nginx's access log",
        file_path="/var/log/nginx/access.log",
    ),
    LogSource(
        "web/nginx-error",
        WEB,
        "Nginx's error log",
        file_path="/var/log/nginx/error.log",
    ),
    LogSource(
        "web/app",
        WEB,
        "the app's log (gunicorn and the app, from the journal)",
        journald_unit="web-app.service",
    ),
    LogSource(
        "web/cloud-init",
        WEB,
        "cloud-init's output: the first boot, step by step",
        file_path="/var/log/cloud-init-output.log",
    ),
    LogSource(
        "web/metrics",
        WEB,
        "Nginx's Prometheus series, as embedded-metric-format events",
        metrics_transport=True,
    ),
)


def role_of(host: str) -> str:
    """`load-balancer` for the load balancer, `web` for web-1, web-2, ..."""
    return LOAD_BALANCER if host == LOAD_BALANCER else WEB


def log_sources(role: str) -> tuple[LogSource, ...]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return tuple(s for s in LOG_SOURCES if s.role == role)


def metrics_log_source(role: str) -> LogSource:
    (source,) = [s for s in log_sources(role) if s.metrics_transport]
    return source


# --- RDS classes: memory, and what MySQL allows ------------------------------------------------

_BURSTABLE_GIB = {"micro": 1, "small": 2, "medium": 4, "large": 8, "xlarge": 16, "2xlarge": 32}
_GIB_PER_VCPU = {"m": 4, "r": 8, "x": 16}
_RDS_CLASS = re.compile(r"^db\.(?P<family>[a-z]+\d+[a-z-]*)\.(?P<size>[a-z0-9]+)$")


def rds_class_memory_gib(instance_class: str) -> float:
    """The memory of an RDS class: t3/t4g by size, m/r/x families by vCPUs (large = 2).

    Raises ValueError naming the class when it cannot tell (e.g. db.x2iedn or metal sizes):
    pass `db_memory_gib` in `StackShape` for such a class."""
    match = _RDS_CLASS.match(instance_class)
    hint = (
        f"cannot tell the memory of RDS class {instance_class!r} (known: db.t3/db.t4g micro to "
        "2xlarge, db.m*/db.r*/db.x2g large to 48xlarge); set db_memory_gib to its memory in GiB"
    )
    if not match:
        raise ValueError(hint)
    family, size = match["family"], match["size"]
    if family in ("t3", "t4g"):
        if size not in _BURSTABLE_GIB:
            raise ValueError(hint)
        return float(_BURSTABLE_GIB[size])
    kind = "x" if family.startswith("x2g") else family[0]
    if kind not in _GIB_PER_VCPU or (kind == "x" and family != "x2g"):
        raise ValueError(hint)
    sized = re.fullmatch(r"(\d*)xlarge|large", size)
    if not sized:
        raise ValueError(hint)
    vcpus = 2 if size == "large" else 4 * int(sized.group(1) or 1)
    return float(vcpus * _GIB_PER_VCPU[kind])


def estimated_max_connections(memory_gib: float) -> int:
    """MySQL's default `max_connections` on RDS for a class with this much memory.

    `DBInstanceClassMemory` is the class's memory less what RDS keeps for the OS and its own
    agents; 256 MiB plus 2.5 % matches the published limits of 1 to 8 GiB classes within 8 %
    (66, 150, 312, 648 connections), erring low. Set `max_connections` in the parameter group
    to make the connections alarm exact."""
    reserved = 256 * 1024**2 + 0.025 * memory_gib * GIB
    return math.floor((memory_gib * GIB - reserved) / MYSQL_BYTES_PER_CONNECTION)


# --- thresholds, each with its reason -----------------------------------------------------------

MIN_REQUESTS_FOR_ERROR_RATE = 10
"""Requests per minute below which the 5xx rate reads as 0: two errors among three requests
say little, and a site that is down is the outside-in check's job."""
ERROR_RATE_PERCENT = 1.0
LATENCY_SECONDS = 0.5
NODE_5XX_PER_MINUTE = 10
CPU_PERCENT = 80.0
MEMORY_USED_PERCENT = 90.0
DISK_USED_PERCENT = 85.0
DB_FREE_STORAGE_FRACTION = 0.20
DB_FREEABLE_MEMORY_FRACTION = 0.05
DB_CONNECTIONS_FRACTION = 0.80
REPLICA_LAG_SECONDS = 30.0


class Catalogue:
    """The metrics and alarms of one stack. Build it with `catalogue(shape)`."""

    def __init__(self, shape: StackShape) -> None:
        self.shape = shape
        self.alarms: tuple[AlarmSpec, ...] = tuple(self._alarms())
        keys = [a.key for a in self.alarms]
        if len(set(keys)) != len(keys):  # pragma: no cover - a catalogue bug, not user input
            raise AssertionError(f"alarm keys repeat: {sorted(keys)}")

    # --- metrics -------------------------------------------------------------------------------

    def _agent(
        self,
        name: str,
        dimensions: dict[str, DimensionValue],
        source: Source,
        *,
        label: str,
        host: str,
        unit: str | None = None,
    ) -> Metric:
        return Metric(
            namespace=self.shape.namespace,
            name=name,
            dimensions=tuple(dimensions.items()),
            source=source,
            label=label,
            host=host,
            unit=unit,
        )

    def lb_requests(self) -> Metric:
        """Requests HAProxy's public frontend received (a counter; the agent sends deltas)."""
        return self._agent(
            "haproxy_frontend_http_requests_total",
            {"proxy": FRONTEND},
            Source.HAPROXY,
            label="requests (load balancer)",
            host=LOAD_BALANCER,
            unit="Count",
        )

    def lb_5xx(self) -> Metric:
        """5xx answers to clients, HAProxy's own 503s (no server left) included."""
        return self._agent(
            "haproxy_frontend_http_responses_total",
            {"proxy": FRONTEND, "code": "5xx"},
            Source.HAPROXY,
            label="5xx to clients",
            host=LOAD_BALANCER,
            unit="Count",
        )

    def lb_active_servers(self) -> Metric:
        """Web nodes HAProxy currently sends traffic to (UP in its health checks)."""
        return self._agent(
            "haproxy_backend_active_servers",
            {"proxy": BACKEND},
            Source.HAPROXY,
            label="healthy web nodes",
            host=LOAD_BALANCER,
            unit="Count",
        )

    def lb_total_time(self) -> Metric:
        """HAProxy's average total request time over the backend's last 1024 requests."""
        return self._agent(
            "haproxy_backend_total_time_average_seconds",
            {"proxy": BACKEND},
            Source.HAPROXY,
            label="request time (avg of last 1024)",
            host=LOAD_BALANCER,
            unit="Seconds",
        )

    def node_5xx(self, node: str) -> Metric:
        """5xx answered by (or on behalf of) one web node, as HAProxy counted them; includes
        502s that HAProxy then retried on another node, which clients never saw."""
        return self._agent(
            "haproxy_server_http_responses_total",
            {"proxy": BACKEND, "server": node, "code": "5xx"},
            Source.HAPROXY,
            label=f"{node} 5xx",
            host=LOAD_BALANCER,
            unit="Count",
        )

    def node_requests(self, node: str) -> Metric:
        """Requests Nginx accepted on one node, HAProxy's health checks (1/s) included."""
        return self._agent(
            "nginx_http_requests_total",
            {"Node": node},
            Source.NGINX,
            label=f"{node} (Nginx)",
            host=node,
            unit="Count",
        )

    def memory(self, host: str) -> Metric:
        return self._agent(
            "mem_used_percent",
            {"Node": host},
            Source.HOST,
            label=f"{host} memory",
            host=host,
            unit="Percent",
        )

    def disk(self, host: str) -> Metric:
        return self._agent(
            "disk_used_percent",
            {"Node": host, "path": "/", "fstype": ROOT_FILESYSTEM_TYPE},
            Source.HOST,
            label=f"{host} disk /",
            host=host,
            unit="Percent",
        )

    def ec2(self, name: str, host: str) -> Metric:
        """A metric EC2 publishes for `host`'s instance (free, every 5 minutes; status checks
        every minute)."""
        dimensions = (("InstanceId", instance_ref(host)),)
        return Metric("AWS/EC2", name, dimensions, Source.AWS, f"{host} {name}")

    def rds(self, name: str, identifier: str) -> Metric:
        """A metric RDS publishes for one DB instance (free, every minute)."""
        dimensions: tuple[tuple[str, DimensionValue], ...] = (("DBInstanceIdentifier", identifier),)
        return Metric("AWS/RDS", name, dimensions, Source.AWS, identifier)

    def health_check_status(self) -> Metric:
        return Metric(
            "AWS/Route53",
            "HealthCheckStatus",
            (("HealthCheckId", HEALTH_CHECK),),
            Source.AWS,
            "site healthy (Route 53 checkers)",
            region=HEALTH_CHECK_REGION,
        )

    def error_rate(self) -> Expression:
        return Expression(
            expression=(
                f"IF(requests >= {MIN_REQUESTS_FOR_ERROR_RATE}, 100 * errors / requests, 0)"
            ),
            label="5xx % of requests",
            inputs=(
                MetricInput("errors", self.lb_5xx(), "Sum"),
                MetricInput("requests", self.lb_requests(), "Sum"),
            ),
        )

    def agent_metrics(self, host: str) -> list[Metric]:
        """What the agent on `host` publishes: the metrics its config is built from."""
        found: dict[tuple[str, tuple[tuple[str, DimensionValue], ...]], Metric] = {}
        for metric in self._all_metrics():
            if metric.host == host and metric.source is not Source.AWS:
                found.setdefault((metric.name, metric.dimensions), metric)
        return list(found.values())

    def _all_metrics(self) -> Iterator[Metric]:
        for alarm in self.alarms:
            yield from alarm.metrics
        for widget in self._widgets():
            for line in widget.lines:
                yield from (line.metrics if isinstance(line, Expression) else (line,))

    # --- alarms --------------------------------------------------------------------------------

    def _alarms(self) -> Iterator[AlarmSpec]:
        yield from self._outside_in_alarms()
        yield from self._load_balancer_alarms()
        for node in self.shape.web_nodes:
            yield self._node_5xx_alarm(node)
        for host in self.shape.hosts:
            yield from self._host_alarms(host)
        yield from self._database_alarms()

    def _outside_in_alarms(self) -> Iterator[AlarmSpec]:
        yield AlarmSpec(
            key="site-health-check",
            tier="outside-in",
            severity="critical",
            summary="The site's health path fails from the internet (Route 53 health checkers).",
            why=(
                "The one signal that sees what users see: DNS, the Elastic IP, the load "
                "balancer and a web node answering together. Checkers probe every 30 s and need "
                "3 failures; 2 unhealthy minutes rule out a checker's network blip. No data "
                "means the check itself is gone, which is as bad."
            ),
            signal=self.health_check_status(),
            statistic="Minimum",
            period=60,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison="LessThanThreshold",
            threshold=1,
            treat_missing_data="breaching",
        )

    def _load_balancer_alarms(self) -> Iterator[AlarmSpec]:
        count = len(self.shape.web_nodes)
        yield AlarmSpec(
            key="lb-healthy-nodes-below-count",
            tier="load-balancer",
            severity="warning",
            summary=f"HAProxy sends traffic to fewer than all {count} web nodes.",
            why=(
                f"webNodeCount is {count}. HAProxy takes a node out after 2 failed checks 1 s "
                "apart and back after 2 good ones, so 3 minutes below the count is longer than a "
                "restart: a node is broken. The others still serve, hence a warning. No data "
                "means HAProxy or the agent on the load balancer stopped reporting."
            ),
            signal=self.lb_active_servers(),
            statistic="Minimum",
            period=60,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison="LessThanThreshold",
            threshold=count,
            treat_missing_data="missing",
            notify_when_no_data=True,
        )
        yield AlarmSpec(
            key="lb-no-healthy-nodes",
            tier="load-balancer",
            severity="critical",
            summary="HAProxy has no healthy web node: every request gets a 503.",
            why=(
                "Zero nodes in rotation is a full outage; one minute is enough to page. Missing "
                "data does not fire it: a dead load balancer is the outside-in check's page."
            ),
            signal=self.lb_active_servers(),
            statistic="Minimum",
            period=60,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison="LessThanThreshold",
            threshold=1,
            treat_missing_data="notBreaching",
        )
        yield AlarmSpec(
            key="lb-5xx-rate",
            tier="load-balancer",
            severity="critical",
            summary="More than 1 % of requests get a 5xx from the load balancer.",
            why=(
                "Retries and redispatch hide a dying node (0 failed requests in the failover "
                "benchmark), so a steady 5xx share means the app or the database fails for users."
                f" 3 of 5 minutes above {ERROR_RATE_PERCENT:g} % rules out a burst; below "
                f"{MIN_REQUESTS_FOR_ERROR_RATE} requests a minute the rate reads 0."
            ),
            signal=self.error_rate(),
            statistic="Sum",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison="GreaterThanThreshold",
            threshold=ERROR_RATE_PERCENT,
            treat_missing_data="notBreaching",
        )
        yield AlarmSpec(
            key="lb-latency-p95",
            tier="load-balancer",
            severity="warning",
            summary="Requests are slow: HAProxy's request time stays above 0.5 s.",
            why=(
                "A request takes about 10 ms end to end when healthy (benchmark p50 8 ms); "
                f"{LATENCY_SECONDS:g} s is 50 times that and noticeable to people. HAProxy's "
                "exporter has no histogram, so this is the 95th percentile, over 5 minutes, of "
                "its rolling average of the last 1024 requests, sampled every 30 s: sustained "
                "slowness, not a single slow request. Two 5-minute periods in a row."
            ),
            signal=self.lb_total_time(),
            statistic="p95",
            period=300,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison="GreaterThanThreshold",
            threshold=LATENCY_SECONDS,
            treat_missing_data="notBreaching",
        )

    def _node_5xx_alarm(self, node: str) -> AlarmSpec:
        return AlarmSpec(
            key=f"{node}-5xx",
            tier="web",
            severity="warning",
            summary=f"{node} keeps answering 5xx (Nginx or the app).",
            why=(
                f"At least {NODE_5XX_PER_MINUTE} 5xx a minute in 3 of 5 minutes from one node is "
                "a sick node (app down behind Nginx: 502; database unreachable from it: 503), "
                "even while HAProxy's retries hide the 502s from clients."
            ),
            signal=self.node_5xx(node),
            statistic="Sum",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=3,
            comparison="GreaterThanOrEqualToThreshold",
            threshold=NODE_5XX_PER_MINUTE,
            treat_missing_data="notBreaching",
        )

    def _host_alarms(self, host: str) -> Iterator[AlarmSpec]:
        tier: Literal["load-balancer", "web"] = "load-balancer" if host == LOAD_BALANCER else "web"
        # The load balancer is the one instance the site cannot do without.
        instance_severity: Severity = "critical" if host == LOAD_BALANCER else "warning"
        yield AlarmSpec(
            key=f"{host}-cpu",
            tier=tier,
            severity="warning",
            summary=f"{host}'s CPU stays above 80 %.",
            why=(
                "Three 5-minute averages (EC2's basic monitoring) above 80 %: the host is "
                "saturated and latency follows; on a t3/t4g it also spends surplus credits."
            ),
            signal=self.ec2("CPUUtilization", host),
            statistic="Average",
            period=300,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison="GreaterThanThreshold",
            threshold=CPU_PERCENT,
            treat_missing_data="missing",
        )
        yield AlarmSpec(
            key=f"{host}-memory",
            tier=tier,
            severity="warning",
            summary=f"{host} has used more than 90 % of its memory for 5 minutes.",
            why=(
                "Used memory excludes the page cache, so 90 % is real pressure: next comes the "
                "OOM killer (gunicorn or HAProxy)."
            ),
            signal=self.memory(host),
            statistic="Average",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            comparison="GreaterThanThreshold",
            threshold=MEMORY_USED_PERCENT,
            treat_missing_data="missing",
        )
        yield AlarmSpec(
            key=f"{host}-disk",
            tier=tier,
            severity="warning",
            summary=f"{host}'s root file system is more than 85 % full.",
            why=(
                "Logs grow on the 16 GiB root volume; 85 % leaves about 2.4 GiB, hours to days "
                "to act before Nginx, HAProxy and apt fail to write."
            ),
            signal=self.disk(host),
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            datapoints_to_alarm=1,
            comparison="GreaterThanThreshold",
            threshold=DISK_USED_PERCENT,
            treat_missing_data="missing",
        )
        yield AlarmSpec(
            key=f"{host}-instance-check",
            tier=tier,
            severity=instance_severity,
            summary=f"{host}'s instance status check fails (its OS does not answer).",
            why=(
                "3 failing minutes: the guest is hung, out of memory or misconfigured; AWS cannot "
                "fix that by moving it. A reboot or a replacement is a person's call."
            ),
            signal=self.ec2("StatusCheckFailed_Instance", host),
            statistic="Maximum",
            period=60,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="missing",
        )
        yield AlarmSpec(
            key=f"{host}-system-check-recover",
            tier=tier,
            severity="warning",
            summary=f"{host}'s host hardware failed; EC2 is recovering the instance.",
            why=(
                "A failing system status check is AWS's hardware or network; 2 minutes of it "
                "trigger EC2's recover action, which moves the instance to healthy hardware with "
                "its id, private IP and Elastic IP. The notification is for the record."
            ),
            signal=self.ec2("StatusCheckFailed_System", host),
            statistic="Maximum",
            period=60,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison="GreaterThanOrEqualToThreshold",
            threshold=1,
            treat_missing_data="missing",
            recover_instance=host,
        )

    def _database_alarms(self) -> Iterator[AlarmSpec]:
        shape = self.shape
        memory_bytes = shape.memory_gib * GIB
        max_connections = estimated_max_connections(shape.memory_gib)
        for role, identifier in (("primary", shape.db_primary), ("replica", shape.db_replica)):
            yield AlarmSpec(
                key=f"db-{role}-cpu",
                tier="database",
                severity="warning",
                summary=f"The database {role}'s CPU stays above 80 %.",
                why="15 minutes above 80 %: queries queue and every request slows down.",
                signal=self.rds("CPUUtilization", identifier),
                statistic="Average",
                period=300,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                comparison="GreaterThanThreshold",
                threshold=CPU_PERCENT,
                treat_missing_data="missing",
            )
            free_gib = shape.db_allocated_storage_gb * DB_FREE_STORAGE_FRACTION
            yield AlarmSpec(
                key=f"db-{role}-free-storage",
                tier="database",
                severity="warning",
                summary=f"The database {role} has less than 20 % of its storage free.",
                why=(
                    f"{free_gib:g} GiB of {shape.db_allocated_storage_gb} GiB left: time to grow "
                    "dbAllocatedStorageGb before MySQL stops taking writes (a full replica also "
                    "stops replicating). Storage fills slowly, so one 5-minute minimum is enough."
                ),
                signal=self.rds("FreeStorageSpace", identifier),
                statistic="Minimum",
                period=300,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                comparison="LessThanThreshold",
                threshold=shape.db_allocated_storage_gb * DB_FREE_STORAGE_FRACTION * GIB,
                treat_missing_data="missing",
            )
            yield AlarmSpec(
                key=f"db-{role}-freeable-memory",
                tier="database",
                severity="warning",
                summary=f"The database {role} is short of memory (under 5 % freeable).",
                why=(
                    f"{shape.db_instance_class} has {shape.memory_gib:g} GiB; InnoDB takes most "
                    "of it by design, but under 5 % freeable for 15 minutes the instance swaps "
                    "and MySQL risks being restarted."
                ),
                signal=self.rds("FreeableMemory", identifier),
                statistic="Average",
                period=300,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                comparison="LessThanThreshold",
                threshold=math.floor(memory_bytes * DB_FREEABLE_MEMORY_FRACTION),
                treat_missing_data="missing",
            )
            yield AlarmSpec(
                key=f"db-{role}-connections",
                tier="database",
                severity="warning",
                summary=f"The database {role} nears its connection limit.",
                why=(
                    f"{shape.db_instance_class} allows about {max_connections} connections "
                    "(MySQL's default, DBInstanceClassMemory/12582880); past 80 % of it for 5 "
                    "minutes, new connections from the web tier will soon be refused."
                ),
                signal=self.rds("DatabaseConnections", identifier),
                statistic="Maximum",
                period=60,
                evaluation_periods=5,
                datapoints_to_alarm=5,
                comparison="GreaterThanThreshold",
                threshold=math.floor(max_connections * DB_CONNECTIONS_FRACTION),
                treat_missing_data="missing",
            )
        yield AlarmSpec(
            key="db-replica-lag",
            tier="database",
            severity="warning",
            summary="The read replica lags the primary by more than 30 s.",
            why=(
                "The app reads from the replica, so readers see data 30 s old (the lab's lag is a "
                "few ms). 5 minutes in a row rules out a burst of writes. A stopped replication "
                "comes as an RDS event."
            ),
            signal=self.rds("ReplicaLag", shape.db_replica),
            statistic="Maximum",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            comparison="GreaterThanThreshold",
            threshold=REPLICA_LAG_SECONDS,
            treat_missing_data="missing",
        )

    def alarm(self, key: str) -> AlarmSpec:
        for alarm in self.alarms:
            if alarm.key == key:
                return alarm
        raise KeyError(f"no alarm {key!r}; known: {', '.join(a.key for a in self.alarms)}")

    # --- dashboard -----------------------------------------------------------------------------

    def _widgets(self) -> list[_Widget]:
        shape = self.shape
        nodes = shape.web_nodes
        dbs = (shape.db_primary, shape.db_replica)
        return [
            _Widget(
                "Traffic: requests per minute",
                [self.lb_requests(), *(self.node_requests(n) for n in nodes)],
                "Sum",
                60,
            ),
            _Widget(
                "Errors: 5xx share to clients, 5xx per node",
                [self.error_rate(), *(self.node_5xx(n) for n in nodes)],
                "Sum",
                60,
                thresholds=[self.alarm("lb-5xx-rate")],
            ),
            _Widget(
                "Latency: HAProxy request time (s)",
                [self.lb_total_time()],
                "p95",
                300,
                thresholds=[self.alarm("lb-latency-p95")],
            ),
            _Widget(
                "Healthy web nodes (HAProxy)",
                [self.lb_active_servers()],
                "Minimum",
                60,
                thresholds=[self.alarm("lb-healthy-nodes-below-count")],
                y_min=0,
            ),
            _Widget(
                "Outside-in: site healthy (1) or not (0)",
                [self.health_check_status()],
                "Minimum",
                60,
                thresholds=[self.alarm("site-health-check")],
                y_min=0,
            ),
            _Widget(
                "Hosts: memory and disk used %",
                [
                    *(self.memory(h) for h in shape.hosts),
                    *(self.disk(h) for h in shape.hosts),
                ],
                "Maximum",
                300,
                thresholds=[
                    self.alarm(f"{LOAD_BALANCER}-memory"),
                    self.alarm(f"{LOAD_BALANCER}-disk"),
                ],
                y_min=0,
            ),
            _Widget(
                "Database CPU %",
                [self.rds("CPUUtilization", d) for d in dbs],
                "Average",
                300,
                thresholds=[self.alarm("db-primary-cpu")],
                y_min=0,
            ),
            _Widget(
                "Database connections",
                [self.rds("DatabaseConnections", d) for d in dbs],
                "Maximum",
                60,
                thresholds=[self.alarm("db-primary-connections")],
                y_min=0,
            ),
            _Widget(
                "Replica lag (s)",
                [self.rds("ReplicaLag", shape.db_replica)],
                "Maximum",
                60,
                thresholds=[self.alarm("db-replica-lag")],
                y_min=0,
            ),
            _Widget(
                "Database free storage (bytes)",
                [self.rds("FreeStorageSpace", d) for d in dbs],
                "Minimum",
                300,
                thresholds=[self.alarm("db-primary-free-storage")],
                y_min=0,
            ),
            _Widget(
                "Database freeable memory (bytes)",
                [self.rds("FreeableMemory", d) for d in dbs],
                "Average",
                300,
                thresholds=[self.alarm("db-primary-freeable-memory")],
                y_min=0,
            ),
        ]

    def refs(self) -> set[Ref]:
        """Every value AWS assigns that the alarms or the dashboard need."""
        found: set[Ref] = set()
        for metric in self._all_metrics():
            found |= metric.refs()
        return found

    def dashboard_refs(self) -> set[Ref]:
        """The values AWS assigns that the dashboard needs (the health check's id)."""
        found: set[Ref] = set()
        for widget in self._widgets():
            for line in widget.lines:
                for metric in line.metrics if isinstance(line, Expression) else (line,):
                    found |= metric.refs()
        return found

    def dashboard_body(self, refs: Mapping[Ref, str]) -> dict[str, Any]:
        """The dashboard as data: one screen, three widgets a row, 5 units high."""
        widgets = []
        for index, widget in enumerate(self._widgets()):
            x = (index % 3) * 8
            y = (index // 3) * 5
            widgets.append(widget.render(x, y, self.shape.region, refs))
        return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


@dataclass(frozen=True)
class _Widget:
    title: str
    lines: list[Metric | Expression]
    statistic: str
    period: int
    thresholds: list[AlarmSpec] | None = None
    y_min: float | None = None

    def render(self, x: int, y: int, stack_region: str, refs: Mapping[Ref, str]) -> dict[str, Any]:
        metrics: list[list[Any]] = []
        region = next((line.region for line in self.lines if line.region is not None), stack_region)
        for number, line in enumerate(self.lines):
            if isinstance(line, Expression):
                metrics.append(
                    [{"expression": line.expression, "label": line.label, "id": f"e{number}"}]
                )
                for source in line.inputs:
                    metrics.append(
                        _metric_row(
                            source.metric,
                            refs,
                            {"id": source.id, "stat": source.statistic, "visible": False},
                        )
                    )
            else:
                metrics.append(_metric_row(line, refs, {"label": line.label}))
        properties: dict[str, Any] = {
            "title": self.title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "stat": self.statistic,
            "period": self.period,
            "metrics": metrics,
        }
        if self.thresholds:
            properties["annotations"] = {
                "horizontal": [
                    {"label": f"{a.key} ({a.severity})", "value": a.threshold}
                    for a in self.thresholds
                ]
            }
        if self.y_min is not None:
            properties["yAxis"] = {"left": {"min": self.y_min}}
        return {"type": "metric", "x": x, "y": y, "width": 8, "height": 5, "properties": properties}


def _metric_row(metric: Metric, refs: Mapping[Ref, str], options: dict[str, Any]) -> list[Any]:
    row: list[Any] = [metric.namespace, metric.name]
    for key, value in metric.resolved_dimensions(refs).items():
        row += [key, value]
    return [*row, options]


def catalogue(shape: StackShape) -> Catalogue:
    return Catalogue(shape)
