"""The app's behaviour, against the in-memory primary and replica of `fake_mysql`.

Routing (writes to the primary, fresh reads from the replica), bounded staleness and
read-your-writes, breakers and the bulkhead that keep /health free, honest write outcomes with
idempotency keys, input checks, connection reuse, TLS and credentials. Timing against real
MariaDB servers is in test_app_mariadb.py; random input in test_app_fuzz.py.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from fake_mysql import (
    CONFIG,
    PRIMARY,
    REPLICA,
    Cluster,
    FixedCredentials,
    call,
    make_app,
    web_app,
)
from moto import mock_aws

from lab.certificates import write_tls_files
from userdata.cloud_config import TEMPLATES
from userdata.web_node_config import AppDatabase


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def ready(cluster: Cluster, **config: Any) -> Any:
    """An app whose upkeep has run once: tables made, the replica's lag measured."""
    app = make_app(cluster, **config)
    app.db.maintain()
    return app


def post(app: Any, text: str, **headers: str) -> Any:
    return call(app, "POST", "/api/messages", {"text": text}, headers=headers)


def texts(answer: Any) -> list[str]:
    return [m["text"] for m in answer.body["messages"]]


def test_writes_go_to_the_primary_and_fresh_reads_to_the_replica(cluster: Cluster) -> None:
    app = ready(cluster)
    answer = post(app, "  hello  ")
    assert answer.status == 201
    assert answer.body["written_to"] == "primary"
    assert answer.body["message"]["text"] == "hello"
    assert answer.body["message"]["written_by"] == "web-2"
    assert answer.headers["X-Served-By"] == "web-2"
    cluster.tick(1)
    app.db.maintain()
    answer = call(app, "GET", "/api/messages")
    assert answer.status == 200
    assert (answer.body["read_from"], answer.body["stale"]) == ("replica", False)
    assert answer.body["replica_lag_seconds"] == pytest.approx(0.0, abs=0.01)
    assert answer.body["served_by"] == "web-2"
    assert texts(answer) == ["hello"]
    assert (
        answer.body["messages"][0]["created_at"]
        == (cluster.db_time - timedelta(seconds=1)).isoformat()
    )


def test_reads_go_to_the_primary_until_the_replica_lag_is_known(cluster: Cluster) -> None:
    app = make_app(cluster)
    answer = call(app, "GET", "/api/messages")
    assert (answer.status, answer.body["read_from"]) == (200, "primary")
    assert answer.body["replica_lag_seconds"] is None
    assert answer.body["messages"] == [], "no table yet is an empty list, not an error"


def test_a_lagging_replica_is_not_read_and_its_lag_is_reported(cluster: Cluster) -> None:
    app = ready(cluster, max_replica_lag_seconds=3)
    post(app, "before")
    cluster.replicating = False  # e.g. STOP SLAVE SQL_THREAD
    post(app, "after")
    for _ in range(5):
        cluster.tick(1)
        app.db.maintain()  # heartbeats land on the primary only
    answer = call(app, "GET", "/api/messages")
    assert answer.body["read_from"] == "primary"
    assert answer.body["replica_lag_seconds"] == pytest.approx(5.0, abs=0.01)
    assert texts(answer) == ["after", "before"]
    cluster.replicating = True
    cluster.tick(1)
    app.db.maintain()
    answer = call(app, "GET", "/api/messages")
    assert answer.body["read_from"] == "replica"
    assert texts(answer) == ["after", "before"]


def test_the_lag_counts_the_time_since_it_was_measured(cluster: Cluster) -> None:
    """If the upkeep thread stops measuring (a hung replica), the bound grows by itself."""
    app = ready(cluster, max_replica_lag_seconds=3)
    cluster.tick(2)
    assert call(app, "GET", "/api/messages").body["read_from"] == "replica"
    cluster.tick(2)
    answer = call(app, "GET", "/api/messages")
    assert answer.body["read_from"] == "primary"
    assert answer.body["replica_lag_seconds"] == pytest.approx(4.0, abs=0.01)


