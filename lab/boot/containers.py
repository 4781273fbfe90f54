"""One host as a systemd-nspawn container: an overlay over the image, systemd as PID 1.

Each container has a folder in the lab's state: `layer/` (its own writes: the disk that
persists across a reboot), `work/` (overlayfs's), `root/` (the mounted overlay) and
`console.log`. systemd-nspawn runs with `--register=no --keep-unit` (this machine's PID 1 is
not systemd, so there is no machined to register with) in a cgroup of its own under
`web-infra-boot/<host>` in every cgroup hierarchy that nspawn uses, so the container's
processes can be found, and cleared, by that cgroup. The container always gets the unified
cgroup hierarchy (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`): systemd 257 (trixie) needs it, and
Ubuntu 24.04 boots that way too.

A command runs inside through `nsenter` on the container's PID 1. Stopping sends nspawn
SIGTERM, which powers the container off cleanly; what is left after a grace period is killed
by PID, the PIDs read from the container's cgroup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import processes
from lab.boot import network
from lab.localize import LabError
from lab.processes import program

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_GROUP = "web-infra-boot"
NSPAWN_RUN = Path("/run/systemd/nspawn/propagate")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cgroup_hierarchies() -> list[Path]:
    """Where to create the container's cgroup: the unified hierarchy and systemd's v1 one."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # the host runs cgroup v2 only
        return [CGROUP_ROOT]
    found = [CGROUP_ROOT / name for name in ("unified", "systemd")]
    return [h for h in found if (h / "cgroup.procs").exists()]


