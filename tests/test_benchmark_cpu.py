"""Where the CPU goes during a benchmark run, what other processes took, and the machine's facts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.bench.cpu import (
    BENCHMARK_CPU,
    CpuTimes,
    cpu_times,
    cpu_used,
    daemon_of,
    other_cores,
    parse_cpu_line,
    parse_pid_stat,
)
from lab.bench.machine import extract_version

HAPROXY_V = "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
MARIADB_V = "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        (HAPROXY_V, r"version (\S+)", "2.6.12-1+deb12u4"),
        ("nginx version: nginx/1.22.1\n", r"nginx/(\S+)", "1.22.1"),
        (MARIADB_V, r"Ver (\S+)", "10.11.19-MariaDB-0+deb12u1"),
        ("gunicorn (version 20.1.0)", r"version ([^)\s]+)", "20.1.0"),
        ("wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012", r"wrk (\S+)", "debian/4.1.0-3+b2"),
        ("", r"wrk (\S+)", "?"),
    ],
)
def test_extract_version(text: str, pattern: str, expected: str) -> None:
    assert extract_version(text, pattern) == expected


def test_proc_stat_parsing() -> None:
    assert parse_cpu_line("cpu  76239 10 20798 222303 784 0 2246 48 0 0", 100) == pytest.approx(
        970.47
    )
    # The command name is in parentheses and may itself hold ") ".
    line = "4242 (odd) name) S 1 4242 4240 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 9 0 1 2 3"
    assert parse_pid_stat(line) == (4240, 175)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/usr/sbin/haproxy -db -f /s/b/load-balancer.1/haproxy.cfg", "load-balancer/haproxy"),
        (
            "nginx: master process /usr/sbin/nginx -c /s/b/web-1.1/nginx.conf -e /s/b/web-1.1/e",
            "web-1/nginx",
        ),
        (
            "/usr/bin/python3 /usr/bin/gunicorn --config /s/b/web-2.3/etc/gunicorn.conf.py",
            "web-2/app",
        ),
        ("/usr/sbin/mariadbd --no-defaults --datadir=/s/b/db-replica/data", "db-replica/mariadbd"),
        ("/usr/sbin/dnsmasq --addn-hosts=/s/b/dns/hosts", "dns"),
        ("nginx: worker process", None),  # a worker: counted by its master's session
        ("/usr/sbin/haproxy -f /s/lab/load-balancer.1/haproxy.cfg", None),  # another lab's
    ],
)
def test_daemon_of_a_command_line(command: str, expected: str | None) -> None:
    assert daemon_of(command, Path("/s/b")) == expected


def test_cpu_used_and_what_other_processes_took() -> None:
    before = CpuTimes(100.0, 50.0, {10: 10.0}, {10: "web-1/app"}, own=1.0)
    after = CpuTimes(
        104.0,
        57.0,
        {10: 13.0, 20: 0.5},
        {10: "web-1/app", 20: "load-balancer/haproxy"},
        own=1.5,
    )
    assert cpu_used(before, after) == {
        "load-balancer/haproxy": 0.5,
        "web-1/app": 3.0,
        BENCHMARK_CPU: 0.5,
    }
    # The machine was busy 7 s in 4 s of wall time; 4 s of it ours: 3 s / 4 s elsewhere.
    assert other_cores(before, after) == pytest.approx(0.75)
    assert other_cores(after, after) == 0.0


def test_a_host_replaced_between_samples_adds_its_new_instance() -> None:
    """A new instance runs under the old one's name in a new session: it must add its own CPU,
    not subtract the old instance's minutes of CPU (which made the noise look huge)."""
    before = CpuTimes(0.0, 500.0, {10: 120.0}, {10: "web-1/app"}, own=0.0)
    after = CpuTimes(2.0, 502.0, {11: 0.8}, {11: "web-1/app"}, own=0.2)
    assert cpu_used(before, after) == {"web-1/app": 0.8, BENCHMARK_CPU: 0.2}
    assert other_cores(before, after) == pytest.approx(0.5)


def test_a_sample_of_this_machine_counts_a_named_session_and_this_process() -> None:
    """`known` sessions (the AWS stand-in, whose command line does not name the lab's folder)
    are counted as the lab's: here this test's own session stands in for one."""
    sample = cpu_times(Path("/nonexistent-lab-state"), {os.getsid(0): "aws/moto"})
    assert sample.names == {os.getsid(0): "aws/moto"}
    assert sample.sessions[os.getsid(0)] > 0
    assert sample.own > 0
    assert sample.busy > 0