def test_a_client_reads_its_own_write(cluster: Cluster) -> None:
    app = ready(cluster)
    cluster.tick(0.1)
    cluster.replicating = False
    written = post(app, "mine")
    token = written.body["read_after"]
    assert written.headers["X-Read-After"] == token
    cookie = written.headers["Set-Cookie"]
    assert re.fullmatch(rf"read_after={token}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax", cookie)
    cluster.tick(0.2)
    # Others still read the (slightly stale, within bounds) replica...
    other = call(app, "GET", "/api/messages")
    assert (other.body["read_from"], texts(other)) == ("replica", [])
    # ...the writer reads the primary, by cookie or by header, until the replica has its write.
    for headers in ({"Cookie": f"theme=dark; read_after={token}"}, {"X-Read-After": token}):
        mine = call(app, "GET", "/api/messages", headers=headers)
        assert (mine.body["read_from"], texts(mine)) == ("primary", ["mine"])
    cluster.replicating = True
    cluster.tick(1)
    app.db.maintain()  # a heartbeat later than the write reaches the replica
    mine = call(app, "GET", "/api/messages", headers={"X-Read-After": token})
    assert (mine.body["read_from"], texts(mine)) == ("replica", ["mine"])


def test_a_token_from_the_future_is_ignored(cluster: Cluster) -> None:
    """A forged token must not pin a client (or everyone, via a shared cookie) to the primary."""
    app = ready(cluster)
    future = str(10**17)  # the year 5138
    answer = call(app, "GET", "/api/messages", headers={"X-Read-After": future})
    assert answer.body["read_from"] == "replica"
    junk = call(app, "GET", "/api/messages", headers={"Cookie": "read_after=x; read_after=-1"})
    assert junk.body["read_from"] == "replica"


def test_reads_fall_back_to_the_primary_and_the_breaker_stops_trying(cluster: Cluster) -> None:
    app = ready(cluster)  # the breaker opens after 3 failures in a row, for 2 s
    post(app, "kept")
    cluster.replica.up = False
    for _ in range(3):
        answer = call(app, "GET", "/api/messages")
        assert (answer.status, answer.body["read_from"], texts(answer)) == (
            200,
            "primary",
            ["kept"],
        )
    tried = len(cluster.replica.statements), cluster.replica.connections
    assert call(app, "GET", "/health").body["databases_up"] == {"primary": True, "replica": False}
    answer = call(app, "GET", "/api/messages")
    assert answer.body["read_from"] == "primary"
    assert (len(cluster.replica.statements), cluster.replica.connections) == tried, "skipped"
    # Back up: requests still skip it; the upkeep thread's probe closes the breaker.
    cluster.replica.up = True
    cluster.tick(1)
    assert call(app, "GET", "/api/messages").body["read_from"] == "primary"
    app.db.maintain()
    assert cluster.replica.connections == tried[1], "no probe before open_seconds have passed"
    cluster.tick(1.5)
    app.db.maintain()
    assert call(app, "GET", "/health").body["databases_up"]["replica"] is True
    assert call(app, "GET", "/api/messages").body["read_from"] == "replica"


def test_a_hung_replica_times_out_once_then_reads_move_to_the_primary(cluster: Cluster) -> None:
    app = ready(cluster)
    call(app, "GET", "/api/messages")  # a pooled replica connection
    cluster.replica.hung = True
    cluster.tick(2)  # it idled: the next use pings it, and the ping times out
    connections = cluster.replica.connections
    answer = call(app, "GET", "/api/messages")
    assert answer.body["read_from"] == "primary"
    assert cluster.replica.connections == connections, "a hung host gets no new connection"


def test_writes_fail_fast_with_503_while_reads_go_on(cluster: Cluster) -> None:
    app = ready(cluster)
    post(app, "before")
    cluster.primary.up = False
    answer = post(app, "lost?")
    assert answer.status == 503
    assert answer.body["outcome"] == "not saved"
    assert "nothing was saved" in answer.body["error"]
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["X-Served-By"] == "web-2"
    answer = call(app, "GET", "/api/messages")
    assert (answer.status, answer.body["read_from"], texts(answer)) == (200, "replica", ["before"])


