"""The changes measurement: its plan, HAProxy's follow times from the lab's events, its table,
and one operation measured end to end against a small local server (no lab)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from benchmark_fixtures import line_with

from lab.bench import changes
from lab.bench.changes import (
    TAGGED_WRAPPER,
    Change,
    Changes,
    Operation,
    follow_times,
    old_code_after,
    old_code_after_switch,
    operations,
    run_one,
)
from lab.bench.cpu import CpuTimes
from lab.localize import LabError
from lab.state import Event
from lab.traffic import Answer
from userdata import web_node_config


class RecordingLab:
    """Stands in for Lab: records the operations the plan calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.events: list[Event] = []

    def scale(self, web_nodes: int) -> None:
        self.calls.append(("scale", web_nodes))

    def replace(self, host: str) -> None:
        self.calls.append(("replace", host))

    def release(self, app: dict[str, bytes], batch_size: int | None = None) -> None:
        self.calls.append(("release", app))


def plan(
    nodes: list[str], *, root: bool, movable: bool = True
) -> tuple[RecordingLab, list[Operation]]:
    lab = RecordingLab()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lab.bench.changes.os.geteuid", lambda: 0 if root else 1000)
        ops = operations(lab, nodes, can_move_public_address=movable)  # type: ignore[arg-type]
    return lab, ops


def test_the_plan_scales_out_and_back_replaces_releases_and_moves_the_load_balancer() -> None:
    lab, ops = plan(["web-1", "web-2"], root=True)
    assert [op.name for op in ops] == [
        "scale 2 -> 3",
        "scale 3 -> 2",
        "replace web-1",
        "replace every web node (2, one by one)",
        "release new app code (2 nodes, canary first)",
        "replace the load balancer",
    ]
    for op in ops:
        assert op.run is not None, op.name
        op.run()
    assert lab.calls[:5] == [
        ("scale", 3),
        ("scale", 2),
        ("replace", "web-1"),
        ("replace", "web-1"),
        ("replace", "web-2"),
    ]
    kind, app = lab.calls[5]
    assert kind == "release"
    assert isinstance(app, dict)
    shipped = web_node_config.app_files()
    assert app.keys() == shipped.keys(), "every module of the app"
    assert app["__init__.py"] == shipped["__init__.py"] + TAGGED_WRAPPER.encode()
    assert {n: app[n] for n in app if n != "__init__.py"} == {
        n: shipped[n] for n in shipped if n != "__init__.py"
    }
    assert lab.calls[6] == ("replace", "load-balancer")


def test_a_full_tier_scales_in_first() -> None:
    _, ops = plan([f"web-{i}" for i in range(1, 21)], root=True)
    assert [op.name for op in ops[:2]] == ["scale 20 -> 19", "scale 19 -> 20"]


def test_replacing_the_load_balancer_is_skipped_without_root_or_nft() -> None:
    _, ops = plan(["web-1", "web-2"], root=False)
    assert (ops[-1].run, ops[-1].skipped) == (None, "needs root")
    _, ops = plan(["web-1", "web-2"], root=True, movable=False)
    assert ops[-1].run is None
    assert "nft" in ops[-1].skipped


def test_the_tagged_release_adds_its_header_to_every_answer() -> None:
    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    namespace: dict[str, Any] = {"application": application}
    exec(TAGGED_WRAPPER, namespace)
    seen: list[list[tuple[str, str]]] = []
    body = namespace["application"]({}, lambda status, headers: seen.append(headers))
    assert body == [b"ok"]
    assert seen == [[("Content-Type", "text/plain"), ("X-App-Release", changes.RELEASE_TAG)]]


def event(at: float, what: str, instance: str) -> Event:
    return Event(at, what, instance.rsplit("-", 1)[0], instance)


def test_follow_times_pair_each_switch_with_its_instances_next_follow() -> None:
    events = [
        event(10.0, "ready", "web-1-2"),
        event(10.1, "switched", "web-1-2"),
        event(10.2, "switched", "web-2-2"),
        event(11.0, "followed", "web-2-2"),
        event(11.3, "followed", "web-1-2"),
        event(12.0, "retired", "web-1-1"),
        event(13.0, "followed", "web-3-1"),  # no switch seen: not a follow time
        event(14.0, "switched", "load-balancer-2"),  # nothing follows a load balancer
    ]
    assert follow_times(events) == pytest.approx([0.8, 1.2])
    assert follow_times([]) == []


def answer(at: float, release: str, status: int = 200) -> Answer:
    return Answer(at, "GET", status, "web-1", release)


def test_old_code_after_the_last_follow() -> None:
    answers = [answer(1.0, ""), answer(2.0, ""), answer(2.5, "bench"), answer(3.0, "", 503)]
    assert old_code_after(answers, 1.5) == pytest.approx(0.5)  # a failure is no answer
    assert old_code_after(answers, 2.5) == pytest.approx(-0.5)
    assert old_code_after([answer(1.0, "bench")], 0.5) is None


