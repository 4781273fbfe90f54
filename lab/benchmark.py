"""`python -m lab.benchmark`: what the architecture does on this machine, as one printed table.

It brings up its own lab in `.lab-bench/` (refusing to start when a port is taken, like
`python -m lab up`), measures, and always tears that lab down again. It measures:

1. Throughput and latency with wrk, for a read (GET /api/messages, served from the replica)
   and a write (POST /api/messages, to the primary), each in three scenarios with the same wrk
   settings: (a) straight to web-1's Nginx, (b) through HAProxy with only web-1 in rotation
   (the others disabled on HAProxy's admin socket), (c) through HAProxy to all N web nodes.
   Every measurement runs 3 times (once with --quick), a/b/c interleaved in an order that
   rotates per round, so that drift hits all three alike; the table shows medians (errors:
   the sum over the rounds).
2. Failover: a bounded wrk read run through HAProxy while one web node is killed (SIGKILL)
   and, once HAProxy has taken it out, started again: failed requests, the time from the kill
   until HAProxy shows the node DOWN (stats polled every 50 ms), and from the start until UP.
3. Replication lag: rows written straight to the primary with pymysql at a steady 200/s into
   a table of the benchmark's own (`webapp.bench_lag`), while a poller on the replica records
   when each row becomes visible; lag = first seen on the replica - commit acknowledged.

How to read it. req/s, p50 and p99 are wrk's (its `done()` hook prints them as JSON); errors are
non-2xx/3xx responses plus socket errors (connect, read, write, timeout). b/a is what the load
balancer costs a single node (target >= 0.9); c/b is what the extra nodes buy *on this
machine*: every process, wrk included, shares the same cores, so c/b near 1 means the CPU, not
a node, is the limit; on AWS each node has its own CPUs. Each target line ends in PASS or MISS.
Two lines help judge the ratios: "noise" is the CPU other processes on the machine took during
the runs (from /proc; the more, the less the ratios mean), and "CPU per request" is the CPU a
request costs in (a) and what HAProxy adds in (b), which bounds b/a when the CPU is the limit
and hardly moves between runs, unlike req/s. The numbers are this machine's, to compare one
change with another, not AWS capacity.

Options: `--quick` (one short round, for iterating), `--json PATH` (every raw result),
`--web-nodes N` (instead of the dev stack's webNodeCount).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pymysql

from components.web_infrastructure import DATABASE_NAME
from lab import bench_tls
from lab.lab import Lab
from lab.localize import LabError
from lab.processes import find_program
from lab.topology import LAB_NETWORKS, Topology
from settings import SettingsError

MARKER = "BENCH_JSON "
READ_PATH = "/api/messages"
WRITE_BODY = '{"text": "benchmark write"}'
STATS_POLL_SECONDS = 0.05
# The e2e tests' bounds for the same failover (tests/test_lab_e2e.py): out <= 3 s, back <= 3 s.
DETECTION_TARGET_S = 3.0
RETURN_TARGET_S = 3.0
LB_COST_TARGET = 0.9
LAG_P99_TARGET_MS = 1000.0

# wrk calls done() once, after every thread has finished; latencies are in microseconds.
DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"duration_us":%.0f,"requests":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f}\\n',
    "MARKER", summary.duration, summary.requests, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
""".replace("MARKER", MARKER)
POST_REQUEST = f"""
wrk.method = "POST"
wrk.body = '{WRITE_BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    threads: int
    connections: int
    read_seconds: int
    write_seconds: int
    rounds: int
    failover_seconds: int
    kill_at_seconds: float
    lag_rate: int
    lag_seconds: float

    @staticmethod
    def full() -> Config:
        # wrk: 2 threads for the 2 cores; 16 connections = one node's gunicorn capacity
        # (2 workers x 8 threads), so a lone node is busy but its requests do not queue.
        return Config(2, 16, 8, 4, 3, 12, 2.5, 200, 10.0)

    @staticmethod
    def quick() -> Config:
        return Config(2, 16, 3, 2, 1, 10, 2.0, 200, 4.0)


# --- pure parts (tests/test_benchmark.py) -----------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    """connect + read + write + timeout."""
    other_cores: float | None = None
    """CPU cores other processes on the machine used meanwhile (not from wrk: measured)."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds per lab daemon and BENCHMARK_CPU meanwhile (not from wrk: measured)."""

    def cpu_us_per_request(self, *names: str) -> float | None:
        """Microseconds of CPU per request by the named parts (all parts when none named)."""
        if not self.requests or not self.cpu_s:
            return None
        used = sum(v for k, v in self.cpu_s.items() if not names or k in names)
        return used / self.requests * 1e6

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def parse_wrk(output: str) -> WrkResult:
    """The result the done() hook printed as one `BENCH_JSON {...}` line of wrk's output."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        raise ValueError(f"expected one {MARKER.strip()} line in wrk's output, found {len(lines)}")
    raw = json.loads(lines[0].removeprefix(MARKER))
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        requests=int(raw["requests"]),
        seconds=seconds,
        rps=raw["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        non_2xx=int(raw["status"]),
        socket_errors=int(raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


Rule = Literal[">=", "<=", "<"]


def verdict(value: float | None, rule: Rule, target: float) -> str:
    """PASS when `value rule target` holds; MISS otherwise, or when there is no value."""
    if value is None:
        return "MISS"
    met = {">=": value >= target, "<=": value <= target, "<": value < target}[rule]
    return "PASS" if met else "MISS"


def rotated(items: Sequence[str], by: int) -> list[str]:
    """abc, bca, cab, ...: the order of round `by`, so no scenario always runs first."""
    shift = by % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


@dataclass(frozen=True)
class Summary:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def summarize(runs: Sequence[WrkResult]) -> Summary:
    """Medians over the rounds; errors and requests summed."""
    return Summary(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        requests=sum(r.requests for r in runs),
    )


def extract_version(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    return found.group(1) if found else "?"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


# --- machine ------------------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory_kib = extract_version(meminfo, r"MemTotal:\s+(\d+) kB")
    memory = f"{int(memory_kib) / 2**20:.1f} GiB" if memory_kib.isdigit() else "?"
    tools = {
        "haproxy": (["haproxy", "-v"], r"version (\S+)"),
        "nginx": (["nginx", "-v"], r"nginx/(\S+)"),
        "mariadb": (["mariadbd", "--version"], r"Ver (\S+)"),
        "gunicorn": (["gunicorn", "--version"], r"version ([^)\s]+)"),
        "wrk": (["wrk", "-v"], r"wrk (\S+)"),
    }
    facts = {
        "cpu": extract_version(cpuinfo, r"model name\s*:\s*(.+)"),
        "cores": str(os.cpu_count() or "?"),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pymysql": pymysql.__version__,
    }
    for name, (command, pattern) in tools.items():
        facts[name] = extract_version(_output_of(command), pattern)
    return facts


def _output_of(command: list[str]) -> str:
    program = find_program(command[0]) or command[0]
    try:
        result = subprocess.run(  # noqa: S603 - fixed version queries
            [program, *command[1:]], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout + result.stderr  # nginx -v writes to stderr, wrk -v exits 1


# --- CPU: where it goes, and how much everything else takes ------------------------------------

BENCHMARK_CPU = "wrk+benchmark"


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds at one moment: the machine's, and the benchmark's own."""

    at: float
    busy: float
    """The whole machine: user + nice + system (interrupt time not included)."""
    parts: dict[str, float]
    """Per lab daemon (web-1/nginx, load-balancer/haproxy ...), every process of its session
    included; and BENCHMARK_CPU: wrk (a finished child) and this process."""

    @property
    def ours(self) -> float:
        return sum(self.parts.values())


