"""The catalogue of one stack: the table's records (`table/`) filled in for a `StackShape`.

`catalogue(shape)` gives every alarm as an `AlarmSpec`, the metrics each host's agent must
publish, and the dashboard body. The Monitoring component registers the alarms and the
dashboard, the agent config builders read `agent_metrics`, and `tools.verify` compares a
deployed stack with the same objects, so none of them writes a metric or a threshold twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from userdata.metric_catalog.model import (
    GIB,
    LOAD_BALANCER,
    ROLES,
    TIERS,
    AlarmSpec,
    DimensionValue,
    Expression,
    ExpressionRecord,
    LogSource,
    Metric,
    MetricInput,
    MetricRecord,
    Per,
    Ref,
    StackShape,
    Tier,
    estimated_max_connections,
    role_of,
)
from userdata.metric_catalog.table import (
    ALARMS,
    DB_CONNECTIONS_FRACTION,
    DB_DATA_VOLUME_USED_PERCENT,
    DB_FREE_STORAGE_FRACTION,
    DB_FREEABLE_MEMORY_FRACTION,
    ERROR_RATE_PERCENT,
    EXPRESSIONS,
    LATENCY_SECONDS,
    LOG_SOURCES,
    METRICS,
    MIN_REQUESTS_FOR_ERROR_RATE,
    NODE_5XX_PER_MINUTE,
    WIDGETS,
)

_METRICS = {m.key: m for m in METRICS}
_EXPRESSIONS = {e.key: e for e in EXPRESSIONS}


def stack_values(shape: StackShape) -> dict[str, Any]:
    """What the table's templates may name, besides `{node}`, `{host}`, `{db}` and `{role}`."""
    return {
        "count": len(shape.web_nodes),
        "storage_gb": shape.db_allocated_storage_gb,
        "free_gib": shape.db_allocated_storage_gb * DB_FREE_STORAGE_FRACTION,
        "db_class": shape.db_instance_class,
        "memory_gib": shape.memory_gib,
        "max_connections": estimated_max_connections(shape.memory_gib),
        "replica": shape.db_replica,
        "error_rate_percent": ERROR_RATE_PERCENT,
        "min_requests": MIN_REQUESTS_FOR_ERROR_RATE,
        "latency_seconds": LATENCY_SECONDS,
        "node_5xx_per_minute": NODE_5XX_PER_MINUTE,
    }


def stack_quantities(shape: StackShape) -> dict[str, float]:
    """Thresholds that follow the stack's size, by the name an `AlarmRecord` gives them."""
    return {
        "web_node_count": len(shape.web_nodes),
        "db_free_storage_bytes": shape.db_allocated_storage_gb * DB_FREE_STORAGE_FRACTION * GIB,
        "db_freeable_memory_bytes": math.floor(
            shape.memory_gib * GIB * DB_FREEABLE_MEMORY_FRACTION
        ),
        "db_connections_limit": math.floor(
            estimated_max_connections(shape.memory_gib) * DB_CONNECTIONS_FRACTION
        ),
        "db_data_volume_used_percent": DB_DATA_VOLUME_USED_PERCENT,
    }


def _each(shape: StackShape, per: Per) -> list[dict[str, str]]:
    """The template values for each repetition of a record repeated `per`."""
    dbs = [
        {"role": "primary", "db": shape.db_primary},
        {"role": "replica", "db": shape.db_replica},
    ]
    repeated: dict[str, list[dict[str, str]]] = {
        "node": [{"node": node} for node in shape.web_nodes],
        "host": [{"host": host, "host_role": role_of(host)} for host in shape.hosts],
        "db": dbs if shape.db_on_rds else [],
        "rds": [{}] if shape.db_on_rds else [],
        "pair": [{}] if shape.pair else [],
        "load_balancer": [{"lb": host} for host in shape.pair],
        "db_host": [
            _db_host(host, _DB_ROLES[index]) for index, host in enumerate(shape.database_hosts)
        ],
        "replica_host": [_db_host(shape.replica_host, "replica")] if shape.replica_host else [],
    }
    return repeated.get(per, [{}])