def test_with_the_primary_down_a_lagging_replica_still_serves_and_says_so(cluster: Cluster) -> None:
    app = ready(cluster, max_replica_lag_seconds=3)
    post(app, "old")
    cluster.primary.up = False
    for _ in range(5):  # no heartbeat is written: the replica's lag grows
        cluster.tick(1)
        app.db.maintain()
    answer = call(app, "GET", "/api/messages")
    assert (answer.status, answer.body["read_from"], answer.body["stale"]) == (200, "replica", True)
    assert answer.body["replica_lag_seconds"] > 3
    assert texts(answer) == ["old"]


def test_an_open_breaker_refuses_writes_without_sending_anything(cluster: Cluster) -> None:
    app = ready(cluster)
    cluster.primary.up = False
    for _ in range(3):
        assert post(app, "x").status == 503
    cluster.primary.up = True  # back, but not probed yet
    statements = len(cluster.primary.statements)
    answer = post(app, "refused")
    assert (answer.status, answer.body["outcome"]) == (503, "not saved")
    assert len(cluster.primary.statements) == statements
    assert cluster.primary.rows == []


def test_a_connection_lost_after_the_insert_is_an_unknown_outcome(cluster: Cluster) -> None:
    """The primary stored the row, but the answer never came: "nothing was saved" would be a
    lie, and a blind retry a duplicate. The retry with the key returns the stored message."""
    app = ready(cluster)
    cluster.die_after_insert = True
    answer = post(app, "maybe")
    assert answer.status == 503
    assert answer.body["outcome"] == "unknown"
    assert "may or may not" in answer.body["error"]
    key = answer.body["idempotency_key"]
    assert len(cluster.primary.rows) == 1, "it was in fact stored"
    retry = post(app, "maybe", **{"Idempotency-Key": key})
    assert retry.status == 201
    assert retry.body["replayed"] is True
    assert retry.body["message"]["id"] == cluster.primary.rows[0]["id"]
    assert len(cluster.primary.rows) == 1, "the retry stored nothing"


def test_a_retry_with_the_same_key_returns_the_first_answer(cluster: Cluster) -> None:
    app = ready(cluster)
    first = post(app, "once", **{"Idempotency-Key": "3f1c-retry"})
    again = post(app, "once", **{"Idempotency-Key": "3f1c-retry"})
    assert (first.status, again.status) == (201, 201)
    assert (first.body["replayed"], again.body["replayed"]) == (False, True)
    assert again.body["message"] == first.body["message"]
    assert len(cluster.primary.rows) == 1
    reused = post(app, "another text", **{"Idempotency-Key": "3f1c-retry"})
    assert reused.status == 422
    assert "Idempotency-Key" in reused.body["error"]
    assert len(cluster.primary.rows) == 1
    assert post(app, "other").status == 201, "without a key, each POST is a new message"
    assert len(cluster.primary.rows) == 2


def test_before_the_bootstrap_the_app_answers_503_and_then_serves_without_a_restart() -> None:
    """First boot can beat the database bootstrap: no tables, and the app may not make them
    (its user has no DDL rights). It must stay up and pick the database up when it appears."""
    cluster = Cluster(bootstrapped=False)
    app = ready(cluster)
    assert call(app, "GET", "/health").status == 200
    early = post(app, "too early")
    assert (early.status, early.body["outcome"]) == (503, "not saved")
    assert call(app, "GET", "/api/messages").body["messages"] == []
    cluster.bootstrap()
    assert post(app, "after the bootstrap").status == 201
    app.db.maintain()
    sent = cluster.primary.statements + cluster.replica.statements
    assert not [s for s in sent if s.startswith(("CREATE", "ALTER", "INSERT IGNORE"))], "no DDL"


def test_the_heartbeat_changes_nothing_while_a_recent_beat_exists(cluster: Cluster) -> None:
    """Twenty nodes with two workers each try every half second; the beat must not
    replicate forty times as often."""
    app = ready(cluster)
    beat = cluster.primary.beat
    cluster.tick(0.1)
    app.db.maintain()
    assert cluster.primary.beat == beat
    cluster.tick(0.5)
    app.db.maintain()
    assert cluster.primary.beat == cluster.db_time