def parse_cpu_line(line: str, ticks_per_second: int) -> float:
    """Busy seconds (user + nice + system) from the `cpu` line of /proc/stat."""
    user, nice, system = (int(v) for v in line.split()[1:4])
    return (user + nice + system) / ticks_per_second


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(session id, utime + stime in ticks) from /proc/PID/stat."""
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
    return int(fields[3]), int(fields[11]) + int(fields[12])


def daemon_of(command: str, state: Path) -> str | None:
    """The lab daemon a command line belongs to (`web-1/app` ...), from its state-folder path."""
    prefix = f"{state}/"
    if prefix not in command:
        return None
    program, rest = command.split(prefix, 1)
    host = rest.split("/", 1)[0].split(".", 1)[0]  # web-1.2: the second instance of web-1
    for marker, kind in (("haproxy", "haproxy"), ("nginx", "nginx"), ("gunicorn", "app")):
        if marker in program:
            return f"{host}/{kind}"
    return f"{host}/mariadbd" if "mariadbd" in program else host


def cpu_times(state: Path) -> CpuTimes:
    ticks = os.sysconf("SC_CLK_TCK")
    busy = parse_cpu_line(Path("/proc/stat").read_text().splitlines()[0], ticks)
    sessions: dict[int, str] = {}  # every lab daemon leads its own session
    usage: list[tuple[int, int]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            session, used = parse_pid_stat((entry / "stat").read_text())
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        daemon = daemon_of(command, state)
        if daemon is not None:
            sessions.setdefault(session, daemon)
        usage.append((session, used))
    parts: dict[str, float] = {}
    for session, used in usage:
        if session in sessions:
            parts[sessions[session]] = parts.get(sessions[session], 0.0) + used / ticks
    me = os.times()
    parts[BENCHMARK_CPU] = me.user + me.system + me.children_user + me.children_system
    return CpuTimes(time.monotonic(), busy, parts)


def cpu_used(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """CPU seconds each part used between two samples."""
    return {
        name: round(after.parts[name] - before.parts.get(name, 0.0), 4)
        for name in sorted(after.parts)
    }


def other_cores(before: CpuTimes, after: CpuTimes) -> float:
    """Cores busy with processes other than the benchmark's between two samples."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    return max(0.0, (after.busy - before.busy - (after.ours - before.ours)) / wall)


