"""Where the CPU goes during a measurement, and how much other processes on the machine took.

Every lab daemon leads its own session (the lab starts each in a new one), so summing the CPU of
every process per session gives each daemon's CPU, its workers included. The machine's busy time
from /proc/stat less the lab's and the benchmark's own is what everything else took: the
"noise" line of the report. On 2 shared cores, the more of it, the less a run's numbers mean.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BENCHMARK_CPU = "wrk+benchmark"


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU seconds at one moment: the machine's, each lab daemon's, the benchmark's."""

    at: float
    """time.monotonic()."""
    busy: float
    """The whole machine: user + nice + system (interrupt time not included)."""
    sessions: dict[int, float]
    """CPU seconds per lab daemon's session, every process of the session included."""
    names: dict[int, str]
    """The daemon each session belongs to: web-1/nginx, load-balancer/haproxy ... A replaced
    host's new instance has the same name and a session of its own."""
    own: float
    """This process and its finished children (wrk, the lab's readiness reports)."""


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


def cpu_times(state: Path, known: Mapping[int, str] | None = None) -> CpuTimes:
    """A sample now. `known`: session leaders (PIDs) whose command line does not name the
    state folder, such as the AWS stand-in, with the name to count them under."""
    ticks = os.sysconf("SC_CLK_TCK")
    busy = parse_cpu_line(Path("/proc/stat").read_text().splitlines()[0], ticks)
    names: dict[int, str] = dict(known or {})
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
            names.setdefault(session, daemon)
        usage.append((session, used))
    sessions: dict[int, float] = {}
    for session, used in usage:
        if session in names:
            sessions[session] = sessions.get(session, 0.0) + used / ticks
    me = os.times()
    own = me.user + me.system + me.children_user + me.children_system
    names = {s: n for s, n in names.items() if s in sessions}
    return CpuTimes(time.monotonic(), busy, sessions, names, own)


def cpu_used(before: CpuTimes, after: CpuTimes) -> dict[str, float]:
    """CPU seconds each daemon (and BENCHMARK_CPU) used between two samples.

    Per session, so that a host replaced in between (a new session under the same name) adds
    its new instance's CPU instead of subtracting the old one's. A daemon that stopped in
    between is missing from `after`: its last moments count as other processes' CPU.
    """
    used: dict[str, float] = {}
    for session, seconds in after.sessions.items():
        name = after.names[session]
        used[name] = used.get(name, 0.0) + seconds - before.sessions.get(session, 0.0)
    used[BENCHMARK_CPU] = after.own - before.own
    return {name: round(used[name], 4) for name in sorted(used)}


def other_cores(before: CpuTimes, after: CpuTimes) -> float:
    """Cores busy with processes other than the lab's and the benchmark's between two samples."""
    wall = after.at - before.at
    if wall <= 0:
        return 0.0
    ours = sum(cpu_used(before, after).values())
    return max(0.0, (after.busy - before.busy - ours) / wall)
