"""The local lab: the whole architecture on one machine, from the stack's own userdata.

`Lab.up()` starts the stand-ins for what AWS provides (moto's server for the SSM parameters the
hosts report to, dnsmasq for the private zone, an nftables rule for the Elastic IP), two MariaDB
servers (primary -> GTID -> read-only replica), every web node (the app under gunicorn, behind
Nginx) and HAProxy, each on its own loopback address in the lab's own network.

Hosts are started the way `pulumi up` starts instances: each runs its readiness report, the lab
waits for it with the program's own gate code, and only then points the host's DNS record (or
the public address) at it. The operations that mirror a `pulumi up` keep the load balancer
serving throughout: `scale` (DNS records and web nodes only; HAProxy is not restarted),
`replace` (a new host on a new address, its readiness, the switch, then the old host stops) and
`release` (new app code, node by node in batches behind readiness, canary first).

Every PID is recorded in the state folder's `state.json`; `down` stops exactly those and deletes
the folder, the only place the lab writes (plus its own nftables table, when root).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.readiness_gate import (
    HostNotReadyError,
    ReadinessSpec,
    userdata_sha256,
    wait_for_report,
)
from components.web_infrastructure import render_hosts
from lab import acme, aws, dns, mariadb, metrics, processes, public_address
from lab.certificates import write_tls_files
from lab.localize import LAB_ACCOUNT, LAB_REGION, LabError, Localizer
from lab.processes import Daemon
from lab.topology import Host, Network, Ports, Topology, network_of
from settings import Settings, load_settings, load_stack_file, rollout_batches, web_node_names

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = (
    "haproxy",
    "nginx",
    "gunicorn",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "dnsmasq",
    "openssl",
)
READY_TIMEOUT_SECONDS = 60.0  # a lab host serves within seconds; this bounds a broken one
FOLLOW_TIMEOUT_SECONDS = 20.0  # HAProxy re-resolves each second; the TTL does not apply here
DRAIN_SECONDS = 1.0  # requests in flight on a host that HAProxy just stopped using


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
    """web-1, load-balancer, db-primary, ... (stand-ins: aws, dns)."""
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
    """ready, switched, followed (HAProxy uses the new address), retired."""
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
    launches: dict[str, int] = field(default_factory=dict)
    """Instances ever launched per host: numbers each new one, never reused."""
    instances: list[Instance] = field(default_factory=list)

    def current(self, host: str) -> Instance:
        """The instance that serves as `host`, or the newest one if none serves yet."""
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


class Lab:
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

    # --- state -------------------------------------------------------------------------

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
        order = ["load-balancer", *web_node_names(20), "db-primary", "db-replica"]
        for name in sorted(state.hosts(), key=order.index):
            instance = state.current(name)
            port = ports.mysql if instance.role == "database" else ports.http
            hosts.append(Host(name, instance.role, instance.address, port))
        public = (
            self.network.public
            if state.moves_public_address or not hosts
            else state.current("load-balancer").address
        )
        return Topology(state.settings, ports, self.network, tuple(hosts), public)

    # --- up / down -----------------------------------------------------------------------

    def up(self, web_nodes: int | None = None) -> Topology:
        if self.state_file.exists():
            previous = self._load()
            if any(s.running() for i in previous.instances for s in i.daemons):
                raise LabError(
                    "the lab is already running; see `python -m lab status`, "
                    "or stop it with `make lab-down` before starting it again"
                )
            self._forget(previous)  # left over from a crash: nothing of it runs
        needed = (*REQUIRED, *(acme.REQUIRED if self.https else ()))
        missing = [t for t in needed if processes.find_program(t) is None]
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)}; {processes.INSTALL}")
        is_root = os.geteuid() == 0
        settings = self.settings(web_nodes)
        ports = Ports.for_user(is_root)
        net = self.network
        moves = public_address.available()
        wanted = [
            (net.address(5), ports.aws, "the AWS stand-in"),
            (net.address(53), ports.dns, "the DNS server"),
            (net.address(51), ports.mysql, "db-primary"),
            (net.address(52), ports.mysql, "db-replica"),
            (net.public, ports.http, "the public address"),
            (net.load_balancer(1), ports.http, "load-balancer"),
            (net.load_balancer(1), ports.stats, "HAProxy stats"),
        ]
        wanted += acme.ports_wanted(net, ports, https=settings.domain is not None)
        wanted += [
            (net.web(i), ports.http, name)
            for i, name in enumerate(web_node_names(settings.web_node_count), start=1)
        ]
        for address, port, owner in wanted:
            processes.ensure_port_free(address, port, owner)

        self.state.mkdir(parents=True)
        if is_root:  # the daemons' own users (mysql, www-data) reach their files through here
            os.chmod(self.state, 0o755)  # noqa: S103 - a folder, not a secret
        state = State(self.name, settings, is_root, moves)
        self._save(state)
        try:
            self._bring_up(state)
        except BaseException:
            self._teardown(state)
            raise
        return self.topology(state)

    def _bring_up(self, state: State) -> None:
        ports = Ports.for_user(state.is_root)
        zone = state.settings.internal_zone
        # The stand-ins for AWS: its API (moto) and the private zone (dnsmasq).
        stand_in = self._instance(state, "aws", "stand-in", self.network.address(5))
        self._start(
            state,
            stand_in,
            Spec("aws/moto", aws.server_command(stand_in.address, ports.aws), "moto.log"),
            self._ready_check(state, stand_in, "moto"),
        )
        resolver = self._instance(state, "dns", "stand-in", self.network.address(53))
        dns.write_records(Path(resolver.directory), zone, {})
        self._start(
            state,
            resolver,
            Spec(
                "dns/dnsmasq",
                dns.server_command(
                    Path(resolver.directory),
                    resolver.address,
                    ports.dns,
                    zone,
                    {state.settings.domain: self.network.public} if state.settings.domain else {},
                ),
                "dnsmasq.log",
            ),
            self._ready_check(state, resolver, "dnsmasq"),
        )
        if state.settings.domain and self.acme_at_boot:
            self._start_acme(state)
        for host in ("load-balancer", *web_node_names(20)):
            self._ssm().put_parameter(
                Name=self._parameter(state, host), Value="{}", Type="String", Overwrite=True
            )

        self._bring_up_databases(state)
        userdata = self._userdata(state.settings)[1]
        nodes = [
            self._launch_web(state, node, userdata[node])
            for node in web_node_names(state.settings.web_node_count)
        ]
        for instance, report in nodes:
            self._gate(state, instance, report)
            self._route(state, instance)
        self._launch_and_route_load_balancer(state)
        every_node_up = dict.fromkeys(web_node_names(state.settings.web_node_count), "UP")
        topology = self.topology(state)
        haproxy = self._haproxy(state)
        processes.wait_until(
            lambda: self.rotation(topology) == every_node_up,
            _daemon(haproxy),
            what="HAProxy to see every web node UP",
        )

    def _bring_up_databases(self, state: State) -> None:
        """Two MariaDB servers standing in for RDS: the primary, and a replica fed by GTID."""
        started = {}
        tls = write_tls_files(self.state / "tls", name="lab")
        if state.is_root:  # mariadbd runs as mysql
            shutil.chown(tls.key, "mysql")
        for host, octet in (("db-primary", 51), ("db-replica", 52)):
            instance = self._instance(state, host, "database", self.network.address(octet))
            server = self._server(state, instance)
            mariadb.initialise(server)
            self._start(
                state,
                instance,
                Spec(
                    f"{host}/mariadbd",
                    mariadb.server_command(server, replica=host == "db-replica", tls=tls),
                    "mariadbd.log",
                ),
                self._ready_check(state, instance, "mariadbd"),
            )
            instance.serving = True
            started[host] = (instance, server)
        (_, primary), (replica_instance, replica) = started["db-primary"], started["db-replica"]
        password = mariadb.set_up_primary(primary, self.state / "credentials.json")
        mariadb.start_replication(replica, primary.host, password)
        processes.wait_until(
            lambda: mariadb.replication_summary(replica).startswith("replicating"),
            _daemon(replica_instance.daemons[0]),
            what="replication from db-primary to db-replica",
        )
        self._save(state)
        self._publish_records(state)

    def down(self) -> list[str]:
        """Stop every daemon the lab recorded, by PID, and remove the state folder."""
        if not self.state_file.exists():
            if self.state.exists():
                shutil.rmtree(self.state)
            return []
        state = self._load()
        stopped = [s.name for i in state.instances for s in i.daemons if s.running()]
        self._teardown(state)
        return stopped

    def _teardown(self, state: State) -> None:
        for instance in reversed(state.instances):
            self._stop_instance(instance, signal.SIGTERM)
        if state.moves_public_address:
            with contextlib.suppress(LabError):
                public_address.release(self.name)
        shutil.rmtree(self.state, ignore_errors=True)

    def _forget(self, state: State) -> None:
        self._teardown(state)

    # --- instances -----------------------------------------------------------------------

    def _instance(self, state: State, host: str, role: str, address: str) -> Instance:
        serial = state.launches[host] = state.launches.get(host, 0) + 1
        suffix = "" if role in ("stand-in", "database") else f".{serial}"
        directory = self.state / f"{host}{suffix}"
        directory.mkdir(parents=True, exist_ok=True)
        if state.is_root:
            os.chmod(directory, 0o755)  # noqa: S103 - Nginx's workers reach the app's socket
        instance = Instance(host, role, f"lab-{host}-{serial}", address, str(directory))
        state.instances.append(instance)
        self._save(state)
        return instance

    def _start(
        self, state: State, instance: Instance, spec: Spec, ready: Callable[[], bool]
    ) -> None:
        spec.log = str(Path(instance.directory) / spec.log)
        instance.daemons.append(spec)
        self._run(spec)
        self._save(state)
        processes.wait_until(ready, _daemon(spec), what=f"{spec.name} ({instance.address})")

    @staticmethod
    def _run(spec: Spec) -> None:
        daemon = processes.start(
            spec.name,
            spec.command,
            Path(spec.log),
            environment=spec.environment,
            cwd=Path(spec.cwd) if spec.cwd else None,
        )
        spec.pid = daemon.pid

    def _launch_web(
        self, state: State, node: str, userdata: str
    ) -> tuple[Instance, subprocess.Popen[bytes]]:
        """A new instance of `node`: its daemons and its readiness report, not yet routed."""
        state.web_hosts_started += 1
        instance = self._instance(state, node, "web", self.network.web(state.web_hosts_started))
        instance.userdata_sha256 = userdata_sha256(userdata)
        directory = Path(instance.directory)
        ports = Ports.for_user(state.is_root)
        localizer = self._localizer(state)
        self._fetch_files(state, localizer.fetch_files(userdata, directory), directory)
        files = localizer.web_node(
            userdata,
            node,
            directory,
            instance.address,
            self.state / "credentials.json",
            database_ca=self.ca_file,
        )
        self._start(
            state,
            instance,
            Spec(
                f"{node}/app", files.app_command, "app.log", files.app_environment, str(directory)
            ),
            lambda: _unix_socket_answers(files.socket),
        )
        nginx = [
            processes.program("nginx"),
            "-c",
            str(files.nginx_conf),
            "-e",
            str(directory / "nginx-error.log"),
            "-g",
            "daemon off;",
        ]
        self._start(
            state,
            instance,
            Spec(f"{node}/nginx", nginx, "nginx.log"),
            lambda: processes.port_is_open(instance.address, ports.http),
        )
        return instance, self._report_ready(state, instance, userdata)

    def _fetch_files(self, state: State, command: list[str] | None, directory: Path) -> None:
        """Install the host's files from S3 as its first runcmd step does (it blocks boot too)."""
        if command is None:
            return
        stand_in = self.network.address(5)
        environment = {**os.environ, **aws.environment(stand_in, Ports.for_user(state.is_root).aws)}
        with (directory / "fetch-artifact.log").open("ab") as log:
            result = subprocess.run(  # noqa: S603 - the shipped script, as cloud-init runs it
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                timeout=300,
                check=False,
            )
        if result.returncode != 0:
            tail = processes.log_tail(str(directory / "fetch-artifact.log"))
            raise LabError(f"installing the host's files from S3 failed; its log ends:\n{tail}")

    def _report_ready(
        self, state: State, instance: Instance, userdata: str
    ) -> subprocess.Popen[bytes]:
        readiness = self._localizer(state).readiness(
            userdata, Path(instance.directory), instance.address, instance.instance_id
        )
        command = list(readiness.command)
        command[command.index("--timeout") + 1] = str(self.ready_timeout)
        stand_in = self.network.address(5)
        environment = {**os.environ, **aws.environment(stand_in, Ports.for_user(state.is_root).aws)}
        log = (Path(instance.directory) / "report-ready.log").open("ab")
        with log:
            return subprocess.Popen(  # noqa: S603 - the shipped script, as cloud-init runs it
                command, stdout=log, stderr=subprocess.STDOUT, env=environment
            )

    def _gate(self, state: State, instance: Instance, report: subprocess.Popen[bytes]) -> None:
        """Wait for the instance's readiness report, with the program's gate code."""

        def gave_up(_: str) -> str | None:
            code = report.poll()
            if code is None or code == 0:
                return None
            return f"gave up reporting ready (report_ready.py exited with {code})"

        spec = ReadinessSpec(
            host=instance.host,
            instance_id=instance.instance_id,
            parameter_name=self._parameter(state, instance.host),
            userdata_sha256=instance.userdata_sha256,
            timeout_seconds=self.ready_timeout + 5,
        )
        try:
            wait_for_report(spec, self._ssm(), gave_up, sleep=lambda _: time.sleep(0.1))
            self._event("ready", instance)
        except HostNotReadyError as error:
            logs = "\n".join(
                f"  {Path(s.log).name}:\n{processes.log_tail(s.log, 6)}" for s in instance.daemons
            )
            raise LabError(f"{error}\n  In the lab, its logs end:\n{logs}") from None
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                report.wait(timeout=5)

    def _route(self, state: State, instance: Instance) -> None:
        """Point the host's record at this instance (its gate passed), as `pulumi up` does."""
        for other in state.instances:
            if other.host == instance.host:
                other.serving = other is instance
        self._save(state)
        self._publish_records(state)
        self._event("switched", instance)

    def _event(self, what: str, instance: Instance) -> None:
        self.events.append(Event(time.monotonic(), what, instance.host, instance.instance_id))

    def _publish_records(self, state: State) -> None:
        records = {i.host: i.address for i in state.instances if i.serving and i.role != "stand-in"}
        resolver = state.current("dns")
        dns.write_records(Path(resolver.directory), state.settings.internal_zone, records)
        if resolver.daemons and resolver.daemons[0].running():
            os.kill(resolver.daemons[0].pid or 0, signal.SIGHUP)

    def _retire(self, state: State, instance: Instance) -> None:
        """Stop an instance nothing routes to any more, gracefully, and forget it."""
        time.sleep(DRAIN_SECONDS)
        graceful = signal.SIGUSR1 if instance.role == "load-balancer" else signal.SIGTERM
        self._stop_instance(instance, graceful)
        self._event("retired", instance)
        state.instances.remove(instance)
        self._save(state)
        shutil.rmtree(instance.directory, ignore_errors=True)

    @staticmethod
    def _stop_instance(instance: Instance, sig: int) -> None:
        for spec in reversed(instance.daemons):
            daemon = spec.daemon()
            if daemon is None:
                continue
            # Nginx stops gracefully on QUIT (as systemd stops it); HAProxy on USR1.
            how = signal.SIGQUIT if sig == signal.SIGTERM and spec.kind == "nginx" else sig
            processes.stop(daemon, sig=how, timeout=30)

    def _launch_and_route_load_balancer(self, state: State) -> Instance:
        state.load_balancers_started += 1
        generation = state.load_balancers_started
        if state.moves_public_address:
            address = self.network.load_balancer(generation)
        elif generation == 1:
            address = self.network.public  # no address to move: the load balancer binds it
        else:
            raise LabError(
                "replacing the load balancer moves the public address with nftables, which "
                "needs root and `nft` (make setup installs it)"
            )
        instance = self._instance(state, "load-balancer", "load-balancer", address)
        userdata = self._userdata(state.settings)[0]
        instance.userdata_sha256 = userdata_sha256(userdata)
        ports = Ports.for_user(state.is_root)
        localizer = self._localizer(state)
        directory = Path(instance.directory)
        self._fetch_files(state, localizer.fetch_files(userdata, directory), directory)
        config = localizer.haproxy_config(userdata, directory, instance.address)
        certificate = self._certificate_steps(instance, userdata)
        self._start(
            state,
            instance,
            Spec(
                "load-balancer/haproxy",
                [processes.program("haproxy"), "-db", "-f", str(config)],
                "haproxy.log",
            ),
            lambda: processes.port_is_open(instance.address, ports.http),
        )
        self._obtain_certificate(state, instance, certificate)
        self._gate(state, instance, self._report_ready(state, instance, userdata))
        if state.moves_public_address:
            public_address.associate(
                self.name, self.network.public, (ports.http, ports.https), instance.address
            )
        self._route(state, instance)
        return instance

    # --- what `pulumi up` does on a change ---------------------------------------------------

    def scale(self, web_nodes: int) -> None:
        """Add or remove web nodes: DNS records and nodes only, HAProxy keeps running."""
        state = self._load()
        wanted = self._checked(web_nodes)
        current = state.settings.web_node_count
        userdata = self._userdata(dataclasses.replace(state.settings, web_node_count=wanted))[1]
        topology = self.topology(state)
        if wanted > current:
            added = web_node_names(wanted)[current:]
            launched = [self._launch_web(state, node, userdata[node]) for node in added]
            for instance, report in launched:
                self._gate(state, instance, report)
                self._route(state, instance)
            state.settings = dataclasses.replace(state.settings, web_node_count=wanted)
            self._save(state)
            for instance, _ in launched:
                self._await_haproxy(topology, instance)
            return
        removed = [state.current(node) for node in web_node_names(current)[wanted:]]
        for instance in removed:
            instance.serving = False
        state.settings = dataclasses.replace(state.settings, web_node_count=wanted)
        self._save(state)
        self._publish_records(state)
        for instance in removed:
            self._event("switched", instance)
        for instance in removed:
            self._await_haproxy(topology, instance, gone=True)
        for instance in removed:
            self._retire(state, instance)

    def replace(self, host: str) -> None:
        """A new instance of `host` on a new address, switched to once it serves."""
        state = self._load()
        old = state.current(host)
        if old.role == "load-balancer":
            self._launch_and_route_load_balancer(state)
            self._retire(state, old)
            return
        if old.role != "web":
            raise LabError(f"only web nodes and the load balancer are replaced; not {host}")
        self._roll(state, [[host]], self._userdata(state.settings)[1])

    def release(self, app_source: bytes, batch_size: int | None = None) -> None:
        """Replace every web node with ones running `app_source`, canary first, in batches."""
        state = self._load()
        userdata = self._userdata(state.settings, app_source)[1]
        batches = rollout_batches(web_node_names(state.settings.web_node_count), batch_size)
        self._roll(state, batches, userdata)

    def _roll(self, state: State, batches: list[list[str]], userdata: dict[str, str]) -> None:
        """Each batch after the batch before it serves; old instances stop at the end."""
        topology = self.topology(state)
        replaced: list[Instance] = []
        for batch in batches:
            old = {node: state.current(node) for node in batch}
            launched: list[tuple[Instance, subprocess.Popen[bytes]]] = []
            try:
                for node in batch:
                    launched.append(self._launch_web(state, node, userdata[node]))
                for instance, report in launched:
                    self._gate(state, instance, report)
            except LabError:
                # As with a failed gate in `pulumi up`: nothing was switched, old nodes serve.
                for instance in [i for i in state.instances if i.host in batch and not i.serving]:
                    self._stop_instance(instance, signal.SIGTERM)
                    state.instances.remove(instance)
                self._save(state)
                raise
            for instance, _ in launched:
                self._route(state, instance)
            for instance, _ in launched:
                self._await_haproxy(topology, instance)
            replaced += old.values()
        for instance in replaced:
            self._retire(state, instance)

    def _await_haproxy(self, topology: Topology, instance: Instance, *, gone: bool = False) -> None:
        """Until HAProxy sends `instance`'s host to its address (`gone`: to no address)."""
        node = instance.host
        deadline = time.monotonic() + FOLLOW_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status = self.servers(topology).get(node, {}).get("status", "")
            address = self.server_addresses().get(node)
            if (gone and status.startswith("MAINT")) or (
                not gone and status == "UP" and address == instance.address
            ):
                self._event("followed", instance)
                return
            time.sleep(0.05)
        address = "no address" if gone else instance.address
        raise LabError(f"HAProxy did not follow {node}'s DNS record to {address} in time")

    # --- one host ----------------------------------------------------------------------------

    def stop_host(self, name: str, *, kill: bool = False) -> None:
        state = self._load()
        self._stop_instance(state.current(name), signal.SIGKILL if kill else signal.SIGTERM)

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
                    self._ready_check(state, instance, spec.kind), _daemon(spec), what=spec.name
                )

    def _ready_check(self, state: State, instance: Instance, kind: str) -> Callable[[], bool]:
        """When a (re)started daemon of `kind` accepts work."""
        ports = Ports.for_user(state.is_root)
        if kind == "mariadbd":
            server = self._server(state, instance)
            return lambda: mariadb.sql(server, "SELECT 1", check=False).returncode == 0
        if kind == "app":
            return lambda: _unix_socket_answers(Path(instance.directory) / "gunicorn.sock")
        if kind == "moto":
            return lambda: processes.port_is_open(instance.address, ports.aws)
        if kind == "dnsmasq":
            return lambda: processes.port_is_open(instance.address, ports.dns)
        if kind == "pebble":
            return lambda: processes.port_is_open(instance.address, acme.ACME_PORT)
        return lambda: processes.port_is_open(instance.address, ports.http)

    def _server(self, state: State, instance: Instance) -> mariadb.Server:
        host = Host(
            instance.host, "database", instance.address, Ports.for_user(state.is_root).mysql
        )
        return mariadb.Server(host, Path(instance.directory), 1 if host.name == "db-primary" else 2)

    @property
    def ca_file(self) -> Path:
        """The lab's CA, which signed the database servers' certificates."""
        return self.state / "tls" / "lab-ca.pem"

    def instance(self, host: str) -> Instance:
        """The instance that serves as `host` now."""
        return self._load().current(host)

    def directory(self, host: str) -> Path:
        """The folder of the instance that serves as `host` (its configs, logs, sockets)."""
        return Path(self._load().current(host).directory)

    def database(self, name: str) -> mariadb.Server:
        state = self._load()
        return self._server(state, state.current(name))

    # --- status ------------------------------------------------------------------------------

    def servers(self, topology: Topology) -> dict[str, dict[str, str]]:
        """HAProxy's stats row of each web node slot: status (UP, DOWN, MAINT ...), addr, ..."""
        try:
            with urllib.request.urlopen(f"{topology.stats_url};csv", timeout=2) as response:  # noqa: S310
                text = response.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            r["svname"]: {**r, "status": r["status"].split()[0]}
            for r in rows
            if r["pxname"] == "web" and r["svname"] not in ("FRONTEND", "BACKEND")
        }

    def haproxy_socket(self) -> Path:
        """The serving load balancer's admin socket (localize.py moves it into its folder)."""
        return self.directory("load-balancer") / "admin.sock"

    def server_addresses(self) -> dict[str, str]:
        """The address HAProxy uses for each web node slot ("-" for none), from its admin
        socket (the stats page does not show it)."""
        try:
            reply = haproxy_command(self.haproxy_socket(), "show servers state web", timeout=2)
        except OSError:
            return {}
        rows = [line.split() for line in reply.splitlines()[2:]]
        return {row[3]: row[4] for row in rows if len(row) > 4}

    def rotation(self, topology: Topology) -> dict[str, str]:
        """HAProxy's view of each of the stack's web nodes (its other slots are empty)."""
        servers = self.servers(topology)
        return {
            node.name: servers[node.name]["status"]
            for node in topology.web_nodes
            if node.name in servers
        }

    def metrics_endpoints(self, topology: Topology | None = None) -> dict[str, str]:
        """Name -> URL of what each host's metrics agent scrapes (HAProxy's exporter, each
        node's Nginx stub_status), served by the shipped configs."""
        topology = topology or self.topology()
        load_balancer = topology.host("load-balancer").address
        endpoints = {
            "load-balancer/haproxy": f"http://{load_balancer}:{topology.ports.stats}/metrics"
        }
        for node in topology.web_nodes:
            endpoints[f"{node.name}/nginx"] = (
                f"http://{node.address}:{topology.ports.status}/stub_status"
            )
        return endpoints

    def status(self) -> dict[str, Any]:
        state = self._load()
        topology = self.topology(state)
        servers = self.servers(topology)
        endpoints = self.metrics_endpoints(topology)
        live = metrics.rates(
            endpoints["load-balancer/haproxy"], [n.name for n in topology.web_nodes], 0.5
        )
        hosts, details = [], {}
        for host in topology.hosts:
            instance = state.current(host.name)
            up = (
                bool(instance.daemons)
                and all(s.running() for s in instance.daemons)
                and processes.port_is_open(host.address, host.port)
            )
            hosts.append({**host.as_dict(), "state": "up" if up else "down"})
            if host.role == "web":
                server = servers.get(host.name, {})
                rate = live.get(host.name)
                details[host.name] = f"HAProxy: {server.get('status', 'unknown')}" + (
                    f", {rate.requests_per_second:.1f} req/s" if rate else ""
                )
            elif host.name == "db-replica":
                details[host.name] = (
                    mariadb.replication_summary(self._server(state, instance)) if up else "down"
                )
            elif host.name == "db-primary":
                details[host.name] = "takes writes" if up else "down"
            else:
                details[host.name] = f"stats: {topology.stats_url}"
        return {
            "url": topology.url,
            **self._https_status(state, topology),
            "hosts": hosts,
            "details": details,
            "metrics": endpoints,
        }

    # --- HTTPS: the ACME CA and the load balancer's certificate (see lab/acme.py) -------------

    def _acme_server(self) -> acme.AcmeServer:
        return acme.AcmeServer(self.network, self.state / "acme")

    def start_acme(self) -> None:
        """Start the lab's ACME CA (pebble), or start it again after `stop_host("acme")`."""
        self._start_acme(self._load())

    def _start_acme(self, state: State) -> None:
        server = self._acme_server()
        ports = Ports.for_user(state.is_root)
        known = [i for i in state.instances if i.host == "acme"]
        instance = (
            known[0]
            if known
            else self._instance(state, "acme", "stand-in", acme.address(self.network))
        )
        instance.daemons = [d for d in instance.daemons if d.running()]
        if instance.daemons:
            return
        # A new CA each start, as pebble makes new roots each start.
        spec = Spec("acme/pebble", server.prepare(ports), "pebble.log", server.environment())
        self._start(state, instance, spec, server.answers)

    def _certificate_steps(self, instance: Instance, userdata: str) -> acme.CertificateSteps:
        """The certificate steps of this load balancer; runs the first (self-signed)."""
        directory = Path(instance.directory)
        steps = acme.localize(
            userdata, directory, instance.address, self.network, self._acme_server().listener_ca
        )
        acme.run_step(steps.self_signed, directory / "site-certificate.log", {}, timeout=60)
        return steps

    def _obtain_certificate(
        self, state: State, instance: Instance, steps: acme.CertificateSteps
    ) -> None:
        """site-certificate.service: in the background, as on AWS (the site serves meanwhile)."""
        if not steps.obtain:
            return
        client = self._instance(state, "certbot", "stand-in", instance.address)
        spec = Spec(
            "certbot/obtain",
            steps.obtain,
            str(Path(instance.directory) / "site-certificate.log"),
            steps.environment,
        )
        client.daemons.append(spec)
        self._run(spec)
        self._save(state)

    def renew_certificate(self) -> None:
        """What certbot.timer runs on the load balancer, forced: a new certificate now."""
        state = self._load()
        instance = state.current("load-balancer")
        steps = self._certificate_steps(instance, self._userdata(state.settings)[0])
        log = Path(instance.directory) / "site-certificate.log"
        acme.run_step(steps.renew, log, steps.environment, timeout=120)

    def _https_status(self, state: State, topology: Topology) -> dict[str, str | None]:
        """`https_url`, and `ca_file`: the root that verifies its certificate (None: none does,
        it is self-signed)."""
        ca_file = None
        if state.settings.domain:
            server = self._acme_server()
            if server.answers() or server.issuing_root.exists():
                ca_file = str(server.issuing_root)
        return {"https_url": topology.https_url, "ca_file": ca_file}

    # --- helpers -----------------------------------------------------------------------------

    def _userdata(
        self, settings: Settings, app_source: bytes | None = None
    ) -> tuple[str, dict[str, str]]:
        """The program's userdata, with the app's code uploaded where it names it (as the
        program's Artifacts component does before any instance boots)."""
        hosts = render_hosts(settings, LAB_REGION, LAB_ACCOUNT, app_source=app_source)
        s3 = aws.client("s3", self.network.address(5), Ports.for_user(os.geteuid() == 0).aws)
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(
                Bucket=hosts.store.bucket,
                CreateBucketConfiguration={"LocationConstraint": LAB_REGION},
            )
        for published in hosts.files:
            s3.put_object(
                Bucket=hosts.store.bucket, Key=published.file.key, Body=published.file.content
            )
        return hosts.load_balancer, hosts.web

    def _localizer(self, state: State) -> Localizer:
        return Localizer(self.topology(state), is_root=state.is_root)

    def _parameter(self, state: State, host: str) -> str:
        return f"{state.settings.readiness_parameter_prefix}/{host}"

    def _ssm(self) -> Any:
        return aws.ssm_client(self.network.address(5), Ports.for_user(os.geteuid() == 0).aws)

    def _haproxy(self, state: State) -> Spec:
        return state.current("load-balancer").daemons[0]

    @contextlib.contextmanager
    def running(self, web_nodes: int | None = None) -> Iterator[Topology]:
        """`up`, then `down` whatever happens: for tests and the benchmark."""
        self.down()  # a left-over from an interrupted run
        topology = self.up(web_nodes)
        try:
            yield topology
        finally:
            self.down()


def _daemon(spec: Spec) -> Daemon:
    daemon = spec.daemon()
    if daemon is None:
        raise LabError(f"{spec.name} was never started")
    return daemon


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


def _unix_socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
