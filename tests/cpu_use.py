"""Where a test run's CPU goes: each test file's wall time and the CPU it used, printed at the
end of a run with `--cpu-table` (as `make test` asks; tests/conftest.py), or with `-p cpu_use`.

On a two-core machine the suite keeps both cores busy for most of `make test`, so a file's CPU,
not its wall time, is what it takes from every other file running beside it, and what a faster
`make test` has to cut. A file's CPU is its worker's own over the file's tests (set-up and
tear-down included) plus that of every process the worker reaped meanwhile: a lab's daemons,
its containers and everything that ran in them (a container's init reaps its processes,
systemd-nspawn reaps the init, the worker reaps systemd-nspawn). The machine's CPU over the run
(/proc/stat) is printed beside the files' sum: the difference is what no file's count holds,
such as the workers' start-up and collection, the kernel's own work, or another program.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path

import pytest

SHOWN = 20
"""Files listed one by one, the most CPU first; the rest are summed on one line."""


def cpu_seconds() -> float:
    """This process's CPU and that of its reaped descendants, user and system."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def machine_cpu_seconds() -> float | None:
    """Every core's busy time since boot (user, nice, system, irq, softirq), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def table(files: dict[str, list[float]], wall: float, machine: float | None) -> str:
    """The summary: per file wall and CPU seconds, the busiest first, and the run's totals."""
    rows = sorted(files.items(), key=lambda item: -item[1][1])
    lines = [f"{'FILE':<44} {'WALL s':>8} {'CPU s':>8}"]
    lines += [f"{name:<44} {w:>8.1f} {c:>8.1f}" for name, (w, c) in rows[:SHOWN]]
    rest = rows[SHOWN:]
    if rest:
        label = f"the other {len(rest)} files"
        lines.append(
            f"{label:<44} {sum(w for _, (w, _) in rest):>8.1f} {sum(c for _, (_, c) in rest):>8.1f}"
        )
    counted = sum(c for _, c in files.values())
    lines.append(f"{'every file':<44} {'':>8} {counted:>8.1f}")
    summary = f"run: {wall:.0f} s of wall time"
    if machine is not None:
        summary += (
            f"; the machine was busy {machine:.0f} CPU s ({machine / wall:.2f} cores on "
            f"average), {max(machine - counted, 0.0):.0f} of them in no file's count"
        )
    return "\n".join([*lines, summary])


class CpuUse:
    """Counts per file on each worker; the controller (or a run without workers) prints."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.started = time.monotonic()
        self.machine_started = machine_cpu_seconds()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        wall, cpu = time.monotonic(), cpu_seconds()
        yield
        entry = self.files[Path(str(item.path)).name]
        entry[0] += time.monotonic() - wall
        entry[1] += cpu_seconds() - cpu

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # a pytest-xdist worker: its counts go to the controller
            workeroutput["cpu_use"] = json.dumps(self.files)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        counted = getattr(node, "workeroutput", {}).get("cpu_use", "{}")
        for name, (wall, cpu) in json.loads(counted).items():
            self.files[name][0] += wall
            self.files[name][1] += cpu

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if getattr(self.config, "workeroutput", None) is not None or not self.files:
            return
        now = machine_cpu_seconds()
        machine = None
        if now is not None and self.machine_started is not None:
            machine = now - self.machine_started
        terminalreporter.write_sep("=", "CPU per test file (tests/cpu_use.py)")
        terminalreporter.write_line(table(self.files, time.monotonic() - self.started, machine))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(CpuUse(config), "cpu-use-counter")
