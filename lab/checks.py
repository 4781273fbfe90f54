"""End-to-end checks through the load balancer, for any lab that runs the architecture.

Plain HTTP against a URL and the web nodes' names; nothing here knows how the hosts run
(processes on loopback, containers booting the real cloud-config, or AWS), so the process lab,
the boot lab and a deployed stack are held to the same checks. The round robin and
write-read-back checks are `tools.verify`'s, the post-deploy checker's, used as they are;
this module adds what a lab can demand beyond them (the read served by the replica, a defined
answer while the database is out of reach) and the waiting that booting hosts need.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Sequence

from tools.verify import (
    Check,
    HttpFailure,
    check_health,
    check_round_robin,
    http_request,
    render_table,
)

__all__ = [
    "Check",
    "check_database_unavailable",
    "check_health",
    "check_read_back_from_replica",
    "check_rotation",
    "check_round_robin",
    "check_served_by",
    "render_table",
    "serving_checks",
    "wait_for",
]


def check_served_by(node_url: str, node: str, timeout: float = 2) -> Check:
    """One node asked directly: `/health` answers 200 and names the node in `X-Served-By`."""
    name = f"{node} serves"
    expected = f"200 with X-Served-By: {node}"
    try:
        response = http_request("GET", f"{node_url.rstrip('/')}/health", timeout=timeout)
    except HttpFailure as error:
        return Check(name, expected, f"no answer: {error}", False)
    found = f"{response.status} with X-Served-By: {response.served_by}"
    return Check(name, expected, found, response.status == 200 and response.served_by == node)


def check_rotation(url: str, nodes: Sequence[str], timeout: float = 2) -> Check:
    """Every node in the load balancer's rotation, in order: 2*N GETs of `/health` (which
    needs no database) answered by each node twice, never twice in a row."""
    count = 2 * len(nodes)
    name = "rotation"
    expected = f"{count} GETs /health: 200 from each of {', '.join(nodes)} twice, in turn"
    answers: list[str] = []
    for _ in range(count):
        try:
            response = http_request("GET", f"{url.rstrip('/')}/health", timeout=timeout)
        except HttpFailure as error:
            answers.append(f"({error})")
            continue
        answers.append(
            response.served_by or "?" if response.status == 200 else f"[{response.status}]"
        )
    in_turn = all(a != b for a, b in itertools.pairwise(answers))
    ok = in_turn and sorted(answers) == sorted([*nodes, *nodes])
    return Check(name, expected, " ".join(answers), ok)


def check_read_back_from_replica(url: str, timeout: float = 5, within: float = 5) -> Check:
    """A write through the load balancer is listed by a read the replica served."""
    name = "write, read back from the replica"
    expected = f"POST 201; listed by a GET with read_from=replica within {within:g} s"
    text = f"lab.checks {uuid.uuid4().hex[:12]}"
    base = url.rstrip("/")
    try:
        posted = http_request(
            "POST", f"{base}/api/messages", timeout=timeout, payload={"text": text}
        )
        body = posted.json()
    except (HttpFailure, ValueError) as error:
        return Check(name, expected, f"POST failed: {error}", False)
    message = body.get("message") if isinstance(body, dict) else None
    if posted.status != 201 or not isinstance(message, dict):
        return Check(name, expected, f"POST {posted.status} from {posted.served_by}: {body}", False)
    found = f"POST 201 id={message.get('id')} by {posted.served_by}"
    started = time.monotonic()
    last = "no GET answered"
    while time.monotonic() - started < within:
        try:
            page = http_request("GET", f"{base}/api/messages?limit=100", timeout=timeout)
            listing = page.json()
        except (HttpFailure, ValueError) as error:
            last = f"GET failed: {error}"
        else:
            source = listing.get("read_from") if isinstance(listing, dict) else None
            texts = [m.get("text") for m in listing.get("messages", [])] if source else []
            last = f"GET {page.status} from {page.served_by} (read_from={source})"
            if page.status == 200 and source == "replica" and text in texts:
                waited = time.monotonic() - started
                return Check(name, expected, f"{found}; read after {waited:.1f} s, {last}", True)
        time.sleep(0.2)
    return Check(name, expected, f"{found}; not listed after {within:g} s, {last}", False)


def check_database_unavailable(url: str, timeout: float = 10) -> Check:
    """The defined state of a node that cannot reach its database: healthy, reads 503 + reason."""
    name = "database out of reach"
    expected = "/health 200; /api/messages 503 with a JSON error"
    base = url.rstrip("/")
    try:
        health = http_request("GET", f"{base}/health", timeout=timeout)
        read = http_request("GET", f"{base}/api/messages", timeout=timeout)
        error = read.json().get("error")
    except (HttpFailure, ValueError, AttributeError) as failure:
        return Check(name, expected, f"no defined answer: {failure}", False)
    found = f"/health {health.status}; /api/messages {read.status}: {error!r}"
    ok = health.status == 200 and read.status == 503 and bool(error)
    return Check(name, expected, found, ok)


def wait_for(check: Callable[[], Check], timeout: float, interval: float = 1.0) -> Check:
    """Run `check` until it passes or `timeout` seconds pass; the last result either way."""
    deadline = time.monotonic() + timeout
    result = check()
    while not result.ok and time.monotonic() < deadline:
        time.sleep(interval)
        result = check()
    return result


def serving_checks(url: str, nodes: Sequence[str], timeout: float = 5) -> list[Check]:
    """What a lab that is up must pass: health, round robin over every node, a write read back."""
    return [
        check_health(url.rstrip("/"), timeout),
        check_round_robin(url.rstrip("/"), nodes, timeout),
        check_read_back_from_replica(url, timeout),
    ]
