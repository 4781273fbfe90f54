"""Random requests against the WSGI handler: no crafted request may produce a 500.

Hypothesis draws the method, path, query, headers and body (raw bytes, random JSON, JSON
with \\u escapes such as unpaired surrogates) and the state of the in-memory databases (up,
refusing, hung, dying after an INSERT, lagging). Every answer must be well-formed for
gunicorn (latin-1 headers without line breaks, a matching Content-Length), JSON on /api/ and
/health, and below 500 except a 503 that the database's state explains.
"""

from __future__ import annotations

import json

from fake_mysql import Answer, Cluster, call, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LATIN_1 = st.characters(max_codepoint=255)
# Mostly requests that reach the database, so that bodies are really parsed and stored.
PATHS = st.sampled_from(["/api/messages"] * 6 + ["/", "/health", "/api/messages/", "/api", "//"])
METHODS = st.sampled_from(["POST"] * 6 + ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["text", "a", ""]), children, max_size=3)
    ),
    max_leaves=20,
)
ESCAPE = (st.integers(0xD800, 0xDFFF) | st.integers(0, 0xFFFF)).map(lambda code: f"\\u{code:04x}")
# Any character, with the awkward ones (surrogates, controls, invisible formats, spaces) often.
AWKWARD = st.characters(categories=["Cs", "Cc", "Cf", "Zs", "Zl", "Zp", "Co"])
# Joined from a list: st.text never yields surrogates, whatever its alphabet.
ANY_TEXT = st.lists(st.characters(exclude_categories=()) | AWKWARD, max_size=600).map("".join)
ESCAPED_TEXT = st.lists(ESCAPE | st.text(max_size=3), max_size=40).map(
    lambda parts: ('{"text": "' + "".join(p.replace('"', "") for p in parts) + '"}').encode(
        "utf-8", "surrogatepass"
    )
)
BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda value: json.dumps(value).encode())
    | ANY_TEXT.map(lambda text: json.dumps({"text": text}).encode())
    | ESCAPED_TEXT
    | st.sampled_from([b"[", b'{"a":']).flatmap(
        lambda opener: st.integers(500, 8000).map(lambda depth: opener * depth)
    )
)
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", "APPLICATION/JSON"]
)
HEADERS = st.dictionaries(
    st.sampled_from(["Idempotency-Key", "Cookie", "X-Read-After", "Transfer-Encoding"]),
    st.text(LATIN_1, max_size=70) | st.sampled_from(["read_after=1", "9" * 30, "k-1"]),
    max_size=3,
)


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    cluster = Cluster()
    for server in (cluster.primary, cluster.replica):
        state = draw(st.sampled_from(["up", "up", "down", "hung"]))
        server.up, server.hung = state != "down", state == "hung"
    cluster.die_after_insert = draw(st.booleans())
    cluster.replicating = draw(st.booleans())
    return cluster


def working(cluster: Cluster) -> tuple[bool, bool]:
    """Whether the primary takes writes and the replica answers, before the request."""
    primary, replica = cluster.primary, cluster.replica
    writes = primary.up and not primary.hung and not cluster.die_after_insert
    return writes, replica.up and not replica.hung


def check(answer: Answer, method: str, path: str, state: tuple[bool, bool]) -> None:
    for name, value in answer.headers.items():
        value.encode("latin-1")  # gunicorn sends header values as latin-1
        assert "\r" not in value, name
        assert "\n" not in value, name
    if method == "HEAD":
        assert answer.raw == b""
    else:
        assert answer.headers["Content-Length"] == str(len(answer.raw))
    if path.startswith("/api/") or path == "/health" or answer.status >= 400:
        assert answer.headers["Content-Type"] == "application/json"
        if method != "HEAD":
            assert isinstance(answer.body, dict)
            assert answer.body["served_by"] == "web-2"
    assert answer.status != 500, answer.body
    if answer.status >= 500:
        assert answer.status == 503
        primary, replica = state
        explained = (method == "POST" and not primary) or not (primary or replica)
        assert explained, f"503 with primary={primary} replica={replica}: {answer.body}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cluster=clusters(),
    method=METHODS | st.text(LATIN_1, max_size=8),
    path=PATHS | st.text(LATIN_1, max_size=30),
    query=st.text(LATIN_1, max_size=30),
    content_type=CONTENT_TYPES | st.none() | st.text(LATIN_1, max_size=30),
    headers=HEADERS,
    body=BODIES,
)
def test_no_request_gets_a_500(
    cluster: Cluster,
    method: str,
    path: str,
    query: str,
    content_type: str | None,
    headers: dict[str, str],
    body: bytes,
) -> None:
    app = make_app(cluster)
    app.db.maintain()
    target = f"{path}?{query}" if query else path
    state = working(cluster)
    answer = call(app, method, target, raw=body, content_type=content_type, headers=headers)
    check(answer, method, path, state)


@settings(max_examples=300, deadline=None)
@given(cluster=clusters(), body=BODIES, content_type=CONTENT_TYPES, headers=HEADERS)
def test_no_body_gets_a_500(
    cluster: Cluster, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    """Every body reaches the parser: a POST to /api/messages that claims to be JSON."""
    app = make_app(cluster)
    app.db.maintain()
    state = working(cluster)
    answer = call(
        app, "POST", "/api/messages", raw=body, content_type=content_type, headers=headers
    )
    check(answer, "POST", "/api/messages", state)


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT, key=st.none() | st.text(LATIN_1, min_size=1, max_size=70))
def test_every_accepted_text_is_stored_once_and_read_back_unchanged(
    text: str, key: str | None
) -> None:
    cluster = Cluster()
    app = make_app(cluster)
    app.db.maintain()
    headers = {} if key is None else {"Idempotency-Key": key}
    answers = [call(app, "POST", "/api/messages", {"text": text}, headers=headers) for _ in "ab"]
    first = answers[0]
    assert first.status in (201, 400), first.body
    if first.status == 400:
        assert cluster.primary.rows == []
        return
    stored = first.body["message"]["text"]
    assert stored == text.strip()
    assert 0 < len(stored) <= 500
    assert len(cluster.primary.rows) == (1 if key is not None else 2)
    if key is not None:
        assert answers[1].body["replayed"] is True
    read = call(app, "GET", "/api/messages", headers={"X-Read-After": first.body["read_after"]})
    assert read.body["messages"][-1]["text"] == stored