# --- load ---------------------------------------------------------------------------------------


class Wrk:
    """wrk with the benchmark's settings; Lua scripts in a temporary folder."""

    def __init__(self, config: Config, folder: Path, state: Path) -> None:
        self.config = config
        self.state = state
        self.read_script = folder / "read.lua"
        self.read_script.write_text(DONE_HOOK)
        self.write_script = folder / "write.lua"
        self.write_script.write_text(POST_REQUEST + DONE_HOOK)

    def command(
        self, url: str, seconds: float, *, write: bool, headers: Sequence[str] = ()
    ) -> list[str]:
        script = self.write_script if write else self.read_script
        return [
            shutil.which("wrk") or "wrk",
            *(part for header in headers for part in ("-H", header)),
            f"-t{self.config.threads}",
            f"-c{self.config.connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "2s",
            "--latency",
            "-s",
            str(script),
            url,
        ]

    def run(
        self, url: str, seconds: float, *, write: bool, headers: Sequence[str] = ()
    ) -> WrkResult:
        before = cpu_times(self.state)
        result = subprocess.run(  # noqa: S603 - wrk against the lab's loopback addresses
            self.command(url, seconds, write=write, headers=headers),
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
        after = cpu_times(self.state)
        return dataclasses.replace(
            parse_wrk(result.stdout),
            other_cores=round(other_cores(before, after), 3),
            cpu_s=cpu_used(before, after),
        )


class Rotation:
    """Which web nodes HAProxy sends to, set through its admin socket."""

    def __init__(self, lab: Lab, topology: Topology) -> None:
        self.lab = lab
        self.topology = topology
        self.socket = lab.directory("load-balancer") / "admin.sock"
        self.nodes = [h.name for h in topology.web_nodes]
        self.only: str | None = None

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(self.socket))
            client.sendall(command.encode() + b"\n")
            reply = b""
            while chunk := client.recv(4096):
                reply += chunk
        return reply.decode(errors="replace").strip()

    def set(self, only: str | None, timeout: float = 15.0) -> float:
        """Only `only` in rotation (None: every node); seconds until HAProxy's stats agree."""
        started = time.monotonic()
        for node in self.nodes:
            action = "enable" if only in (None, node) else "disable"
            reply = self.admin(f"{action} server web/{node}")
            if reply:
                raise LabError(f"HAProxy refused `{action} server web/{node}`: {reply}")
        want = {n: "UP" if only in (None, n) else "MAINT" for n in self.nodes}
        if not wait_for(lambda: self.lab.rotation(self.topology) == want, timeout):
            raise LabError(f"HAProxy did not reach {want}: {self.lab.rotation(self.topology)}")
        self.only = only
        return time.monotonic() - started


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `condition()` held (polled every `step`), or None after `timeout`."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started >= timeout:
            return None
        time.sleep(step)


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
    runs: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)
    """endpoint (read/write) -> scenario key -> one result per round, in round order."""
    rotation_changes_s: list[float] = field(default_factory=list)


