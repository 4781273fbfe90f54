"""Tearing a boot lab down: exactly what its run made, and nothing of another boot lab's.

`down` finds this lab's containers by its records, its state folder and its cgroups (so a
container that was started but never recorded goes too), stops the helper processes the
state recorded, and removes the fault rules, the public address's rule and the bridge only
when no other boot lab (another state folder's: another checkout, or the tests' own folder)
still has hosts using them. It
changes when what a run leaves behind changes, or how another lab's hosts are recognised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from lab import processes
from lab.boot import database_hosts, elastic_ip, faults
from lab.boot.containers import CGROUP_GROUP, Container, cgroup_hierarchies
from lab.boot.state import BootRecords, State
from lab.localize import LabError
from lab.processes import Daemon


class Teardown(BootRecords):
    """`down`: remove everything of this boot lab, also after a failed or interrupted `up`."""

    def down(self) -> list[str]:
        """Remove everything this lab made: containers, mounts, cgroups, helpers, the bridge."""
        state = None
        with contextlib.suppress(LabError, ValueError, TypeError, KeyError):
            state = self.load()
        others = other_labs_containers(self.folder, proc_mounts())
        removed = self._remove_containers(state, others)
        for host, volume in (state.volumes if state else {}).items():
            if database_hosts.detach_volume(volume["loop"], volume["image"]):
                removed.append(f"{host}'s volume {volume['loop']}")
        if processes.find_program("nft") is not None and not others:
            faults.clear()
            faults.heal_vrrp()
        if state:
            for helper in reversed(state.helpers):
                daemon = Daemon(**helper)
                if processes.is_running(daemon):
                    processes.stop(daemon)
                    removed.append(helper["name"])
        if processes.find_program("nft") is not None and not others:
            elastic_ip.clear()  # after its follower stopped, which would put it back
        if not others and self.bridge.delete():  # another boot lab's containers still use it
            removed.append(f"bridge {self.bridge.name}")
        if self.folder.exists():
            remove_in_background(self.folder)
        return removed

    def _remove_containers(self, state: State | None, others: set[str]) -> list[str]:
        """Every container of this lab, recorded or not (found by folder or cgroup), and none
        of `others` (another state folder's boot lab) unless this lab recorded it."""
        removed: list[str] = []
        hosts_folder = self.folder / "hosts"
        names = {h.name for h in state.hosts} if state else set()
        if hosts_folder.exists():
            names |= {p.name for p in hosts_folder.iterdir() if p.is_dir()}
        for hierarchy in cgroup_hierarchies():
            if (hierarchy / CGROUP_GROUP).exists():
                names |= {
                    p.name
                    for p in (hierarchy / CGROUP_GROUP).iterdir()
                    if p.is_dir() and p.name not in others
                }
        records = {h.name: h for h in state.hosts} if state else {}
        containers = [
            self.container(records[n]) if n in records else Container(n, hosts_folder / n)
            for n in sorted(names)
        ]
        # Power every container off at once, then wait: a clean shutdown takes seconds each,
        # and lets systemd-nspawn remove its own veth link (a killed one leaves it behind,
        # and the next container of that name cannot start while it exists).
        for container in containers:
            if container.running() and container.nspawn_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(container.nspawn_pid, signal.SIGTERM)
        for container in containers:
            container.stop()
            container.unmount()
            container.remove_cgroups()
            removed.append(f"container {container.name}")
        for mount in _mounts_under(self.folder):  # a mount whose container was never recorded
            subprocess.run([processes.program("umount"), mount], check=False)  # noqa: S603
        return removed


def proc_mounts() -> str:
    return Path("/proc/mounts").read_text()


def other_labs_containers(folder: Path, mounts: str) -> set[str]:
    """Hosts of a boot lab of another state folder (another checkout's, or the default one
    while tests use their own), known by their root's mount `<state>/hosts/<host>/root` in
    `mounts` (/proc/mounts): `down` must leave them, and the bridge and fault rules they use,
    alone."""
    mine = folder.resolve()
    names = set()
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        root = Path(fields[1])
        hosts = root.parent.parent
        if (
            root.name == "root"
            and hosts.name == "hosts"
            and hosts.parent != mine
            and (hosts.parent / "state.json").exists()
        ):
            names.add(root.parent.name)
    return names


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    mounts = proc_mounts().splitlines()
    return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def remove_in_background(folder: Path) -> None:
    """Take `folder` away at once and delete its files in a process of their own.

    A lab's folder holds every container's upper layer (the packages its userdata installed):
    tens of thousands of files, which took 45 s to delete on a busy 2-core machine, while
    nothing needs them gone before the next lab boots. The folder is renamed first (`down`
    returns with it gone from its place), then `rm` deletes it; it stays on one file system,
    so a mount left inside by a crash is never followed."""
    trash = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{time.time_ns()}")
    folder.rename(trash)
    subprocess.Popen(  # noqa: S603 - fixed program, a path of our own
        [processes.program("rm"), "-rf", "--one-file-system", "--", str(trash)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