def test_a_pooled_connection_is_reused_and_pinged_after_idling(cluster: Cluster) -> None:
    app = ready(cluster)
    primary, replica = cluster.primary.connections, cluster.replica.connections
    for i in range(20):
        assert post(app, f"m{i}").status == 201
        assert call(app, "GET", "/api/messages").status == 200
    assert (cluster.primary.connections, cluster.replica.connections) == (primary, replica)
    # The server restarted while the connections idled: the ping finds out, and a new one
    # is opened before the INSERT is sent, so the write is not an unknown outcome.
    for connection, _ in app.db.hosts[PRIMARY].idle + app.db.hosts[REPLICA].idle:
        connection.closed_by_server = True
    cluster.tick(2)
    assert post(app, "after a restart").status == 201
    assert call(app, "GET", "/api/messages").body["read_from"] == "replica"
    assert cluster.primary.connections == primary + 1


def test_a_read_on_a_dead_pooled_connection_is_retried_on_a_new_one(cluster: Cluster) -> None:
    app = ready(cluster)
    call(app, "GET", "/api/messages")
    for connection, _ in app.db.hosts[REPLICA].idle:
        connection.closed_by_server = True  # not pinged: it idled for less than a second
    answer = call(app, "GET", "/api/messages")
    assert (answer.status, answer.body["read_from"]) == (200, "replica")
    assert call(app, "GET", "/health").body["databases_up"]["replica"] is True


def test_the_bulkhead_keeps_threads_free_for_health(cluster: Cluster) -> None:
    """Threads stuck on a hung primary take its slots only: reads still use the replica's,
    writes are refused at once, and /health needs none."""
    app = ready(cluster, max_concurrent_queries=2)
    primary, replica = app.db.hosts[PRIMARY], app.db.hosts[REPLICA]
    held = [primary.enter(False) for _ in range(2)]  # two requests waiting on the primary...
    cluster.tick(1)  # ...for a second now
    refused = post(app, "x")
    assert (refused.status, refused.body["outcome"]) == (503, "not saved")
    assert refused.headers["Retry-After"] == "1"
    assert cluster.primary.rows == []
    assert post(app, "").status == 400, "bad input is judged without a slot"
    assert call(app, "GET", "/api/messages").body["read_from"] == "replica"
    held += [replica.enter(False) for _ in range(2)]  # and now on the replica too
    cluster.tick(1)
    statements = len(cluster.primary.statements) + len(cluster.replica.statements)
    busy = call(app, "GET", "/api/messages")
    assert (busy.status, busy.headers["Retry-After"]) == (503, "1")
    assert call(app, "GET", "/health").status == 200
    assert len(cluster.primary.statements) + len(cluster.replica.statements) == statements
    primary.leave(held[0], True)
    assert post(app, "a slot is free again").status == 201


def test_a_busy_but_fast_host_is_waited_for(cluster: Cluster) -> None:
    """Under load every slot may be taken by calls that take a millisecond: a request then
    waits its turn (up to SLOT_WAIT_SECONDS) instead of failing; behind a call that hangs, it
    does not."""
    app = ready(cluster, max_concurrent_queries=1)
    primary = app.db.hosts[PRIMARY]
    held = primary.enter(False)
    started = time.monotonic()
    with pytest.raises(web_app.failures.NotTried, match="busy"):
        primary.enter(False)
    waited = time.monotonic() - started
    slot_wait = web_app.database_host.SLOT_WAIT_SECONDS
    assert slot_wait - 0.01 < waited < slot_wait + 0.5, waited
    cluster.tick(0.3)  # a call that takes 0.3 s on a busy machine: still waited for
    freed = threading.Timer(0.05, primary.leave, (held, True))
    started = time.monotonic()  # before the timer starts: it may free the slot at once
    freed.start()
    held = primary.enter(False)
    assert held is not None
    assert 0.04 < time.monotonic() - started < slot_wait, "got the freed slot"
    freed.join()
    cluster.tick(1)  # the call holding the slot has waited a second: the host hangs
    started = time.monotonic()
    with pytest.raises(web_app.failures.NotTried, match="busy"):
        primary.enter(False)
    assert time.monotonic() - started < 0.05, "no wait behind a hung host"
    primary.leave(held, True)
    assert primary.enter(False) is not None


