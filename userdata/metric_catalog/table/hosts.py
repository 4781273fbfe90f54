"""Every host's records, whatever its role (load balancer, web node, database host): the
CloudWatch agent's memory and root-disk inputs, and what EC2 publishes for every instance (CPU,
status checks)."""

from __future__ import annotations

from userdata.metric_catalog.model import (
    DATABASE,
    LOAD_BALANCER,
    ROOT_FILESYSTEM_TYPE,
    WEB,
    AlarmGroup,
    AlarmRecord,
    Line,
    Source,
    WidgetRecord,
)
from userdata.metric_catalog.table.shared import CPU_PERCENT, agent_metric, aws_metric

MEMORY_USED_PERCENT = 90.0
DISK_USED_PERCENT = 85.0

_INSTANCE = ("InstanceId", "@instance:{host}")


def _for_roles(web_and_load_balancer: str, *, database: str) -> dict[str, str]:
    """A reason per host role: the load balancer and web nodes share theirs."""
    return {LOAD_BALANCER: web_and_load_balancer, WEB: web_and_load_balancer, DATABASE: database}


METRICS = (
    agent_metric("host-memory", Source.HOST, "mem_used_percent",
                 (("Node", "{host}"),), "{host} memory", host="{host}", unit="Percent"),
    agent_metric("host-disk", Source.HOST, "disk_used_percent",
                 (("Node", "{host}"), ("path", "/"), ("fstype", ROOT_FILESYSTEM_TYPE)),
                 "{host} disk /", host="{host}", unit="Percent"),
    # EC2 publishes these for every instance (free, every 5 minutes; status checks every minute).
    aws_metric("AWS/EC2", "ec2-cpu", "CPUUtilization", _INSTANCE, "{host} CPUUtilization"),
    aws_metric("AWS/EC2", "ec2-instance-check", "StatusCheckFailed_Instance", _INSTANCE,
               "{host} StatusCheckFailed_Instance"),
    aws_metric("AWS/EC2", "ec2-system-check", "StatusCheckFailed_System", _INSTANCE,
               "{host} StatusCheckFailed_System"),
)  # fmt: skip


ALARMS = (
    AlarmGroup("host", (
        AlarmRecord(
            key="{host}-cpu",
            tier="{host_role}",
            severity="warning",
            summary="{host}'s CPU stays above 80 %.",
            why=(
                "Three 5-minute averages (EC2's basic monitoring) above 80 %: the host is "
                "saturated and latency follows; on a t3/t4g it also spends surplus credits."
            ),
            signal="ec2-cpu", statistic="Average", period=300,
            evaluation_periods=3, datapoints_to_alarm=3,
            comparison="GreaterThanThreshold", threshold=CPU_PERCENT,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="{host}-memory",
            tier="{host_role}",
            severity="warning",
            summary="{host} has used more than 90 % of its memory for 5 minutes.",
            why=_for_roles(
                "Used memory excludes the page cache, so 90 % is real pressure: next comes the "
                "OOM killer (gunicorn or HAProxy).",
                database=(
                    "Used memory excludes the page cache, so 90 % is real pressure: next comes "
                    "the OOM killer, and MariaDB (its buffer pool) is the biggest process to kill."
                ),
            ),
            signal="host-memory", statistic="Average", period=60,
            evaluation_periods=5, datapoints_to_alarm=5,
            comparison="GreaterThanThreshold", threshold=MEMORY_USED_PERCENT,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="{host}-disk",
            tier="{host_role}",
            severity="warning",
            summary="{host}'s root file system is more than 85 % full.",
            why=_for_roles(
                "Logs grow on the 16 GiB root volume; 85 % leaves about 2.4 GiB, hours to days "
                "to act before Nginx, HAProxy and apt fail to write.",
                database=(
                    "Logs grow on the 16 GiB root volume (the data and binary logs are on the "
                    "data volume); 85 % leaves about 2.4 GiB, hours to days to act before "
                    "journald, MariaDB's error log and apt fail to write."
                ),
            ),
            signal="host-disk", statistic="Maximum", period=300,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison="GreaterThanThreshold", threshold=DISK_USED_PERCENT,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="{host}-instance-check",
            tier="{host_role}",
            # The load balancer is the one instance the site cannot do without; a database
            # host holds the only writable copy (the primary) or the only other one.
            severity={LOAD_BALANCER: "critical", WEB: "warning", DATABASE: "critical"},
            summary="{host}'s instance status check fails (its OS does not answer).",
            why=(
                "3 failing minutes: the guest is hung, out of memory or misconfigured; AWS cannot "
                "fix that by moving it. A reboot or a replacement is a person's call."
            ),
            signal="ec2-instance-check", statistic="Maximum", period=60,
            evaluation_periods=3, datapoints_to_alarm=3,
            comparison="GreaterThanOrEqualToThreshold", threshold=1,
            treat_missing_data="missing",
        ),
        AlarmRecord(
            key="{host}-system-check-recover",
            tier="{host_role}",
            severity="warning",
            summary="{host}'s host hardware failed; EC2 is recovering the instance.",
            why=(
                "A failing system status check is AWS's hardware or network; 2 minutes of it "
                "trigger EC2's recover action, which moves the instance to healthy hardware with "
                "its id, private IP and Elastic IP. The notification is for the record."
            ),
            signal="ec2-system-check", statistic="Maximum", period=60,
            evaluation_periods=2, datapoints_to_alarm=2,
            comparison="GreaterThanOrEqualToThreshold", threshold=1,
            treat_missing_data="missing", recover_instance="{host}",
        ),
    )),
)  # fmt: skip


WIDGETS = (
    WidgetRecord("Hosts: memory and disk used %",
                 (Line("host-memory", "host"), Line("host-disk", "host")), "Maximum", 300,
                 # `{host}`: the first host's (every host's are the same).
                 thresholds=("{host}-memory", "{host}-disk"), y_min=0),
)  # fmt: skip
