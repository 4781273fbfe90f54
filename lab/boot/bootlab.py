"""Bringing a boot lab up: the bridge, the stand-ins for AWS, the image, every host's container.

`BootLab.up()` creates the bridge, starts the stand-ins for AWS (apt proxy, the truststore, a
moto for S3 and SSM, a moto for the secret store, DNS, the instance metadata service with
each host's role credentials), gets the base image (cached, else
built), launches every host's instance in the EC2 stand-in with the Elastic IP and its
parameter, boots the load balancers and every web node from the userdata `pulumi up` would
send, byte for byte, brings up MariaDB primary and replica while they boot, and waits until each
host has finished cloud-init and the public address (`lab.boot.elastic_ip`: wherever the pair
associated the Elastic IP) rotates over every web node. Everything it starts
is recorded as soon as it exists (`lab.boot.state`), so a failed start or Ctrl-C tears down
exactly what this run made (`lab.boot.teardown`).

`BootLab` is the whole lab: this module's bring-up, with `lab.boot.host_operations` (waiting
for a boot, reboot, cutting a host off a stand-in: `lab.boot.faults`), `lab.boot.teardown`
(`down`) and `lab.boot.readings` (status, the stand-ins' records). This module changes when what
a lab is made of, or the order it comes up in, changes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

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
from lab.boot import (
    acme,
    database,
    database_hosts,
    elastic_ip,
    images,
    metadata,
    network,
    seed,
    standins,
)
from lab.boot.host_operations import STAND_INS, HostOperations
from lab.boot.pki import CertificateAuthority
from lab.boot.readings import Readings
from lab.boot.state import DEFAULT_STATE, ROOT, STATE_VARIABLE, HostRecord, State
from lab.boot.teardown import Teardown
from lab.localize import LabError
from lab.processes import Daemon
from settings import Settings, load_settings, load_stack_file
from settings.loader import MARIADB_MODES
from userdata.database_host import with_database_ca

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
PREVIOUS_INSTANCE = "i-bootlab-previous"
"""Whose readiness report each host's parameter holds before the host boots (see `up`)."""
FIRST_BOOT_TIMEOUT = 600.0  # seconds; a cold apt cache on a slow mirror
SERVING_TIMEOUT = 60.0


def stack_region(stack: str) -> str:
    """The stack's `aws:region`: the app's config names it, so the userdata depends on it."""
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()).get("config", {})
    region = config.get("aws:region")
    if not isinstance(region, str):
        raise LabError(f"Pulumi.{stack}.yaml sets no aws:region; the userdata needs one")
    return region


