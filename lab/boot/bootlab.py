"""The boot lab's run: stand-ins, database, one container per host, and exact clean-up.

`BootLab.up()` creates the bridge, starts the stand-ins for AWS (apt proxy, the truststore, a
moto for S3 and SSM, a moto for the secret store, DNS, the instance metadata service with
each host's role credentials), gets the base image (cached, else
built), boots the load balancer and every web node from the userdata `pulumi up` would send,
byte for byte, brings up MariaDB primary and replica while they boot, and waits until each host
has finished cloud-init and the load balancer rotates over every web node. Every PID, mount and
container is recorded in `state.json` in the state folder as soon as it exists, so `down()`
removes exactly what this run made, also after a failed start or Ctrl-C (which call it
themselves). Failure injection cuts single hosts off single stand-ins (`lab.boot.faults`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.database_bootstrap import app_secret_name
from components.rendered_hosts import (
    APP_USERNAME,
    DATABASE_NAME,
    MASTER_USERNAME,
    readiness_report,
    render_hosts,
)
from lab import checks, mariadb, processes
from lab.boot import aws_api, database, faults, images, inspect, metadata, network, seed, standins
from lab.boot.containers import CGROUP_GROUP, Container, cgroup_hierarchies
from lab.boot.pki import CertificateAuthority
from lab.localize import LabError
from lab.processes import Daemon
from settings import Settings, load_settings, load_stack_file

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = Path("/var/lib/web-infra/boot")
STATE_VARIABLE = "WEB_INFRA_BOOT_STATE"
REQUIRED = (
    "systemd-nspawn",
    "mmdebstrap",
    "nsenter",
    "dnsmasq",
    "apt-cacher-ng",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "ip",
    "nft",
)
# The stand-ins failure injection can cut a host off from, by name.
STAND_INS = {
    "truststore": network.TRUSTSTORE,
    "secret-store": network.SECRET_STORE,
    "aws-api": network.AWS_API,
}
PREVIOUS_INSTANCE = "i-bootlab-previous"
"""Whose readiness report each host's parameter holds before the host boots (see `up`)."""
FIRST_BOOT_TIMEOUT = 600.0  # seconds; a cold apt cache on a slow mirror
SERVING_TIMEOUT = 60.0


def default_state() -> Path:
    return Path(os.environ.get(STATE_VARIABLE) or DEFAULT_STATE)


def stack_region(stack: str) -> str:
    """The stack's `aws:region`: the app's config names it, so the userdata depends on it."""
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()).get("config", {})
    region = config.get("aws:region")
    if not isinstance(region, str):
        raise LabError(f"Pulumi.{stack}.yaml sets no aws:region; the userdata needs one")
    return region


@dataclass
class HostRecord:
    """One booted host as the state file keeps it."""

    name: str
    role: str
    address: str
    port: int
    nspawn_pid: int | None = None
    leader_pid: int | None = None
    started_at: float | None = None
    """When the container was last started (seconds since the epoch)."""
    booted_seconds: float | None = None
    """From starting the container to cloud-init's end and systemd's settling, first boot."""
    boots: int = 0


@dataclass
class State:
    image: str
    image_root: str
    stack: str
    region: str
    settings: dict[str, Any]
    helpers: list[dict[str, Any]] = field(default_factory=list)
    hosts: list[HostRecord] = field(default_factory=list)
    cut_off: dict[str, list[str]] = field(default_factory=dict)
    """Host name -> the stand-ins it cannot reach (failure injection)."""
    image_timing: dict[str, float | None] = field(default_factory=dict)

    def settings_object(self) -> Settings:
        # JSON turned the settings' tuples into lists; nothing in them is a list otherwise.
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.settings.items()
        }
        return Settings(**fields)

    def host(self, name: str) -> HostRecord:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise LabError(f"no booted host {name!r}; hosts are: {names}")


