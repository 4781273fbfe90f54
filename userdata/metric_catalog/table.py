"""The catalogue itself: every metric, alarm, dashboard widget and log this stack watches, one
record each, with each alarm's threshold and the reason for it.

Read it like a table: a metric says who publishes it; an alarm names its metric, when it fires
and why that threshold means something; a widget lists its lines and the alarms whose thresholds
it draws. Records are written once for every stack: `{node}`, `{host}`, `{db}` and the stack's
own values (`{count}`, `{db_class}`, ...) are filled in by `expand.py` for one stack shape.

Where the numbers come from:
  * the load balancer: HAProxy's built-in Prometheus exporter, scraped by the CloudWatch agent on
    the load balancer and sent as embedded-metric-format logs into the stack's namespace;
  * web nodes: Nginx's stub_status through prometheus-nginx-exporter (requests), HAProxy's
    per-server counters (5xx answered by each node), the agent's own mem/disk inputs;
  * the load-balancer pair: `elastic_address.py` on each of the two (its hold service, not the
    agent) reports whether EC2 shows the Elastic IP on its instance, and each takeover;
  * the stack's own database hosts (`dbMode: ec2`): the agent's mem/disk inputs, the data
    volume's disk too; `database_node.py replication-report` on the replica (a timer, every
    minute) reports its lag and whether both replication threads run;
  * AWS: EC2 (CPU, status checks), RDS (CPU, storage, memory, connections, replica lag) and
    Route 53 (the outside-in health check; its metrics exist only in us-east-1).
"""

from __future__ import annotations

from userdata.metric_catalog.model import (
    BACKEND,
    DATA_VOLUME_FILESYSTEM_TYPE,
    DATA_VOLUME_MOUNT,
    DATABASE,
    FRONTEND,
    HEALTH_CHECK_REGION,
    LOAD_BALANCER,
    ROOT_FILESYSTEM_TYPE,
    WEB,
    AlarmGroup,
    AlarmRecord,
    ExpressionRecord,
    Line,
    LogSource,
    MetricRecord,
    Source,
    WidgetRecord,
)

# --- thresholds, each explained by the alarm that uses it ---------------------------------------

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
DB_DATA_VOLUME_USED_PERCENT = 100 * (1 - DB_FREE_STORAGE_FRACTION)
"""The database hosts' data volume: the same 20 % left as RDS's free-storage alarm."""
REPLICATION_STOPPED_MINUTES = 3

# --- metrics ------------------------------------------------------------------------------------


def _for_roles(web_and_load_balancer: str, *, database: str) -> dict[str, str]:
    """A reason per host role: the load balancer and web nodes share theirs."""
    return {LOAD_BALANCER: web_and_load_balancer, WEB: web_and_load_balancer, DATABASE: database}


def _agent(
    key: str, source: Source, name: str, dimensions: tuple[tuple[str, str], ...], label: str,
    *, host: str, unit: str,
) -> MetricRecord:  # fmt: skip
    """A metric the CloudWatch agent on `host` publishes into the stack's namespace."""
    return MetricRecord(key, source, name, dimensions, label, host=host, unit=unit)


def _aws(
    namespace: str, key: str, name: str, dimension: tuple[str, str], label: str
) -> MetricRecord:
    """A metric AWS publishes with one dimension."""
    return MetricRecord(key, Source.AWS, name, (dimension,), label, namespace=namespace)


_INSTANCE = ("InstanceId", "@instance:{host}")
_DB = ("DBInstanceIdentifier", "{db}")

