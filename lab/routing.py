"""Addresses and DNS: which instance each host name (and the public address) leads to, and
whether HAProxy has followed.

On AWS a switch is a Route 53 record (or the Elastic IP) changed by `pulumi up`; HAProxy finds
the new address by resolving the record again. Here the record is a line in dnsmasq's hosts
file and HAProxy asks dnsmasq, so this module changes when the way names are published or
HAProxy's view of them is read changes, not when hosts are started differently.

A pair of load balancers resolves the records each on its own: a switch is followed (and a
removed node drained) once every load balancer's HAProxy has followed it. HAProxy's view
without a load balancer named is that of the one holding the public address (`load-balancer`).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab import dns
from lab.localize import LabError
from lab.state import Instance, LabRecords, State
from lab.topology import HOLDER, Topology

FOLLOW_TIMEOUT_SECONDS = 20.0  # HAProxy re-resolves each second; the TTL does not apply here
DRAIN_TIMEOUT_SECONDS = 30.0  # HAProxy's `timeout server`; a request never takes longer
RESOLUTION_MAINTENANCE = 0x20  # srv_admin_state: in maintenance because the name did not resolve
OPERATIONAL_STOPPED = 0  # srv_op_state: HAProxy sends it nothing


@dataclass(frozen=True)
class ServerSlot:
    """One `server` line of HAProxy's web backend, from `show servers state`."""

    address: str
    """The address it sends to; "-" when it has none."""
    operational_state: int
    """0 stopped, 1 starting, 2 running, 3 stopping."""
    admin_state: int
    """Bit flags; RESOLUTION_MAINTENANCE when its name no longer resolves."""

    @property
    def serves(self) -> bool:
        return self.operational_state == 2 and self.admin_state == 0

    @property
    def unresolved(self) -> bool:
        """HAProxy has let go of it: no address, no traffic, because its record is gone."""
        return (
            self.address == "-"
            and self.operational_state == OPERATIONAL_STOPPED
            and bool(self.admin_state & RESOLUTION_MAINTENANCE)
        )


def parse_server_states(reply: str) -> dict[str, ServerSlot]:
    """`show servers state <backend>`'s answer: a version line, a header, one row per server."""
    lines = reply.splitlines()
    header = lines[1].lstrip("# ").split() if len(lines) > 1 else []
    slots = {}
    for line in lines[2:]:
        row = dict(zip(header, line.split(), strict=False))
        if "srv_name" in row and "srv_admin_state" in row:
            slots[row["srv_name"]] = ServerSlot(
                row["srv_addr"], int(row["srv_op_state"]), int(row["srv_admin_state"])
            )
    return slots