def measure_throughput(
    wrk: Wrk, rotation: Rotation, topology: Topology, config: Config, say: Callable[[str], None]
) -> Throughput:
    result = Throughput({e: {s.key: [] for s in scenarios(topology)} for e in ("read", "write")})
    by_key = {s.key: s for s in scenarios(topology)}
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
                run = wrk.run(scenario.base_url + READ_PATH, seconds, write=endpoint == "write")
                result.runs[endpoint][key].append(run)
                say(
                    f"  round {round_index + 1}/{config.rounds} {endpoint:5} {scenario.label}: "
                    f"{run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms, {run.errors} errors; "
                    f"other processes {run.other_cores or 0:.2f} cores"
                )
    if rotation.only is not None:
        result.rotation_changes_s.append(rotation.set(None))
    return result


# --- failover -----------------------------------------------------------------------------------


@dataclass
class Failover:
    victim: str
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
        found = wait_for(
            lambda: first_change_to(list(self.states), state, since) is not None, timeout
        )
        return None if found is None else first_change_to(list(self.states), state, since)


def measure_failover(lab: Lab, topology: Topology, wrk: Wrk, config: Config) -> Failover:
    """Kill the last web node under read load, start it again once it is out of rotation.

    The stats are polled from a thread, from before the kill: `stop_host(kill=True)` itself
    returns only after the killed processes are gone, which can take seconds.
    """
    victim = topology.web_nodes[-1].name
    result = Failover(victim)
    url = topology.url.rstrip("/") + READ_PATH
    command = wrk.command(url, config.failover_seconds, write=False)
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


# --- replication lag ------------------------------------------------------------------------


@dataclass
class Lag:
    rate: int
    seconds: float
    written: int = 0
    write_errors: int = 0
    seen: int = 0
    achieved_rate: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    """Per row, in id order: first seen on the replica - commit acknowledged by the primary."""

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.lags_ms, 50) if self.lags_ms else None

    @property
    def p99_ms(self) -> float | None:
        return percentile(self.lags_ms, 99) if self.lags_ms else None


def lag_samples(acked: dict[int, float], seen: dict[int, float]) -> list[float]:
    """Milliseconds from each row's commit ack to its first sighting on the replica, by id."""
    return [(seen[i] - acked[i]) * 1000 for i in sorted(acked) if i in seen]


