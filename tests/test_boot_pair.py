"""The load-balancer pair, booted from its real userdata, keeping the site up when one dies.

Both load balancers boot their own cloud-config (keepalived with unicast VRRP between the two
containers over the lab's bridge, and elastic_address.py); the Elastic IP is moto's (EC2's
stand-in), and the lab's public address follows moto's association of it
(`lab.boot.elastic_ip`). So a failover here is the whole chain AWS would run: keepalived
notices the silent master, the peer's notify script and `hold` call `AssociateAddress` with
the instance role's credentials, EC2 moves the address, traffic follows.

Each bound is checked under a stream of new connections (`RATE` a second) to the public
address; the measured times are printed (`-s`) and summarised in the README.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest
from boot_support import StandardLabs, require_boot_capabilities

from lab import checks
from lab.boot import elastic_ip, faults, network
from lab.boot.bootlab import BootLab
from lab.boot.state import HostRecord
from lab.localize import LabError

RATE = 50  # new connections a second
REQUEST_TIMEOUT = 1.0
OUTAGE_BOUND = 5.0  # seconds without a successful request, from the fault
CONVERGE_BOUND = 10.0  # seconds from a healed VRRP link to one holder
STATE_FILE = "/run/web-infra/vrrp-state"
MEASURED: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def pair(standard_boot_labs: StandardLabs) -> Iterator[BootLab]:
    """Both load balancers and two web nodes, up and serving through the public address
    (test_boot_e2e's Debian 12 lab when it ran first)."""
    require_boot_capabilities()
    yield standard_boot_labs.get("bookworm")
    if MEASURED:
        summary = ", ".join(
            f"{what}: {statistics.median(times):.2f} s (median of {len(times)})"
            for what, times in MEASURED.items()
        )
        print(f"\nload-balancer pair, measured: {summary}")


def load_balancers(lab: BootLab) -> list[HostRecord]:
    return [host for host in lab.load().hosts if host.role == "load-balancer"]


def web_nodes(lab: BootLab) -> list[str]:
    return [host.name for host in lab.load().hosts if host.role == "web"]


def vrrp_state(lab: BootLab, host: HostRecord) -> str:
    container = lab.container(host)
    if not container.running():
        return "DOWN"
    return container.execute("cat", STATE_FILE).stdout.strip() or "?"


def holders(lab: BootLab) -> tuple[str | None, str | None, dict[str, str]]:
    """(moto's holder, where the lab routes the public address, each LB's VRRP state)."""
    public = lab.public_address()
    states = {host.name: vrrp_state(lab, host) for host in load_balancers(lab)}
    return public["holder"], public["routed_to"], states


def wait_for_one_holder(lab: BootLab, timeout: float) -> str:
    """Until exactly one load balancer is VRRP master, holds the Elastic IP in moto and gets
    the public address's traffic; its name."""
    deadline = time.monotonic() + timeout
    while True:
        holder, routed, states = holders(lab)
        masters = [name for name, state in states.items() if state == "MASTER"]
        if masters == [holder] and routed == holder:
            return str(holder)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no single holder after {timeout:.0f} s: moto {holder}, routed {routed}, "
                f"VRRP {states}"
            )
        time.sleep(0.2)


@dataclass(frozen=True)
class Answer:
    started: float
    ok: bool
    served_by: str | None
    certificate: str | None = None
    """The SHA-256 of the leaf certificate a TLS handshake presented (None: none, or HTTP)."""


