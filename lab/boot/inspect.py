"""What a booted host says about itself: cloud-init's result, systemd's state, boot timings.

These are the host-level checks of the boot lab (the HTTP checks are in `lab.checks`):
cloud-init finished with no error and no warning in its log, systemd reached `running` (no
failed unit), and the host's services are enabled and active. Logs are read from the
container's disk; states are asked of cloud-init and systemctl inside the container.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.boot.containers import Container
from lab.localize import LabError

SERVICES = {
    "load-balancer": ("haproxy.service",),
    "web": ("nginx.service", "web-app.service", "prometheus-nginx-exporter.service"),
    "database": ("mariadb.service",),
}
# cloud-init's own final stage: every host must have run it, at every boot.
COMMON_SERVICES = ("cloud-final.service",)
_LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
_BLAME_LINE = re.compile(r"^\s*([\d.]+)s \((.+)\)\s*$")
_TOTAL = re.compile(r"Total Time: ([\d.]+) seconds")


@dataclass
class CloudInitResult:
    status: str
    """done, error, running, disabled, not started (`cloud-init status`)."""
    errors: list[str] = field(default_factory=list)
    """Errors cloud-init recorded per stage, and warnings it counts as recoverable errors."""
    log_problems: list[str] = field(default_factory=list)
    """WARNING/ERROR/Traceback lines in /var/log/cloud-init.log."""

    @property
    def clean(self) -> bool:
        return self.status == "done" and not self.errors and not self.log_problems

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "clean": self.clean}


def cloud_init_finished(container: Container) -> bool:
    """Whether cloud-init has finished this boot: the result file it writes last (what
    `cloud-init status` reads first), looked at from outside through the container's PID 1.
    A `cloud-init status` is a Python start-up, half a second of CPU: polled every second for
    every booting host, it took about a fifth of a boot lab's CPU from the boots it waited for."""
    if container.leader_pid is None:
        return False
    return Path(f"/proc/{container.leader_pid}/root/run/cloud-init/result.json").exists()


def cloud_init_status(container: Container) -> str:
    result = container.execute("cloud-init", "status", timeout=30)
    match = re.search(r"^status: (.+)$", result.stdout, re.MULTILINE)
    return match.group(1).strip() if match else f"unknown ({result.stdout.strip()})"


def cloud_init_result(container: Container) -> CloudInitResult:
    result = CloudInitResult(cloud_init_status(container))
    # /run is the container's own tmpfs: read through the container, not its disk.
    status_file = container.execute("cat", "/run/cloud-init/status.json", timeout=30)
    if status_file.returncode == 0:
        stages = json.loads(status_file.stdout).get("v1", {})
        for stage, info in stages.items():
            if not isinstance(info, dict):
                continue
            result.errors += [f"{stage}: {error}" for error in info.get("errors") or []]
            # cloud-init 23.3+ counts logged warnings as recoverable errors.
            for level, messages in (info.get("recoverable_errors") or {}).items():
                result.errors += [f"{stage}: {level}: {m}" for m in messages]
    log = container.root / "var/log/cloud-init.log"
    if log.exists():
        result.log_problems = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if _LOG_PROBLEM.search(line)
        ]
    return result


def system_state(container: Container) -> str:
    """`systemctl is-system-running`: running, degraded, starting, ..."""
    return container.execute("systemctl", "is-system-running", timeout=30).stdout.strip()


def failed_units(container: Container) -> list[str]:
    listed = container.execute(
        "systemctl", "list-units", "--failed", "--plain", "--no-legend", timeout=30
    ).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def services(container: Container, role: str) -> dict[str, str]:
    """Each expected service: `enabled/active` when it is both, else what it is."""
    found = {}
    for service in (*SERVICES.get(role, ()), *COMMON_SERVICES):
        enabled = container.execute("systemctl", "is-enabled", service).stdout.strip()
        active = container.execute("systemctl", "is-active", service).stdout.strip()
        found[service] = f"{enabled}/{active}"
    return found


def services_ok(found: dict[str, str]) -> bool:
    return all(value == "enabled/active" for value in found.values())


@dataclass(frozen=True)
class BootTimes:
    cloud_init_seconds: float | None
    """cloud-init's own total over its stages at the last boot (`cloud-init analyze show`)."""
    slowest: list[tuple[float, str]]
    """cloud-init's slowest modules at the first boot (`cloud-init analyze blame`)."""


def boot_times(container: Container, top: int = 3) -> BootTimes:
    shown = container.execute("cloud-init", "analyze", "show", timeout=60)
    totals = [float(t) for t in _TOTAL.findall(shown.stdout)]
    blame = container.execute("cloud-init", "analyze", "blame", timeout=60)
    if blame.returncode != 0:
        raise LabError(f"cloud-init analyze blame failed in {container.name}: {blame.stderr}")
    slowest: list[tuple[float, str]] = []
    for line in blame.stdout.splitlines():
        if line.startswith("-- Boot Record") and slowest:
            break  # the first boot's record is the one that installs everything
        match = _BLAME_LINE.match(line)
        if match:
            slowest.append((float(match.group(1)), match.group(2)))
    slowest.sort(reverse=True)
    return BootTimes(totals[0] if totals else None, slowest[:top])
