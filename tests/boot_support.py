"""What the boot lab's tests share: the capability check and a lab in a folder of its own.

The boot lab needs root (containers, a bridge, overlay mounts) and its programs. Under CI
(CI=true) a missing one fails the test; elsewhere it is skipped with what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from system_tools import require

from lab.boot import network
from lab.boot.bootlab import REQUIRED, BootLab
from lab.boot.containers import CGROUP_GROUP, cgroup_hierarchies


def require_boot_capabilities() -> None:
    for tool in REQUIRED:
        require(tool)
    problem = None
    if os.geteuid() != 0:
        problem = "the boot lab needs root (containers, a bridge, overlay mounts)"
    elif not cgroup_hierarchies():
        problem = "the boot lab needs a cgroup hierarchy under /sys/fs/cgroup"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


# Not pytest's tmp_path: MariaDB runs as the mysql user, who cannot enter /tmp/pytest-of-root.
TEST_STATE = Path("/var/lib/web-infra/boot-tests")


def pids_of(lab: BootLab) -> set[int]:
    """Every PID the lab recorded: helpers, nspawn processes and the containers' PID 1."""
    state = lab.load()
    pids = {helper["pid"] for helper in state.helpers}
    for host in state.hosts:
        pids |= {pid for pid in (host.nspawn_pid, host.leader_pid) if pid}
    return pids


def leftovers(folder: Path, pids: set[int]) -> list[str]:
    """What of a boot lab in `folder` still exists after its `down`: should be nothing."""
    found = []
    if network.Bridge().exists():
        found.append(f"bridge {network.BRIDGE}")
    prefix = str(folder.resolve())
    found += [
        f"mount {line.split()[1]}"
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    found += [
        f"cgroup {hierarchy / CGROUP_GROUP}"
        for hierarchy in cgroup_hierarchies()
        if (hierarchy / CGROUP_GROUP).exists()
    ]
    for pid in sorted(pids):
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            found.append(f"process {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
    if folder.exists():
        found.append(f"state folder {folder}")
    return found


@contextmanager
def boot_lab(folder: Path, **up: object) -> Iterator[BootLab]:
    """A boot lab in `folder`, brought up with `up`'s arguments, removed after; checks that
    its `down` left nothing behind."""
    lab = BootLab(state=folder)
    pids: set[int] = set()
    try:
        lab.up(**up)  # type: ignore[arg-type]
        pids = pids_of(lab)
        yield lab
    finally:
        lab.down()
    left = leftovers(folder, pids)
    assert not left, f"down left: {left}"
