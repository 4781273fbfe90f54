"""Hosts and processes: instances launched the way EC2 and cloud-init launch them.

An instance gets a folder, its files from the stack's own userdata (localized by
`lab.localize`), its daemons started and recorded by PID, and its readiness report, which the
lab waits for with the program's own gate code; a retired one stops gracefully. It changes
when what runs on a host changes (a new daemon, a new boot step). Where names lead is
`lab.routing`'s business; what only a load balancer does (the public address, the site's
certificate) is `lab.load_balancers`'; what the failure tests do to one host, `lab.host_faults`'.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from components.readiness_wait import (
    HostNotReadyError,
    ReadinessSpec,
    userdata_sha256,
    wait_for_report,
)
from components.rendered_hosts import render_hosts
from lab import acme, aws, mariadb, processes
from lab.certificates import write_tls_files
from lab.localize import LAB_ACCOUNT, LAB_REGION, LabError, Localizer
from lab.routing import Routing
from lab.state import Instance, Spec, State, daemon_of
from lab.topology import HOLDER, Host, Ports
from settings import Settings

DRAIN_SECONDS = 1.0  # requests in flight on a host that HAProxy just stopped using


class Hosts(Routing):
    """Launches, gates, stops and retires the lab's instances."""

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
        processes.wait_until(ready, daemon_of(spec), what=f"{spec.name} ({instance.address})")

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
        if "--domain" in command:  # the site's certificate chains to pebble's root here
            command += ["--ca-file", str(self._acme_server().issuing_root)]
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

    def _retire(self, state: State, instance: Instance, *, drained: bool = False) -> None:
        """Stop an instance nothing routes to any more, gracefully, and forget it. Unless it
        was seen `drained`, it first gets DRAIN_SECONDS for what HAProxy still has in flight
        (a replaced node shares its slot with its successor, so its own sessions cannot be
        counted)."""
        if not drained:
            time.sleep(DRAIN_SECONDS)
        graceful = signal.SIGUSR1 if instance.role == "load-balancer" else signal.SIGTERM
        self._stop_instance(instance, graceful)
        self._event("retired", instance)
        state.instances.remove(instance)
        for client in self._certbots(state, instance):  # its certbot, if it never finished
            self._stop_instance(client, signal.SIGTERM)
            state.instances.remove(client)
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

    @staticmethod
    def _certbots(state: State, instance: Instance) -> list[Instance]:
        """The certbot runs a load balancer started (stand-ins on its address): `_retire`
        stops them with it."""
        return [i for i in state.instances if i.host == "certbot" and i.address == instance.address]

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

    # --- the databases: MariaDB standing in for RDS -------------------------------------------

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
        password = mariadb.set_up_primary(primary, self.state / "credentials.json", tls.ca)
        mariadb.start_replication(replica, primary.host, password)
        processes.wait_until(
            lambda: mariadb.replication_summary(replica).startswith("replicating"),
            daemon_of(replica_instance.daemons[0]),
            what="replication from db-primary to db-replica",
        )
        self._save(state)
        self._publish_records(state)

    def _server(self, state: State, instance: Instance) -> mariadb.Server:
        host = Host(
            instance.host, "database", instance.address, Ports.for_user(state.is_root).mysql
        )
        return mariadb.Server(host, Path(instance.directory), 1 if host.name == "db-primary" else 2)

    @property
    def ca_file(self) -> Path:
        """The lab's CA, which signed the database servers' certificates."""
        return self.state / "tls" / "lab-ca.pem"

    def database(self, name: str) -> mariadb.Server:
        state = self._load()
        return self._server(state, state.current(name))

    # --- helpers -----------------------------------------------------------------------------

    def _userdata(
        self, settings: Settings, app: Mapping[str, bytes] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The program's userdata (each load balancer's, each web node's), with the app's code
        uploaded where it names it (as the program's Artifacts component does before any
        instance boots)."""
        hosts = render_hosts(settings, LAB_REGION, LAB_ACCOUNT, app=app)
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
        if settings.domain:  # the load balancers' certificate secret, made empty
            secrets = aws.client(
                "secretsmanager", self.network.address(5), Ports.for_user(os.geteuid() == 0).aws
            )
            with contextlib.suppress(secrets.exceptions.ResourceExistsException):
                secrets.create_secret(Name=settings.certificate_secret)
        return hosts.load_balancers, hosts.web

    def _acme_server(self) -> acme.AcmeServer:
        """The lab's ACME CA (pebble): where a load balancer's certificate comes from, and
        the root any host's check of the site's certificate trusts."""
        return acme.AcmeServer(self.network, self.state / "acme")

    def _localizer(self, state: State) -> Localizer:
        return Localizer(self.topology(state), is_root=state.is_root)

    def _parameter(self, state: State, host: str) -> str:
        return f"{state.settings.readiness_parameter_prefix}/{host}"

    def _ssm(self) -> Any:
        return aws.ssm_client(self.network.address(5), Ports.for_user(os.geteuid() == 0).aws)

    def _haproxy(self, state: State, load_balancer: str = HOLDER) -> Spec:
        return state.current(load_balancer).daemons[0]


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
