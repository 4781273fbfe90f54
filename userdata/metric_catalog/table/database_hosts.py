"""The stack's own database hosts' records (`dbMode: ec2`; none with RDS): the agent's disk
input on the data volume, and what `database_node.py replication-report` on the replica reports
each minute (a timer): its lag and whether both replication threads run. Their memory, root disk,
CPU and status checks are every host's (`hosts.py`)."""

from __future__ import annotations

from userdata.metric_catalog.model import (
    DATA_VOLUME_FILESYSTEM_TYPE,
    DATA_VOLUME_MOUNT,
    AlarmGroup,
    AlarmRecord,
    Line,
    MetricRecord,
    Source,
    WidgetRecord,
)
from userdata.metric_catalog.table.shared import (
    DB_FREE_STORAGE_FRACTION,
    REPLICA_LAG_SECONDS,
    agent_metric,
)

DB_DATA_VOLUME_USED_PERCENT = 100 * (1 - DB_FREE_STORAGE_FRACTION)
"""The database hosts' data volume: the same 20 % left as RDS's free-storage alarm."""
REPLICATION_STOPPED_MINUTES = 3


METRICS = (
    # A database host's data volume: MariaDB's datadir, binary logs and temporary files.
    agent_metric("data-volume-disk", Source.HOST, "disk_used_percent",
                 (("Node", "{db_host}"), ("path", DATA_VOLUME_MOUNT),
                  ("fstype", DATA_VOLUME_FILESYSTEM_TYPE)),
                 f"{{db_host}} disk {DATA_VOLUME_MOUNT}", host="{db_host}", unit="Percent"),
    # The replica's Seconds_Behind_Master, each minute while its SQL thread runs (MariaDB has
    # no number when it does not: then only replication-running reports).
    MetricRecord("replication-lag", Source.DATABASE_NODE, "ReplicationLagSeconds",
                 (("Node", "{db_host}"),), "{db_host} replication lag", host="{db_host}",
                 unit="Seconds"),
    # 1 when both the replica's IO and SQL threads run, else 0 (stopped, failed, reconnecting).
    MetricRecord("replication-running", Source.DATABASE_NODE, "ReplicationRunning",
                 (("Node", "{db_host}"),), "{db_host} replicating", host="{db_host}",
                 unit="None"),
)  # fmt: skip


ALARMS = (
    AlarmGroup("db_host", (
        AlarmRecord(
            key="{db_host}-data-disk",
            tier="database",
            severity="warning",
            summary=f"{{db_host}}'s data volume ({DATA_VOLUME_MOUNT}) is more than 80 % full.",
            why=(
                "It holds the {role}'s data and binary logs (kept as long as the backups): "
                "{free_gib:g} GiB of {storage_gb} GiB left, the same 20 % as RDS's free-storage "
                "alarm. Grow the volume (dbAllocatedStorageGb; EBS grows it in place, then "
                "resize2fs) before MariaDB stops taking writes (a full replica also stops "
                "replicating). Storage fills slowly, so one 5-minute maximum is enough."
            ),
            signal="data-volume-disk", statistic="Maximum", period=300,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison="GreaterThanThreshold", threshold="db_data_volume_used_percent",
            treat_missing_data="missing",
        ),
    )),
    AlarmGroup("replica_host", (
        AlarmRecord(
            key="{db_host}-replication-lag",
            tier="database",
            severity="warning",
            summary="The replica on {db_host} lags the primary by more than 30 s.",
            why=(
                "The same as RDS's replica-lag alarm: the app reads from the replica, so readers "
                "see data 30 s old (the lab's lag is a few ms). 5 minutes in a row rules out a "
                "burst of writes. The replica reports MariaDB's Seconds_Behind_Master each "
                "minute while replicating; a stopped replication has no lag, and is the "
                "replication-stopped alarm's."
            ),
            signal="replication-lag", statistic="Maximum", period=60,
            evaluation_periods=5, datapoints_to_alarm=5,
            comparison="GreaterThanThreshold", threshold=REPLICA_LAG_SECONDS,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="{db_host}-replication-stopped",
            tier="database",
            severity="warning",
            summary="The replica on {db_host} does not replicate from the primary.",
            why=(
                "The replica reports each minute 1 if both its replication threads run, else 0. "
                f"{REPLICATION_STOPPED_MINUTES} minutes at 0 outlast a primary's replacement (it "
                "reconnects every 5 s); a thread stopped on an error never restarts by itself, "
                "and the stack has no current second copy. No data is breaching: it reports "
                "only while MariaDB runs there, so silence means its MariaDB or host is down "
                "(also until it first boots, and while it is replaced)."
            ),
            signal="replication-running", statistic="Minimum", period=60,
            evaluation_periods=REPLICATION_STOPPED_MINUTES,
            datapoints_to_alarm=REPLICATION_STOPPED_MINUTES,
            comparison="LessThanThreshold", threshold=1, treat_missing_data="breaching",
        ),
    )),
)  # fmt: skip


# Their dashboard lines, none with RDS.
WIDGETS = (
    WidgetRecord("Database hosts: CPU %", (Line("ec2-cpu", "db_host"),), "Average", 300,
                 thresholds=("{db_host}-cpu",), y_min=0),
    WidgetRecord(f"Database hosts: data volume ({DATA_VOLUME_MOUNT}) used %",
                 (Line("data-volume-disk", "db_host"),), "Maximum", 300,
                 thresholds=("{db_host}-data-disk",), y_min=0),
    WidgetRecord("Replication lag (s)", (Line("replication-lag", "replica_host"),), "Maximum",
                 60, thresholds=("{replica_host}-replication-lag",), y_min=0),
    WidgetRecord("Replication running (1) or stopped (0)",
                 (Line("replication-running", "replica_host"),), "Minimum", 60,
                 thresholds=("{replica_host}-replication-stopped",), y_min=0),
)  # fmt: skip
