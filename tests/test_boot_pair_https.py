"""Replacing each load balancer of the pair in turn, with HTTPS on a domain: every TLS
handshake on the public address presents the CA's certificate.

The site has the lab's domain (`up --https`, `lab.boot.acme`): the holder obtains its
certificate from the lab's ACME CA (pebble), stores it in the pair's secret, and the other
serves it from there. Under a stream of new HTTPS connections (SNI = the domain, each
handshake's certificate recorded), the holder is replaced (its replacement boots while Secrets
Manager is out of its reach until its certificate loop failed once, so it serves its
self-signed certificate for a minute), then the other, whose shutdown hands the address to the
first's replacement. A replacement reports ready only once it serves the pair's certificate
(`report_ready.py --domain`), and a rolling update replaces the second only after the first's
report; without that check the address would reach a host serving its self-signed one.
Then the holder is killed under the same stream: the address moves to the peer within the
pair's bound, and the peer presents the same certificate.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from boot_support import TEST_STATE, boot_lab, require_boot_capabilities
from test_boot_pair import (
    OUTAGE_BOUND,
    REQUEST_TIMEOUT,
    Answer,
    load_balancers,
    moved_after,
    outage,
    record,
    stream,
    summary,
    wait_for_one_holder,
    web_nodes,
)

from lab.boot import acme, standins
from lab.boot.bootlab import BootLab
from lab.localize import LabError
from userdata.scripts.report_ready import leaf_pem


@pytest.fixture(scope="module")
def pair() -> Iterator[BootLab]:
    """Both load balancers and two web nodes, up, both serving the CA's certificate."""
    require_boot_capabilities()
    with boot_lab(TEST_STATE / "pair-https", image="bookworm", https=True) as lab:
        wait_for_the_cas_certificate(lab, CERTIFICATE_BOUND)
        yield lab


def get() -> Answer:
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


CERTIFICATE_BOUND = 300.0
"""Seconds from `up` until both load balancers serve the CA's certificate: the holder's certbot
run (5 s after keepalived promotes it), then the other's certificate loop looking in the
secret again (15 s, then 30 s, after its first look)."""
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
    try:
        with (
            socket.create_connection((address, 443), timeout=2) as raw,
            acme.UNVERIFIED.wrap_socket(raw, server_hostname=acme.DOMAIN) as tls,
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
        answer = get()
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
    assert len(handshakes) > ROLLING_RATE * 60, "the stream did not run"
    assert wrong == [], (
        f"{len(wrong)} handshakes presented {sorted({a.certificate or '' for a in wrong})}"
    )
    assert len(failed) <= len(answers) / 100, summary(
        [Answer(a.started - started, a.ok, a.served_by) for a in answers]
    )


def test_killing_the_holder_moves_https_to_the_peer_with_the_same_certificate(
    pair: BootLab,
) -> None:
    """The holder powered off under new HTTPS connections: requests fail for at most
    `OUTAGE_BOUND` (as over HTTP in test_boot_pair), then the peer answers them, and every
    handshake, before and after, presents the certificate in the pair's secret. The stream
    runs at `ROLLING_RATE`: at test_boot_pair's 50 new TLS connections a second this client
    alone misses its timeout on a loaded 2-core machine before any fault."""
    lab = pair
    stored = wait_for_the_cas_certificate(lab, CERTIFICATE_BOUND)
    holder = wait_for_one_holder(lab, 30)
    (peer,) = [h.name for h in load_balancers(lab) if h.name != holder]
    try:
        run = stream(
            lab.url(),
            seconds=20,
            fault_at=3,
            fault=lambda: lab.kill(holder),
            request=get,
            rate=ROLLING_RATE,
        )
        took = outage(run.answers)
        moved = moved_after(lab, run, peer)
        record(lab, "kill the holder (HTTPS)", run, took, moved, peer)
        # A handshake in flight when the holder died may fail with it (a TLS request takes
        # longer than the HTTP one of test_boot_pair under load); none begun before that.
        settled = [a for a in run.answers if a.started < -REQUEST_TIMEOUT]
        assert settled, "no request before the fault"
        assert all(a.ok for a in settled), summary(run.answers)
        assert took <= OUTAGE_BOUND, summary(run.answers)
        assert wait_for_one_holder(lab, 5) == peer
        handshakes = [a for a in run.answers if a.certificate is not None]
        assert len(handshakes) > ROLLING_RATE * 10, "the stream did not run"
        assert {a.certificate for a in handshakes} == {stored}
        served = {a.served_by for a in run.answers if a.ok and a.started > took}
        assert served == set(web_nodes(lab)), served
    finally:
        lab.start(holder)