def test_health_is_the_app_not_the_database(cluster: Cluster) -> None:
    app = ready(cluster)
    cluster.primary.up = cluster.replica.up = False
    answer = call(app, "GET", "/health")
    assert answer.status == 200
    assert answer.body["status"] == "ok"
    assert answer.body["replica_lag_seconds"] == pytest.approx(0.0, abs=0.01)


def test_no_database_at_all_is_a_503_not_a_crash(cluster: Cluster) -> None:
    app = make_app(cluster)
    cluster.primary.up = cluster.replica.up = False
    answer = call(app, "GET", "/api/messages")
    assert answer.status == 503
    assert "error" in answer.body
    assert call(app, "GET", "/").status == 503


EMOJI = "\U0001f600"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "why"),
    [
        (b"not json", "application/json", 400, "send JSON"),
        (b'{"message": "x"}', "application/json", 400, "send JSON"),
        (b"[1, 2]", "application/json", 400, "send JSON"),
        (b'{"text": 42}', "application/json", 400, "send JSON"),
        (b'{"text": "\xff"}', "application/json", 400, "send JSON"),
        (b'{"text": "\\ud800"}', "application/json", 400, "surrogate"),
        (b'{"text": "a\\udfffb"}', "application/json", 400, "surrogate"),
        (b"[" * 2000 + b"]" * 2000, "application/json", 400, "send JSON"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "application/json", 400, "send JSON"),
        (b'{"text": ""}', "application/json", 400, "visible"),
        (b'{"text": "   "}', "application/json", 400, "visible"),
        (b'{"text": "\\u0000"}', "application/json", 400, "control"),
        (b'{"text": "hi\\u0007"}', "application/json", 400, "control"),
        (b'{"text": "\\u200b\\u200b"}', "application/json", 400, "visible"),
        (b'{"text": "\\u3000\\u2028"}', "application/json", 400, "visible"),
        (json.dumps({"text": "x" * 501}).encode(), "application/json", 400, "at most 500"),
        (json.dumps({"text": "x" * 17000}).encode(), "application/json", 413, "16384 bytes"),
        (b'{"text": "hi"}', "text/plain", 415, "application/json"),
        (b"text=hi", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"text": "hi"}', None, 415, "application/json"),
        (b'{"text": "hi"}', "application/json; charset=latin-1", 415, "application/json"),
    ],
)
def test_crafted_input_is_a_4xx_that_says_why(
    cluster: Cluster, raw: bytes, content_type: str | None, status: int, why: str
) -> None:
    app = ready(cluster)
    answer = call(app, "POST", "/api/messages", raw=raw, content_type=content_type)
    assert answer.status == status
    assert why in answer.body["error"]
    assert cluster.primary.rows == []


def test_the_text_limit_is_in_characters_after_decoding(cluster: Cluster) -> None:
    """500 emoji sent as \\u escapes are 6,000 bytes of JSON and a valid 500-character text."""
    app = ready(cluster)
    raw = json.dumps({"text": EMOJI * 500}).encode()
    assert len(raw) > 6000
    answer = call(app, "POST", "/api/messages", raw=raw, content_type="application/json")
    assert answer.status == 201
    assert answer.body["message"]["text"] == EMOJI * 500
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # joined by zero-width joiners
    assert post(app, family).body["message"]["text"] == family
    assert post(app, "line one\nline two\ttabbed").status == 201
    charset = "application/json; charset=UTF-8"
    raw = b'{"text": "caf\xc3\xa9"}'
    assert call(app, "POST", "/api/messages", raw=raw, content_type=charset).status == 201