class LagProbe:
    """One writer on the primary paced at `rate` rows/s; one poller on the replica (a thread).

    Both use time.monotonic() in this process, so the lag needs no clock agreement.
    """

    def __init__(self, lab: Lab, topology: Topology, config: Config) -> None:
        self.topology = topology
        self.credentials = json.loads((lab.state / "credentials.json").read_text())
        self.rate = config.lag_rate
        self.seconds = config.lag_seconds
        self.total = int(config.lag_rate * config.lag_seconds)
        self.acked: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.write_errors = 0
        self.writing_done = threading.Event()
        self.poller_error: list[BaseException] = []

    def connect(self, host: str) -> pymysql.connections.Connection[Any]:
        address = self.topology.host(host)
        return pymysql.connect(
            host=address.address,
            port=address.port,
            user=self.credentials["username"],
            password=self.credentials["password"],
            database=DATABASE_NAME,
            autocommit=True,  # the poller must not keep one snapshot: each SELECT sees anew
            connect_timeout=5,
            read_timeout=10,
            write_timeout=10,
        )

    def run(self) -> Lag:
        primary, replica = self.connect("db-primary"), self.connect("db-replica")
        try:
            with primary.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS bench_lag")
                cursor.execute(
                    "CREATE TABLE bench_lag (id BIGINT PRIMARY KEY, written_at DOUBLE NOT NULL)"
                )
            if wait_for(lambda: self.replica_has_table(replica), 10.0) is None:
                raise LabError("bench_lag did not reach the replica within 10 s")
            poller = threading.Thread(target=self.poll, args=(replica,), daemon=True)
            poller.start()
            try:
                elapsed = self.write(primary)
            finally:
                self.writing_done.set()
                poller.join(timeout=30)
            if self.poller_error:
                raise LabError(f"the replica poller failed: {self.poller_error[0]!r}")
        finally:
            primary.close()
            replica.close()
        return Lag(
            self.rate,
            self.seconds,
            written=len(self.acked),
            write_errors=self.write_errors,
            seen=sum(1 for i in self.acked if i in self.seen),
            achieved_rate=len(self.acked) / elapsed if elapsed > 0 else 0.0,
            lags_ms=lag_samples(self.acked, self.seen),
        )

    @staticmethod
    def replica_has_table(replica: pymysql.connections.Connection[Any]) -> bool:
        try:
            with replica.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM bench_lag")
        except pymysql.MySQLError:
            return False
        return True

    def write(self, primary: pymysql.connections.Connection[Any]) -> float:
        """Rows 1..total on a fixed schedule (no catching up in bursts); the seconds taken."""
        started = time.monotonic()
        with primary.cursor() as cursor:
            for row_id in range(1, self.total + 1):
                pause = started + (row_id - 1) / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                try:
                    cursor.execute(
                        "INSERT INTO bench_lag (id, written_at) VALUES (%s, %s)",
                        (row_id, time.time()),
                    )
                except pymysql.MySQLError:
                    self.write_errors += 1
                    continue
                self.acked[row_id] = time.monotonic()  # autocommit: the commit is acknowledged
        return time.monotonic() - started

    def poll(self, replica: pymysql.connections.Connection[Any]) -> None:
        """Every ~2 ms, the ids not seen yet; stops 10 s after the writes at the latest."""
        floor = 0  # every id <= floor has been seen
        give_up_at: float | None = None
        try:
            with replica.cursor() as cursor:
                while len(self.seen) < self.total:
                    cursor.execute("SELECT id FROM bench_lag WHERE id > %s", (floor,))
                    now = time.monotonic()
                    for (row_id,) in cursor.fetchall():
                        self.seen.setdefault(int(row_id), now)
                    while floor + 1 in self.seen:
                        floor += 1
                    if self.writing_done.is_set():
                        give_up_at = give_up_at or now + 10.0
                        if now > give_up_at:
                            return
                    time.sleep(0.002)
        except BaseException as error:  # reported by the main thread
            self.poller_error.append(error)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    config: Config
    machine: dict[str, str]
    topology_url: str
    web_nodes: list[str]
    throughput: Throughput
    failover: Failover
    lag: Lag
    seconds: float = 0.0
    tls: list[bench_tls.Row] = field(default_factory=list)
    """HTTPS next to HTTP through HAProxy (lab/bench_tls.py)."""


