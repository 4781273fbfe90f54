"""Failover: a web node crashes under load, and comes back.

A bounded wrk read run through HAProxy while the last web node is killed (SIGKILL) and, once
HAProxy has taken it out, started again: failed requests, the time from the kill until HAProxy
shows the node DOWN (its stats polled every 50 ms), and from the start until UP. The targets are
the end-to-end tests' bounds for the same failover (tests/test_lab_e2e.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.bench.cpu import other_cores
from lab.bench.measurement import Context, Row
from lab.bench.stats import verdict
from lab.bench.table import ms, seconds
from lab.bench.wrk import READ_PATH, WrkResult, parse_wrk
from lab.lab import Lab
from lab.localize import LabError
from lab.processes import poll
from lab.topology import Topology

STATS_POLL_SECONDS = 0.05
DETECTION_TARGET_S = 3.0
RETURN_TARGET_S = 3.0


@dataclass
class Failover:
    victim: str
    seconds: int
    """How long wrk ran."""
    wrk: WrkResult | None = None
    killed_at_s: float = 0.0
    """When the kill was sent, in seconds since wrk started (as are the other times here)."""
    stop_call_s: float = 0.0
    """How long `stop_host(kill=True)` took; the SIGKILL is its first step."""
    detection_s: float | None = None
    """From the kill until HAProxy showed the victim DOWN."""
    started_at_s: float = 0.0
    start_call_s: float = 0.0
    """How long `start_host` took (until Nginx and the app answered)."""
    return_s: float | None = None
    """From the start command until HAProxy showed the victim UP."""
    states: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since wrk started, HAProxy's status of the victim) at every change."""
    other_cores: float | None = None
    """CPU cores other processes on the machine used meanwhile."""

    def rows(self) -> list[Row]:
        if self.wrk is None:
            return []
        return [
            [
                f"failover: LB read, {self.victim} killed at {self.killed_at_s:.1f} s "
                f"of {self.seconds} s",
                f"{self.wrk.rps:.0f}",
                ms(self.wrk.p50_ms),
                ms(self.wrk.p99_ms),
                str(self.wrk.errors),
            ]
        ]

    def notes(self) -> list[str]:
        out = []
        if self.wrk is not None:
            w = self.wrk
            out.append(
                f"failover: {w.errors} failed of {w.requests} requests ({w.non_2xx} non-2xx, "
                f"{w.socket_errors} socket errors); target 0  {verdict(w.errors, '<=', 0)}"
            )
        out.append(
            f"failover: {self.victim} DOWN {seconds(self.detection_s)} after the kill; "
            f"target <= {DETECTION_TARGET_S:g} s  "
            f"{verdict(self.detection_s, '<=', DETECTION_TARGET_S)}"
        )
        out.append(
            f"failover: {self.victim} UP {seconds(self.return_s)} after the start command "
            f"(start itself {self.start_call_s:.2f} s); target <= {RETURN_TARGET_S:g} s  "
            f"{verdict(self.return_s, '<=', RETURN_TARGET_S)}"
        )
        events = sorted(
            [(self.killed_at_s, "kill"), (self.started_at_s, "start"), *self.states[1:]]
        )
        out.append(
            "failover: timeline in s since wrk started: "
            f"{', '.join(f'{name} {at:.2f}' for at, name in events)}, "
            f"end {self.seconds}; stop_host(kill=True) returned after {self.stop_call_s:.2f} s"
        )
        return out

    def noise(self) -> list[float]:
        return [] if self.other_cores is None else [self.other_cores]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def first_change_to(states: Sequence[tuple[float, str]], state: str, since: float) -> float | None:
    """Seconds from `since` until the first observation of `state` at or after it."""
    for at, seen in states:
        if at >= since and seen == state:
            return at - since
    return None


class StatsWatcher(threading.Thread):
    """Polls HAProxy's stats every 50 ms, recording each change of one node's status."""

    def __init__(self, lab: Lab, topology: Topology, node: str, began: float) -> None:
        super().__init__(name="stats-watcher", daemon=True)
        self.lab, self.topology, self.node, self.began = lab, topology, node, began
        self.states: list[tuple[float, str]] = []
        self.finish = threading.Event()

    def run(self) -> None:
        while not self.finish.is_set():
            current = self.lab.rotation(self.topology).get(self.node, "?")
            if not self.states or self.states[-1][1] != current:
                self.states.append((time.monotonic() - self.began, current))
            self.finish.wait(STATS_POLL_SECONDS)

    def wait_for(self, state: str, since: float, timeout: float) -> float | None:
        found = poll(lambda: first_change_to(list(self.states), state, since) is not None, timeout)
        return None if found is None else first_change_to(list(self.states), state, since)


def measure(context: Context) -> Failover:
    """Kill the last web node under read load, start it again once it is out of rotation.

    The stats are polled from a thread, from before the kill: `stop_host(kill=True)` itself
    returns only after the killed processes are gone, which can take seconds.
    """
    context.say("failover ...")
    lab, config, topology = context.lab, context.config, context.topology()
    victim = topology.web_nodes[-1].name
    result = Failover(victim, config.failover_seconds)
    url = topology.url.rstrip("/") + READ_PATH
    command = context.wrk.command(url, config.failover_seconds, write=False)
    cpu_before = context.cpu_times()
    process = subprocess.Popen(  # noqa: S603 - wrk against the lab's loopback address
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    began = time.monotonic()
    watcher = StatsWatcher(lab, topology, victim, began)
    watcher.start()
    try:
        time.sleep(config.kill_at_seconds)
        result.killed_at_s = time.monotonic() - began
        lab.stop_host(victim, kill=True)
        result.stop_call_s = time.monotonic() - began - result.killed_at_s
        result.detection_s = watcher.wait_for("DOWN", result.killed_at_s, 10.0)
        time.sleep(0.5)  # out of rotation for a moment, as after a real crash
        result.started_at_s = time.monotonic() - began
        lab.start_host(victim)
        result.start_call_s = time.monotonic() - began - result.started_at_s
        result.return_s = watcher.wait_for("UP", result.started_at_s, 15.0)
        stdout, stderr = process.communicate(timeout=config.failover_seconds + 30)
        if process.returncode != 0:
            raise LabError(f"wrk failed ({process.returncode}): {stderr.strip()}")
        result.wrk = parse_wrk(stdout)
        result.other_cores = round(other_cores(cpu_before, context.cpu_times()), 3)
    finally:
        watcher.finish.set()
        watcher.join(timeout=5)
        result.states = [(round(at, 3), state) for at, state in watcher.states]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        with contextlib.suppress(LabError):
            lab.start_host(victim)  # a no-op when it already runs
    return result
