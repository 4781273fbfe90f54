"""The RDS database's records (the default `dbMode`): what RDS publishes for each DB instance
(CPU, storage, memory, connections, the replica's lag) and the events it sends to the topic."""

from __future__ import annotations

from userdata.metric_catalog.model import AlarmGroup, AlarmRecord, Line, WidgetRecord
from userdata.metric_catalog.table.shared import (
    CPU_PERCENT,
    REPLICA_LAG_SECONDS,
    aws_metric,
)

DB_FREEABLE_MEMORY_FRACTION = 0.05
DB_CONNECTIONS_FRACTION = 0.80

_DB = ("DBInstanceIdentifier", "{db}")


METRICS = (
    # RDS publishes these for each DB instance (free, every minute).
    aws_metric("AWS/RDS", "rds-cpu", "CPUUtilization", _DB, "{db}"),
    aws_metric("AWS/RDS", "rds-free-storage", "FreeStorageSpace", _DB, "{db}"),
    aws_metric("AWS/RDS", "rds-freeable-memory", "FreeableMemory", _DB, "{db}"),
    aws_metric("AWS/RDS", "rds-connections", "DatabaseConnections", _DB, "{db}"),
    aws_metric("AWS/RDS", "rds-replica-lag", "ReplicaLag", ("DBInstanceIdentifier", "{replica}"),
               "{replica}"),
)  # fmt: skip


ALARMS = (
    AlarmGroup("db", (
        AlarmRecord(
            key="db-{role}-cpu",
            tier="database",
            severity="warning",
            summary="The database {role}'s CPU stays above 80 %.",
            why="15 minutes above 80 %: queries queue and every request slows down.",
            signal="rds-cpu", statistic="Average", period=300,
            evaluation_periods=3, datapoints_to_alarm=3,
            comparison="GreaterThanThreshold", threshold=CPU_PERCENT,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="db-{role}-free-storage",
            tier="database",
            severity="warning",
            summary="The database {role} has less than 20 % of its storage free.",
            why=(
                "{free_gib:g} GiB of {storage_gb} GiB left: time to grow "
                "dbAllocatedStorageGb before MySQL stops taking writes (a full replica also "
                "stops replicating). Storage fills slowly, so one 5-minute minimum is enough."
            ),
            signal="rds-free-storage", statistic="Minimum", period=300,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison="LessThanThreshold", threshold="db_free_storage_bytes",
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="db-{role}-freeable-memory",
            tier="database",
            severity="warning",
            summary="The database {role} is short of memory (under 5 % freeable).",
            why=(
                "{db_class} has {memory_gib:g} GiB; InnoDB takes most "
                "of it by design, but under 5 % freeable for 15 minutes the instance swaps "
                "and MySQL risks being restarted."
            ),
            signal="rds-freeable-memory", statistic="Average", period=300,
            evaluation_periods=3, datapoints_to_alarm=3,
            comparison="LessThanThreshold", threshold="db_freeable_memory_bytes",
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="db-{role}-connections",
            tier="database",
            severity="warning",
            summary="The database {role} nears its connection limit.",
            why=(
                "{db_class} allows about {max_connections} connections "
                "(MySQL's default, DBInstanceClassMemory/12582880); past 80 % of it for 5 "
                "minutes, new connections from the web tier will soon be refused."
            ),
            signal="rds-connections", statistic="Maximum", period=60,
            evaluation_periods=5, datapoints_to_alarm=5,
            comparison="GreaterThanThreshold", threshold="db_connections_limit",
            treat_missing_data="missing",
        ),
    )),
    AlarmGroup("rds", (
        AlarmRecord(
            key="db-replica-lag",
            tier="database",
            severity="warning",
            summary="The read replica lags the primary by more than 30 s.",
            why=(
                "The app reads from the replica, so readers see data 30 s old (the lab's lag is "
                "a few ms). 5 minutes in a row rules out a burst of writes. A stopped replication "
                "comes as an RDS event."
            ),
            signal="rds-replica-lag", statistic="Maximum", period=60,
            evaluation_periods=5, datapoints_to_alarm=5,
            comparison="GreaterThanThreshold", threshold=REPLICA_LAG_SECONDS,
            treat_missing_data="missing",
        ),
    )),
)  # fmt: skip


WIDGETS = (
    WidgetRecord("Database CPU %", (Line("rds-cpu", "db"),), "Average", 300,
                 thresholds=("db-primary-cpu",), y_min=0),
    WidgetRecord("Database connections", (Line("rds-connections", "db"),), "Maximum", 60,
                 thresholds=("db-primary-connections",), y_min=0),
    WidgetRecord("Replica lag (s)", (Line("rds-replica-lag", "rds"),), "Maximum", 60,
                 thresholds=("db-replica-lag",), y_min=0),
    WidgetRecord("Database free storage (bytes)", (Line("rds-free-storage", "db"),), "Minimum",
                 300, thresholds=("db-primary-free-storage",), y_min=0),
    WidgetRecord("Database freeable memory (bytes)", (Line("rds-freeable-memory", "db"),),
                 "Average", 300, thresholds=("db-primary-freeable-memory",), y_min=0),
)  # fmt: skip


DB_EVENT_CATEGORIES = ("failover", "failure", "low storage", "read replica")
"""RDS event categories sent to the topic: a failover happened, the instance failed, storage is
(nearly) full, replication stopped or failed. Not `availability` (every maintenance restart)."""