def seed(topology: Topology, count: int = 20) -> None:
    """A full first page of messages, so every read returns the same 20 rows."""
    for i in range(count):
        request = urllib.request.Request(  # noqa: S310 - the lab's own http URL
            topology.url.rstrip("/") + READ_PATH,
            data=json.dumps({"text": f"benchmark seed {i}"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            if response.status != 201:
                raise LabError(f"seeding failed: HTTP {response.status}")


def run(
    config: Config, web_nodes: int | None, say: Callable[[str], None], lab_name: str = "bench"
) -> Report:
    began = time.monotonic()
    machine = machine_facts()
    lab = Lab(lab_name)
    existed = lab.state_file.exists()
    say(f"bringing up the benchmark's lab in {lab.state} ...")
    try:
        topology = lab.up(web_nodes=web_nodes)
    except BaseException:
        if not existed:  # up() stopped what it had started; remove its state folder
            lab.down()
        raise
    try:
        say(f"lab up in {time.monotonic() - began:.1f} s: {topology.url}")
        rotation = Rotation(lab, topology)
        with tempfile.TemporaryDirectory(prefix="lab-bench-") as folder:
            wrk = Wrk(config, Path(folder), lab.state)
            seed(topology)
            lb = topology.url.rstrip("/") + READ_PATH
            wrk.run(lb, 2, write=False)  # warm-up: workers, connections, caches
            wrk.run(lb, 1, write=True)
            say("throughput (a: direct, b: LB with one node, c: LB with all nodes):")
            throughput = measure_throughput(wrk, rotation, topology, config, say)
            # --- HTTPS next to HTTP (lab/bench_tls.py) ---
            say("TLS: HTTPS next to HTTP through HAProxy ...")
            tls = bench_tls.measure(
                wrk,
                topology,
                lab.instance("load-balancer").daemons[0].pid or 0,
                lab.directory("load-balancer") / "admin.sock",
                seconds=config.write_seconds,
                rounds=config.rounds,
                say=say,
            )
            # --- end of HTTPS ---
            say("failover ...")
            failover = measure_failover(lab, topology, wrk, config)
        say(f"replication lag at {config.lag_rate} writes/s for {config.lag_seconds:g} s ...")
        lag = LagProbe(lab, topology, config).run()
    finally:
        say("tearing the lab down ...")
        lab.down()
    return Report(
        config,
        machine,
        topology.url,
        [h.name for h in topology.web_nodes],
        throughput,
        failover,
        lag,
        time.monotonic() - began,
        tls,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def render(report: Report) -> str:
    config, machine = report.config, report.machine
    nodes = report.web_nodes
    labels = {
        "a": f"(a) direct to {nodes[0]}",
        "b": f"(b) LB, only {nodes[0]} in rotation",
        "c": f"(c) LB, all {len(nodes)} nodes",
    }
    out = [
        f"web-infra lab benchmark: {len(nodes)} web nodes, {report.seconds:.0f} s",
        f"machine:  {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, "
        f"kernel {machine['kernel']}",
        f"versions: HAProxy {machine['haproxy']}, Nginx {machine['nginx']}, "
        f"MariaDB {machine['mariadb']}, gunicorn {machine['gunicorn']}, wrk {machine['wrk']}, "
        f"Python {machine['python']}, PyMySQL {machine['pymysql']}",
        f"wrk:      -t{config.threads} -c{config.connections} --timeout 2s; reads "
        f"{config.read_seconds} s, writes {config.write_seconds} s per run; {config.rounds} "
        "round(s), a/b/c order rotated per round; medians (errors: summed)",
        "",
    ]
    rows: list[list[str]] = []
    summaries: dict[str, dict[str, Summary]] = {}
    for endpoint, method in (("read", f"GET {READ_PATH}"), ("write", f"POST {READ_PATH}")):
        summaries[endpoint] = {}
        for key in ("a", "b", "c"):
            summary = summarize(report.throughput.runs[endpoint][key])
            summaries[endpoint][key] = summary
            rows.append(
                [
                    f"{endpoint:5} {labels[key]}  [{method}]",
                    f"{summary.rps:.0f}",
                    _ms(summary.p50_ms),
                    _ms(summary.p99_ms),
                    str(summary.errors),
                ]
            )
    failover = report.failover
    if failover.wrk is not None:
        rows.append(
            [
                f"failover: LB read, {failover.victim} killed at {failover.killed_at_s:.1f} s "
                f"of {config.failover_seconds} s",
                f"{failover.wrk.rps:.0f}",
                _ms(failover.wrk.p50_ms),
                _ms(failover.wrk.p99_ms),
                str(failover.wrk.errors),
            ]
        )
    lag = report.lag
    rows.append(
        [
            f"replication lag: {lag.rate} writes/s to the primary (ms = lag)",
            f"{lag.achieved_rate:.0f}",
            _ms(lag.p50_ms),
            _ms(lag.p99_ms),
            str(lag.write_errors + lag.written - lag.seen),
        ]
    )
    tls_rows, tls_lines = bench_tls.render(report.tls)  # HTTPS next to HTTP
    rows += tls_rows
    out.append(format_table(["scenario", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    others = [
        r.other_cores
        for by_key in report.throughput.runs.values()
        for runs in by_key.values()
        for r in runs
        if r.other_cores is not None
    ]
    if others:
        out.append(
            f"noise:    other processes on this machine used {statistics.median(others):.2f} "
            f"cores (median; max {max(others):.2f}) of {machine['cores']} during the "
            "throughput runs: the higher, the less the ratios mean"
        )
    out.append("")

    for endpoint in ("read", "write"):
        runs = report.throughput.runs[endpoint]
        s = summaries[endpoint]
        for top, bottom, meaning in (
            ("b", "a", "what the load balancer costs"),
            ("c", "b", f"what {len(nodes) - 1} more node(s) buy here"),
        ):
            value = ratio(s[top].rps, s[bottom].rps)
            per_round = [ratio(t.rps, b.rps) for t, b in zip(runs[top], runs[bottom], strict=True)]
            rounds = " ".join(_ratio(r) for r in per_round)
            line = (
                f"{endpoint:5} {top}/{bottom} = {_ratio(value)} of the medians "
                f"(per round: {rounds}), {meaning}"
            )
            if top == "b":
                target = verdict(value, ">=", LB_COST_TARGET)
                line += f"; target >= {LB_COST_TARGET}  {target}"
            else:
                line += "; no target (one machine's cores are shared by every node)"
            out.append(line)
        out.append(cpu_line(endpoint, runs))
    if failover.wrk is not None:
        w = failover.wrk
        out.append(
            f"failover: {w.errors} failed of {w.requests} requests ({w.non_2xx} non-2xx, "
            f"{w.socket_errors} socket errors); target 0  "
            f"{verdict(w.errors, '<=', 0)}"
        )
    out.append(
        f"failover: {failover.victim} DOWN {_s(failover.detection_s)} after the kill; "
        f"target <= {DETECTION_TARGET_S:g} s  "
        f"{verdict(failover.detection_s, '<=', DETECTION_TARGET_S)}"
    )
    out.append(
        f"failover: {failover.victim} UP {_s(failover.return_s)} after the start command "
        f"(start itself {failover.start_call_s:.2f} s); target <= {RETURN_TARGET_S:g} s  "
        f"{verdict(failover.return_s, '<=', RETURN_TARGET_S)}"
    )
    events = sorted(
        [(failover.killed_at_s, "kill"), (failover.started_at_s, "start"), *failover.states[1:]]
    )
    out.append(
        "failover: timeline in s since wrk started: "
        f"{', '.join(f'{name} {at:.2f}' for at, name in events)}, "
        f"end {config.failover_seconds}; stop_host(kill=True) returned after "
        f"{failover.stop_call_s:.2f} s"
    )
    out += tls_lines
    out.append(
        f"lag:      {lag.seen} of {lag.written} rows seen on the replica "
        f"({lag.write_errors} writes failed), {lag.achieved_rate:.1f} writes/s over "
        f"{lag.seconds:g} s; p50 {_ms(lag.p50_ms)} ms, p99 {_ms(lag.p99_ms)} ms, "
        f"max {_ms(max(lag.lags_ms) if lag.lags_ms else None)} ms (direct pymysql, polled every "
        f"~2 ms); target p99 < {LAG_P99_TARGET_MS:g} ms  "
        f"{_lag_verdict(lag)}"
    )
    return "\n".join(out)


def _median_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def cpu_line(endpoint: str, runs: dict[str, list[WrkResult]]) -> str:
    """HAProxy's CPU per request in (b) against a request's whole CPU in (a), wrk included.

    When the CPU is what limits the lab (every process shares the same cores), the load
    balancer can cost no less than its share of the CPU: b/a <= a / (a + HAProxy). CPU per
    request hardly depends on what else runs on the machine, unlike req/s, so this is the
    steadier answer to "what does the load balancer cost".
    """
    total_a = _median_of([r.cpu_us_per_request() for r in runs["a"]])
    haproxy = _median_of([r.cpu_us_per_request("load-balancer/haproxy") for r in runs["b"]])
    if total_a is None or haproxy is None:
        return f"{endpoint:5} CPU per request: not measured"
    return (
        f"{endpoint:5} CPU per request: {total_a:.0f} us in (a) (app, Nginx, MariaDB, wrk); "
        f"HAProxy adds {haproxy:.0f} us in (b): b/a ~ {_ratio(ratio(total_a, total_a + haproxy))} "
        "when the CPU is the limit"
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _lag_verdict(lag: Lag) -> str:
    if lag.seen < lag.written or lag.write_errors:
        return "MISS"
    return verdict(lag.p99_ms, "<", LAG_P99_TARGET_MS)


def as_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["lag"]["p50_ms"] = report.lag.p50_ms
    data["lag"]["p99_ms"] = report.lag.p99_ms
    return data


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that `finally` tears the lab down on SIGTERM too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.benchmark", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="one short round, for iterating")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw results here")
    parser.add_argument("--web-nodes", type=int, help="override webNodeCount (2 to 20)")
    parser.add_argument(
        "--lab", default="bench", choices=sorted(LAB_NETWORKS), help="which lab network to use"
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("benchmark: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    config = Config.quick() if args.quick else Config.full()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        report = run(config, args.web_nodes, say, args.lab)
    except (LabError, SettingsError, pymysql.MySQLError, OSError) as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark: interrupted; its lab is down", file=sys.stderr)
        return 130
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(as_json(report), indent=2) + "\n")
        print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
