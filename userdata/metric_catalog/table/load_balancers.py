"""The load balancers' records: what HAProxy answers clients and how its web nodes fare, and,
for a pair, who holds the Elastic IP.

HAProxy's built-in Prometheus exporter is scraped by the CloudWatch agent on the load balancer
and sent as embedded-metric-format logs into the stack's namespace. In the pair,
`elastic_address.py` on each of the two (its hold service, not the agent) reports whether EC2
shows the Elastic IP on its instance, and each takeover.
"""

from __future__ import annotations

from userdata.metric_catalog.model import (
    BACKEND,
    FRONTEND,
    LOAD_BALANCER,
    AlarmGroup,
    AlarmRecord,
    ExpressionRecord,
    Line,
    LogSource,
    MetricRecord,
    Source,
    WidgetRecord,
)
from userdata.metric_catalog.table.shared import agent_metric

MIN_REQUESTS_FOR_ERROR_RATE = 10
"""Requests per minute below which the 5xx rate reads as 0: two errors among three requests
say little, and a site that is down is the outside-in check's job."""
ERROR_RATE_PERCENT = 1.0
LATENCY_SECONDS = 0.5


METRICS = (
    # Requests HAProxy's public frontend received (a counter; the agent sends deltas).
    agent_metric("lb-requests", Source.HAPROXY, "haproxy_frontend_http_requests_total",
                 (("proxy", FRONTEND),), "requests (load balancer)",
                 host=LOAD_BALANCER, unit="Count"),
    # 5xx answers to clients, HAProxy's own 503s (no server left) included.
    agent_metric("lb-5xx", Source.HAPROXY, "haproxy_frontend_http_responses_total",
                 (("proxy", FRONTEND), ("code", "5xx")), "5xx to clients",
                 host=LOAD_BALANCER, unit="Count"),
    # Web nodes HAProxy currently sends traffic to (UP in its health checks).
    agent_metric("lb-active-servers", Source.HAPROXY, "haproxy_backend_active_servers",
                 (("proxy", BACKEND),), "healthy web nodes", host=LOAD_BALANCER, unit="Count"),
    # HAProxy's average total request time over the backend's last 1024 requests.
    agent_metric("lb-total-time", Source.HAPROXY, "haproxy_backend_total_time_average_seconds",
                 (("proxy", BACKEND),), "request time (avg of last 1024)",
                 host=LOAD_BALANCER, unit="Seconds"),
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
)  # fmt: skip


EXPRESSIONS = (
    ExpressionRecord(
        "error-rate",
        "IF(requests >= {min_requests}, 100 * errors / requests, 0)",
        "5xx % of requests",
        (("errors", "lb-5xx", "Sum"), ("requests", "lb-requests", "Sum")),
    ),
)


ALARMS = (
    AlarmGroup("stack", (
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
)  # fmt: skip


# The dashboard's first row: the site's traffic and errors as HAProxy counts them, each node's
# lines beside its own.
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
)  # fmt: skip


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
)
