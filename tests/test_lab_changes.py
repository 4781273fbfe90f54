"""Changes without downtime, end to end: what `pulumi up` does, done to the running lab.

Under a steady stream of requests through the public address (reads and writes, each on a new
connection, bounded in time), the lab scales out and in, replaces every web node, rolls out new
app code, moves the public address within the pair of load balancers and replaces each of them.
Each host is switched to only after its own readiness report (the shipped script, the program's
gate code), both HAProxy processes follow the DNS records the lab's DNS server answers, and not
one request may fail.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator

import pytest
from system_tools import require, unavailable

from lab.bench.changes import old_code_after_switch
from lab.lab import REQUIRED, Lab
from lab.localize import LabError
from lab.state import Event
from lab.topology import Topology
from lab.traffic import RequestStream
from userdata import web_node_config

APP = web_node_config.app_files()
# New app code, recognisable by a header, whatever the app's code looks like today: the
# package's __init__.py (which defines `application`) changed, every module shipped.
TAGGED_RELEASE = {
    **APP,
    "__init__.py": APP["__init__.py"]
    + b"""

if "application" in globals():
    _this_release = application

    def application(environ, start_response):
        def tagged(status, headers, *rest):
            return start_response(status, [*headers, ("X-App-Release", "2")], *rest)

        return _this_release(environ, tagged)
""",
}
# A release whose health check never passes.
BROKEN_RELEASE = {
    **APP,
    "__init__.py": APP["__init__.py"]
    + b"""

if "application" in globals():
    _this_release = application

    def application(environ, start_response):
        if environ.get("PATH_INFO") == "/health":
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"this release never becomes healthy"]
        return _this_release(environ, start_response)