def test_content_length_and_key_are_checked(cluster: Cluster) -> None:
    app = ready(cluster)
    environ_answer = call(
        app, "POST", "/api/messages", {"text": "x"}, headers={"Idempotency-Key": "k" * 65}
    )
    assert (environ_answer.status, "Idempotency-Key" in environ_answer.body["error"]) == (400, True)
    spaced = post(app, "x", **{"Idempotency-Key": "has space"})
    assert spaced.status == 400
    assert cluster.primary.rows == []


def test_methods_paths_and_head(cluster: Cluster) -> None:
    app = ready(cluster)
    post(app, "<b>hi</b>")
    page = call(app, "GET", "/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "&lt;b&gt;hi&lt;/b&gt;" in page.body, "user text is escaped"
    assert "Served by web-2" in page.body
    assert call(app, "GET", "/nope").status == 404
    for method, path, allow in [
        ("DELETE", "/api/messages", "GET, HEAD, POST"),
        ("PUT", "/api/messages", "GET, HEAD, POST"),
        ("POST", "/health", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
    ]:
        answer = call(app, method, path)
        assert (answer.status, answer.headers["Allow"]) == (405, allow)
        assert method in answer.body["error"]
    for path in ("/", "/health", "/api/messages"):
        got, head = call(app, "GET", path), call(app, "HEAD", path)
        assert head.status == got.status == 200
        assert head.raw == b""
        assert head.headers["Content-Length"] == str(len(got.raw))


def test_limit_is_bounded(cluster: Cluster) -> None:
    app = ready(cluster)
    for i in range(5):
        post(app, f"m{i}")
    assert len(call(app, "GET", "/api/messages?limit=2").body["messages"]) == 2
    assert len(call(app, "GET", "/api/messages?limit=0").body["messages"]) == 1
    assert len(call(app, "GET", "/api/messages?limit=" + "9" * 5000).body["messages"]) == 5
    assert texts(call(app, "GET", "/api/messages?limit=x&limit=1"))[:1] == ["m4"]


def test_a_refused_password_is_read_again_without_a_restart(cluster: Cluster) -> None:
    """The bootstrap rolls out a new password; the app must follow without being restarted."""
    credentials = FixedCredentials(["first", "second"])
    app = make_app(cluster, credentials)
    cluster.primary.password = cluster.replica.password = "second"
    assert post(app, "after rotation").status == 201
    assert credentials.reads == 1


def test_every_connection_has_short_timeouts(cluster: Cluster) -> None:
    app = ready(cluster)
    options = cluster.seen_options[0]
    assert options["connect_timeout"] <= 1
    assert options["read_timeout"] <= 1
    assert options["write_timeout"] <= 1
    assert options["autocommit"] is True
    assert app.db.config["max_concurrent_queries"] == 5


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


SECRET = "web-infra-dev/database/app-user"


def app_secret(password: str) -> str:
    return json.dumps({"username": "webapp_app", "password": password})


def test_the_apps_secret_is_read_by_name_and_reread_after_rotation(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app reads its own secret by the name in its config: no RDS API, no master secret."""
    secrets = boto3.client("secretsmanager", region_name="eu-west-1")
    secrets.create_secret(Name=SECRET, SecretString=app_secret("first"))
    credentials = web_app.credentials.credentials_from(
        {"source": "secrets-manager", "region": "eu-west-1", "secret_id": SECRET}
    )
    assert credentials.get() == ("webapp_app", "first")
    secrets.put_secret_value(SecretId=SECRET, SecretString=app_secret("second"))
    assert credentials.get() == ("webapp_app", "first"), "cached until MySQL refuses it"
    monkeypatch.setattr(web_app.credentials, "SECRET_REREAD_SECONDS", 0.0)
    credentials.invalidate()
    assert credentials.get() == ("webapp_app", "second")


def test_a_missing_secret_is_asked_for_again_at_a_bounded_rate(aws: None) -> None:
    """Before the secret exists every request answers 503 at once; Secrets Manager is asked
    at most once per SECRET_RETRY_SECONDS, and the secret is picked up when it appears."""
    now = [100.0]
    credentials = web_app.credentials.SecretsManagerSecret(
        "eu-west-1", SECRET, clock=lambda: now[0]
    )
    calls: list[str] = []
    credentials.secrets.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("get")
    )
    for _ in range(3):
        with pytest.raises(web_app.failures.Unavailable, match="DB secret"):
            credentials.get()
    assert calls == ["get"], "one call, then answers from memory"
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=SECRET, SecretString=app_secret("first")
    )
    now[0] += web_app.credentials.SECRET_RETRY_SECONDS - 0.1
    with pytest.raises(web_app.failures.Unavailable):
        credentials.get()
    now[0] += 0.2
    assert credentials.get() == ("webapp_app", "first")
    assert calls == ["get", "get"]


def test_one_tls_context_verifies_the_chain_but_not_the_name(
    cluster: Cluster, tmp_path: Path
) -> None:
    tls = write_tls_files(tmp_path)
    app = ready(cluster, tls_ca_file=str(tls.ca))
    post(app, "over TLS")
    cluster.tick(2)
    for connection, _ in app.db.hosts[REPLICA].idle:
        connection.closed_by_server = True
    assert call(app, "GET", "/api/messages").status == 200
    contexts = [options["ssl"] for options in cluster.seen_options]
    assert len(contexts) >= 3
    assert all(context is contexts[0] for context in contexts), "one context per process"
    context = contexts[0]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False, "the app connects through the zone's alias"
    assert len(context.get_ca_certs()) == 1, "only the configured CA"
    plain = ready(Cluster())
    assert "ssl" not in plain.db.connect.__self__.seen_options[0], "no CA file, no TLS"


def test_a_missing_ca_bundle_is_unavailable_not_a_crash(cluster: Cluster) -> None:
    app = make_app(cluster, tls_ca_file="/etc/web-app/no-such-bundle.pem")
    answer = call(app, "GET", "/api/messages")
    assert answer.status == 503
    assert "error" in answer.body
    assert post(app, "x").body["outcome"] == "not saved"


def test_first_boot_before_iam_and_rds_is_a_503_not_a_dead_app(aws: None, tmp_path: Path) -> None:
    """Web nodes can boot before their role's policy, their secret and the primary exist: the
    app must start, answer /health, and say 503 until the secret can be read."""
    config = {
        "node_name": "web-1",
        "database": CONFIG,
        "credentials": {"source": "secrets-manager", "region": "eu-west-1", "secret_id": SECRET},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    app = web_app.create_app(str(path))
    assert call(app, "GET", "/health").status == 200
    answer = post(app, "too early")
    assert answer.status == 503
    assert "primary" in answer.body["error"]
    assert call(app, "GET", "/api/messages").status == 503


def test_file_credentials_for_the_local_lab(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"username": "u", "password": "p"}))
    credentials = web_app.credentials.credentials_from({"source": "file", "path": str(path)})
    assert credentials.get() == ("u", "p")
    with pytest.raises(ValueError, match="unknown credentials source"):
        web_app.credentials.credentials_from({"source": "vault"})


def test_gunicorn_has_threads_to_spare_beyond_the_database_limit() -> None:
    """If every thread could wait on MySQL, /health would queue behind them and HAProxy
    would take a healthy node out of rotation while the database hangs."""
    threads = re.search(r"^threads = (\d+)$", (TEMPLATES / "gunicorn.conf.py").read_text(), re.M)
    assert threads is not None
    config = AppDatabase("dev.internal", "webapp", "eu-west-1", "primary").app_config("web-1")
    assert int(threads.group(1)) >= 2 * config["database"]["max_concurrent_queries"] + 2


def test_gunicorn_keeps_idle_connections_longer_than_nginx() -> None:
    """Nginx must close an idle upstream connection before gunicorn does, or a request sent
    on it as gunicorn closes it is a 502 (not retried for a POST)."""
    gunicorn = re.search(r"^keepalive = (\d+)$", (TEMPLATES / "gunicorn.conf.py").read_text(), re.M)
    nginx = re.search(
        r"upstream app_server \{[^}]*keepalive_timeout (\d+)s;",
        (TEMPLATES / "nginx.conf").read_text(),
    )
    assert gunicorn is not None
    assert nginx is not None
    assert int(nginx.group(1)) + 5 <= int(gunicorn.group(1))
