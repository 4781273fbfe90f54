"""Changes to the running lab, as `pulumi up` makes them, under a steady stream of requests.

Each operation runs on the benchmark's own lab through the lab's public API (`scale`,
`replace`, `release`) while a RequestStream (lab/traffic.py) goes through the public address,
from LEAD_IN_S before the operation until TAIL_S after it: STREAM_RATE requests/s, each on a
new connection as a new visitor's, 1 in 10 a write, so a refused or reset connection anywhere
counts as a failure. For each operation: how long it took, the requests the stream sent and how
many failed, and how long HAProxy took to follow each DNS switch, from the lab's events: from
`switched` (the host's record changed and the DNS server reloaded) to `followed` (HAProxy's
stats show the node UP at its new address, or a removed node's slot in maintenance; the lab
polls every 50 ms), one per host switched. For the release, whose new code is recognisable: the
answers from the old code to requests that began after HAProxy followed their node's switch,
i.e. requests that still reached an old node (target 0).

The operations: scale out by one node and back, replace one web node, replace every web node
(one after the other), release new app code (the repository's app plus a wrapper adding a
header, so its answers are recognisable; canary first, in batches) and replace the load
balancer (the public address moves with nftables, which needs root).
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.bench.cpu import other_cores
from lab.bench.measurement import Context, Row
from lab.bench.stats import median_of, verdict
from lab.bench.table import HEADING_WIDTH, format_table
from lab.lab import Lab
from lab.localize import LabError
from lab.state import Event
from lab.traffic import Answer, RequestStream
from settings.web_tier import MAX_WEB_NODES
from userdata import web_node_config

STREAM_RATE = 100.0
STREAM_WORKERS = 4
LEAD_IN_S = 1.0
TAIL_S = 1.5
RELEASE_TAG = "bench"
# New app code, recognisable by a header, whatever the app's code looks like today: appended
# to the package's __init__.py, which defines `application`.
TAGGED_WRAPPER = f"""

if "application" in globals():
    _this_release = application

    def application(environ, start_response):
        def tagged(status, headers, *rest):
            return start_response(status, [*headers, ("X-App-Release", "{RELEASE_TAG}")], *rest)

        return _this_release(environ, tagged)
"""


def tagged_release() -> dict[str, bytes]:
    """The repository's app, its entry wrapped: every module ships, one of them changed."""
    app = web_node_config.app_files()
    return {**app, "__init__.py": app["__init__.py"] + TAGGED_WRAPPER.encode()}


@dataclass(frozen=True)
class Operation:
    name: str
    run: Callable[[], None] | None
    """None: skipped."""
    skipped: str = ""
    """Why it was skipped."""


def operations(lab: Lab, nodes: Sequence[str], *, can_move_public_address: bool) -> list[Operation]:
    """What the benchmark does to its lab, in order; each leaves `nodes` serving afterwards."""
    n = len(nodes)
    other = n + 1 if n < MAX_WEB_NODES else n - 1  # a full tier scales in first

    def replace_every_node() -> None:
        for node in nodes:
            lab.replace(node)

    ops = [
        Operation(f"scale {n} -> {other}", lambda: lab.scale(other)),
        Operation(f"scale {other} -> {n}", lambda: lab.scale(n)),
        Operation(f"replace {nodes[0]}", lambda: lab.replace(nodes[0])),
        Operation(f"replace every web node ({n}, one by one)", replace_every_node),
        Operation(
            f"release new app code ({n} nodes, canary first)",
            lambda: lab.release(tagged_release()),
        ),
    ]
    name = "replace the load balancer"
    if os.geteuid() != 0:
        ops.append(Operation(name, None, "needs root"))
    elif not can_move_public_address:
        ops.append(Operation(name, None, "needs nft to move the public address"))
    else:
        ops.append(Operation(name, lambda: lab.replace("load-balancer")))
    return ops


def follow_times(events: Sequence[Event]) -> list[float]:
    """Seconds from each instance's `switched` event to its next `followed` event."""
    switched: dict[str, float] = {}
    times = []
    for event in sorted(events, key=lambda e: e.at):
        if event.what == "switched":
            switched[event.instance_id] = event.at
        elif event.what == "followed" and event.instance_id in switched:
            times.append(event.at - switched.pop(event.instance_id))
    return times


def old_code_after(
    answers: Sequence[Answer], last_followed_at: float, tag: str = RELEASE_TAG
) -> float | None:
    """Seconds from HAProxy following the last switch of a release to the last answer that
    came from the old code (negative: before it); None when the old code never answered."""
    old = [a.at for a in answers if a.ok and a.release != tag]
    return max(old) - last_followed_at if old else None


def old_code_after_switch(
    answers: Sequence[Answer], followed_at: Mapping[str, float], tag: str = RELEASE_TAG
) -> list[Answer]:
    """Answers from the old code to requests that began after HAProxy followed their node's
    switch (`followed_at`: node -> seconds since the stream began): requests that reached an
    old node although HAProxy already sent that node's traffic to its new address."""
    return [
        a
        for a in answers
        if a.ok
        and a.release != tag
        and a.served_by in followed_at
        and a.at >= followed_at[a.served_by]
    ]


