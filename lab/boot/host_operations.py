"""What is done to one booted host: wait for its boot, reboot, kill or start it, cut it off a
stand-in.

These change when a host is handled differently (how a boot is judged finished, how a reboot is
driven, which stand-ins failure injection can reach), not when the lab as a whole comes up or
goes. `up` uses the same wait and fault rules for its first boot. The nftables rules themselves
are `lab.boot.faults`; this module keeps them in step with the state's `cut_off`.
"""

from __future__ import annotations

import time

from lab import processes
from lab.boot import database_hosts, faults, inspect, network
from lab.boot.containers import Container
from lab.boot.state import BootRecords, HostRecord, State
from lab.localize import LabError

# The stand-ins failure injection can cut a host off from, by name.
STAND_INS = {
    "truststore": network.TRUSTSTORE,
    "secret-store": network.SECRET_STORE,
    "aws-api": network.AWS_API,
}


class HostOperations(BootRecords):
    """Waiting for, rebooting and cutting off single hosts of a running boot lab."""

    def wait_booted(self, state: State, timeout: float, only: str | None = None) -> None:
        """Until every host (or `only` that one) has finished cloud-init and systemd settled."""
        waiting = {h.name for h in state.hosts if only in (None, h.name)}
        deadline = time.monotonic() + timeout
        while waiting:
            for host in [h for h in state.hosts if h.name in waiting]:
                container = self.container(host)
                if not container.running():
                    raise LabError(
                        f"{host.name} stopped while booting; its console ends:\n"
                        + processes.log_tail(str(container.console))
                    )
                # The result file first, `cloud-init status` (a Python start-up) once it is
                # there: a poll must not take the CPU the boots it waits for need.
                if (
                    inspect.cloud_init_finished(container)
                    and inspect.system_state(container) not in ("initializing", "starting")
                    and inspect.cloud_init_status(container) in ("done", "error")
                ):
                    waiting.discard(host.name)
                    if host.booted_seconds is None and host.started_at is not None:
                        host.booted_seconds = round(time.time() - host.started_at, 1)
                        self._save(state)
            if waiting and time.monotonic() > deadline:
                raise LabError(
                    f"still booting after {timeout:.0f} s: {', '.join(sorted(waiting))}; "
                    f"see {self.folder}/hosts/<host>/console.log"
                )
            time.sleep(1)

    def reboot(self, name: str, timeout: float = 180) -> float:
        """Reboot a host (the container powers off, the lab starts it again on the same disk);
        returns the seconds until it is booted again."""
        state = self.load()
        host = state.host(name)
        container = self.container(host)
        started = time.monotonic()
        container.execute("systemctl", "reboot")
        if not container.wait_for_exit(60):
            raise LabError(f"{name} did not go down within 60 s of `systemctl reboot`")
        self._boot_again(state, host, container, timeout)
        return time.monotonic() - started

    def kill(self, name: str) -> None:
        """Power a host off abruptly, as when an instance dies: its container's PID 1 and
        nspawn are SIGKILLed, nothing inside shuts down (no keepalived resignation, no
        hand-over). Its disk stays for `start`."""
        state = self.load()
        host = state.host(name)
        container = self.container(host)
        if not container.running():
            raise LabError(f"{name} is not running")
        container.kill()
        self._save(state)

    def start(self, name: str, timeout: float = 180) -> float:
        """Boot a stopped host again from its own disk (as starting a stopped instance: the
        same instance id, so cloud-init runs no per-instance module again); returns the
        seconds until it has booted."""
        state = self.load()
        host = state.host(name)
        container = self.container(host)
        if container.running():
            raise LabError(f"{name} is running already")
        started = time.monotonic()
        self._boot_again(state, host, container, timeout)
        return time.monotonic() - started

    def _boot_again(
        self, state: State, host: HostRecord, container: Container, timeout: float
    ) -> None:
        """Start a stopped host's container from its own disk and wait until it has booted."""
        container.kill_cgroup_members()
        container.start(database_hosts.bind_arguments(state.volumes.get(host.name)))
        host.nspawn_pid, host.leader_pid = container.nspawn_pid, container.leader_pid
        host.boots += 1
        host.started_at = time.time()
        self._save(state)
        self.wait_booted(state, timeout, only=host.name)

    # --- failure injection ----------------------------------------------------------------

    def _apply_faults(self, state: State) -> None:
        addresses = {h.name: h.address for h in state.hosts}
        faults.apply(
            {
                addresses[host]: [STAND_INS[name] for name in names]
                for host, names in state.cut_off.items()
                if names
            }
        )
        self._save(state)

    def cut_off(self, host: str, stand_in: str) -> None:
        """Make `stand_in` unreachable from `host` (its packets dropped, unanswered)."""
        state = self.load()
        state.host(host)
        if stand_in not in STAND_INS:
            raise LabError(f"no stand-in {stand_in!r}; they are: {', '.join(STAND_INS)}")
        names = state.cut_off.setdefault(host, [])
        if stand_in not in names:
            names.append(stand_in)
        self._apply_faults(state)

    def restore(self, host: str, stand_in: str) -> None:
        """`stand_in` reachable from `host` again."""
        state = self.load()
        if stand_in in state.cut_off.get(host, []):
            state.cut_off[host].remove(stand_in)
        self._apply_faults(state)
