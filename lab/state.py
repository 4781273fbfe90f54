"""What a lab records about its hosts, and the lab as those records describe it.

Every instance the lab starts (each run of a host, as EC2 launches one), the daemons it runs and
their PIDs are written to the state folder's `state.json` as soon as they exist, so `down` (or
the next `up`, after a crash) stops exactly what the lab started. This module owns that file's
shape; the modules above it (routing, hosts, operations) change what it holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import acme, processes
from lab.localize import LabError
from lab.processes import Daemon
from lab.topology import HOLDER, Host, Network, Ports, Topology, network_of
from settings import Settings, load_settings, load_stack_file
from settings.web_tier import web_node_names

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60.0  # a lab host serves within seconds; this bounds a broken one


def default_state(name: str) -> Path:
    """Where a lab keeps its state. As root the daemons run as other users (mysql, www-data)
    who must reach their files, which a checkout under /root would not let them; so root's labs
    live under /var/lib."""
    if os.geteuid() == 0:
        return Path("/var/lib/web-infra-lab") / name
    return ROOT / ".lab" / name


@dataclass
class Spec:
    """How to (re)start one daemon, and its PID while it runs."""

    name: str
    command: list[str]
    log: str
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    pid: int | None = None

    @property
    def kind(self) -> str:
        return self.name.rsplit("/", 1)[1]

    def daemon(self) -> Daemon | None:
        return Daemon(self.name, self.pid, self.command[0], self.log) if self.pid else None

    def running(self) -> bool:
        daemon = self.daemon()
        return daemon is not None and processes.is_running(daemon)


@dataclass
class Instance:
    """One run of a host, what AWS calls an instance: a new one for each replacement."""

    host: str
    """web-1, load-balancer-1, db-primary, ... (stand-ins: aws, dns, acme, certbot)."""
    role: str
    instance_id: str
    address: str
    directory: str
    daemons: list[Spec] = field(default_factory=list)
    userdata_sha256: str = ""
    serving: bool = False
    """Its DNS record (or the public address) points at it."""


@dataclass(frozen=True)
class Event:
    at: float
    """time.monotonic() when it happened."""
    what: str
    """ready, switched, followed (HAProxy uses the new address), drained, retired, holds (the
    public address leads to this load balancer now)."""
    host: str
    instance_id: str


@dataclass
class State:
    name: str
    settings: Settings
    is_root: bool
    moves_public_address: bool
    """The public address is an nftables rule (root), not the first load balancer's own."""
    web_hosts_started: int = 0
    load_balancers_started: int = 0
    address_holder: str = ""
    """The load balancer the public address leads to (`load-balancer-1` ...); "" before any."""
    launches: dict[str, int] = field(default_factory=dict)
    """Instances ever launched per host: numbers each new one, never reused."""
    instances: list[Instance] = field(default_factory=list)

    def current(self, host: str) -> Instance:
        """The instance that serves as `host`, or the newest one if none serves yet.
        `load-balancer`: the one that holds the public address (at first load-balancer-1)."""
        if host == HOLDER:
            host = self.address_holder or self.settings.load_balancer_names[0]
        mine = [i for i in self.instances if i.host == host]
        if not mine:
            raise KeyError(f"no host {host!r} in the lab; hosts are: {', '.join(self.hosts())}")
        return next((i for i in mine if i.serving), mine[-1])

    def hosts(self) -> list[str]:
        names = []
        for instance in self.instances:
            if instance.host not in names and instance.role != "stand-in":
                names.append(instance.host)
        return names


def daemon_of(spec: Spec) -> Daemon:
    """The running daemon `spec` describes; LabError when it was never started."""
    daemon = spec.daemon()
    if daemon is None:
        raise LabError(f"{spec.name} was never started")
    return daemon


class LabRecords:
    """A lab by name: its network, its state folder and what `state.json` says runs in it."""

    def __init__(self, name: str = "dev", state: Path | None = None, stack: str = "dev") -> None:
        self.name = name
        self.network: Network = network_of(name)
        self.state = state or default_state(name)
        self.stack = stack
        self.state_file = self.state / "state.json"
        self.ready_timeout = READY_TIMEOUT_SECONDS
        self.https = False
        """The site has a domain (the lab's) and gets its certificate from the lab's ACME CA
        (`python -m lab up` does this by default); False: a self-signed certificate on 443 and
        HTTP not redirected, as a stack without a domain."""
        self.acme_at_boot = True
        """Start the ACME CA with the lab; False: it is down until `start_acme()`."""
        self.events: list[Event] = []
        """What this object's operations did and when: for tests and the benchmark."""

    def _load(self) -> State:
        if not self.state_file.exists():
            raise LabError("the lab is not running; start it with `make lab` (python -m lab up)")
        data = json.loads(self.state_file.read_text())
        instances = [
            Instance(**{**i, "daemons": [Spec(**d) for d in i["daemons"]]})
            for i in data.pop("instances")
        ]
        return State(**{**data, "settings": Settings(**data["settings"])}, instances=instances)

    def _save(self, state: State) -> None:
        temporary = self.state_file.with_suffix(".new")
        temporary.write_text(json.dumps(dataclasses.asdict(state), indent=2))
        temporary.replace(self.state_file)

    def settings(self, web_nodes: int | None) -> Settings:
        settings = load_stack_file(ROOT / f"Pulumi.{self.stack}.yaml", stack=self.stack)
        if self.https:
            settings = acme.lab_settings(settings)
        if web_nodes is not None:
            settings = dataclasses.replace(settings, web_node_count=self._checked(web_nodes))
        return settings

    def _checked(self, web_nodes: int) -> int:
        # Validated like the stack file, so the lab refuses what `pulumi up` refuses.
        return load_settings({"webNodeCount": web_nodes}, stack=self.stack).web_node_count

    def topology(self, state: State | None = None) -> Topology:
        state = state or self._load()
        ports = Ports.for_user(state.is_root)
        hosts = []
        order = [
            *state.settings.load_balancer_names,
            *web_node_names(20),
            "db-primary",
            "db-replica",
        ]
        for name in sorted(state.hosts(), key=order.index):
            instance = state.current(name)
            port = ports.mysql if instance.role == "database" else ports.http
            hosts.append(Host(name, instance.role, instance.address, port))
        holder = state.address_holder
        public = (
            state.current(holder).address
            if holder and not state.moves_public_address
            else self.network.public
        )
        return Topology(state.settings, ports, self.network, tuple(hosts), public, holder)

    def _event(self, what: str, instance: Instance) -> None:
        self.events.append(Event(time.monotonic(), what, instance.host, instance.instance_id))

    def instance(self, host: str) -> Instance:
        """The instance that serves as `host` now."""
        return self._load().current(host)

    def directory(self, host: str) -> Path:
        """The folder of the instance that serves as `host` (its configs, logs, sockets)."""
        return Path(self._load().current(host).directory)
