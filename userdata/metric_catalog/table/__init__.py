"""The catalogue itself: every metric, alarm, dashboard widget and log this stack watches, one
record each, with each alarm's threshold and the reason for it; one module per part of the
architecture, each with the records of what runs there:

  load_balancers.py   HAProxy's frontend and backend, the pair's hold on the Elastic IP
  web_nodes.py        each node's requests and 5xx; the web nodes' logs
  hosts.py            every host, whatever its role: memory, root disk, EC2's CPU and checks
  rds.py              the RDS database's instances, and its events sent to the topic
  database_hosts.py   the stack's own database hosts (`dbMode: ec2`): data volume, replication
  site.py             the site seen from outside: Route 53's health check
  shared.py           thresholds more than one of them uses, and how a metric record is written

Read it like a table: a metric says who publishes it; an alarm names its metric, when it fires
and why that threshold means something; a widget lists its lines and the alarms whose thresholds
it draws. Records are written once for every stack: `{node}`, `{host}`, `{db}` and the stack's
own values (`{count}`, `{db_class}`, ...) are filled in by `expand.py` for one stack shape.

Here the modules' records are put together in the order that the outputs show them.
"""

from __future__ import annotations

from userdata.metric_catalog.table import (
    database_hosts,
    hosts,
    load_balancers,
    rds,
    site,
    web_nodes,
)
from userdata.metric_catalog.table.database_hosts import (
    DB_DATA_VOLUME_USED_PERCENT,
    REPLICATION_STOPPED_MINUTES,
)
from userdata.metric_catalog.table.hosts import DISK_USED_PERCENT, MEMORY_USED_PERCENT
from userdata.metric_catalog.table.load_balancers import (
    ERROR_RATE_PERCENT,
    LATENCY_SECONDS,
    MIN_REQUESTS_FOR_ERROR_RATE,
)
from userdata.metric_catalog.table.rds import (
    DB_CONNECTIONS_FRACTION,
    DB_EVENT_CATEGORIES,
    DB_FREEABLE_MEMORY_FRACTION,
)
from userdata.metric_catalog.table.shared import (
    CPU_PERCENT,
    DB_FREE_STORAGE_FRACTION,
    REPLICA_LAG_SECONDS,
)
from userdata.metric_catalog.table.web_nodes import NODE_5XX_PER_MINUTE

METRICS = (
    *load_balancers.METRICS,
    *web_nodes.METRICS,
    *hosts.METRICS,
    *rds.METRICS,
    *database_hosts.METRICS,
    *site.METRICS,
)
"""Looked up by key: their order shows nowhere."""

EXPRESSIONS = load_balancers.EXPRESSIONS

ALARMS = (
    *site.ALARMS,
    *load_balancers.ALARMS,
    *web_nodes.ALARMS,
    *hosts.ALARMS,
    *rds.ALARMS,
    *database_hosts.ALARMS,
)
"""In the order they are created: outside-in, load balancer, nodes, hosts, database."""

WIDGETS = (
    *load_balancers.WIDGETS,
    *site.WIDGETS,
    *hosts.WIDGETS,
    *rds.WIDGETS,
    *database_hosts.WIDGETS,
)
"""The dashboard, one screen three widgets a row: traffic, errors and latency first (the load
balancer's, each node's lines among them), then the outside-in check, the hosts, the database."""

LOG_SOURCES = (*load_balancers.LOG_SOURCES, *web_nodes.LOG_SOURCES)
"""What leaves each kind of host, and where it lands."""

__all__ = [
    "ALARMS",
    "CPU_PERCENT",
    "DB_CONNECTIONS_FRACTION",
    "DB_DATA_VOLUME_USED_PERCENT",
    "DB_EVENT_CATEGORIES",
    "DB_FREEABLE_MEMORY_FRACTION",
    "DB_FREE_STORAGE_FRACTION",
    "DISK_USED_PERCENT",
    "ERROR_RATE_PERCENT",
    "EXPRESSIONS",
    "LATENCY_SECONDS",
    "LOG_SOURCES",
    "MEMORY_USED_PERCENT",
    "METRICS",
    "MIN_REQUESTS_FOR_ERROR_RATE",
    "NODE_5XX_PER_MINUTE",
    "REPLICATION_STOPPED_MINUTES",
    "REPLICA_LAG_SECONDS",
    "WIDGETS",
]
