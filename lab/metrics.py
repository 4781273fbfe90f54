"""The metrics the hosts serve for the CloudWatch agent, read here as the agent reads them.

HAProxy's built-in Prometheus exporter (its loopback stats frontend, `/metrics`) and each web
node's Nginx stub_status are served by the shipped configs; on AWS the agent on each host
scrapes them, here the lab's status and tests do, so what the alarms and the dashboard will see
is checked against real daemons.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# name -> {labels (as sorted pairs) -> value}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(url: str, timeout: float = 2.0) -> Samples:
    """Every sample of a Prometheus endpoint; {} when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the lab's
            text = response.read().decode()
    except OSError:
        return {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


def healthy_web_nodes(samples: Samples) -> float:
    """What the healthy-node alarms read: web nodes HAProxy sends traffic to."""
    return value(samples, "haproxy_backend_active_servers", proxy="web")


def client_5xx(samples: Samples) -> float:
    """What the 5xx-rate alarm reads: 5xx answered to clients by the public frontend."""
    return value(samples, "haproxy_frontend_http_responses_total", proxy="http", code="5xx")


def server_requests(samples: Samples, node: str) -> float:
    return value(samples, "haproxy_server_http_responses_total", proxy="web", server=node)


def nginx_requests(url: str) -> float | None:
    """Requests a node's Nginx accepted, from its stub_status; None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the lab's
            text = response.read().decode()
    except OSError:
        return None
    # "server accepts handled requests\n 10 10 42": the third number.
    found = re.search(r"^\s*\d+\s+\d+\s+(\d+)\s*$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


@dataclass(frozen=True)
class NodeRates:
    requests_per_second: float
    healthy: bool


def rates(haproxy_url: str, nodes: list[str], seconds: float = 1.0) -> Mapping[str, NodeRates]:
    """Each node's request rate through HAProxy over `seconds`, and whether it is UP."""
    before = scrape(haproxy_url)
    time.sleep(seconds)
    after = scrape(haproxy_url)
    if not before or not after:
        return {}
    return {
        node: NodeRates(
            (server_requests(after, node) - server_requests(before, node)) / seconds,
            value(after, "haproxy_server_status", proxy="web", server=node, state="UP") == 1,
        )
        for node in nodes
    }