def get(url: str) -> Answer:
    """One request on a new connection; ok if a web node answered 200."""
    started = time.monotonic()
    host = url.split("/")[2]
    connection = http.client.HTTPConnection(host, 80, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", "/health", headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        by = response.getheader("X-Served-By")
        return Answer(started, response.status == 200 and by is not None, by)
    except OSError:
        return Answer(started, False, None)
    finally:
        connection.close()


@dataclass(frozen=True)
class Run:
    answers: list[Answer]
    """Every answer, timed from the fault (negative: before it)."""
    fault_time: float
    """When the fault began (seconds since the epoch, as the follower's history)."""


def stream(
    url: str,
    seconds: float,
    fault_at: float,
    fault: Callable[[], object],
    request: Callable[[], Answer] | None = None,
    rate: int = RATE,
) -> Run:
    """`rate` new-connection requests a second for `seconds` (`get(url)`, or `request()`);
    `fault()` at `fault_at` s."""
    answers: list[Answer] = []
    lock = threading.Lock()
    fault_time: list[float] = []
    fault_wall: list[float] = []
    ask = request or (lambda: get(url))

    def one() -> None:
        answer = ask()
        with lock:
            answers.append(answer)

    with ThreadPoolExecutor(max_workers=int(rate * REQUEST_TIMEOUT * 2)) as pool:
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - start < seconds:
            if not fault_time and now - start >= fault_at:
                fault_time.append(time.monotonic())
                fault_wall.append(time.time())
                pool.submit(fault)
            if sent <= (now - start) * rate:
                pool.submit(one)
                sent += 1
            time.sleep(0.002)
    assert fault_time, "the fault never ran"
    timed = [replace(a, started=a.started - fault_time[0]) for a in answers]
    return Run(sorted(timed, key=lambda a: a.started), fault_wall[0])


def moved_after(lab: BootLab, run: Run, to: str) -> float | None:
    """Seconds from the fault until the public address was routed to `to`."""
    moves = [
        entry["since"] - run.fault_time
        for entry in elastic_ip.history(lab.folder / "standins")
        if entry["holder"] == to and entry["since"] > run.fault_time
    ]
    return moves[0] if moves else None


RECOVERED_SECONDS = 2.0
"""Successes in a row, after the fault, that end an outage."""
STALL_SECONDS = 3.0
"""After the outage, the longest burst of failures the test lets pass: on a loaded machine (a
whole `make test` beside it, wrk in the benchmark's smoke run) the test's own client misses
its 1 s timeout for a second or two now and then. In fresh-clone CI runs these came 10-15 s
after the fault, long after the address had moved (in 2 s) and with the holder unchanged."""


def outage(answers: list[Answer]) -> float:
    """Seconds from the fault to the first request of a run of successes lasting
    `RECOVERED_SECONDS` (0: nothing failed after the fault); after it, no burst of failures
    may last `STALL_SECONDS` (a second failover would)."""
    after_fault = [a for a in answers if a.started >= 0]
    if all(a.ok for a in after_fault):
        return 0.0
    run_start: float | None = None
    for answer in after_fault:
        if not answer.ok:
            run_start = None
        elif run_start is None:
            run_start = answer.started
        elif answer.started - run_start >= RECOVERED_SECONDS:
            break
    else:
        raise AssertionError(f"requests never succeeded {RECOVERED_SECONDS:g} s in a row")
    assert run_start is not None
    burst: list[float] = []
    for answer in (a for a in after_fault if a.started >= run_start):
        if answer.ok:
            burst = []
            continue
        burst.append(answer.started)
        assert burst[-1] - burst[0] < STALL_SECONDS, f"failures after recovering: {burst}"
    return run_start


def summary(answers: list[Answer]) -> str:
    failed = [round(a.started, 2) for a in answers if not a.ok]
    return f"{len(answers)} requests, {len(failed)} failed (at {failed[:3]}...{failed[-3:]})"


def timeline(lab: BootLab, host: str, since: float) -> str:
    """keepalived's and elastic-address's log lines on `host` from `since` (epoch seconds)."""
    container = lab.container(lab.load().host(host))
    if not container.running():
        return f"{host}: down"
    shown = container.execute(
        "journalctl",
        "-o",
        "short-precise",
        "--no-pager",
        "-u",
        "keepalived.service",
        "-u",
        "elastic-address.service",
        f"--since=@{since:.3f}",
    )
    return f"{host}:\n{shown.stdout}"


def record(
    lab: BootLab, what: str, run: Run, seconds: float, moved: float | None, peer: str
) -> None:
    MEASURED.setdefault(what, []).append(seconds)
    where = f"{moved:.2f} s" if moved is not None else "never"
    print(f"\n{what}: requests failed for {seconds:.2f} s; the address moved after {where}")
    print(f"(fault at {run.fault_time:.3f})\n{timeline(lab, peer, run.fault_time - 1)}")


def test_after_up_exactly_one_load_balancer_holds_the_address_and_it_rotates(
    pair: BootLab,
) -> None:
    lab = pair
    assert [h.name for h in load_balancers(lab)] == ["load-balancer-1", "load-balancer-2"]
    holder = wait_for_one_holder(lab, 30)
    # The first to become master is load-balancer-1 (the higher priority), unless it booted
    # much later than its peer.
    assert holder in ("load-balancer-1", "load-balancer-2")
    result = checks.check_rotation(lab.url(), web_nodes(lab))
    assert result.ok, result.found
    status = lab.status()
    assert status["public_address"]["ip"] == network.PUBLIC
    assert status["public_address"]["holder"] == holder
    roles = {h["name"]: h["role"] for h in status["hosts"]}
    assert roles["load-balancer-1"] == roles["load-balancer-2"] == "load-balancer"
    for host in load_balancers(lab):
        container = lab.container(host)
        for unit in ("keepalived.service", "elastic-address.service", "haproxy.service"):
            enabled = container.execute("systemctl", "is-enabled", unit).stdout.strip()
            active = container.execute("systemctl", "is-active", unit).stdout.strip()
            assert (enabled, active) == ("enabled", "active"), f"{host.name}: {unit}"


def test_killing_the_holder_moves_the_address_to_its_peer_within_the_bound(
    pair: BootLab,
) -> None:
    lab = pair
    holder = wait_for_one_holder(lab, 30)
    (peer,) = [h.name for h in load_balancers(lab) if h.name != holder]
    run = stream(lab.url(), seconds=20, fault_at=3, fault=lambda: lab.kill(holder))
    answers = run.answers
    took = outage(answers)
    moved = moved_after(lab, run, peer)
    record(lab, "kill the holder", run, took, moved, peer)
    assert all(a.ok for a in answers if a.started < 0), summary(answers)
    assert took <= OUTAGE_BOUND, summary(answers)
    assert wait_for_one_holder(lab, 5) == peer
    served = {a.served_by for a in answers if a.ok and a.started > took}
    assert served == set(web_nodes(lab)), served
    assert moved is not None, "the public address never followed the peer"


def test_a_killed_load_balancer_started_again_stays_backup(pair: BootLab) -> None:
    """nopreempt: the host that comes back does not take the address from the one serving."""
    lab = pair
    (down,) = [h.name for h in load_balancers(lab) if not lab.container(h).running()]
    holder = wait_for_one_holder(lab, 5)
    lab.start(down)
    deadline = time.monotonic() + 30
    while vrrp_state(lab, lab.load().host(down)) != "BACKUP":
        assert time.monotonic() < deadline, vrrp_state(lab, lab.load().host(down))
        time.sleep(0.5)
    time.sleep(3)  # a few advertisement intervals: it must stay backup
    assert wait_for_one_holder(lab, 5) == holder


def test_killing_haproxy_on_the_holder_moves_the_address_within_the_bound(
    pair: BootLab,
) -> None:
    """The host stays up; every HAProxy process is SIGKILLed and systemd may not restart it
    (masked for the test): keepalived tracks HAProxy, faults without it, the peer takes over."""
    lab = pair
    holder = wait_for_one_holder(lab, 30)
    (peer,) = [h.name for h in load_balancers(lab) if h.name != holder]
    container = lab.container(lab.load().host(holder))

    def kill_haproxy() -> None:
        container.execute("systemctl", "mask", "--runtime", "haproxy.service", check=True)
        container.execute("systemctl", "kill", "--signal=SIGKILL", "haproxy.service", check=True)

    try:
        run = stream(lab.url(), seconds=15, fault_at=3, fault=kill_haproxy)
        took = outage(run.answers)
        record(lab, "kill HAProxy on the holder", run, took, moved_after(lab, run, peer), peer)
        assert took <= OUTAGE_BOUND, summary(run.answers)
        assert wait_for_one_holder(lab, 5) == peer
    finally:
        container.execute("systemctl", "unmask", "--runtime", "haproxy.service")
        container.execute("systemctl", "start", "haproxy.service")
    # HAProxy back: the host is a backup again, and the holder keeps the address.
    deadline = time.monotonic() + 15
    while vrrp_state(lab, lab.load().host(holder)) != "BACKUP":
        assert time.monotonic() < deadline, vrrp_state(lab, lab.load().host(holder))
        time.sleep(0.5)
    assert wait_for_one_holder(lab, 5) == peer


def test_a_cut_vrrp_link_heals_to_exactly_one_holder(pair: BootLab) -> None:
    """Both become master while VRRP cannot pass (each may claim the address); once it passes
    again one steps down, and within `CONVERGE_BOUND` one holds it and gets the traffic."""
    lab = pair
    wait_for_one_holder(lab, 30)
    first, second = (h.address for h in load_balancers(lab))
    faults.cut_vrrp(first, second)
    try:
        deadline = time.monotonic() + 10
        while list(holders(lab)[2].values()) != ["MASTER", "MASTER"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"no split brain with VRRP cut: {holders(lab)}")
            time.sleep(0.2)
        time.sleep(6)  # long enough for both to claim (each rechecks every 5 s)
    finally:
        faults.heal_vrrp()
    healed = time.monotonic()
    holder = wait_for_one_holder(lab, CONVERGE_BOUND)
    converged = time.monotonic() - healed
    MEASURED.setdefault("VRRP link healed to one holder", []).append(converged)
    print(f"\nVRRP link healed: one holder after {converged:.2f} s")
    assert time.monotonic() - healed <= CONVERGE_BOUND
    # ... and it stays that way: the loser does not claim again.
    time.sleep(6)
    assert wait_for_one_holder(lab, 1) == holder
    result = checks.check_rotation(lab.url(), web_nodes(lab))
    assert result.ok, result.found


def test_replacing_the_holder_hands_the_address_over_and_the_new_one_is_backup(
    pair: BootLab,
) -> None:
    """A rolling update's replacement: the holder shuts down cleanly (keepalived resigns, then
    waits for the peer to hold the address before HAProxy stops), and a new instance boots
    from the same userdata at the same address, as a backup."""
    lab = pair
    holder = wait_for_one_holder(lab, 30)
    (peer,) = [h.name for h in load_balancers(lab) if h.name != holder]
    before = lab.load().host(holder).instance_id
    run = stream(lab.url(), seconds=20, fault_at=3, fault=lambda: lab.replace(holder))
    took = outage(run.answers)
    moved = moved_after(lab, run, peer)
    record(lab, "replace the holder (clean shutdown)", run, took, moved, peer)
    assert took <= OUTAGE_BOUND, summary(run.answers)
    replaced = lab.load().host(holder)
    assert replaced.instance_id != before
    deadline = time.monotonic() + 30
    while vrrp_state(lab, replaced) != "BACKUP":
        assert time.monotonic() < deadline, vrrp_state(lab, replaced)
        time.sleep(0.5)
    assert wait_for_one_holder(lab, 5) == peer


def test_kill_and_start_refuse_what_cannot_be_done(pair: BootLab) -> None:
    lab = pair
    with pytest.raises(LabError, match="is running already"):
        lab.start("load-balancer-1")
    with pytest.raises(LabError, match="no booted host"):
        lab.kill("load-balancer-3")
