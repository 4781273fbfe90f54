"""What the tiers' records share: the thresholds more than one tier's alarms use, and the two
ways of writing a metric someone else publishes."""

from __future__ import annotations

from userdata.metric_catalog.model import MetricRecord, Source

CPU_PERCENT = 80.0
"""Every CPU alarm: an EC2 host's and an RDS instance's."""
DB_FREE_STORAGE_FRACTION = 0.20
"""The database's storage left: RDS's free storage and the database hosts' data volume."""
REPLICA_LAG_SECONDS = 30.0
"""The replica's lag, as RDS reports it or as the database hosts' replica does."""


def agent_metric(
    key: str, source: Source, name: str, dimensions: tuple[tuple[str, str], ...], label: str,
    *, host: str, unit: str,
) -> MetricRecord:  # fmt: skip
    """A metric the CloudWatch agent on `host` publishes into the stack's namespace."""
    return MetricRecord(key, source, name, dimensions, label, host=host, unit=unit)


def aws_metric(
    namespace: str, key: str, name: str, dimension: tuple[str, str], label: str
) -> MetricRecord:
    """A metric AWS publishes with one dimension."""
    return MetricRecord(key, Source.AWS, name, (dimension,), label, namespace=namespace)