_DB_ROLES = ("primary", "replica")


def _db_host(host: str, role: str) -> dict[str, str]:
    """A host of the stack's own MariaDB: its name fills `{db_host}` and `{host}` (its EC2
    records), its database role `{role}`."""
    return {"db_host": host, "host": host, "host_role": role_of(host), "role": role}


def _by_role(text: str | Mapping[str, str], values: Mapping[str, Any]) -> str:
    """A record's text, or its host role's text, filled in."""
    return (text if isinstance(text, str) else text[values["host_role"]]).format(**values)


def _tier(text: str) -> Tier:
    if text not in TIERS:  # pragma: no cover - a table bug, not user input
        raise AssertionError(f"unknown tier {text!r}; tiers are {', '.join(TIERS)}")
    return text


def _dimension(template: str, values: Mapping[str, Any]) -> DimensionValue:
    text = template.format(**values)
    return Ref(text[1:]) if text.startswith("@") else text


@dataclass(frozen=True)
class Widget:
    """A dashboard widget of one stack."""

    title: str
    lines: tuple[Metric | Expression, ...]
    statistic: str
    period: int
    thresholds: tuple[AlarmSpec, ...]
    y_min: float | None

    @property
    def metrics(self) -> Iterator[Metric]:
        for line in self.lines:
            yield from (line.metrics if isinstance(line, Expression) else (line,))

    def render(self, x: int, y: int, stack_region: str, refs: Mapping[Ref, str]) -> dict[str, Any]:
        metrics: list[list[Any]] = []
        region = next((line.region for line in self.lines if line.region is not None), stack_region)
        for number, line in enumerate(self.lines):
            if isinstance(line, Expression):
                metrics.append(
                    [{"expression": line.expression, "label": line.label, "id": f"e{number}"}]
                )
                for source in line.inputs:
                    options = {"id": source.id, "stat": source.statistic, "visible": False}
                    metrics.append(_metric_row(source.metric, refs, options))
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


