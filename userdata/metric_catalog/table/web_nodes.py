"""The web nodes' records: the requests each one's Nginx accepted (its stub_status, through
prometheus-nginx-exporter) and the 5xx it answered, as HAProxy's per-server counters on the load
balancer count them; the logs a web node ships."""

from __future__ import annotations

from userdata.metric_catalog.model import (
    BACKEND,
    LOAD_BALANCER,
    WEB,
    AlarmGroup,
    AlarmRecord,
    LogSource,
    Source,
)
from userdata.metric_catalog.table.shared import agent_metric

NODE_5XX_PER_MINUTE = 10


METRICS = (
    # 5xx answered by (or on behalf of) one web node, as HAProxy counted them; includes 502s
    # that HAProxy then retried on another node, which clients never saw.
    agent_metric("node-5xx", Source.HAPROXY, "haproxy_server_http_responses_total",
                 (("proxy", BACKEND), ("server", "{node}"), ("code", "5xx")), "{node} 5xx",
                 host=LOAD_BALANCER, unit="Count"),
    # Requests Nginx accepted on one node, HAProxy's health checks (1/s) included.
    agent_metric("node-requests", Source.NGINX, "nginx_http_requests_total",
                 (("Node", "{node}"),), "{node} (Nginx)", host="{node}", unit="Count"),
)  # fmt: skip


ALARMS = (
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
)  # fmt: skip


LOG_SOURCES = (
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
