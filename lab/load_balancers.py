"""The load balancers' own steps: launching one, leading the public address to one (what
keepalived and the Elastic IP do on AWS) and its HTTPS certificate (the lab's ACME CA and
certbot, as site-certificate.service runs them).

It changes when the pair's behaviour does (who may take the address, when the holder obtains
the certificate); launching, gating and retiring any instance is `lab.hosts`'.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from components.readiness_wait import userdata_sha256
from lab import acme, aws, processes, public_address
from lab.hosts import Hosts
from lab.localize import LabError
from lab.state import Instance, Spec, State, daemon_of
from lab.topology import HOLDER, Ports, Topology


class LoadBalancers(Hosts):
    """Launches load balancers, moves the public address between them, gets their certificate."""

    def _launch_load_balancer(
        self, state: State, host: str, userdata: str
    ) -> tuple[Instance, subprocess.Popen[bytes]]:
        """A new instance of load balancer `host`: HAProxy and its readiness report, not yet
        routed. Each instance has an address of its own; without nftables (not root) the
        lab's first load balancer binds the public address itself, and none can be replaced
        nor take the address from it."""
        state.load_balancers_started += 1
        generation = state.load_balancers_started
        if state.moves_public_address:
            address = self.network.load_balancer(generation)
        elif generation == 1:
            address = self.network.public  # no address to move: the load balancer binds it
        elif generation <= len(state.settings.load_balancer_names):
            address = self.network.load_balancer(generation)
        else:
            raise LabError(
                "replacing a load balancer moves the public address with nftables, which "
                "needs root and `nft` (make setup installs it)"
            )
        instance = self._instance(state, host, "load-balancer", address)
        instance.userdata_sha256 = userdata_sha256(userdata)
        ports = Ports.for_user(state.is_root)
        localizer = self._localizer(state)
        directory = Path(instance.directory)
        self._fetch_files(state, localizer.fetch_files(userdata, directory), directory)
        config = localizer.haproxy_config(userdata, directory, instance.address)
        steps = self._certificate_steps(instance, userdata)  # the self-signed one first
        self._start(
            state,
            instance,
            Spec(
                f"{host}/haproxy",
                [processes.program("haproxy"), "-db", "-f", str(config)],
                "haproxy.log",
            ),
            lambda: processes.port_is_open(instance.address, ports.http),
        )
        # site-certificate.service, on every load balancer as on AWS: the pair's certificate
        # from the secret, or (on the holder of the public address only) certbot's.
        self._obtain_certificate(state, instance, steps)
        return instance, self._report_ready(state, instance, userdata)

    def _hold_public_address(self, state: State, instance: Instance) -> None:
        """Lead the public address to `instance`, a load balancer whose HAProxy serves, in one
        rule swap (what keepalived's notify script does with the Elastic IP on AWS), and
        tell each load balancer whether it holds it (keepalived's state file). The holder is
        the one whose site-certificate loop may run certbot: the CA's HTTP-01 challenge
        reaches the holder only; the others serve the certificate it stores in the secret."""
        if state.address_holder and not state.moves_public_address:
            raise LabError(
                "moving the public address between load balancers takes nftables, which "
                "needs root and `nft` (make setup installs it)"
            )
        if state.moves_public_address:
            ports = Ports.for_user(state.is_root)
            public_address.associate(
                self.name, self.network.public, (ports.http, ports.https), instance.address
            )
        state.address_holder = instance.host
        self._save(state)
        for balancer in state.instances:
            if balancer.role == "load-balancer":
                vrrp = "MASTER" if balancer is instance else "BACKUP"
                (Path(balancer.directory) / "vrrp-state").write_text(f"{vrrp}\n")
        self._event("holds", instance)
        if state.settings.domain and not self._certbots(state, instance):
            userdata = self._userdata(state.settings)[0][instance.host]
            self._obtain_certificate(state, instance, self._certificate_steps(instance, userdata))

    def _await_rotation(
        self, state: State, topology: Topology, load_balancer: str, wanted: dict[str, str]
    ) -> None:
        processes.wait_until(
            lambda: self.rotation(topology, load_balancer) == wanted,
            daemon_of(self._haproxy(state, load_balancer)),
            what=f"{load_balancer}'s HAProxy to see every web node UP",
        )

    def _ready_peer(self, state: State, host: str) -> Instance | None:
        """The other load balancer of the pair, if its HAProxy runs and sees a web node UP."""
        for name in state.settings.load_balancer_names:
            if name == host:
                continue
            peer = state.current(name)
            if (
                peer.serving
                and peer.daemons
                and all(spec.running() for spec in peer.daemons)
                and "UP" in self.rotation(self.topology(state), name).values()
            ):
                return peer
        return None

    def fail_over(self, to: str | None = None) -> str:
        """Move the public address to the other load balancer (or to `to`), which must be
        ready: what keepalived decides on AWS, done by the lab (keepalived refuses loopback).
        Returns the load balancer that holds it now."""
        state = self._load()
        holder = state.current(HOLDER).host
        names = state.settings.load_balancer_names
        if to is not None and to not in names:
            raise LabError(f"{to} is not a load balancer; they are: {', '.join(names)}")
        if to == holder:
            raise LabError(f"{to} already holds the public address")
        peer = self._ready_peer(state, holder)
        if peer is None or (to is not None and peer.host != to):
            raise LabError(
                f"no other load balancer is ready to take the public address from {holder} "
                "(its HAProxy must run and see a web node UP)"
            )
        self._hold_public_address(state, peer)
        return peer.host

    # --- HTTPS: the ACME CA and the load balancers' certificate (see lab/acme.py) ------------

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
        # The pair's secret is the AWS stand-in's (made by `_userdata`, as by the program).
        stand_in = aws.environment(self.network.address(5), Ports.for_user(os.geteuid() == 0).aws)
        return dataclasses.replace(steps, environment={**steps.environment, **stand_in})

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

    def check_certificate(self, host: str) -> None:
        """What site-certificate.timer runs daily on load balancer `host`, run now: a newer
        certificate from the secret, or (on the holder, when due) a new one."""
        state = self._load()
        instance = state.current(host)
        steps = self._certificate_steps(instance, self._userdata(state.settings)[0][instance.host])
        log = Path(instance.directory) / "site-certificate.log"
        acme.run_step(steps.obtain, log, steps.environment, timeout=120)

    def renew_certificate(self) -> None:
        """What certbot.timer runs on the load balancer that holds the public address, forced:
        a new certificate now."""
        state = self._load()
        instance = state.current(HOLDER)
        steps = self._certificate_steps(instance, self._userdata(state.settings)[0][instance.host])
        log = Path(instance.directory) / "site-certificate.log"
        acme.run_step(steps.renew, log, steps.environment, timeout=120)
