"""What HAProxy's rendered config promises the web tier, read directive by directive.

`haproxy -c` (tests/test_userdata.py) proves the file is valid; these tests prove it still says
what the architecture depends on. Each guards a one-line slip that a valid config would hide:
a backend without health checks keeps sending users to a dead node; a check on `/` instead of
`/health` queries the database every second on every node and pulls the whole tier out when
the database is down; a POST retried on another node may be stored twice; a new visitor's request
sent on a connection opened before a node was replaced reaches the old node.
"""

from __future__ import annotations

import shlex

import pytest

from components.rendered_hosts import userdata_for
from lab.localize import shipped_files
from settings import load_settings
from settings.web_tier import MAX_WEB_NODES

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"


def rendered_config(**raw: object) -> str:
    settings = load_settings(raw, stack="dev")
    load_balancer = userdata_for(settings, "eu-west-1", "123456789012")[0]
    return shipped_files(load_balancer)[HAPROXY_CFG].decode()


def sections(config: str) -> dict[str, list[list[str]]]:
    """`"backend web"` -> its directives, each split into words, comments left out."""
    found: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in config.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if not line[0].isspace():
            current = found.setdefault(" ".join(words), [])
        elif current is not None:
            current.append(words)
    return found


@pytest.fixture(scope="module", params=[{}, {"domain": "www.example.com", "acmeEmail": "a@b.io"}])
def web_backend(request: pytest.FixtureRequest) -> list[list[str]]:
    return sections(rendered_config(**request.param))["backend web"]


@pytest.fixture(scope="module")
def defaults() -> list[list[str]]:
    return sections(rendered_config())["defaults"]


def directives(backend: list[list[str]], keyword: str) -> list[list[str]]:
    return [words for words in backend if words[0] == keyword]


def test_every_web_node_slot_is_health_checked(web_backend: list[list[str]]) -> None:
    servers = directives(web_backend, "server")
    assert [words[1] for words in servers] == [f"web-{n}" for n in range(1, MAX_WEB_NODES + 1)]
    checked_by_default = any(
        "check" in words for words in directives(web_backend, "default-server")
    )
    for words in servers:
        assert "no-check" not in words, f"{words[1]} is not health-checked"
        assert checked_by_default or "check" in words, f"{words[1]} is not health-checked"


def test_the_health_check_asks_the_apps_health_endpoint(web_backend: list[list[str]]) -> None:
    """`/health` answers from the node itself (tests/test_app.py
    `test_health_is_the_app_not_the_database`); any other path would reach the database."""
    assert ["option", "httpchk"] in web_backend
    (send,) = directives(web_backend, "http-check")[:1]
    assert send[:2] == ["http-check", "send"]
    assert send[send.index("meth") + 1] == "GET"
    assert send[send.index("uri") + 1] == "/health"
    assert ["http-check", "expect", "status", "200"] in web_backend


def test_a_post_is_never_retried_on_another_node(web_backend: list[list[str]]) -> None:
    """Layer-7 retries resend a request that may have reached the app: never for a write."""
    assert directives(web_backend, "retry-on"), "reads are retried (the test below needs it)"
    exemptions = [
        words for words in directives(web_backend, "http-request") if words[1] == "disable-l7-retry"
    ]
    assert exemptions, "no request is exempt from layer-7 retries"
    conditions = [words[words.index("if") + 1 :] for words in exemptions if "if" in words]
    unconditional = any("if" not in words and "unless" not in words for words in exemptions)
    assert unconditional or ["METH_POST"] in conditions


RETRIES_THAT_MAKE_A_FIRST_REQUEST_REUSABLE = {"conn-failure", "empty-response", "response-timeout"}


def test_a_new_visitor_never_rides_a_connection_opened_before_a_switch(
    web_backend: list[list[str]], defaults: list[list[str]]
) -> None:
    """A node's replacement moves its slot to a new address, and HAProxy 2.6 keeps its idle
    connections to the old one. A client connection's first request must open a server
    connection of its own (to the slot's current address): always under `never`; under `safe`
    only while retry-on lacks one of conn-failure, empty-response and response-timeout (with
    all three, HAProxy reuses idle connections for first requests too); never under
    `aggressive` or `always`. tests/test_lab_changes.py sees the old node answer otherwise."""
    modes = [words[1] for words in defaults + web_backend if words[0] == "http-reuse"]
    mode = modes[-1] if modes else "safe"  # the backend's own line wins; safe is the default
    retried = {word for words in directives(web_backend, "retry-on") for word in words[1:]}
    if "all-retryable-errors" in retried:
        retried |= RETRIES_THAT_MAKE_A_FIRST_REQUEST_REUSABLE
    first_request_reuses = mode in ("aggressive", "always") or (
        mode == "safe" and retried >= RETRIES_THAT_MAKE_A_FIRST_REQUEST_REUSABLE
    )
    assert not first_request_reuses, f"http-reuse {mode} with retry-on {sorted(retried)}"


def test_the_sections_parser_sees_what_haproxy_sees() -> None:
    """The parser above must not miss a directive hidden behind a comment or indentation."""
    parsed = sections("backend web\n    server a a:80 check  # on\n# server b b:80\n")
    assert parsed == {"backend web": [["server", "a", "a:80", "check"]]}