@dataclass
class Container:
    name: str
    folder: Path
    nspawn_pid: int | None = None
    leader_pid: int | None = None

    @property
    def layer(self) -> Path:
        return self.folder / "layer"

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    @property
    def cgroups(self) -> list[Path]:
        return [h / CGROUP_GROUP / self.name for h in cgroup_hierarchies()]

    # --- disk ----------------------------------------------------------------------------

    def create_layer(self) -> None:
        for path in (self.layer, self.folder / "work", self.root):
            path.mkdir(parents=True, exist_ok=True)

    def mount(self, image_root: Path) -> None:
        if os.path.ismount(self.root):
            return
        options = f"lowerdir={image_root},upperdir={self.layer},workdir={self.folder / 'work'}"
        _run([program("mount"), "-t", "overlay", "overlay", "-o", options, str(self.root)])

    def unmount(self) -> None:
        if os.path.ismount(self.root):
            _run([program("umount"), str(self.root)])

    # --- processes -----------------------------------------------------------------------

    @property
    def host_link(self) -> str:
        """systemd-nspawn's host-side veth for this container (`vb-` + its name, cut to
        the kernel's 15 characters)."""
        return f"vb-{self.name}"[:15]

    def _remove_stale_link(self) -> None:
        """A veth of this name left by a container that did not stop cleanly (a killed
        systemd-nspawn does not remove it, and its namespace may outlive it for a while):
        nspawn would refuse to start with "File exists". Not running, so not ours to keep."""
        if self.running():
            return
        link = subprocess.run(  # noqa: S603 - fixed command
            [program("ip"), "link", "show", "dev", self.host_link],
            capture_output=True,
            check=False,
        )
        if link.returncode == 0:
            subprocess.run(  # noqa: S603 - fixed command
                [program("ip"), "link", "delete", "dev", self.host_link],
                capture_output=True,
                check=False,
            )

    def start(self, extra: Sequence[str] = ()) -> None:
        """Boot the container (`extra`: more systemd-nspawn arguments, a device to attach);
        returns once its PID 1 exists (not when it has booted)."""
        cgroups = self.cgroups
        if not cgroups:
            raise LabError(f"no cgroup hierarchy under {CGROUP_ROOT}: cannot run containers")
        for cgroup in cgroups:
            cgroup.mkdir(parents=True, exist_ok=True)
        self._remove_stale_link()

        def join_cgroups() -> None:  # in the child, before systemd-nspawn runs
            for cgroup in cgroups:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        command = [
            program("systemd-nspawn"),
            "--boot",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            f"--network-bridge={network.BRIDGE}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            *extra,
        ]
        with self.console.open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 - fixed command
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={"PATH": PATH, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1", "LANG": "C.UTF-8"},
                start_new_session=True,
                preexec_fn=join_cgroups,  # noqa: PLW1509 - no threads in the lab's process
            )
        self.nspawn_pid = process.pid
        self.leader_pid = None
        deadline = time.monotonic() + 30
        while self.leader_pid is None:
            self.leader_pid = self._find_leader()
            if self.leader_pid is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise LabError(
                        f"systemd-nspawn did not start {self.name}; {self.console} ends:\n"
                        + processes.log_tail(str(self.console))
                    )
                time.sleep(0.05)

    def _find_leader(self) -> int | None:
        """The container's PID 1 as this machine sees it: nspawn's child running systemd."""
        if self.nspawn_pid is None:
            return None
        try:
            children = Path(f"/proc/{self.nspawn_pid}/task/{self.nspawn_pid}/children")
            pids = [int(p) for p in children.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return None
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return pid
        return None

    def running(self) -> bool:
        return self.nspawn_pid is not None and _alive(self.nspawn_pid, "systemd-nspawn")

    def execute(
        self, *command: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container, as root, with a clean environment."""
        if self.leader_pid is None or not _alive(self.leader_pid, "systemd"):
            raise LabError(f"{self.name} is not running")
        result = subprocess.run(  # noqa: S603
            [
                program("nsenter"),
                f"--target={self.leader_pid}",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--root",
                "--wd",  # the container's PID 1's; a path here would be this machine's
                "--",
                "/usr/bin/env",
                "-i",
                f"PATH={PATH}",
                "LANG=C.UTF-8",
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise LabError(
                f"{' '.join(command)} failed in {self.name} ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def wait_for_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            _reap(self.nspawn_pid)
            time.sleep(0.1)
        return True

    def stop(self, grace: float = 30) -> None:
        """Power off cleanly; kill what is left after `grace` seconds. Idempotent."""
        if self.running() and self.nspawn_pid is not None:
            os.kill(self.nspawn_pid, signal.SIGTERM)  # nspawn powers the container off
            if not self.wait_for_exit(grace):
                os.kill(self.nspawn_pid, signal.SIGKILL)
        # PID 1 of the container dies with everything in its namespace.
        if self.leader_pid is not None and _alive(self.leader_pid, "systemd"):
            os.kill(self.leader_pid, signal.SIGKILL)
        self.kill_cgroup_members()
        self.wait_for_exit(5)

    def kill(self) -> None:
        """Power off at once, as a dead instance: SIGKILL to the container's PID 1 (which
        takes every process of its namespace along) and to nspawn; no shutdown runs."""
        for pid, command in ((self.leader_pid, "systemd"), (self.nspawn_pid, "systemd-nspawn")):
            if pid is not None and _alive(pid, command):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.kill_cgroup_members()
        if not self.wait_for_exit(10):
            raise LabError(f"{self.name} survives SIGKILL")

    def kill_cgroup_members(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while members := self.cgroup_members():
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _reap(pid)
            if time.monotonic() > deadline:
                raise LabError(f"processes of {self.name} survive SIGKILL: {sorted(members)}")
            time.sleep(0.1)

    def cgroup_members(self) -> set[int]:
        members: set[int] = set()
        for cgroup in self.cgroups:
            for procs in cgroup.rglob("cgroup.procs") if cgroup.exists() else []:
                with contextlib.suppress(FileNotFoundError, OSError):
                    members |= {int(p) for p in procs.read_text().split()}
        return members

    def remove_cgroups(self) -> None:
        for cgroup in self.cgroups:
            if not cgroup.exists():
                continue
            # Deepest first: a cgroup can be removed only once its children are gone.
            for child in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    child.rmdir()
            cgroup.rmdir()
        for hierarchy in cgroup_hierarchies():
            with contextlib.suppress(OSError):  # other containers may still be in it
                (hierarchy / CGROUP_GROUP).rmdir()
        # nspawn's own folder for this machine, which it does not always remove itself.
        shutil.rmtree(NSPAWN_RUN / self.name, ignore_errors=True)


def _alive(pid: int, command_name: str) -> bool:
    """True while `pid` lives (not a zombie) and still runs `command_name` (its comm)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return comm == command_name and state != "Z"


def _reap(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise LabError(f"{' '.join(command)} failed: {result.stderr.strip()}")
