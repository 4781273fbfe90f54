"""Throughput and latency with wrk, and what the load balancer costs a node.

A read (GET /api/messages, served from the replica) and a write (POST /api/messages, to the
primary), each in three scenarios with the same wrk settings: (a) straight to web-1's Nginx,
(b) through HAProxy with only web-1 in rotation (the others disabled on HAProxy's admin
socket), (c) through HAProxy to all N web nodes. Every measurement runs `rounds` times, a/b/c
interleaved in an order that rotates per round, so that drift hits all three alike; the table
shows medians (errors: the sum over the rounds).

How to read it: b/a is what the load balancer costs a single node (target >= 0.9); c/b is what
the extra nodes buy *on this machine*: every process, wrk included, shares the same cores, so
c/b near 1 means the CPU, not a node, is the limit; on AWS each node has its own CPUs. "CPU per
request" is the CPU a request costs in (a) and what HAProxy adds in (b), which bounds b/a when
the CPU is the limit and hardly moves between runs, unlike req/s.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from lab.bench.measurement import Context, Row
from lab.bench.stats import median_of, ratio, rotated, verdict
from lab.bench.table import ms, ratio_text
from lab.bench.wrk import READ_PATH, Summary, WrkResult, summarize
from lab.lab import Lab
from lab.localize import LabError
from lab.processes import poll
from lab.routing import haproxy_command
from lab.topology import Topology

LB_COST_TARGET = 0.9
ENDPOINTS = (("read", f"GET {READ_PATH}"), ("write", f"POST {READ_PATH}"))


class Rotation:
    """Which web nodes HAProxy sends to, set through its admin socket."""

    def __init__(self, lab: Lab, topology: Topology) -> None:
        self.lab = lab
        self.topology = topology
        self.socket = lab.haproxy_socket()
        self.nodes = [h.name for h in topology.web_nodes]
        self.only: str | None = None

    def admin(self, command: str) -> str:
        return haproxy_command(self.socket, command).strip()

    def set(self, only: str | None, timeout: float = 15.0) -> float:
        """Only `only` in rotation (None: every node); seconds until HAProxy's stats agree."""
        started = time.monotonic()
        for node in self.nodes:
            action = "enable" if only in (None, node) else "disable"
            reply = self.admin(f"{action} server web/{node}")
            if reply:
                raise LabError(f"HAProxy refused `{action} server web/{node}`: {reply}")
        want = {n: "UP" if only in (None, n) else "MAINT" for n in self.nodes}
        if not poll(lambda: self.lab.rotation(self.topology) == want, timeout):
            raise LabError(f"HAProxy did not reach {want}: {self.lab.rotation(self.topology)}")
        self.only = only
        return time.monotonic() - started


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    base_url: str
    only: str | None
    """The one node in HAProxy's rotation, or None for all of them."""
    through_lb: bool


def scenarios(topology: Topology) -> list[Scenario]:
    first = topology.web_nodes[0]
    lb = topology.url.rstrip("/")
    direct = f"http://{first.address}" + ("" if first.port == 80 else f":{first.port}")
    n = len(topology.web_nodes)
    return [
        Scenario("a", f"(a) direct to {first.name}", direct, None, through_lb=False),
        Scenario("b", f"(b) LB, only {first.name} in rotation", lb, first.name, through_lb=True),
        Scenario("c", f"(c) LB, all {n} nodes", lb, None, through_lb=True),
    ]