METRICS = (
    # Requests HAProxy's public frontend received (a counter; the agent sends deltas).
    _agent("lb-requests", Source.HAPROXY, "haproxy_frontend_http_requests_total",
           (("proxy", FRONTEND),), "requests (load balancer)",
           host=LOAD_BALANCER, unit="Count"),
    # 5xx answers to clients, HAProxy's own 503s (no server left) included.
    _agent("lb-5xx", Source.HAPROXY, "haproxy_frontend_http_responses_total",
           (("proxy", FRONTEND), ("code", "5xx")), "5xx to clients",
           host=LOAD_BALANCER, unit="Count"),
    # Web nodes HAProxy currently sends traffic to (UP in its health checks).
    _agent("lb-active-servers", Source.HAPROXY, "haproxy_backend_active_servers",
           (("proxy", BACKEND),), "healthy web nodes", host=LOAD_BALANCER, unit="Count"),
    # HAProxy's average total request time over the backend's last 1024 requests.
    _agent("lb-total-time", Source.HAPROXY, "haproxy_backend_total_time_average_seconds",
           (("proxy", BACKEND),), "request time (avg of last 1024)",
           host=LOAD_BALANCER, unit="Seconds"),
    # 5xx answered by (or on behalf of) one web node, as HAProxy counted them; includes 502s
    # that HAProxy then retried on another node, which clients never saw.
    _agent("node-5xx", Source.HAPROXY, "haproxy_server_http_responses_total",
           (("proxy", BACKEND), ("server", "{node}"), ("code", "5xx")), "{node} 5xx",
           host=LOAD_BALANCER, unit="Count"),
    # Requests Nginx accepted on one node, HAProxy's health checks (1/s) included.
    _agent("node-requests", Source.NGINX, "nginx_http_requests_total",
           (("Node", "{node}"),), "{node} (Nginx)", host="{node}", unit="Count"),
    _agent("host-memory", Source.HOST, "mem_used_percent",
           (("Node", "{host}"),), "{host} memory", host="{host}", unit="Percent"),
    _agent("host-disk", Source.HOST, "disk_used_percent",
           (("Node", "{host}"), ("path", "/"), ("fstype", ROOT_FILESYSTEM_TYPE)),
           "{host} disk /", host="{host}", unit="Percent"),
    # A database host's data volume: MariaDB's datadir, binary logs and temporary files.
    _agent("data-volume-disk", Source.HOST, "disk_used_percent",
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
    # EC2 publishes these for every instance (free, every 5 minutes; status checks every minute).
    _aws("AWS/EC2", "ec2-cpu", "CPUUtilization", _INSTANCE, "{host} CPUUtilization"),
    _aws("AWS/EC2", "ec2-instance-check", "StatusCheckFailed_Instance", _INSTANCE,
         "{host} StatusCheckFailed_Instance"),
    _aws("AWS/EC2", "ec2-system-check", "StatusCheckFailed_System", _INSTANCE,
         "{host} StatusCheckFailed_System"),
    # RDS publishes these for each DB instance (free, every minute).
    _aws("AWS/RDS", "rds-cpu", "CPUUtilization", _DB, "{db}"),
    _aws("AWS/RDS", "rds-free-storage", "FreeStorageSpace", _DB, "{db}"),
    _aws("AWS/RDS", "rds-freeable-memory", "FreeableMemory", _DB, "{db}"),
    _aws("AWS/RDS", "rds-connections", "DatabaseConnections", _DB, "{db}"),
    _aws("AWS/RDS", "rds-replica-lag", "ReplicaLag", ("DBInstanceIdentifier", "{replica}"),
         "{replica}"),
    # The pair's hosts (elastic_address.py hold), into the stack's namespace: 1 if EC2 shows the
    # Elastic IP on the host's instance, else 0, each clock minute and at once when it changes.
    MetricRecord("lb-address-held", Source.ELASTIC_ADDRESS, "ElasticIpHeld", (("Node", "{lb}"),),
                 "{lb} holds the Elastic IP", host="{lb}", unit="None"),
    # The same reports of both hosts in one series: its Maximum over a minute is 1 if either
    # held the address then.
    MetricRecord("pair-address-held", Source.ELASTIC_ADDRESS, "ElasticIpHeld", (),
                 "either load balancer holds the Elastic IP", unit="None"),
    # 1 each time a host took the address from the other (a failover), sent only then; not
    # the first association of an address nobody held.
    MetricRecord("pair-address-takeovers", Source.ELASTIC_ADDRESS, "ElasticIpTakeovers", (),
                 "Elastic IP takeovers", unit="Count"),
    MetricRecord("site-health", Source.AWS, "HealthCheckStatus",
                 (("HealthCheckId", "@health-check"),), "site healthy (Route 53 checkers)",
                 namespace="AWS/Route53", region=HEALTH_CHECK_REGION),
)  # fmt: skip

EXPRESSIONS = (
    ExpressionRecord(
        "error-rate",
        "IF(requests >= {min_requests}, 100 * errors / requests, 0)",
        "5xx % of requests",
        (("errors", "lb-5xx", "Sum"), ("requests", "lb-requests", "Sum")),
    ),
)

# --- alarms, in the order they are created: outside-in, load balancer, nodes, hosts, database ---

ALARMS = (
    AlarmGroup("stack", (
        AlarmRecord(
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
            signal="site-health", statistic="Minimum", period=60,
            evaluation_periods=2, datapoints_to_alarm=2,
            comparison="LessThanThreshold", threshold=1, treat_missing_data="breaching",
        ),
        AlarmRecord(
            key="lb-healthy-nodes-below-count",
            tier="load-balancer",
            severity="warning",
            summary="HAProxy sends traffic to fewer than all {count} web nodes.",
            why=(
                "webNodeCount is {count}. HAProxy takes a node out after 2 failed checks 1 s "
                "apart and back after 2 good ones, so 3 minutes below the count is longer than a "
                "restart: a node is broken. The others still serve, hence a warning. No data "
                "means HAProxy or the agent on the load balancer stopped reporting."
            ),
            signal="lb-active-servers", statistic="Minimum", period=60,
            evaluation_periods=3, datapoints_to_alarm=3,
            comparison="LessThanThreshold", threshold="web_node_count",
            treat_missing_data="missing", notify_when_no_data=True,
        ),
        AlarmRecord(
            key="lb-no-healthy-nodes",
            tier="load-balancer",
            severity="critical",
            summary="HAProxy has no healthy web node: every request gets a 503.",
            why=(
                "Zero nodes in rotation is a full outage; one minute is enough to page. Missing "
                "data does not fire it: a dead load balancer is the outside-in check's page."
            ),
            signal="lb-active-servers", statistic="Minimum", period=60,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison="LessThanThreshold", threshold=1, treat_missing_data="notBreaching",
        ),
        AlarmRecord(
            key="lb-5xx-rate",
            tier="load-balancer",
            severity="critical",
            summary="More than 1 % of requests get a 5xx from the load balancer.",
            why=(
                "Retries and redispatch hide a dying node (0 failed requests in the failover "
                "benchmark), so a steady 5xx share means the app or the database fails for users."
                " 3 of 5 minutes above {error_rate_percent:g} % rules out a burst; below "
                "{min_requests} requests a minute the rate reads 0."
            ),
            signal="error-rate", statistic="Sum", period=60,
            evaluation_periods=5, datapoints_to_alarm=3,
            comparison="GreaterThanThreshold", threshold=ERROR_RATE_PERCENT,
            treat_missing_data="notBreaching",
        ),
        AlarmRecord(
            key="lb-latency-p95",
            tier="load-balancer",
            severity="warning",
            summary="Requests are slow: HAProxy's request time stays above 0.5 s.",
            why=(
                "A request takes about 10 ms end to end when healthy (benchmark p50 8 ms); "
                "{latency_seconds:g} s is 50 times that and noticeable to people. HAProxy's "
                "exporter has no histogram, so this is the 95th percentile, over 5 minutes, of "
                "its rolling average of the last 1024 requests, sampled every 30 s: sustained "
                "slowness, not a single slow request. Two 5-minute periods in a row."
            ),
            signal="lb-total-time", statistic="p95", period=300,
            evaluation_periods=2, datapoints_to_alarm=2,
            comparison="GreaterThanThreshold", threshold=LATENCY_SECONDS,
            treat_missing_data="notBreaching",
        ),
    )),
    AlarmGroup("pair", (
        AlarmRecord(
            key="lb-no-address-holder",
            tier="load-balancer",
            severity="critical",
            summary="Neither load balancer holds the Elastic IP: the public address leads nowhere.",
            why=(
                "Both load balancers report each minute whether EC2 shows the address on them; "
                "a Maximum below 1 means neither held it (no keepalived master, or the master "
                "may not associate it). A failover takes seconds and the new holder reports at "
                "once, so 2 minutes in a row are no handover. No data is breaching: both report "
                "every minute, held or not, so silence means neither host runs its holder and "
                "nobody keeps the address (until the pair first boots, too)."
            ),
            signal="pair-address-held", statistic="Maximum", period=60,
            evaluation_periods=2, datapoints_to_alarm=2,
            comparison="LessThanThreshold", threshold=1, treat_missing_data="breaching",
        ),
        AlarmRecord(
            key="lb-address-moved",
            tier="load-balancer",
            severity="warning",
            summary="The Elastic IP moved to the other load balancer (a failover).",
            why=(
                "A takeover means the holder failed (its HAProxy or its host) or was stopped; the "
                "peer serves, connections open at that moment were reset, and until the old "
                "holder is back there is no peer left to fail over to. One in a 5-minute period "
                "is enough (replacing a host in `pulumi up` moves it too, expected then). "
                "Takeovers are sent only when they happen: no data is no takeover."
            ),
            signal="pair-address-takeovers", statistic="Sum", period=300,
            evaluation_periods=1, datapoints_to_alarm=1,
            comparison="GreaterThanOrEqualToThreshold", threshold=1,
            treat_missing_data="notBreaching",
        ),
    )),
    AlarmGroup("node", (
        AlarmRecord(
            key="{node}-5xx",
            tier="web",
            severity="warning",
            summary="{node} keeps answering 5xx (Nginx or the app).",
            why=(
                "At least {node_5xx_per_minute} 5xx a minute in 3 of 5 minutes from one node is "
                "a sick node (app down behind Nginx: 502; database unreachable from it: 503), "
                "even while HAProxy's retries hide the 502s from clients."
            ),
            signal="node-5xx", statistic="Sum", period=60,
            evaluation_periods=5, datapoints_to_alarm=3,
            comparison="GreaterThanOrEqualToThreshold", threshold=NODE_5XX_PER_MINUTE,
            treat_missing_data="notBreaching",
        ),
    )),
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

# --- the dashboard: one screen, three widgets a row ----------------------------------------------

WIDGETS = (
    WidgetRecord("Traffic: requests per minute",
                 (Line("lb-requests"), Line("node-requests", "node")), "Sum", 60),
    WidgetRecord("Errors: 5xx share to clients, 5xx per node",
                 (Line("error-rate"), Line("node-5xx", "node")), "Sum", 60,
                 thresholds=("lb-5xx-rate",)),
    WidgetRecord("Latency: HAProxy request time (s)", (Line("lb-total-time"),), "p95", 300,
                 thresholds=("lb-latency-p95",)),
    WidgetRecord("Healthy web nodes (HAProxy)", (Line("lb-active-servers"),), "Minimum", 60,
                 thresholds=("lb-healthy-nodes-below-count",), y_min=0),
    WidgetRecord("Elastic IP: held by (1), takeovers",
                 (Line("lb-address-held", "load_balancer"),
                  Line("pair-address-takeovers", "pair")), "Maximum", 60,
                 thresholds=("lb-no-address-holder",), y_min=0),
    WidgetRecord("Outside-in: site healthy (1) or not (0)", (Line("site-health"),), "Minimum",
                 60, thresholds=("site-health-check",), y_min=0),
    WidgetRecord("Hosts: memory and disk used %",
                 (Line("host-memory", "host"), Line("host-disk", "host")), "Maximum", 300,
                 # `{host}`: the first host's (every host's are the same).
                 thresholds=("{host}-memory", "{host}-disk"), y_min=0),
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
    # The stack's own database hosts (none with RDS).
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

# --- logs: what leaves each kind of host, and where it lands -------------------------------------

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


DB_EVENT_CATEGORIES = ("failover", "failure", "low storage", "read replica")
"""RDS event categories sent to the topic: a failover happened, the instance failed, storage is
(nearly) full, replication stopped or failed. Not `availability` (every maintenance restart)."""
