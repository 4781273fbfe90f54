"""What a running boot lab reports about itself, read-only: status and what the stand-ins saw.

`status` asks every container and helper how it is (cloud-init's result, systemd, services,
the database pair, the stand-ins); `recorded_calls` and `metadata_requests` read back what the
moto stand-ins and the instance metadata stand-in wrote about every request they answered.
Nothing here changes the lab, so the command line and the tests can call it at any time; it
changes when the status's shape or the stand-ins' logs change.
"""

from __future__ import annotations

from typing import Any

from lab import mariadb, processes
from lab.boot import aws_api, database, elastic_ip, inspect, network, standins
from lab.boot.state import BootRecords
from lab.processes import Daemon
from settings.colocated_database import ROLES as COLOCATED_ROLES
from settings.loader import MARIADB_MODES
from userdata.database_host import CONFIG_FILE, DATABASE_NODE


class Readings(BootRecords):
    """The boot lab's status and the records its stand-ins for AWS keep."""

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
            # `dbMode: colocated`: web-1 runs the primary and web-2 the replica.
            database_role = (
                COLOCATED_ROLES.get(record.name) if state.db_mode == "colocated" else None
            )
            if database_role:
                entry["database"] = database_role
            if not container.running():
                entry |= {"state": "down", "cloud_init": None}
            else:
                result = inspect.cloud_init_result(container)
                system = inspect.system_state(container)
                entry |= {
                    "state": "up" if system == "running" and result.status == "done" else system,
                    "system": system,
                    "cloud_init": result.as_dict(),
                    "services": inspect.services(container, record.role)
                    | (inspect.services(container, "database") if database_role else {}),
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
        return {
            "url": self.url(),
            "image": state.image,
            "hosts": hosts,
            "public_address": self.public_address(),
            "db_mode": state.db_mode,
            "replication": self.replication(),
            "stand_ins": {
                h["name"].split("/")[0]: "up" if processes.is_running(Daemon(**h)) else "down"
                for h in state.helpers
                if not h["name"].startswith("db-")
            },
            "cut_off": {host: names for host, names in state.cut_off.items() if names},
        }

    def replication(self) -> str:
        """The replica's replication: the RDS stand-in's, or (`dbMode: ec2`, `colocated`) what
        the replica host's (web-2's) own `database_node.py check` says."""
        state = self.load()
        if state.db_mode not in MARIADB_MODES:
            _, replica = database.servers(self.folder / "databases")
            return mariadb.replication_summary(replica)
        host = state.host("web-2" if state.db_mode == "colocated" else "database-2")
        container = self.container(host)
        if not container.running():
            return "replica down"
        checked = container.execute(
            "python3", DATABASE_NODE, "check", "--config", CONFIG_FILE, timeout=30
        )
        lines = (checked.stderr or checked.stdout).strip().splitlines()
        said = lines[-1].removeprefix("database-node: ") if lines else f"exit {checked.returncode}"
        return said if checked.returncode == 0 else f"not replicating: {said}"

    def public_address(self) -> dict[str, Any]:
        """The lab's Elastic IP: `ip` (where the site is), `holder` (the host whose instance
        holds it in the EC2 stand-in now, None if none), `routed_to` (the host the lab's rule
        sends it to: the holder, within one poll) and `allocation_id`."""
        folder = self.folder / "standins"
        eip = elastic_ip.load(folder)
        if eip is None:
            return {"ip": network.PUBLIC, "holder": None, "routed_to": None}
        state = self.load()
        try:
            holder = elastic_ip.holder(state.region, self.authority, eip)
        except Exception as error:  # the EC2 stand-in down: say so
            holder = f"unknown ({type(error).__name__})"
        return {
            "ip": network.PUBLIC,
            "holder": holder,
            "routed_to": elastic_ip.current(folder)["holder"],
            "allocation_id": eip.allocation_id,
        }

    def recorded_calls(self) -> list[dict[str, Any]]:
        """Every call the moto stand-ins answered, oldest first (`lab.boot.aws_api`)."""
        folder = self.folder / "standins"
        entries = [e for log in standins.call_logs(folder) for e in aws_api.read_log(log)]
        return sorted(entries, key=lambda entry: float(entry["time"]))

    def metadata_requests(self) -> list[dict[str, Any]]:
        """Every request the instance metadata stand-in answered (`lab.boot.metadata`)."""
        return aws_api.read_log(standins.metadata_log(self.folder / "standins"))