""",
}
NEW_CODE_SERVED_WITHIN = 3.0  # seconds after HAProxy followed the last switch


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, Topology]]:
    for tool in REQUIRED:
        require(tool)
    the_lab = Lab("test-ops")
    the_lab.ready_timeout = 15
    with the_lab.running() as topology:
        yield the_lab, topology


def under_load(topology: Topology, change: Callable[[], None]) -> RequestStream:
    """Run `change` while requests stream through the load balancer, before and after it."""
    with RequestStream(topology.url, rate=40, max_seconds=120) as stream:
        time.sleep(1.0)
        change()
        time.sleep(1.5)
    return stream


def assert_no_request_failed(stream: RequestStream, what: str) -> None:
    failed = stream.failures()
    assert len(stream.answers) > 50, f"{what}: too few requests to mean anything"
    assert failed == [], (
        f"{what}: {len(failed)} of {len(stream.answers)} requests failed: "
        + "; ".join(f"{a.method} {a.status} {a.error}" for a in failed[:5])
    )
    assert {a.method for a in stream.answers} == {"GET", "POST"}, "reads and writes"


def haproxy_pid(lab: Lab) -> int | None:
    return lab.instance("load-balancer").daemons[0].pid


def events(lab: Lab, what: str) -> list[Event]:
    return [e for e in lab.events if e.what == what]


def test_scale_out_and_in_touches_only_nodes_and_records(lab: tuple[Lab, Topology]) -> None:
    the_lab, topology = lab
    pid = haproxy_pid(the_lab)
    out = under_load(topology, lambda: the_lab.scale(3))
    assert_no_request_failed(out, "scale 2 -> 3")
    assert the_lab.rotation(the_lab.topology()) == {"web-1": "UP", "web-2": "UP", "web-3": "UP"}
    assert "web-3" in {a.served_by for a in out.answers}, "the new node takes traffic"
    the_lab.events.clear()
    back = under_load(topology, lambda: the_lab.scale(2))
    assert_no_request_failed(back, "scale 3 -> 2")
    before_the_change = [a for a in back.answers if a.at < 1.0]
    assert "web-3" in {a.served_by for a in before_the_change}, "web-3 took traffic until then"
    assert the_lab.rotation(the_lab.topology()) == {"web-1": "UP", "web-2": "UP"}
    assert "web-3" not in {a.served_by for a in back.since(back.elapsed() - 1.0)}
    assert haproxy_pid(the_lab) == pid, "HAProxy was not restarted"
    assert [h.name for h in the_lab.topology().web_nodes] == ["web-1", "web-2"]
    # As on AWS: the record goes, HAProxy lets go of the node, then the node is stopped.
    (removed,) = [e for e in events(the_lab, "switched") if e.host == "web-3"]
    (followed,) = [e for e in events(the_lab, "followed") if e.host == "web-3"]
    (drained,) = [e for e in events(the_lab, "drained") if e.host == "web-3"]
    (retired,) = [e for e in events(the_lab, "retired") if e.host == "web-3"]
    assert removed.at <= followed.at <= drained.at <= retired.at, (
        f"web-3: record removed {removed.at:.2f}, HAProxy followed {followed.at:.2f}, "
        f"drained {drained.at:.2f}, stopped {retired.at:.2f}"
    )


def test_every_web_node_is_replaced_without_a_failed_request(lab: tuple[Lab, Topology]) -> None:
    the_lab, topology = lab
    before = {h.name: h.address for h in the_lab.topology().web_nodes}
    the_lab.events.clear()

    def replace_all() -> None:
        for node in before:
            the_lab.replace(node)

    stream = under_load(topology, replace_all)
    assert_no_request_failed(stream, "replacing every web node")
    after = {h.name: h.address for h in the_lab.topology().web_nodes}
    assert set(after) == set(before)
    assert all(after[n] != before[n] for n in before), "each node has a new address"
    assert the_lab.rotation(the_lab.topology()) == {"web-1": "UP", "web-2": "UP"}
    for node in before:  # switched only after its readiness report, retired after that
        new = the_lab.instance(node).instance_id
        (ready,) = [e for e in events(the_lab, "ready") if e.instance_id == new]
        (switched,) = [e for e in events(the_lab, "switched") if e.instance_id == new]
        (followed,) = [e for e in events(the_lab, "followed") if e.instance_id == new]
        (retired,) = [e for e in events(the_lab, "retired") if e.host == node]
        assert ready.at <= switched.at <= followed.at <= retired.at, node


def test_new_code_rolls_out_canary_first_without_a_failed_request(
    lab: tuple[Lab, Topology],
) -> None:
    the_lab, topology = lab
    the_lab.events.clear()
    stream = under_load(topology, lambda: the_lab.release(TAGGED_RELEASE))
    assert_no_request_failed(stream, "a release")
    switched = events(the_lab, "switched")
    assert [e.host for e in switched] == ["web-1", "web-2"], "canary first, then the next batch"
    followed = events(the_lab, "followed")
    assert events(the_lab, "ready")[1].at >= followed[0].at, "web-2 waited for web-1"
    began = time.monotonic() - stream.elapsed()
    last_followed = followed[-1].at - began
    timeline = [(round(e.at - began, 2), e.what, e.host) for e in the_lab.events]
    # Stricter, per node: once HAProxy sends a node's slot to its new address, no request that
    # begins afterwards may reach the old instance, not even on a server connection HAProxy
    # kept idle from before the switch (connection reuse).
    followed_at = {e.host: e.at - began for e in followed}  # one follow per node
    reached_old = [
        (round(a.at, 3), a.served_by, round(followed_at[a.served_by], 3))
        for a in old_code_after_switch(stream.answers, followed_at, tag="2")
    ]
    assert reached_old == [], (
        f"requests begun after their node's switch reached the old node "
        f"(began s, node, followed s): {reached_old}; {timeline}"
    )
    late = stream.since(last_followed + NEW_CODE_SERVED_WITHIN)
    assert late, "the stream outlived the release"
    stale = [(round(a.at, 2), a.served_by) for a in late if a.release != "2"]
    assert stale == [], f"old code answered after its switch: {stale}; {timeline}"
    old = [a for a in stream.answers if a.at < last_followed + NEW_CODE_SERVED_WITHIN]
    assert any(a.release == "" for a in old), "the old code served until its switch"


def test_a_broken_release_stops_at_the_canary_and_the_old_nodes_serve(
    lab: tuple[Lab, Topology],
) -> None:
    the_lab, topology = lab
    before = {h.name: h.address for h in the_lab.topology().web_nodes}
    the_lab.events.clear()
    failure: list[str] = []

    def release() -> None:
        with pytest.raises(LabError) as error:
            the_lab.release(BROKEN_RELEASE)
        failure.append(str(error.value))

    stream = under_load(topology, release)
    assert_no_request_failed(stream, "a broken release")
    (message,) = failure
    assert "web-1 (instance lab-web-1-" in message, "names the canary"
    assert "gave up reporting ready" in message or "did not report" in message
    assert "Nothing was switched to it" in message
    assert events(the_lab, "switched") == [], "no node was switched"
    assert {e.host for e in events(the_lab, "ready")} == set(), "web-2 was never touched"
    assert {h.name: h.address for h in the_lab.topology().web_nodes} == before
    assert {a.release for a in stream.since(stream.elapsed() - 1.0)} == {"2"}, "old code serves"


def served_through(the_lab: Lab, load_balancer: str) -> int:
    """Sessions `load_balancer`'s HAProxy has sent to web nodes so far (its stats' stot)."""
    servers = the_lab.servers(the_lab.topology(), load_balancer)
    return sum(int(row.get("stot") or 0) for row in servers.values())


def needs_a_movable_address() -> None:
    require("nft")
    if os.geteuid() != 0:  # CI runs as root
        unavailable("moving the public address (nftables) needs root")


def test_the_public_address_moves_within_the_pair_without_a_failed_request(
    lab: tuple[Lab, Topology],
) -> None:
    """What keepalived does on AWS, done by the lab: the address moves to the standby (a
    failover), then the holder is stopped and hands it back first; requests keep succeeding
    and each HAProxy serves while it holds the address."""
    the_lab, topology = lab
    needs_a_movable_address()
    assert the_lab.topology().holder == "load-balancer-1"
    holders: list[str] = []
    through_2: list[int] = []

    def move_twice() -> None:
        through_2.append(served_through(the_lab, "load-balancer-2"))
        holders.append(the_lab.fail_over())
        time.sleep(1.5)
        through_2.append(served_through(the_lab, "load-balancer-2"))
        holders.append(the_lab.stop_host("load-balancer-2") or "")
        time.sleep(1.5)

    stream = under_load(topology, move_twice)
    assert_no_request_failed(stream, "moving the public address")
    assert holders == ["load-balancer-2", "load-balancer-1"]
    assert through_2[1] - through_2[0] >= 20, f"load-balancer-2 served meanwhile: {through_2}"
    assert the_lab.topology().url == topology.url, "the public address stayed the same"
    assert the_lab.status()["public_address"]["holder"] == "load-balancer-1"
    the_lab.start_host("load-balancer-2")
    assert the_lab.rotations(the_lab.topology()) == {
        "load-balancer-1": {"web-1": "UP", "web-2": "UP"},
        "load-balancer-2": {"web-1": "UP", "web-2": "UP"},
    }
    with pytest.raises(LabError, match="already holds"):
        the_lab.fail_over("load-balancer-1")


def test_each_load_balancer_is_replaced_without_a_failed_request(
    lab: tuple[Lab, Topology],
) -> None:
    """One at a time: the new instance serves and reports ready, then the public address
    moves to the ready peer (as keepalived hands it over) before the old instance stops; the
    old one finishes its requests."""
    the_lab, topology = lab
    needs_a_movable_address()
    for replaced, peer in (
        ("load-balancer-1", "load-balancer-2"),
        ("load-balancer-2", "load-balancer-1"),
    ):
        before = the_lab.topology()
        old = before.host(replaced).address
        holder = before.holder
        the_lab.events.clear()
        stream = under_load(topology, functools.partial(the_lab.replace, replaced))
        assert_no_request_failed(stream, f"replacing {replaced}")
        after = the_lab.topology()
        assert after.host(replaced).address != old
        assert after.url == topology.url, "the public address stayed the same"
        new = the_lab.instance(replaced).instance_id
        (ready,) = [e for e in events(the_lab, "ready") if e.instance_id == new]
        (retired,) = [e for e in events(the_lab, "retired") if e.host == replaced]
        moved = events(the_lab, "holds")
        if holder == replaced:
            assert [e.host for e in moved] == [peer], f"the address moved to {peer}"
            assert ready.at <= moved[0].at <= retired.at
        else:
            assert moved == [], "the address stayed where it was"
        assert the_lab.rotations(after) == {
            lb.name: {"web-1": "UP", "web-2": "UP"} for lb in after.load_balancers
        }
    assert the_lab.topology().holder == "load-balancer-1"