def test_old_code_after_each_nodes_switch() -> None:
    """Counted per node, from its own follow: web-2's old code still serves after web-1's."""
    answers = [
        Answer(1.0, "GET", 200, "web-1", ""),  # before web-1's switch: fine
        Answer(2.0, "GET", 200, "web-1", ""),  # after it: reached the old web-1
        Answer(2.1, "GET", 200, "web-1", "bench"),
        Answer(2.2, "GET", 200, "web-2", ""),  # web-2 not switched yet: fine
        Answer(2.3, "GET", 502, "web-1", ""),  # a failure is no answer
        Answer(3.5, "GET", 200, "web-2", ""),  # after web-2's switch
        Answer(3.6, "GET", 200, "", ""),  # from no node (an HAProxy error page)
    ]
    stale = old_code_after_switch(answers, {"web-1": 1.5, "web-2": 3.0})
    assert [(a.at, a.served_by) for a in stale] == [(2.0, "web-1"), (3.5, "web-2")]
    assert old_code_after_switch(answers, {}) == []


def test_rows_and_verdicts() -> None:
    done = Change("replace web-1", took_s=3.456, requests=400, follow_s=[0.9])
    both = Change(
        "replace every web node (2, one by one)",
        took_s=8.0,
        requests=900,
        follow_s=[0.5, 1.5, 1.0],
        old_code_after_s=None,
    )
    released = Change(
        "release new app code (2 nodes, canary first)",
        took_s=9.0,
        requests=950,
        follow_s=[0.4, 0.6],
        old_code_after_s=0.25,
        old_code_after_switch=0,
    )
    skipped = Change("replace the load balancer", skipped="needs root")
    assert done.row() == ["replace web-1", "3.46", "400", "0", "0.90", "0.90"]
    assert both.row()[4:] == ["1.00", "1.50"]
    assert released.row()[4:] == ["0.50", "0.60"]
    assert skipped.row() == [
        "replace the load balancer: skipped: needs root",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]
    text = "\n".join(Changes([done, both, released, skipped]).notes())
    assert "replace the load balancer: skipped: needs root" in text
    assert line_with(text, "changes:  0 failed of 2250 requests over 3 operations").endswith(
        "target 0  PASS"
    )
    assert "the old code answered last 0.25 s after HAProxy followed the last switch" in text
    assert line_with(text, f"changes:  {released.operation}: 0 answers from an old node").endswith(
        "target 0  PASS"
    )
    stale = Change(released.operation, requests=10, follow_s=[0.4], old_code_after_switch=3)
    stale_text = "\n".join(Changes([stale]).notes())
    assert line_with(stale_text, f"changes:  {stale.operation}: 3 answers").endswith("MISS")

    failed = Change(
        "scale 2 -> 3",
        error="HAProxy did not follow",
        took_s=20.0,
        requests=10,
        failed=2,
        failures=["at 1.00 s GET 503"],
    )
    text = "\n".join(Changes([done, failed]).notes())
    assert line_with(text, "changes:  2 failed of 410 requests").endswith("MISS")
    assert "changes:  scale 2 -> 3 failed: HAProxy did not follow" in text
    assert "changes:  scale 2 -> 3: at 1.00 s GET 503" in text
    assert failed.row()[0] == "scale 2 -> 3: FAILED"
    nothing = "\n".join(Changes([skipped]).notes())
    assert line_with(nothing, "changes:  0 failed of 0").endswith("MISS"), "nothing measured"


class _Handler(http.server.BaseHTTPRequestHandler):
    failing = threading.Event()

    def do_GET(self) -> None:
        self.send_response(503 if self.failing.is_set() else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    _Handler.failing.clear()


def fake_context(url: str, lab: RecordingLab) -> Any:
    sample = CpuTimes(0.0, 0.0, {}, {}, 0.0)
    return SimpleNamespace(
        lab=lab,
        topology=lambda: SimpleNamespace(url=url),
        cpu_times=lambda: sample,
    )


def test_one_operation_under_the_stream(site: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream runs around the operation; failures, follow times and duration are its."""
    monkeypatch.setattr(changes, "LEAD_IN_S", 0.3)
    monkeypatch.setattr(changes, "TAIL_S", 0.3)
    lab = RecordingLab()
    lab.events.append(event(0.0, "switched", "web-9-1"))  # before the operation: ignored

    def switch_and_fail_a_moment() -> None:
        now = time.monotonic()
        lab.events += [event(now, "switched", "web-1-2"), event(now + 0.4, "followed", "web-1-2")]
        _Handler.failing.set()
        time.sleep(0.2)
        _Handler.failing.clear()

    change = run_one(fake_context(site, lab), Operation("replace web-1", switch_and_fail_a_moment))
    assert change.error == ""
    assert change.took_s is not None
    assert change.took_s >= 0.2
    assert change.requests > 10
    assert 0 < change.failed < change.requests
    assert all("503" in failure for failure in change.failures)
    assert change.follow_s == pytest.approx([0.4])
    assert [what for _, what, _ in change.timeline] == ["switched", "followed"]
    assert change.other_cores == 0.0


def test_a_failing_operation_is_recorded_not_raised(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes, "LEAD_IN_S", 0.1)
    monkeypatch.setattr(changes, "TAIL_S", 0.1)

    def broken() -> None:
        raise LabError("web-1 (instance lab-web-1-2) gave up reporting ready\n  its logs ...")

    change = run_one(fake_context(site, RecordingLab()), Operation("replace web-1", broken))
    assert change.error == "web-1 (instance lab-web-1-2) gave up reporting ready"
    assert change.failed == 0
    skipped = run_one(fake_context(site, RecordingLab()), Operation("x", None, "needs root"))
    assert (skipped.skipped, skipped.requests) == ("needs root", 0)