class Routing(LabRecords):
    """Publishes the serving instances' records and reads HAProxy's view of them."""

    def _route(self, state: State, instance: Instance) -> None:
        """Point the host's record at this instance (its gate passed), as `pulumi up` does."""
        for other in state.instances:
            if other.host == instance.host:
                other.serving = other is instance
        self._save(state)
        self._publish_records(state)
        self._event("switched", instance)

    def _publish_records(self, state: State) -> None:
        records = {i.host: i.address for i in state.instances if i.serving and i.role != "stand-in"}
        resolver = state.current("dns")
        dns.write_records(Path(resolver.directory), state.settings.internal_zone, records)
        if resolver.daemons and resolver.daemons[0].running():
            os.kill(resolver.daemons[0].pid or 0, signal.SIGHUP)

    def _await_haproxy(self, topology: Topology, instance: Instance, *, gone: bool = False) -> None:
        """Until every load balancer's HAProxy sends `instance`'s host to its address (`gone`:
        to no address, the slot in maintenance because its name no longer resolves), as its
        admin socket reports it. A load balancer whose HAProxy is stopped is not waited for:
        it resolves the record again when it starts."""
        node = instance.host
        waiting = [h.name for h in topology.load_balancers if self._haproxy_runs(h.name)]
        deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for load_balancer in list(waiting):
                slot = self.server_states(load_balancer).get(node)
                if slot is not None and (
                    slot.unresolved if gone else slot.address == instance.address and slot.serves
                ):
                    waiting.remove(load_balancer)
            if not waiting:
                self._event("followed", instance)
                return
            time.sleep(0.05)
        address = "no address" if gone else instance.address
        raise LabError(
            f"HAProxy on {', '.join(waiting)} did not follow {node}'s DNS record to {address} "
            "in time"
        )

    def _haproxy_runs(self, load_balancer: str) -> bool:
        daemons = self._load().current(load_balancer).daemons
        return bool(daemons) and daemons[0].running()

    def _await_drained(self, instance: Instance) -> None:
        """Until HAProxy has no session left on `instance`'s slot (it stopped sending it new
        ones when it followed the record away): what is in flight finishes before the host
        stops, as on AWS, where the instance is terminated only after HAProxy let go of it."""
        node = instance.host
        load_balancers = [
            h.name for h in self.topology().load_balancers if self._haproxy_runs(h.name)
        ]
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if all(self.sessions(lb).get(node) == 0 for lb in load_balancers):
                self._event("drained", instance)
                return
            time.sleep(0.05)
        raise LabError(f"{node} still had sessions on HAProxy after {DRAIN_TIMEOUT_SECONDS:.0f} s")

    # --- HAProxy's view, from its stats page and its admin socket ----------------------------

    def servers(self, topology: Topology, load_balancer: str = HOLDER) -> dict[str, dict[str, str]]:
        """HAProxy's stats row of each web node slot: status (UP, DOWN, MAINT ...), addr, ..."""
        url = f"{topology.stats_url_of(load_balancer)};csv"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                text = response.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            r["svname"]: {**r, "status": r["status"].split()[0]}
            for r in rows
            if r["pxname"] == "web" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def haproxy_socket(self, load_balancer: str = HOLDER) -> Path:
        """A load balancer's admin socket (localize.py moves it into its folder); by default
        that of the one holding the public address."""
        return self.directory(load_balancer) / "admin.sock"

    def server_addresses(self, load_balancer: str = HOLDER) -> dict[str, str]:
        """The address HAProxy uses for each web node slot ("-" for none), from its admin
        socket (the stats page does not show it)."""
        return {name: slot.address for name, slot in self.server_states(load_balancer).items()}

    def server_states(self, load_balancer: str = HOLDER) -> dict[str, ServerSlot]:
        """Each web node slot as HAProxy's admin socket reports it (`show servers state`)."""
        socket_path = self.haproxy_socket(load_balancer)
        try:
            reply = haproxy_command(socket_path, "show servers state web", timeout=2)
        except OSError:
            return {}
        return parse_server_states(reply)

    def sessions(self, load_balancer: str = HOLDER) -> dict[str, int]:
        """The sessions HAProxy has open on each web node slot now (`show stat`'s scur)."""
        try:
            reply = haproxy_command(self.haproxy_socket(load_balancer), "show stat", timeout=2)
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(reply.lstrip("# ")))
        return {
            r["svname"]: int(r["scur"] or 0)
            for r in rows
            if r["pxname"] == "web" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def rotation(self, topology: Topology, load_balancer: str = HOLDER) -> dict[str, str]:
        """HAProxy's view of each of the stack's web nodes (its other slots are empty), on
        `load_balancer` (by default the one holding the public address)."""
        servers = self.servers(topology, load_balancer)
        return {
            node.name: servers[node.name]["status"]
            for node in topology.web_nodes
            if node.name in servers
        }

    def rotations(self, topology: Topology) -> dict[str, dict[str, str]]:
        """Every load balancer's view of the web nodes, by load balancer."""
        return {lb.name: self.rotation(topology, lb.name) for lb in topology.load_balancers}


def haproxy_command(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on HAProxy's admin socket (its runtime API) and its whole answer; OSError
    when the socket does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(socket_path))
        client.sendall(command.encode() + b"\n")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    return reply.decode(errors="replace")
