"""How big the web tier may be and how it is rolled out: node names, replacement batches and
what the nodes may open to the database.

Changes when the tier's shape changes (the node limits, the rollout order, gunicorn's worker
count or the app's query slots). `userdata/` reads the same numbers, so the HAProxy and
gunicorn configs agree with what the settings allow.
"""

from __future__ import annotations

import math

MIN_WEB_NODES = 2  # active-active needs two; fewer is a single point of failure
# HAProxy names a server slot per possible node (web-1 ... web-20), so its config does not change
# with the node count; the /16 private subnets stay small.
MAX_WEB_NODES = 20
# What one web node may hold open to one database (see database_connections_needed): the
# gunicorn workers per node and the app's query slots per worker and server.
GUNICORN_WORKERS = 2
APP_MAX_CONCURRENT_QUERIES = 5
DATABASE_CONNECTION_HEADROOM = 10
CONNECTIONS_PER_NODE = GUNICORN_WORKERS * (APP_MAX_CONCURRENT_QUERIES + 1)


def web_node_names(count: int) -> list[str]:
    return [f"web-{i}" for i in range(1, count + 1)]


def default_batch_size(node_count: int) -> int:
    """One node at a time for small tiers; a quarter of a large tier (5 of 20) at once."""
    return 1 if node_count <= 4 else math.ceil(node_count / 4)


def rollout_batches(nodes: list[str], batch_size: int | None = None) -> list[list[str]]:
    """`nodes` in replacement order: a one-node canary, then batches of `batch_size`.

    A release whose canary never becomes ready stops there: the later batches wait for the
    earlier batches' readiness gates, so they are never touched.
    """
    size = min(batch_size or default_batch_size(len(nodes)), len(nodes))
    canary, rest = nodes[:1], nodes[1:]
    return [canary] + [rest[i : i + size] for i in range(0, len(rest), size)]


def database_connections_needed(web_nodes: int) -> int:
    """The most connections the web tier may open to one database instance, with headroom:
    per node, each gunicorn worker's pool to that server (its query slots and one background
    connection for the heartbeat and breaker probes), plus RDS's own and replication's."""
    return web_nodes * CONNECTIONS_PER_NODE + DATABASE_CONNECTION_HEADROOM
