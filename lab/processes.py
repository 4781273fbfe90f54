"""Starting and stopping the lab's daemons, by the PIDs the lab recorded and nothing else.

Each daemon runs in the foreground as a child in its own session, its output in a log file in
the state folder. Before a PID is signalled, its command line is compared with what the lab
started, so a PID the kernel has since given to another program is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.localize import LabError

INSTALL = "run `make setup` (or bash lab/install-packages.sh)"


def find_program(name: str) -> str | None:
    """The program's path: on PATH, or in the sbin folders a normal user's PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    return next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)), None
    )


def program(name: str) -> str:
    """Like `find_program`, but a missing program is an error that says how to install it."""
    found = find_program(name)
    if found is None:
        raise LabError(f"{name} is not installed; {INSTALL}")
    return found


@dataclass(frozen=True)
class Daemon:
    name: str
    """Unique in the lab: web-1/nginx, db-primary/mariadbd, ..."""
    pid: int
    executable: str
    log: str


def start(
    name: str,
    command: list[str],
    log: Path,
    *,
    environment: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Daemon:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        try:
            process = subprocess.Popen(  # noqa: S603 - the lab's own fixed commands
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, **(environment or {})},
                start_new_session=True,
            )
        except FileNotFoundError:
            raise LabError(f"{command[0]} is not installed; {INSTALL}") from None
    return Daemon(name, process.pid, command[0], str(log))


def is_running(daemon: Daemon) -> bool:
    """True while the PID is alive and still runs what the lab started there."""
    try:
        raw = Path(f"/proc/{daemon.pid}/cmdline").read_bytes()
        state = Path(f"/proc/{daemon.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state == "Z":  # exited, waiting to be reaped by its parent
        return False
    if not raw:  # between fork and exec, /proc shows no command line yet
        return True
    # Nginx rewrites its title ("nginx: master process ..."); the name stays in it.
    return Path(daemon.executable).name in raw.decode(errors="replace")


def stop(daemon: Daemon, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the daemon, wait for it, then clear what is left of its process group.

    Each daemon leads its own process group (the lab starts it in a new session), so its
    children, such as Nginx's workers, which outlive a killed master, are found by that
    group and by nothing broader.
    """
    if not is_running(daemon):
        return
    os.kill(daemon.pid, signal.SIGCONT)  # a frozen daemon (lab freeze) must see the signal
    os.kill(daemon.pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(daemon.pid)
        if not is_running(daemon):
            break
        time.sleep(0.05)
    else:
        os.kill(daemon.pid, signal.SIGKILL)
    _clear_group(daemon.pid, deadline + 5)


def _group_alive(group: int) -> bool:
    """True while a live (not zombie) process is left in the process group.

    Orphaned children of a killed daemon are reaped by PID 1 on its own schedule; until then
    they are zombies, which `killpg(group, 0)` still finds but which hold no port or socket.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state != "Z":
            return True
    return False


def _clear_group(group: int, deadline: float) -> None:
    if _group_alive(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    while _group_alive(group) and time.monotonic() < deadline:
        _reap(group)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect the exit status when the daemon is this process's child (tests, `start`)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_is_open(address: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(address: str, port: int, owner: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the daemons do: connections in TIME_WAIT from an earlier run do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
            probe.listen(1)
        except PermissionError:
            raise LabError(
                f"{owner} needs {address}:{port}, which this user may not bind; "
                "run as root or let the lab pick its high ports (it does when not root)"
            ) from None
        except OSError:
            raise LabError(
                f"{address}:{port} for {owner} is already in use by another program; "
                f"free it (e.g. `ss -ltnp 'sport = :{port}'` shows who) and try again"
            ) from None


def log_tail(log: str, lines: int = 15) -> str:
    try:
        text = Path(log).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def poll(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `condition()` held (asked every `step` s), or None if it did not within
    `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(step)
    return None


def wait_until(
    ready: Callable[[], bool], daemon: Daemon, *, what: str, timeout: float = 30.0
) -> None:
    """Wait for `ready`; if the daemon dies or time runs out, fail with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not is_running(daemon):
            raise LabError(
                f"{daemon.name} exited during start-up (waiting for {what}); "
                f"its log ends:\n{log_tail(daemon.log)}"
            )
        time.sleep(0.05)
    raise LabError(
        f"{what} did not become ready in {timeout:.0f} s; its log ends:\n{log_tail(daemon.log)}"
    )
