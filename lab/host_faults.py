"""What the failure tests and `python -m lab stop|start|freeze|thaw` do to one host: stop it
(gracefully, or a crash), start it again, hang it and let it go on.

A load balancer holding the public address hands it to its ready peer when it stops, as
keepalived does; that is why these come after `lab.load_balancers`.
"""

from __future__ import annotations

import os
import signal

from lab import processes
from lab.load_balancers import LoadBalancers
from lab.state import daemon_of
from settings.web_tier import web_node_names


class HostFaults(LoadBalancers):
    """Stops, starts, freezes and thaws one host of a running lab."""

    def stop_host(self, name: str, *, kill: bool = False) -> str | None:
        """Stop a host's daemons (SIGKILL with `kill`: a crash). A load balancer holding the
        public address hands it to its peer first if that one is ready, as keepalived does
        when it stops (after a crash, as the peer's keepalived does once it notices: here at
        once); its HAProxy then stops gracefully (SIGUSR1: what it has in flight finishes).
        Returns the load balancer that holds the address after it, if it moved."""
        state = self._load()
        instance = state.current(name)
        holds = (
            instance.role == "load-balancer"
            and instance.host == state.address_holder
            and state.moves_public_address
        )
        peer = self._ready_peer(state, instance.host) if holds else None
        if peer is not None and not kill:
            self._hold_public_address(state, peer)
        graceful = signal.SIGUSR1 if instance.role == "load-balancer" else signal.SIGTERM
        self._stop_instance(instance, signal.SIGKILL if kill else graceful)
        if peer is not None and kill:
            self._hold_public_address(state, peer)
        return peer.host if peer is not None else None

    def freeze(self, name: str) -> None:
        """Hang a host without closing its sockets (SIGSTOP): connections stay open and
        nothing answers, as when a database stalls."""
        for spec in self._load().current(name).daemons:
            if spec.running() and spec.pid:
                os.kill(spec.pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        """Let a frozen host go on (SIGCONT)."""
        for spec in self._load().current(name).daemons:
            if spec.pid and spec.running():
                os.kill(spec.pid, signal.SIGCONT)

    def start_host(self, name: str) -> None:
        state = self._load()
        instance = state.current(name)
        for spec in instance.daemons:
            if not spec.running():
                self._run(spec)
                self._save(state)
                processes.wait_until(
                    self._ready_check(state, instance, spec.kind), daemon_of(spec), what=spec.name
                )
        if instance.role == "load-balancer":
            # A fresh HAProxy's slots start without an address (init-addr none) and need two
            # good checks: it is back in the pair once it sees every running web node UP.
            nodes = [state.current(n) for n in web_node_names(state.settings.web_node_count)]
            running = [n.host for n in nodes if n.daemons and all(d.running() for d in n.daemons)]
            topology = self.topology(state)
            processes.wait_until(
                lambda: all(
                    self.rotation(topology, instance.host).get(node) == "UP" for node in running
                ),
                daemon_of(self._haproxy(state, instance.host)),
                what=f"{instance.host}'s HAProxy to see every running web node UP",
            )
