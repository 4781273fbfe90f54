"""The local lab: the whole architecture on one machine, from the stack's own userdata.

`Lab.up()` starts the stand-ins for what AWS provides (moto's server for the SSM parameters the
hosts report to, dnsmasq for the private zone, an nftables rule for the Elastic IP), two MariaDB
servers (primary -> GTID -> read-only replica), every web node (the app under gunicorn, behind
Nginx) and HAProxy, each on its own loopback address in the lab's own network.

Hosts are started the way `pulumi up` starts instances: each runs its readiness report, the lab
waits for it with the program's own gate code, and only then points the host's DNS record (or
the public address) at it. The operations that mirror a `pulumi up` keep the load balancer
serving throughout: `scale` (DNS records and web nodes only; HAProxy is not restarted, and a
removed node stops only once HAProxy has let go of it),
`replace` (a new host on a new address, its readiness, the switch, then the old host stops) and
`release` (new app code, node by node in batches behind readiness, canary first).

Every PID is recorded in the state folder's `state.json`; `down` stops exactly those and deletes
the folder, the only place the lab writes (plus its own nftables table, when root).

The code is split by what changes for different reasons: `lab.state` (what `state.json` records),
`lab.routing` (DNS records, HAProxy's view of them), `lab.hosts` (instances and
their daemons), `lab.load_balancers` (the public address, the site's certificate),
`lab.host_faults` (stop, start, freeze, thaw one host), `lab.operations` (scale, replace,
release); this module starts and stops the whole lab and reports its status.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab import acme, aws, dns, mariadb, metrics, processes, public_address
from lab.localize import LabError
from lab.operations import Operations
from lab.state import Spec, State
from lab.topology import Ports, Topology
from settings.web_tier import web_node_names

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


class Lab(Operations):
    """The lab: `up`, `down`, `status`, and (inherited) the operations and hosts."""

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
        ]
        for generation, name in enumerate(settings.load_balancer_names, start=1):
            wanted += [
                (net.load_balancer(generation), ports.http, name),
                (net.load_balancer(generation), ports.stats, f"{name}'s HAProxy stats"),
            ]
        wanted += acme.ports_wanted(
            net, ports, len(settings.load_balancer_names), https=settings.domain is not None
        )
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
        for host in (*state.settings.load_balancer_names, *web_node_names(20)):
            self._ssm().put_parameter(
                Name=self._parameter(state, host), Value="{}", Type="String", Overwrite=True
            )

        self._bring_up_databases(state)
        load_balancers, web = self._userdata(state.settings)
        nodes = [
            self._launch_web(state, node, web[node])
            for node in web_node_names(state.settings.web_node_count)
        ]
        for instance, report in nodes:
            self._gate(state, instance, report)
            self._route(state, instance)
        # The pair: both serve and have their records; the first holds the public address.
        launched = [
            self._launch_load_balancer(state, name, userdata)
            for name, userdata in load_balancers.items()
        ]
        for instance, report in launched:
            self._gate(state, instance, report)
            self._route(state, instance)
        self._hold_public_address(state, launched[0][0])
        every_node_up = dict.fromkeys(web_node_names(state.settings.web_node_count), "UP")
        topology = self.topology(state)
        for instance, _ in launched:
            self._await_rotation(state, topology, instance.host, every_node_up)

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

    def metrics_endpoints(self, topology: Topology | None = None) -> dict[str, str]:
        """Name -> URL of what each host's metrics agent scrapes (each load balancer's HAProxy
        exporter, each node's Nginx stub_status), served by the shipped configs."""
        topology = topology or self.topology()
        endpoints = {
            f"{lb.name}/haproxy": f"http://{lb.address}:{topology.ports.stats}/metrics"
            for lb in topology.load_balancers
        }
        for node in topology.web_nodes:
            endpoints[f"{node.name}/nginx"] = (
                f"http://{node.address}:{topology.ports.status}/stub_status"
            )
        return endpoints

    def status(self) -> dict[str, Any]:
        state = self._load()
        topology = self.topology(state)
        views = self.rotations(topology)
        endpoints = self.metrics_endpoints(topology)
        holder = topology.holder
        live = (
            metrics.rates(endpoints[f"{holder}/haproxy"], [n.name for n in topology.web_nodes], 0.5)
            if holder
            else {}
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
                seen = "/".join(view.get(host.name, "unknown") for view in views.values())
                rate = live.get(host.name)
                details[host.name] = f"HAProxy: {seen}" + (
                    f", {rate.requests_per_second:.1f} req/s" if rate else ""
                )
            elif host.role == "load-balancer":
                role = f"holds {topology.public_address}" if host.name == holder else "standby"
                details[host.name] = f"{role}; stats: {topology.stats_url_of(host.name)}"
            elif host.name == "db-replica":
                details[host.name] = (
                    mariadb.replication_summary(self._server(state, instance)) if up else "down"
                )
            elif host.name == "db-primary":
                details[host.name] = "takes writes" if up else "down"
        return {
            "url": topology.url,
            "public_address": {"address": topology.public_address, "holder": holder},
            **self._https_status(state, topology),
            "hosts": hosts,
            "details": details,
            "metrics": endpoints,
        }

    def _https_status(self, state: State, topology: Topology) -> dict[str, str | None]:
        """`https_url`, `ca_file`: the root that verifies its certificate (None: none does, it
        is self-signed), and `curl`: a command line that fetches the site from any folder."""
        ca_file = None
        if state.settings.domain:
            server = self._acme_server()
            if server.answers() or server.issuing_root.exists():
                ca_file = str(server.issuing_root)
        return {
            "https_url": topology.https_url,
            "ca_file": ca_file,
            "curl": curl_command(topology, ca_file),
        }

    def serves_its_certificate(self) -> bool:
        """The public address shows the site's certificate from the lab's CA (the load
        balancer serves a self-signed one until certbot has it, as on AWS)."""
        state = self._load()
        topology = self.topology(state)
        ca_file = self._https_status(state, topology)["ca_file"]
        domain = state.settings.domain
        if not ca_file or not domain:
            return False
        context = ssl.create_default_context(cafile=ca_file)
        try:
            with (
                socket.create_connection(
                    (topology.public_address, topology.ports.https), timeout=2
                ) as raw,
                context.wrap_socket(raw, server_hostname=domain),
            ):
                return True
        except (ssl.SSLError, OSError):
            return False

    @contextlib.contextmanager
    def running(self, web_nodes: int | None = None) -> Iterator[Topology]:
        """`up`, then `down` whatever happens: for tests and the benchmark."""
        self.down()  # a left-over from an interrupted run
        topology = self.up(web_nodes)
        try:
            yield topology
        finally:
            self.down()


def curl_command(topology: Topology, ca_file: str | None, path: str = "/") -> str:
    """A curl command line that fetches `path` from the site, to paste in any folder here.

    The lab's domain resolves only in the lab's own DNS server, so `--resolve` tells curl the
    public address, and its certificate comes from the lab's ACME CA, so `--cacert` names that
    root by its absolute path. Without a domain the site serves plain HTTP (not redirected)."""
    domain = topology.settings.domain
    if domain is None:
        return shlex.join(["curl", topology.url + path.lstrip("/")])
    # Until the CA answers, the site serves a self-signed certificate that nothing verifies.
    trust = ["--cacert", ca_file] if ca_file else ["--insecure"]
    resolve = f"{domain}:{topology.ports.https}:{topology.public_address}"
    return shlex.join(["curl", "--resolve", resolve, *trust, topology.https_url + path.lstrip("/")])
