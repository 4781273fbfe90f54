"""What the boot lab's tests share: the capability check and a lab in a folder of its own.

The boot lab needs root (containers, a bridge, overlay mounts) and its programs. Under CI
(CI=true) a missing one fails the test; elsewhere it is skipped with what to do.

A machine runs one boot lab at a time (one bridge, one cgroup group), so test runs from
several checkouts take turns: each lab is brought up under an exclusive lock on `LOCK`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from system_tools import require, unavailable

from lab.boot import elastic_ip, faults, network
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
        unavailable(problem)


# Not pytest's tmp_path: MariaDB runs as the mysql user, who cannot enter /tmp/pytest-of-root.
TEST_STATE = Path("/var/lib/web-infra/boot-tests")
LOCK = Path("/var/lib/web-infra/boot-tests.lock")
LOCK_WAIT_SECONDS = 1800.0
"""How long a test waits for another run's boot lab: a whole boot test run, and a margin."""


@contextmanager
def machine_lock(path: Path = LOCK, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the machine's boot-lab lock, waiting up to `wait` seconds for another run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another boot lab held {path} for {wait:.0f} s")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    listed = subprocess.run(
        [require("nft"), "list", "table", "inet", faults.TABLE], capture_output=True, check=False
    )
    if listed.returncode == 0:
        found.append(f"nftables table {faults.TABLE}")
    for family, table in (("ip", elastic_ip.TABLE), ("bridge", faults.VRRP_TABLE)):
        listed = subprocess.run(
            [require("nft"), "list", "table", family, table], capture_output=True, check=False
        )
        if listed.returncode == 0:
            found.append(f"nftables table {table}")
    return found


@contextmanager
def boot_lab(folder: Path, **up: object) -> Iterator[BootLab]:
    """A boot lab in `folder`, brought up with `up`'s arguments, removed after; checks that
    its `down` left nothing behind."""
    STANDARD_LABS.close()  # one lab at a time, and this process would wait for its own lock
    lab = BootLab(state=folder)
    with machine_lock():
        # A failed `up` removes what it made itself; a refused one (another lab runs) made
        # nothing, and a `down` here would remove the other lab.
        lab.up(**up)  # type: ignore[arg-type]
        pids = pids_of(lab)
        try:
            yield lab
        finally:
            lab.down()
        left = leftovers(folder, pids)
        assert not left, f"down left: {left}"


@contextmanager
def database_lab(db_mode: str, measured: dict[str, float]) -> Iterator[BootLab]:
    """A Debian 12 boot lab with MariaDB in `db_mode` (`ec2` or `colocated`), in a folder of its
    own; the seconds `up` took go into `measured`, which is printed at the end."""
    started = time.monotonic()
    with boot_lab(TEST_STATE / f"database-{db_mode}", image="bookworm", db_mode=db_mode) as lab:
        measured["up, every host booted and serving"] = time.monotonic() - started
        yield lab
    print(
        f"\ndbMode {db_mode} boot lab, measured: "
        + ", ".join(f"{what}: {seconds:.1f} s" for what, seconds in measured.items())
    )


def mariadb(lab: BootLab, host: str, query: str) -> str:
    """A query on a host's own MariaDB server, as root over its socket."""
    container = lab.container(lab.load().host(host))
    result = container.execute("mariadb", "--batch", "--execute", query, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


class StandardLabs:
    """The standard boot lab (the load-balancer pair and two web nodes, nothing cut off) on an
    image, kept up for every test file that asks for it on that image: a boot costs two to
    three minutes, and test_boot_e2e's checks and test_boot_pair's failovers need the same
    hosts. The files that share one run one after the other (tests/conftest.py orders the boot
    group so), the ones that only look before the ones that kill and replace hosts.

    One lab at a time: asking for another image, or any other lab (`boot_lab`), takes the
    current one down first; the session's end takes down the last (tests/conftest.py)."""

    def __init__(self) -> None:
        self._image: str | None = None
        self._stack = ExitStack()
        self._lab: BootLab | None = None

    def get(self, image: str) -> BootLab:
        if self._lab is None or self._image != image:
            self.close()
            stack = ExitStack()
            # Entered before it is recorded: `boot_lab` closes the recorded one first.
            lab = stack.enter_context(_standard_lab(image))
            self._image, self._stack, self._lab = image, stack, lab
        return self._lab

    def close(self) -> None:
        stack, self._stack, self._lab, self._image = self._stack, ExitStack(), None, None
        stack.close()


@contextmanager
def _standard_lab(image: str) -> Iterator[BootLab]:
    with boot_lab(TEST_STATE / f"standard-{image}", image=image) as lab:
        yield lab


STANDARD_LABS = StandardLabs()