class BootLab:
    def __init__(
        self, state: Path | None = None, stack: str = "dev", cache: Path | None = None
    ) -> None:
        self.folder = state or default_state()
        self.stack = stack
        self.cache = cache or images.cache_folder()
        self.state_file = self.folder / "state.json"
        self.bridge = network.Bridge()

    # --- state ---------------------------------------------------------------------------

    def load(self) -> State:
        if not self.state_file.exists():
            raise LabError("the boot lab is not running; start it with `make boot`")
        data = json.loads(self.state_file.read_text())
        data["hosts"] = [HostRecord(**h) for h in data["hosts"]]
        return State(**data)

    def _save(self, state: State) -> None:
        self.state_file.write_text(json.dumps(dataclasses.asdict(state), indent=2))

    def container(self, host: HostRecord) -> Container:
        return Container(
            host.name, self.folder / "hosts" / host.name, host.nspawn_pid, host.leader_pid
        )

    @property
    def authority(self) -> CertificateAuthority:
        return CertificateAuthority(self.folder / "pki")

    def settings(self, web_nodes: int | None) -> Settings:
        settings = load_stack_file(ROOT / f"Pulumi.{self.stack}.yaml", stack=self.stack)
        if web_nodes is not None:
            checked = load_settings({"webNodeCount": web_nodes}, stack=self.stack)
            settings = dataclasses.replace(settings, web_node_count=checked.web_node_count)
        return settings

    # --- up ------------------------------------------------------------------------------

    def up(
        self,
        web_nodes: int | None = None,
        image: str = "bookworm",
        *,
        cut_off: Mapping[str, Sequence[str]] | None = None,
        wait: bool = True,
    ) -> State:
        """Boot every host and wait until each has booted and the load balancer rotates over
        every web node. `cut_off` (host -> stand-in names) makes stand-ins unreachable from
        hosts before they boot, and `wait=False` returns once every container has started
        (failure-injection tests)."""
        recipe = images.recipe_for(image)
        settings = self.settings(web_nodes)
        cuts = {host: list(names) for host, names in (cut_off or {}).items()}
        hosts = ["load-balancer", *settings.web_node_names]
        for host, names in cuts.items():
            unknown = sorted(set(names) - set(STAND_INS))
            if host not in hosts or unknown:
                raise LabError(
                    f"cannot cut {host} off {names}: hosts are {', '.join(hosts)}; "
                    f"stand-ins are {', '.join(STAND_INS)}"
                )
        if self.state_file.exists() or self.bridge.exists():
            raise LabError(
                "a boot lab is already running (or a crashed one left its bridge or state); "
                "see `python -m lab.boot status`, or run `python -m lab.boot down` first"
            )
        missing = [tool for tool in REQUIRED if processes.find_program(tool) is None]
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)}; {processes.INSTALL}")
        region = stack_region(self.stack)
        if self.folder.exists():
            shutil.rmtree(self.folder)  # no state file: nothing of it runs
        self.folder.mkdir(parents=True)
        _ensure_others_can_enter(self.folder)
        state = State(image, "", self.stack, region, dataclasses.asdict(settings))
        state.cut_off = cuts
        self._save(state)
        try:
            self._bring_up(state, settings, recipe, wait)
        except BaseException:
            self.down()
            raise
        return state

    def _helper(self, state: State, daemon: Daemon) -> None:
        state.helpers.append(dataclasses.asdict(daemon))
        self._save(state)

    def _bring_up(
        self,
        state: State,
        settings: Settings,
        recipe: images.Recipe,
        wait: bool,
    ) -> None:
        self.bridge.create()
        standing_in = self.folder / "standins"
        self._helper(state, standins.start_apt_proxy(standing_in, self.cache / "apt"))
        image = images.ensure_image(recipe, self.cache, log=self.folder / "image-build.log")
        state.image_root = str(image.root)
        state.image_timing = {"built": image.built_seconds, "extracted": image.extracted_seconds}
        self._save(state)

        authority = self.authority
        authority.create()
        self._helper(state, standins.start_truststore(standing_in, authority))
        self._helper(state, standins.start_aws_api(standing_in, authority, state.region))
        self._helper(state, standins.start_secret_store(standing_in, authority, state.region))
        master = standins.create_rds_primary(
            state.region,
            authority,
            identifier=settings.db_primary_identifier,
            database_name=DATABASE_NAME,
            master_username=MASTER_USERNAME,
        )
        # The app's secret, as the program creates it before any instance boots.
        app = mariadb.Login.new(APP_USERNAME)
        standins.create_app_secret(
            state.region, authority, name=app_secret_name(settings.name_prefix), login=app
        )

        records = {"load-balancer": network.LOAD_BALANCER}
        records |= {
            node: network.web_node_address(i)
            for i, node in enumerate(settings.web_node_names, start=1)
        }
        records |= {"db-primary": network.DB_PRIMARY, "db-replica": network.DB_REPLICA}
        self._helper(
            state, standins.start_dns(standing_in, settings.internal_zone, records, state.region)
        )

        rendered = render_hosts(settings, state.region, standins.MOTO_ACCOUNT)
        standins.publish_artifacts(
            state.region,
            authority,
            rendered.store.bucket,
            {published.file.key: published.file.content for published in rendered.files},
        )
        userdata = {"load-balancer": rendered.load_balancer, **rendered.web}
        state.hosts = [HostRecord("load-balancer", "load-balancer", network.LOAD_BALANCER, 80)]
        state.hosts += [
            HostRecord(node, "web", network.web_node_address(i), 80)
            for i, node in enumerate(settings.web_node_names, start=1)
        ]
        # Each host replaces one that reported before it, as in a rolling update: its gate
        # passes only once the parameter names this instance and this userdata.
        readiness = readiness_report(settings, state.region)
        standins.put_parameters(
            state.region,
            authority,
            {readiness.parameter(host.name): previous_report(host.name) for host in state.hosts},
        )
        # Each host's instance role, handed out at 169.254.169.254 as EC2 does; the moto
        # stand-ins read the same file to name the host behind every call they record.
        identities = [
            metadata.new_identity(
                host.name, host.role, state.stack, host.address, seed.instance_id(host.name)
            )
            for host in state.hosts
        ]
        self._helper(
            state,
            standins.start_metadata(standing_in, state.region, identities, standins.MOTO_ACCOUNT),
        )
        self._apply_faults(state)
        for host in state.hosts:
            container = self.container(host)
            container.create_layer()
            seed.write(
                container.layer,
                host=host.name,
                address=host.address,
                userdata=userdata[host.name].encode(),
                ca_pem=authority.pem,
                base=image.root,
            )
            metadata.write_route(container.layer)
            container.mount(image.root)
            self._save(state)
            container.start()
            host.nspawn_pid, host.leader_pid, host.boots = (
                container.nspawn_pid,
                container.leader_pid,
                1,
            )
            host.started_at = time.time()
            self._save(state)
        # The database pair comes up while the hosts install their packages, as RDS may still
        # be creating while the instances boot on AWS; the app answers 503 until it is there.
        self._start_databases(state, authority, settings.internal_zone, master, app)
        if wait:
            self.wait_booted(state, FIRST_BOOT_TIMEOUT)
            self.wait_serving(state)

    def _start_databases(
        self,
        state: State,
        authority: CertificateAuthority,
        zone: str,
        master: mariadb.Login,
        app: mariadb.Login,
    ) -> None:
        primary, replica = database.servers(self.folder / "databases")
        for server in (primary, replica):
            mariadb.initialise(server)
        for server, is_replica in ((primary, False), (replica, True)):
            daemon = processes.start(
                f"{server.host.name}/mariadbd",
                database.server_command(server, authority, zone, replica=is_replica),
                server.log,
            )
            self._helper(state, daemon)
            processes.wait_until(
                lambda s=server: mariadb.sql(s, "SELECT 1", check=False).returncode == 0,  # type: ignore[misc]
                daemon,
                what=f"{server.host.name} ({server.host.address})",
                timeout=60,
            )
        replication_password = database.set_up_primary(
            primary, DATABASE_NAME, master=master, app=app, authority=authority
        )
        database.start_replication(replica, primary, authority, replication_password)
        processes.wait_until(
            lambda: mariadb.replication_summary(replica).startswith("replicating"),
            Daemon(**state.helpers[-1]),
            what="replication from db-primary to db-replica over TLS",
        )

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
                if inspect.cloud_init_status(container) in (
                    "done",
                    "error",
                ) and inspect.system_state(container) not in ("initializing", "starting"):
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

    def recorded_calls(self) -> list[dict[str, Any]]:
        """Every call the moto stand-ins answered, oldest first (`lab.boot.aws_api`)."""
        folder = self.folder / "standins"
        entries = [e for log in standins.call_logs(folder) for e in aws_api.read_log(log)]
        return sorted(entries, key=lambda entry: float(entry["time"]))

    def metadata_requests(self) -> list[dict[str, Any]]:
        """Every request the instance metadata stand-in answered (`lab.boot.metadata`)."""
        return aws_api.read_log(standins.metadata_log(self.folder / "standins"))

    def url(self) -> str:
        return f"http://{network.LOAD_BALANCER}/"

    def wait_serving(self, state: State, timeout: float = SERVING_TIMEOUT) -> checks.Check:
        nodes = [h.name for h in state.hosts if h.role == "web"]
        result = checks.wait_for(lambda: checks.check_rotation(self.url(), nodes), timeout)
        if not result.ok:
            raise LabError(f"the load balancer does not rotate over every node: {result.found}")
        return result

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

    # --- one host -------------------------------------------------------------------------

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
        container.kill_cgroup_members()
        container.start()
        host.nspawn_pid, host.leader_pid = container.nspawn_pid, container.leader_pid
        host.boots += 1
        host.started_at = time.time()
        self._save(state)
        self.wait_booted(state, timeout, only=name)
        return time.monotonic() - started

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.load()
        hosts: list[dict[str, Any]] = []
        for record in state.hosts:
            container = self.container(record)
            entry: dict[str, Any] = {
                "name": record.name,
                "role": record.role,
                "address": record.address,
                "port": record.port,
            }
            if not container.running():
                entry |= {"state": "down", "cloud_init": None}
            else:
                result = inspect.cloud_init_result(container)
                system = inspect.system_state(container)
                entry |= {
                    "state": "up" if system == "running" and result.status == "done" else system,
                    "system": system,
                    "cloud_init": result.as_dict(),
                    "services": inspect.services(container, record.role),
                    "booted_seconds": record.booted_seconds,
                    "boots": record.boots,
                }
            hosts.append(entry)
        for helper in state.helpers:
            if helper["name"].startswith("db-"):
                name = helper["name"].split("/")[0]
                address = network.DB_PRIMARY if name == "db-primary" else network.DB_REPLICA
                up = processes.is_running(Daemon(**helper)) and processes.port_is_open(
                    address, database.MYSQL_PORT
                )
                hosts.append(
                    {
                        "name": name,
                        "role": "database",
                        "address": address,
                        "port": database.MYSQL_PORT,
                        "state": "up" if up else "down",
                        "cloud_init": None,
                    }
                )
        _, replica = database.servers(self.folder / "databases")
        return {
            "url": self.url(),
            "image": state.image,
            "hosts": hosts,
            "replication": mariadb.replication_summary(replica),
            "stand_ins": {
                h["name"].split("/")[0]: "up" if processes.is_running(Daemon(**h)) else "down"
                for h in state.helpers
                if not h["name"].startswith("db-")
            },
            "cut_off": {host: names for host, names in state.cut_off.items() if names},
        }

    # --- down -----------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove everything this lab made: containers, mounts, cgroups, helpers, the bridge."""
        state = None
        with contextlib.suppress(LabError, ValueError, TypeError, KeyError):
            state = self.load()
        others = other_labs_containers(self.folder, proc_mounts())
        removed = self._remove_containers(state, others)
        if processes.find_program("nft") is not None and not others:
            faults.clear()
        if state:
            for helper in reversed(state.helpers):
                daemon = Daemon(**helper)
                if processes.is_running(daemon):
                    processes.stop(daemon)
                    removed.append(helper["name"])
        if not others and self.bridge.delete():  # another boot lab's containers still use it
            removed.append(f"bridge {self.bridge.name}")
        if self.folder.exists():
            shutil.rmtree(self.folder)
        return removed

    def _remove_containers(self, state: State | None, others: set[str]) -> list[str]:
        """Every container of this lab, recorded or not (found by folder or cgroup), and none
        of `others` (another state folder's boot lab) unless this lab recorded it."""
        removed: list[str] = []
        hosts_folder = self.folder / "hosts"
        names = {h.name for h in state.hosts} if state else set()
        if hosts_folder.exists():
            names |= {p.name for p in hosts_folder.iterdir() if p.is_dir()}
        for hierarchy in cgroup_hierarchies():
            if (hierarchy / CGROUP_GROUP).exists():
                names |= {
                    p.name
                    for p in (hierarchy / CGROUP_GROUP).iterdir()
                    if p.is_dir() and p.name not in others
                }
        records = {h.name: h for h in state.hosts} if state else {}
        containers = [
            self.container(records[n]) if n in records else Container(n, hosts_folder / n)
            for n in sorted(names)
        ]
        # Power every container off at once, then wait: a clean shutdown takes seconds each.
        for container in containers:
            if container.running() and container.nspawn_pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(container.nspawn_pid, signal.SIGTERM)
        for container in containers:
            container.stop()
            container.unmount()
            container.remove_cgroups()
            removed.append(f"container {container.name}")
        for mount in _mounts_under(self.folder):  # a mount whose container was never recorded
            subprocess.run([processes.program("umount"), mount], check=False)  # noqa: S603
        return removed