class BootLab(HostOperations, Teardown, Readings):
    """One boot lab, by its state folder: `up` here, the rest from the classes it combines."""

    def settings(self, web_nodes: int | None, db_mode: str | None = None) -> Settings:
        settings = load_stack_file(ROOT / f"Pulumi.{self.stack}.yaml", stack=self.stack)
        if web_nodes is not None:
            checked = load_settings({"webNodeCount": web_nodes}, stack=self.stack)
            settings = dataclasses.replace(settings, web_node_count=checked.web_node_count)
        if db_mode is not None:
            checked = load_settings({"dbMode": db_mode}, stack=self.stack)
            settings = dataclasses.replace(settings, db_mode=checked.db_mode)
        return settings

    def up(
        self,
        web_nodes: int | None = None,
        image: str = "bookworm",
        *,
        cut_off: Mapping[str, Sequence[str]] | None = None,
        wait: bool = True,
        https: bool = False,
        db_mode: str | None = None,
    ) -> State:
        """Boot every host and wait until each has booted and the load balancer rotates over
        every web node. `cut_off` (host -> stand-in names) makes stand-ins unreachable from
        hosts before they boot, and `wait=False` returns once every container has started
        (failure-injection tests). `https`: the site has the lab's domain, and its ACME CA
        runs (`lab.boot.acme`). `db_mode="ec2"` boots the database hosts from their userdata
        instead of running the RDS stand-ins (`lab.boot.database_hosts`); `"colocated"` boots
        web-1 and web-2 from theirs, running the primary and the replica."""
        recipe = images.recipe_for(image)
        settings = self.settings(web_nodes, db_mode)
        if https:
            settings = acme.with_domain(settings)
        if settings.db_mode in MARIADB_MODES and image != "bookworm":
            raise LabError(
                f"dbMode {settings.db_mode}'s database hosts boot on bookworm (MariaDB 10.11, "
                "as Ubuntu 24.04; trixie's image lacks mkfs.ext4, which Ubuntu's has): "
                "--image bookworm"
            )
        cuts = {host: list(names) for host, names in (cut_off or {}).items()}
        hosts = [*settings.load_balancer_names, *settings.web_node_names]
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
        state.db_mode = settings.db_mode
        state.cut_off = cuts
        self._save(state)
        try:
            self._bring_up(state, settings, recipe, wait)
        except BaseException:
            self.down()
            raise
        return state

    def _start_acme(self, state: State, settings: Settings, standing_in: Path) -> None:
        """The ACME CA, and the pair's certificate secret as the program makes it: empty."""
        self._helper(state, acme.start(standing_in / "acme", self.authority))
        secrets = standins.aws_client("secretsmanager", state.region, self.authority)
        secrets.create_secret(Name=settings.certificate_secret)

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
        if settings.domain:
            self._start_acme(state, settings, standing_in)
        on_ec2 = settings.db_mode in MARIADB_MODES
        if not on_ec2:
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

        state.hosts = [
            HostRecord(name, "load-balancer", network.load_balancer_address(i), 80)
            for i, name in enumerate(settings.load_balancer_names, start=1)
        ]
        state.hosts += [
            HostRecord(node, "web", network.web_node_address(i), 80)
            for i, node in enumerate(settings.web_node_names, start=1)
        ]
        # Each load balancer's and web node's record in the private zone (a pair's keepalived
        # finds its peer by name), and the database pair's.
        records = {host.name: host.address for host in state.hosts}
        records |= {"db-primary": network.DB_PRIMARY, "db-replica": network.DB_REPLICA}
        names = acme.dns_names() if settings.domain else {}
        database_userdata, database_ca = (
            self._database_hosts(state, settings, records) if on_ec2 else ({}, b"")
        )
        self._helper(
            state,
            standins.start_dns(standing_in, settings.internal_zone, records, state.region, names),
        )

        rendered = render_hosts(settings, state.region, standins.MOTO_ACCOUNT)
        standins.publish_artifacts(
            state.region,
            authority,
            rendered.store.bucket,
            {published.file.key: published.file.content for published in rendered.files},
        )
        userdata = {**rendered.load_balancers, **rendered.web}
        if on_ec2:  # the web nodes verify the database hosts with the stack's database CA
            userdata |= {
                name: with_database_ca(userdata[name], database_ca.decode())
                for name in rendered.web
                if name not in database_userdata
            }
        # The instances in the EC2 stand-in, the Elastic IP and its allocation id's parameter,
        # as the program creates them before any instance boots; then the lab's public
        # address follows whichever instance the Elastic IP is associated with.
        eip = elastic_ip.create(
            state.region,
            authority,
            addresses={host.name: host.address for host in state.hosts},
            parameter=settings.address_parameter,
        )
        for host in state.hosts:
            host.instance_id = eip.instances[host.name]
        elastic_ip.save(standing_in, eip)
        if len(settings.load_balancer_names) == 1:  # no pair to move it: the program's own
            elastic_ip.associate(state.region, authority, eip, settings.load_balancer_names[0])
        self._helper(state, standins.start_elastic_ip(standing_in, authority, state.region))
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
            metadata.new_identity(host.name, host.role, state.stack, host.address, host.instance_id)
            for host in state.hosts
        ]
        self._helper(
            state,
            standins.start_metadata(standing_in, state.region, identities, standins.MOTO_ACCOUNT),
        )
        self._apply_faults(state)
        for host in state.hosts:
            data = database_userdata.get(host.name) or userdata[host.name].encode()
            self._boot_new(state, host, data, authority, image.root)
        # The database pair comes up while the hosts install their packages, as RDS may still
        # be creating while the instances boot on AWS; the app answers 503 until it is there.
        # Both database hosts boot at once: the replica waits (bounded) for the primary.
        if not on_ec2:
            self._start_databases(state, authority, settings.internal_zone, master, app)
        if wait:
            self.wait_booted(state, FIRST_BOOT_TIMEOUT)
            self.wait_serving(state)

    def _database_hosts(
        self, state: State, settings: Settings, records: dict[str, str]
    ) -> tuple[dict[str, bytes], bytes]:
        """`dbMode: ec2`: the hosts' records, volumes, secrets, certificates and bucket; their
        userdata and the stack's database CA. `colocated`: web-1's and web-2's volumes, and
        the database's names at their addresses."""
        volumes = {}
        if settings.db_mode == "colocated":
            for name, alias in database_hosts.COLOCATED_ALIASES.items():
                volumes[name] = database_hosts.attach_volume(self.folder / "volumes", name)
                state.volumes[name] = dataclasses.asdict(volumes[name])
                self._save(state)
                records[alias] = state.host(name).address
            return database_hosts.provision(
                self.folder, settings, state.region, self.authority, volumes
            )
        for name, address in database_hosts.ADDRESSES.items():
            volumes[name] = database_hosts.attach_volume(self.folder / "volumes", name)
            state.volumes[name] = dataclasses.asdict(volumes[name])
            self._save(state)
            state.hosts.append(HostRecord(name, database_hosts.ROLE, address, database_hosts.PORT))
            records[name] = address
            records[database_hosts.ALIASES[name]] = address
        return database_hosts.provision(
            self.folder, settings, state.region, self.authority, volumes
        )

    def _boot_new(
        self,
        state: State,
        host: HostRecord,
        userdata: bytes,
        authority: CertificateAuthority,
        image_root: Path,
    ) -> None:
        """A new container for `host`: its own disk over the image, its seed, started."""
        container = self.container(host)
        container.create_layer()
        seed.write(
            container.layer,
            host=host.name,
            instance_id=host.instance_id,
            address=host.address,
            userdata=userdata,
            ca_pem=self._trusted(authority),
            base=image_root,
        )
        metadata.write_route(container.layer)
        container.mount(image_root)
        self._save(state)
        container.start(database_hosts.bind_arguments(state.volumes.get(host.name)))
        host.nspawn_pid, host.leader_pid = container.nspawn_pid, container.leader_pid
        host.boots, host.booted_seconds, host.started_at = 1, None, time.time()
        self._save(state)

    def _trusted(self, authority: CertificateAuthority) -> bytes:
        """What the hosts trust besides the image's CAs: the lab's CA, and with a domain the
        ACME CA's root (as Ubuntu's trust store has Let's Encrypt's)."""
        root = acme.issuing_root(self.folder / "standins" / "acme")
        return authority.pem + (root.read_bytes() if root.exists() else b"")

    def replace(self, name: str, timeout: float = FIRST_BOOT_TIMEOUT) -> float:
        """Replace a host as a rolling update does: its instance is terminated (a clean
        shutdown: a load balancer's keepalived resigns and waits for its peer to hold the
        address), and a new instance boots from the same userdata at the same address, with
        a new instance id, new credentials and a new disk. Returns the seconds until the new
        one has booted."""
        state = self.load()
        host = state.host(name)
        old = self.container(host)
        userdata = (old.layer / seed.SEED / "user-data").read_bytes()
        started = time.monotonic()
        old.stop()
        old.unmount()
        old.remove_cgroups()
        shutil.rmtree(old.folder)
        host.nspawn_pid = host.leader_pid = None
        standing_in = self.folder / "standins"
        host.instance_id = elastic_ip.launch(state.region, self.authority, name)
        eip = elastic_ip.load(standing_in)
        if eip is not None:
            eip.instances[name] = host.instance_id
            elastic_ip.save(standing_in, eip)
        credentials = standins.credentials_file(standing_in)
        identities = [i for i in metadata.load_identities(credentials) if i.host != name]
        identities.append(
            metadata.new_identity(name, host.role, state.stack, host.address, host.instance_id)
        )
        metadata.save_identities(credentials, identities)
        self._save(state)
        self._boot_new(state, host, userdata, self.authority, Path(state.image_root))
        self.wait_booted(state, timeout, only=name)
        return time.monotonic() - started

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

    def wait_serving(self, state: State, timeout: float = SERVING_TIMEOUT) -> checks.Check:
        nodes = [h.name for h in state.hosts if h.role == "web"]
        if state.settings.get("domain"):  # HTTP may redirect by now: asked as browsers do
            result = checks.wait_for(lambda: acme.check_rotation(nodes), timeout)
        else:
            result = checks.wait_for(lambda: checks.check_rotation(self.url(), nodes), timeout)
        if not result.ok:
            raise LabError(f"the public address does not rotate over every node: {result.found}")
        return result


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
