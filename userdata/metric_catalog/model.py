"""The catalogue's vocabulary: what a metric, an alarm, a log source and a stack shape are,
plus the names and sizes every reader derives from a stack (namespace, dashboard, RDS memory).

The records themselves are in `table/`; `expand.py` turns them into the metrics and alarms of
one stack. Pure (no Pulumi, no AWS calls, no imports from this project).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

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

DATABASE = "database"
"""The database hosts' role (`dbMode: ec2`: database-1, database-2), as their `Role` tag."""
DATA_VOLUME_MOUNT = "/srv/database"
"""Where a database host mounts its data volume (MariaDB's datadir and binary logs)."""
DATA_VOLUME_FILESYSTEM_TYPE = "ext4"
"""What `database_node.py install` formats a blank data volume with."""

GIB = 1024**3
MYSQL_BYTES_PER_CONNECTION = 12_582_880
"""RDS for MySQL's default `max_connections` is `{DBInstanceClassMemory/12582880}`."""


class Source(Enum):
    """Who publishes a metric. Agent sources are built into the agent config of their host."""

    HAPROXY = "HAProxy's Prometheus exporter, scraped by the CloudWatch agent"
    NGINX = "prometheus-nginx-exporter (Nginx stub_status), scraped by the CloudWatch agent"
    HOST = "the CloudWatch agent's mem and disk inputs"
    ELASTIC_ADDRESS = "the load balancers' elastic_address.py (its hold service), in the pair"
    DATABASE_NODE = "the replica's database_node.py replication-report (a timer, every minute)"
    AWS = "AWS itself"

    @property
    def prometheus(self) -> bool:
        return self in (Source.HAPROXY, Source.NGINX)

    @property
    def agent(self) -> bool:
        """Published by the CloudWatch agent, so built into its config."""
        return self in (Source.HAPROXY, Source.NGINX, Source.HOST)


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
Tier = Literal["outside-in", "load-balancer", "web", "database"]
TIERS: tuple[Tier, ...] = get_args(Tier)
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
    tier: Tier
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
    db_on_rds: bool = True
    """False with `dbMode: ec2`: the database is no RDS instance, so RDS's metrics, alarms
    and widgets (records repeated `per` `db` or `rds`) are left out, and nothing is sized by
    `db_instance_class`."""
    load_balancers: tuple[str, ...] = ()
    """The load balancers' host names (`load-balancer-1`, `load-balancer-2`) when a pair shares
    the Elastic IP: the pair's records (`Per` `pair`, `load_balancer`) follow them. Empty, or
    one name, for a single load balancer."""
    database_hosts: tuple[str, ...] = ()
    """The hosts that run MariaDB on a data volume of their own, the primary then the replica
    (`dbMode: ec2`: database-1, database-2); empty with RDS. Their records (`Per` `db_host`,
    `replica_host`) follow them: the data volume's disk on each, replication on the second.
    Each is also watched as a host (`hosts`) unless it is one already (a web node)."""

    def __post_init__(self) -> None:
        if not self.web_nodes:
            raise ValueError("StackShape.web_nodes is empty: a stack has at least one web node")
        if len(set(self.web_nodes)) != len(self.web_nodes):
            raise ValueError(f"StackShape.web_nodes repeats a name: {list(self.web_nodes)}")
        if self.db_allocated_storage_gb <= 0:
            raise ValueError("StackShape.db_allocated_storage_gb must be a positive number of GiB")
        if len(self.load_balancers) > 2 or len(set(self.load_balancers)) != len(
            self.load_balancers
        ):
            raise ValueError(
                f"StackShape.load_balancers: one load balancer or a pair of two names, not "
                f"{list(self.load_balancers)}"
            )
        if self.database_hosts and (
            len(self.database_hosts) != 2 or len(set(self.database_hosts)) != 2
        ):
            raise ValueError(
                f"StackShape.database_hosts: a primary and a replica, two names, not "
                f"{list(self.database_hosts)}"
            )
        if self.database_hosts and self.db_on_rds:
            raise ValueError("StackShape.database_hosts: the database is on RDS (db_on_rds)")

    @property
    def pair(self) -> tuple[str, ...]:
        """The pair's two host names; empty with a single load balancer."""
        return self.load_balancers if len(self.load_balancers) == 2 else ()

    @property
    def namespace(self) -> str:
        return self.metrics_namespace or default_namespace(self.name_prefix)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every EC2 host: the load balancer first (each of a pair: `load-balancer-1`,
        `load-balancer-2`; a single one is `load-balancer`), then the web nodes in order, then
        the database hosts that are no web node."""
        others = (h for h in self.database_hosts if h not in self.web_nodes)
        return (*(self.pair or (LOAD_BALANCER,)), *self.web_nodes, *others)

    @property
    def replica_host(self) -> str | None:
        """The host that runs the replica, if the stack runs its own database."""
        return self.database_hosts[1] if self.database_hosts else None

    @property
    def memory_gib(self) -> float:
        if self.db_memory_gib is not None:
            return self.db_memory_gib
        if not self.db_on_rds:
            return 0.0  # no RDS class to size; only RDS's records use it
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


def role_of(host: str) -> str:
    """`load-balancer` for the load balancer (and each of a pair, `load-balancer-1`, ...),
    `database` for database-1 and database-2, `web` for web-1, web-2, ..."""
    if host == LOAD_BALANCER or re.fullmatch(rf"{LOAD_BALANCER}-\d+", host):
        return LOAD_BALANCER
    if re.fullmatch(rf"{DATABASE}-\d+", host):
        return DATABASE
    return WEB


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


# --- the table's records: one metric, alarm or widget, written once for every stack ------------

Per = Literal[
    "stack", "node", "host", "db", "rds", "pair", "load_balancer", "db_host", "replica_host"
]
"""What a record is repeated for: once, each web node (`{node}`), each host (`{host}`, with
`{host_role}`), each DB instance (`{db}`, with `{role}`: primary, replica), once if the load
balancers are a pair (`pair`; never for a single one) or each load balancer of the pair (`{lb}`;
none for a single one), each host that runs the stack's own MariaDB (`db_host`: `{db_host}`,
also as `{host}`, with `{role}`) or only the one that runs the replica (`replica_host`); none
of these two with RDS. Templates may also use the stack's own values
(`expand.stack_values`)."""


@dataclass(frozen=True)
class MetricRecord:
    """A metric as the table writes it: dimension values and labels are `str.format` templates;
    a value `@<key>` is a `Ref` (e.g. `@instance:{host}`)."""

    key: str
    source: Source
    name: str
    dimensions: tuple[tuple[str, str], ...]
    label: str
    namespace: str | None = None
    """None: the stack's own namespace (what the agents publish to)."""
    host: str | None = None
    """Template of the host whose agent publishes it (agent sources only)."""
    unit: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class ExpressionRecord:
    """A metric-math expression; `inputs` are (id, metric key, statistic)."""

    key: str
    expression: str
    label: str
    inputs: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class AlarmRecord:
    """An alarm as the table writes it: `key`, `summary`, `why` and `recover_instance` are
    templates; `threshold` is a number or the name of a quantity derived from the stack
    (`expand.stack_quantities`)."""

    key: str
    tier: str
    """A tier, or `{host_role}` for per-host alarms."""
    severity: Severity | Mapping[str, Severity]
    """One severity, or one per host role."""
    summary: str
    why: str | Mapping[str, str]
    """Why this threshold means something: one text, or one per host role (what fills a disk
    or takes the memory differs between them)."""
    signal: str
    """A `MetricRecord` or `ExpressionRecord` key."""
    statistic: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: Comparison
    threshold: float | str
    treat_missing_data: MissingData
    recover_instance: str | None = None
    notify_when_no_data: bool = False


@dataclass(frozen=True)
class AlarmGroup:
    """Alarms repeated together: for each node, host or DB instance, every alarm of the group."""

    per: Per
    alarms: tuple[AlarmRecord, ...]


@dataclass(frozen=True)
class Line:
    """A dashboard line: a metric or expression key, repeated `per`."""

    key: str
    per: Per = "stack"


@dataclass(frozen=True)
class WidgetRecord:
    title: str
    lines: tuple[Line, ...]
    statistic: str
    period: int
    thresholds: tuple[str, ...] = ()
    """Alarm keys whose thresholds the widget draws."""
    y_min: float | None = None