@dataclass
class Change:
    operation: str
    skipped: str = ""
    error: str = ""
    """The operation failed: the lab's message."""
    took_s: float | None = None
    requests: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    """The first few failed requests: when (s since the stream began), what and why."""
    follow_s: list[float] = field(default_factory=list)
    """Per host switched: from its DNS switch until HAProxy used it."""
    old_code_after_s: float | None = None
    """A release: from HAProxy following the last switch to the last old-code answer."""
    old_code_after_switch: int | None = None
    """A release: old-code answers to requests begun after their node's switch was followed."""
    other_cores: float | None = None
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds since the operation began, event, host): the lab's events, for `--json`."""

    def row(self) -> Row:
        if self.skipped:
            return [f"{self.operation}: skipped: {self.skipped}", "-", "-", "-", "-", "-"]
        median = median_of(self.follow_s)
        return [
            self.operation + (": FAILED" if self.error else ""),
            "-" if self.took_s is None else f"{self.took_s:.2f}",
            str(self.requests),
            str(self.failed),
            "-" if median is None else f"{median:.2f}",
            f"{max(self.follow_s):.2f}" if self.follow_s else "-",
        ]


@dataclass
class Changes:
    changes: list[Change]
    stream_rate: float = STREAM_RATE

    def rows(self) -> list[Row]:
        return []  # a table of its own: its columns are not the main table's

    def notes(self) -> list[str]:
        done = [c for c in self.changes if not c.skipped]
        requests = sum(c.requests for c in done)
        failed = sum(c.failed for c in done)
        heading = (
            f"changes to the running lab, each under a steady stream through the load balancer "
            f"({self.stream_rate:g} req/s, each request on a new connection, 1 in 10 a write; "
            f"from {LEAD_IN_S:g} s before the operation until {TAIL_S:g} s after it). "
            "followed: from a host's DNS switch until HAProxy uses it (UP at its new address; a "
            "removed node: its slot in maintenance), median and max over the hosts switched (a "
            "new load balancer has no record to follow: the public address moves to it)"
        )
        out = [
            "",
            *textwrap.wrap(heading, width=HEADING_WIDTH),
            format_table(
                ["change", "took s", "requests", "failed", "followed s", "max s"],
                [c.row() for c in self.changes],
            ),
            f"changes:  {failed} failed of {requests} requests over {len(done)} operations; "
            f"target 0  {verdict(failed, '<=', 0) if done else 'MISS'}",
        ]
        for change in self.changes:
            if change.old_code_after_s is not None:
                out.append(
                    f"changes:  {change.operation}: the old code answered last "
                    f"{change.old_code_after_s:.2f} s after HAProxy followed the last switch"
                )
            if change.old_code_after_switch is not None:
                stale = change.old_code_after_switch
                out.append(
                    f"changes:  {change.operation}: {stale} answers from an old node to "
                    "requests begun after HAProxy followed its switch; target 0  "
                    + verdict(stale, "<=", 0)
                )
            if change.error:
                out.append(f"changes:  {change.operation} failed: {change.error}")
            for failure in change.failures:
                out.append(f"changes:  {change.operation}: {failure}")
        return out

    def noise(self) -> list[float]:
        return [c.other_cores for c in self.changes if c.other_cores is not None]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_one(context: Context, operation: Operation) -> Change:
    change = Change(operation.name)
    if operation.run is None:
        change.skipped = operation.skipped
        return change
    lab = context.lab
    first_event = len(lab.events)
    url = context.topology().url
    cpu_before = context.cpu_times()
    with RequestStream(url, rate=STREAM_RATE, workers=STREAM_WORKERS, max_seconds=300) as stream:
        time.sleep(LEAD_IN_S)
        started = time.monotonic()
        try:
            operation.run()
        except LabError as error:
            change.error = str(error).splitlines()[0]
        change.took_s = time.monotonic() - started
        time.sleep(TAIL_S)
    change.other_cores = round(other_cores(cpu_before, context.cpu_times()), 3)
    began = time.monotonic() - stream.elapsed()
    events = lab.events[first_event:]
    change.requests = len(stream.answers)
    failures = stream.failures()
    change.failed = len(failures)
    change.failures = [
        f"at {a.at:.2f} s {a.method} {a.status or ''} {a.error}".replace("  ", " ")
        for a in failures[:3]
    ]
    change.follow_s = [round(s, 3) for s in follow_times(events)]
    change.timeline = [(round(e.at - started, 3), e.what, e.host) for e in events]
    followed = [e.at - began for e in events if e.what == "followed"]
    if operation.name.startswith("release") and followed and not change.error:
        change.old_code_after_s = old_code_after(stream.answers, max(followed))
        first_followed: dict[str, float] = {}
        for event in sorted(events, key=lambda e: e.at):
            if event.what == "followed":
                first_followed.setdefault(event.host, event.at - began)
        change.old_code_after_switch = len(old_code_after_switch(stream.answers, first_followed))
    return change


def measure(context: Context) -> Changes:
    topology = context.topology()
    nodes = [h.name for h in topology.web_nodes]
    # The public address is a host of its own only where the lab can move it (root + nft).
    movable = topology.public_address != topology.host("load-balancer").address
    results = []
    for operation in operations(context.lab, nodes, can_move_public_address=movable):
        context.say(f"change: {operation.name} ...")
        change = run_one(context, operation)
        results.append(change)
        outcome = f"skipped: {change.skipped}" if change.skipped else change.error or "done"
        context.say(f"  {outcome}; {change.failed} of {change.requests} requests failed")
    return Changes(results)
