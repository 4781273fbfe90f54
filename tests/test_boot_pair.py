"""The load-balancer pair, booted from its real userdata, keeping the site up when one dies.

Both load balancers boot their own cloud-config (keepalived with unicast VRRP between the two
containers over the lab's bridge, and elastic_address.py); the Elastic IP is moto's (EC2's
stand-in), and the lab's public address follows moto's association of it
(`lab.boot.elastic_ip`). So a failover here is the whole chain AWS would run: keepalived
notices the silent master, the peer's notify script and `hold` call `AssociateAddress` with
the instance role's credentials, EC2 moves the address, traffic follows.

Each bound is checked under a stream of new connections (`RATE` a second) to the public
address; the measured times are printed (`-s`) and summarised in the README.

The site has a domain (`up --https`, `lab.boot.acme`): the holder obtains its certificate
from the lab's ACME CA (pebble), stores it in the pair's secret, and the other serves it from
there, so the stream is HTTPS on the domain (HTTP answers a redirect), and every handshake's
certificate is recorded: replacing each load balancer in turn must never present another.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from boot_support import TEST_STATE, boot_lab, require_boot_capabilities

from lab import checks
from lab.boot import acme, elastic_ip, faults, network, standins
from lab.boot.bootlab import BootLab
from lab.boot.state import HostRecord
from lab.localize import LabError
from userdata.scripts.report_ready import leaf_pem

RATE = 50  # new connections a second
REQUEST_TIMEOUT = 1.0
OUTAGE_BOUND = 5.0  # seconds without a successful request, from the fault
CONVERGE_BOUND = 10.0  # seconds from a healed VRRP link to one holder
STATE_FILE = "/run/web-infra/vrrp-state"
MEASURED: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def pair() -> Iterator[BootLab]:
    """Both load balancers and two web nodes, up and serving through the public address."""
    require_boot_capabilities()
    with boot_lab(TEST_STATE / "pair", image="bookworm", https=True) as lab:
        # Both serve the CA's certificate before any stream starts: its arrival (certbot on
        # the holder, the secret's on the other) is not one of the faults measured here.
        wait_for_the_cas_certificate(lab, CERTIFICATE_BOUND)
        yield lab
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
    """The SHA-256 of the leaf certificate the TLS handshake presented (None: no handshake)."""


def get(_: str) -> Answer:
    """One HTTPS request on a new connection to the public address, SNI the site's domain; ok
    if a web node answered 200. The presented certificate is recorded, whatever it is."""
    started = time.monotonic()
    try:
        answer = acme.get("/health", timeout=REQUEST_TIMEOUT)
    except OSError:
        return Answer(started, False, None)
    by = answer.served_by
    fingerprint = hashlib.sha256(answer.certificate).hexdigest()
    return Answer(started, answer.status == 200 and by is not None, by, fingerprint)


def rotation(lab: BootLab) -> checks.Check:
    return acme.check_rotation(web_nodes(lab))


@dataclass(frozen=True)
class Run:
    answers: list[Answer]
    """Every answer, timed from the fault (negative: before it)."""
    fault_time: float
    """When the fault began (seconds since the epoch, as the follower's history)."""


def stream(url: str, seconds: float, fault_at: float, fault: Callable[[], object]) -> Run:
    """`RATE` new-connection requests a second for `seconds`; `fault()` at `fault_at` s."""
    answers: list[Answer] = []
    lock = threading.Lock()
    fault_time: list[float] = []
    fault_wall: list[float] = []

    def one() -> None:
        answer = get(url)
        with lock:
            answers.append(answer)

    with ThreadPoolExecutor(max_workers=int(RATE * REQUEST_TIMEOUT * 2)) as pool:
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - start < seconds:
            if not fault_time and now - start >= fault_at:
                fault_time.append(time.monotonic())
                fault_wall.append(time.time())
                pool.submit(fault)
            if sent <= (now - start) * RATE:
                pool.submit(one)
                sent += 1
            time.sleep(0.002)
    assert fault_time, "the fault never ran"
    timed = [Answer(a.started - fault_time[0], a.ok, a.served_by, a.certificate) for a in answers]
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
    result = rotation(lab)
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
    result = rotation(lab)
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


CERTIFICATE_BOUND = 300.0
"""Seconds from `up` until both load balancers serve the CA's certificate: the holder's certbot
run, then the other's certificate loop looking in the secret again (60 s after its first look)."""
SITE_CERTIFICATE_FAILED = "site-certificate: reading "
"""The start of what site_certificate.py logs when the pair's secret cannot be read."""


def stored_certificate(lab: BootLab) -> str | None:
    """The SHA-256 of the certificate in the pair's secret (None: none yet)."""
    settings = lab.settings(None)
    secrets = standins.aws_client("secretsmanager", lab.load().region, lab.authority)
    try:
        value = secrets.get_secret_value(SecretId=settings.certificate_secret)["SecretString"]
    except secrets.exceptions.ResourceNotFoundException:
        return None
    der = ssl.PEM_cert_to_DER_cert(leaf_pem(json.loads(value)["fullchain"]))
    return hashlib.sha256(der).hexdigest()


def served_certificate(address: str) -> str | None:
    """The SHA-256 of what a load balancer's own HTTPS listener presents for the domain."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address, 443), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=acme.DOMAIN) as tls,
        ):
            return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    except OSError:
        return None


def wait_for_the_cas_certificate(lab: BootLab, timeout: float) -> str:
    """Until the secret holds the CA's certificate and both load balancers serve it; its
    SHA-256."""
    deadline = time.monotonic() + timeout
    while True:
        stored = stored_certificate(lab)
        served = {h.name: served_certificate(h.address) for h in load_balancers(lab)}
        if stored is not None and set(served.values()) == {stored}:
            return stored
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f} s: stored {stored}, served {served}")
        time.sleep(2)


ROLLING_RATE = 20
"""New connections a second while both load balancers are replaced (minutes, not seconds: a
lighter stream, so the client does not starve the booting hosts of the machine's cores)."""


def stream_until(stop: threading.Event, answers: list[Answer], rate: int) -> None:
    """`rate` new-connection HTTPS requests a second until `stop` is set."""
    lock = threading.Lock()

    def one() -> None:
        answer = get("")
        with lock:
            answers.append(answer)

    with ThreadPoolExecutor(max_workers=int(rate * REQUEST_TIMEOUT * 2)) as pool:
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            if sent <= (time.monotonic() - start) * rate:
                pool.submit(one)
                sent += 1
            time.sleep(0.002)


def replace_while_the_secret_is_out_of_reach(lab: BootLab, name: str) -> float:
    """Replace `name` with Secrets Manager out of its reach until its certificate loop has
    failed to read the secret once: it then serves its first-boot (self-signed) certificate
    until the loop looks again (60 s later), and only its readiness report keeps it from
    being reported ready meanwhile. Returns the seconds the replacement took."""
    before = lab.load().host(name).instance_id
    failed = threading.Event()

    def restore_once_it_failed() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                host = lab.load().host(name)
            except (ValueError, LabError):  # state.json being written by `replace`
                time.sleep(0.2)
                continue
            container = lab.container(host)
            if host.instance_id != before and container.running():
                log = container.execute("journalctl", "--no-pager", "-u", "site-certificate")
                if SITE_CERTIFICATE_FAILED in log.stdout:
                    failed.set()
                    break
            time.sleep(1)
        lab.restore(name, "secret-store")

    lab.cut_off(name, "secret-store")
    watcher = threading.Thread(target=restore_once_it_failed, daemon=True)
    watcher.start()
    try:
        took = lab.replace(name)
    finally:
        watcher.join(timeout=600)
        lab.restore(name, "secret-store")
    assert failed.is_set(), f"{name}'s certificate loop never failed to read the secret"
    return took


def test_replacing_each_load_balancer_in_turn_presents_only_the_cas_certificate(
    pair: BootLab,
) -> None:
    """A rolling update of the pair under HTTPS traffic: the holder is replaced (its
    replacement boots while Secrets Manager is out of its reach for a while), then the other,
    whose shutdown hands the address to the first's replacement. Every TLS handshake on the
    public address presents the certificate in the pair's secret, the CA's: a replacement
    reports ready only once it serves it, so the address never moves to a host serving its
    self-signed one."""
    lab = pair
    stored = wait_for_the_cas_certificate(lab, CERTIFICATE_BOUND)
    first = wait_for_one_holder(lab, 30)
    (second,) = [h.name for h in load_balancers(lab) if h.name != first]
    answers: list[Answer] = []
    stop = threading.Event()
    streaming = threading.Thread(
        target=stream_until, args=(stop, answers, ROLLING_RATE), daemon=True
    )
    started = time.monotonic()
    streaming.start()
    try:
        took_first = replace_while_the_secret_is_out_of_reach(lab, first)
        assert wait_for_one_holder(lab, 30) == second
        took_second = lab.replace(second)
        assert wait_for_one_holder(lab, 30) == first
        time.sleep(3)
    finally:
        stop.set()
        streaming.join(timeout=30)
    handshakes = [a for a in answers if a.certificate is not None]
    wrong = [a for a in handshakes if a.certificate != stored]
    failed = [a for a in answers if not a.ok]
    print(
        f"\nreplace each load balancer in turn: {len(answers)} HTTPS requests over "
        f"{time.monotonic() - started:.0f} s, {len(handshakes)} handshakes, "
        f"{len(wrong)} presenting another certificate than the CA's, {len(failed)} failed; "
        f"{first} replaced in {took_first:.0f} s, {second} in {took_second:.0f} s"
    )
    MEASURED.setdefault("wrong-certificate handshakes, replacing each", []).append(len(wrong))
    assert len(handshakes) > ROLLING_RATE * 60, "the stream did not run"
    assert wrong == [], (
        f"{len(wrong)} handshakes presented {sorted({a.certificate or '' for a in wrong})}"
    )
    assert len(failed) <= len(answers) / 100, summary(
        [Answer(a.started - started, a.ok, a.served_by) for a in answers]
    )


def test_kill_and_start_refuse_what_cannot_be_done(pair: BootLab) -> None:
    lab = pair
    with pytest.raises(LabError, match="is running already"):
        lab.start("load-balancer-1")
    with pytest.raises(LabError, match="no booted host"):
        lab.kill("load-balancer-3")