@dataclass
class Throughput:
    labels: dict[str, str]
    """Scenario key -> its label in the table."""
    web_nodes: int
    runs: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)
    """endpoint (read/write) -> scenario key -> one result per round, in round order."""
    rotation_changes_s: list[float] = field(default_factory=list)

    def summaries(self, endpoint: str) -> dict[str, Summary]:
        return {key: summarize(runs) for key, runs in self.runs[endpoint].items()}

    def rows(self) -> list[Row]:
        rows = []
        for endpoint, method in ENDPOINTS:
            for key, summary in self.summaries(endpoint).items():
                rows.append(
                    [
                        f"{endpoint:5} {self.labels[key]}  [{method}]",
                        f"{summary.rps:.0f}",
                        ms(summary.p50_ms),
                        ms(summary.p99_ms),
                        str(summary.errors),
                    ]
                )
        return rows

    def notes(self) -> list[str]:
        out = []
        for endpoint, _ in ENDPOINTS:
            runs, s = self.runs[endpoint], self.summaries(endpoint)
            for top, bottom, meaning in (
                ("b", "a", "what the load balancer costs"),
                ("c", "b", f"what {self.web_nodes - 1} more node(s) buy here"),
            ):
                value = ratio(s[top].rps, s[bottom].rps)
                per_round = [
                    ratio(t.rps, b.rps) for t, b in zip(runs[top], runs[bottom], strict=True)
                ]
                rounds = " ".join(ratio_text(r) for r in per_round)
                line = (
                    f"{endpoint:5} {top}/{bottom} = {ratio_text(value)} of the medians "
                    f"(per round: {rounds}), {meaning}"
                )
                if top == "b":
                    target = verdict(value, ">=", LB_COST_TARGET)
                    line += f"; target >= {LB_COST_TARGET}  {target}"
                else:
                    line += "; no target (one machine's cores are shared by every node)"
                out.append(line)
            out.append(cpu_line(endpoint, runs))
        return out

    def noise(self) -> list[float]:
        return [
            r.other_cores
            for by_key in self.runs.values()
            for runs in by_key.values()
            for r in runs
            if r.other_cores is not None
        ]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cpu_line(endpoint: str, runs: dict[str, list[WrkResult]]) -> str:
    """HAProxy's CPU per request in (b) against a request's whole CPU in (a), wrk included.

    When the CPU is what limits the lab (every process shares the same cores), the load
    balancer can cost no less than its share of the CPU: b/a <= a / (a + HAProxy). CPU per
    request hardly depends on what else runs on the machine, unlike req/s, so this is the
    steadier answer to "what does the load balancer cost".
    """
    total_a = median_of([r.cpu_us_per_request() for r in runs["a"]])
    # load-balancer-1 holds the lab's public address from `up`; its peer only health-checks.
    haproxy = median_of([r.cpu_us_per_request("load-balancer-1/haproxy") for r in runs["b"]])
    if total_a is None or haproxy is None:
        return f"{endpoint:5} CPU per request: not measured"
    return (
        f"{endpoint:5} CPU per request: {total_a:.0f} us in (a) (app, Nginx, MariaDB, wrk); "
        f"HAProxy adds {haproxy:.0f} us in (b): b/a ~ "
        f"{ratio_text(ratio(total_a, total_a + haproxy))} when the CPU is the limit"
    )


def measure(context: Context) -> Throughput:
    config, topology = context.config, context.topology()
    context.say("throughput (a: direct, b: LB with one node, c: LB with all nodes):")
    rotation = Rotation(context.lab, topology)
    by_key = {s.key: s for s in scenarios(topology)}
    result = Throughput(
        {key: s.label for key, s in by_key.items()},
        len(topology.web_nodes),
        {endpoint: {key: [] for key in by_key} for endpoint, _ in ENDPOINTS},
    )
    for round_index in range(config.rounds):
        for key in rotated(list(by_key), round_index):
            scenario = by_key[key]
            # (a) bypasses HAProxy, so it runs with whatever rotation is set.
            if scenario.through_lb and rotation.only != scenario.only:
                result.rotation_changes_s.append(rotation.set(scenario.only))
            for endpoint, seconds in (
                ("read", config.read_seconds),
                ("write", config.write_seconds),
            ):
                url = scenario.base_url + READ_PATH
                run = context.wrk.run(url, seconds, write=endpoint == "write")
                result.runs[endpoint][key].append(run)
                context.say(
                    f"  round {round_index + 1}/{config.rounds} {endpoint:5} {scenario.label}: "
                    f"{run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms, {run.errors} errors; "
                    f"other processes {run.other_cores or 0:.2f} cores"
                )
    if rotation.only is not None:
        result.rotation_changes_s.append(rotation.set(None))
    return result