def previous_report(host: str) -> str:
    """The readiness report the instance that `host` replaces left in its parameter."""
    return json.dumps(
        {
            "instance_id": f"{PREVIOUS_INSTANCE}-{host}",
            "userdata_sha256": "0" * 64,
            "ready_at": "2026-01-01T00:00:00Z",
        }
    )


def _ensure_others_can_enter(folder: Path) -> None:
    """MariaDB runs as Debian's mysql user and Nginx's workers inside the containers as
    www-data: both must be able to walk down to the state folder."""
    for directory in [folder.resolve(), *folder.resolve().parents]:
        if not directory.stat().st_mode & 0o001:
            raise LabError(
                f"{directory} is closed to other users, so MariaDB (user mysql) cannot reach "
                f"{folder}; choose a state folder under an open one (e.g. {DEFAULT_STATE}) with "
                f"{STATE_VARIABLE}"
            )


def proc_mounts() -> str:
    return Path("/proc/mounts").read_text()


def other_labs_containers(folder: Path, mounts: str) -> set[str]:
    """Hosts of a boot lab of another state folder (another checkout's, or the default one
    while tests use their own), known by their root's mount `<state>/hosts/<host>/root` in
    `mounts` (/proc/mounts): `down` must leave them, and the bridge and fault rules they use,
    alone."""
    mine = folder.resolve()
    names = set()
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        root = Path(fields[1])
        hosts = root.parent.parent
        if (
            root.name == "root"
            and hosts.name == "hosts"
            and hosts.parent != mine
            and (hosts.parent / "state.json").exists()
        ):
            names.add(root.parent.name)
    return names


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder.resolve()) + "/"
    mounts = proc_mounts().splitlines()
    return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