class Catalogue:
    """The metrics, alarms and dashboard of one stack. Build it with `catalogue(shape)`."""

    def __init__(self, shape: StackShape) -> None:
        self.shape = shape
        self._values = stack_values(shape)
        self._quantities = stack_quantities(shape)
        self.alarms: tuple[AlarmSpec, ...] = tuple(self._alarms())
        keys = [a.key for a in self.alarms]
        if len(set(keys)) != len(keys):  # pragma: no cover - a table bug, not user input
            raise AssertionError(f"alarm keys repeat: {sorted(keys)}")
        self.widgets: tuple[Widget, ...] = tuple(self._widgets())

    def metric(self, key: str, **values: str) -> Metric:
        """The table's metric `key` for this stack, e.g. `metric("node-5xx", node="web-1")`."""
        record: MetricRecord = _METRICS[key]
        values = {**self._values, **values}
        return Metric(
            namespace=record.namespace or self.shape.namespace,
            name=record.name,
            dimensions=tuple((k, _dimension(v, values)) for k, v in record.dimensions),
            source=record.source,
            label=record.label.format(**values),
            host=record.host.format(**values) if record.host else None,
            unit=record.unit,
            region=record.region,
        )

    def _signal(self, key: str, values: Mapping[str, str]) -> Metric | Expression:
        if key in _METRICS:
            return self.metric(key, **values)
        record: ExpressionRecord = _EXPRESSIONS[key]
        return Expression(
            expression=record.expression.format(**self._values),
            label=record.label,
            inputs=tuple(
                MetricInput(id, self.metric(metric, **values), statistic)
                for id, metric, statistic in record.inputs
            ),
        )

    def _alarms(self) -> Iterator[AlarmSpec]:
        for group in ALARMS:
            for each in _each(self.shape, group.per):
                values = {**self._values, **each}
                for record in group.alarms:
                    severity = record.severity
                    if not isinstance(severity, str):
                        severity = severity[each["host_role"]]
                    threshold = record.threshold
                    if isinstance(threshold, str):
                        threshold = self._quantities[threshold]
                    yield AlarmSpec(
                        key=record.key.format(**values),
                        tier=_tier(record.tier.format(**values)),
                        severity=severity,
                        summary=record.summary.format(**values),
                        why=_by_role(record.why, values),
                        signal=self._signal(record.signal, each),
                        statistic=record.statistic,
                        period=record.period,
                        evaluation_periods=record.evaluation_periods,
                        datapoints_to_alarm=record.datapoints_to_alarm,
                        comparison=record.comparison,
                        threshold=threshold,
                        treat_missing_data=record.treat_missing_data,
                        recover_instance=(
                            record.recover_instance.format(**values)
                            if record.recover_instance
                            else None
                        ),
                        notify_when_no_data=record.notify_when_no_data,
                    )

    def _widgets(self) -> Iterator[Widget]:
        for record in WIDGETS:
            lines = tuple(
                self._signal(line.key, each)
                for line in record.lines
                for each in _each(self.shape, line.per)
            )
            if not lines:  # the pair's widget with one load balancer, RDS's with database hosts
                continue
            yield Widget(
                title=record.title,
                lines=lines,
                statistic=record.statistic,
                period=record.period,
                thresholds=tuple(
                    # `{host}`, `{db_host}`: the first one's (every one's are the same).
                    self.alarm(
                        key.format(
                            host=self.shape.hosts[0],
                            db_host=next(iter(self.shape.database_hosts), ""),
                            replica_host=self.shape.replica_host or "",
                        )
                    )
                    for key in record.thresholds
                ),
                y_min=record.y_min,
            )

    def alarm(self, key: str) -> AlarmSpec:
        for alarm in self.alarms:
            if alarm.key == key:
                return alarm
        raise KeyError(f"no alarm {key!r}; known: {', '.join(a.key for a in self.alarms)}")

    def _all_metrics(self) -> Iterator[Metric]:
        for alarm in self.alarms:
            yield from alarm.metrics
        for widget in self.widgets:
            yield from widget.metrics

    def agent_metrics(self, host: str) -> list[Metric]:
        """What the agent on `host` publishes: the metrics its config is built from. Each of a
        pair publishes its own host's series (`Node` = its name) and the load balancer's
        (`load-balancer`: HAProxy's, which the alarms read for both together)."""
        publishers = {host}
        if role_of(host) == LOAD_BALANCER:
            publishers.add(LOAD_BALANCER)
        found: dict[tuple[str, tuple[tuple[str, DimensionValue], ...]], Metric] = {}
        for metric in self._all_metrics():
            if metric.host in publishers and metric.source.agent:
                found.setdefault((metric.name, metric.dimensions), metric)
        return list(found.values())

    def refs(self) -> set[Ref]:
        """Every value AWS assigns that the alarms or the dashboard need."""
        return {ref for metric in self._all_metrics() for ref in metric.refs()}

    def dashboard_refs(self) -> set[Ref]:
        """The values AWS assigns that the dashboard needs (the health check's id)."""
        return {
            ref for widget in self.widgets for metric in widget.metrics for ref in metric.refs()
        }

    def dashboard_body(self, refs: Mapping[Ref, str]) -> dict[str, Any]:
        """The dashboard as data: one screen, three widgets a row, 5 units high."""
        widgets = [
            widget.render((index % 3) * 8, (index // 3) * 5, self.shape.region, refs)
            for index, widget in enumerate(self.widgets)
        ]
        return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


def catalogue(shape: StackShape) -> Catalogue:
    return Catalogue(shape)


def log_sources(role: str) -> tuple[LogSource, ...]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return tuple(s for s in LOG_SOURCES if s.role == role)


def metrics_log_source(role: str) -> LogSource:
    (source,) = [s for s in log_sources(role) if s.metrics_transport]
    return source
