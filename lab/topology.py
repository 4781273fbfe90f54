"""Which local "hosts" the lab runs, on which loopback address and port.

Every host of the AWS architecture gets its own address in 127.0.10.0/24, so the hosts keep
their real ports (80, 3306) when the lab runs as root. A normal user cannot bind ports below
1024, so the lab then moves HTTP to 8080 and MySQL to 13306 on the same addresses.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from settings import Settings

LOAD_BALANCER_ADDRESS = "127.0.10.10"
WEB_ADDRESS_BASE = 10  # web-i listens on 127.0.10.(10 + i): web-1 is 127.0.10.11
DB_PRIMARY_ADDRESS = "127.0.10.51"
DB_REPLICA_ADDRESS = "127.0.10.52"


@dataclass(frozen=True)
class Ports:
    http: int
    """The load balancer's and every web node's Nginx port."""
    mysql: int
    stats: int
    """HAProxy's stats page, on the load balancer's address."""

    @staticmethod
    def for_user(is_root: bool) -> Ports:
        # Distinct stats ports too, so a root lab and a user's lab never race for one.
        return Ports(80, 3306, 8404) if is_root else Ports(8080, 13306, 18404)


@dataclass(frozen=True)
class Host:
    name: str
    """As in the AWS stack: load-balancer, web-1 ... web-N, db-primary, db-replica."""
    role: str
    """load-balancer, web or database."""
    address: str
    port: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Topology:
    settings: Settings
    ports: Ports
    hosts: tuple[Host, ...]

    @property
    def url(self) -> str:
        suffix = "" if self.ports.http == 80 else f":{self.ports.http}"
        return f"http://{LOAD_BALANCER_ADDRESS}{suffix}/"

    @property
    def stats_url(self) -> str:
        return f"http://{LOAD_BALANCER_ADDRESS}:{self.ports.stats}/stats"

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise KeyError(f"no host {name!r} in the lab; hosts are: {names}")

    @property
    def web_nodes(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "web"]

    def address_of(self) -> dict[str, str]:
        """Host name -> local address, for rewriting names the AWS stack resolves by DNS."""
        return {h.name: h.address for h in self.hosts}


def build_topology(settings: Settings, *, is_root: bool | None = None) -> Topology:
    root = os.geteuid() == 0 if is_root is None else is_root
    ports = Ports.for_user(root)
    hosts = [Host("load-balancer", "load-balancer", LOAD_BALANCER_ADDRESS, ports.http)]
    hosts += [
        Host(name, "web", f"127.0.10.{WEB_ADDRESS_BASE + i}", ports.http)
        for i, name in enumerate(settings.web_node_names, start=1)
    ]
    hosts += [
        Host("db-primary", "database", DB_PRIMARY_ADDRESS, ports.mysql),
        Host("db-replica", "database", DB_REPLICA_ADDRESS, ports.mysql),
    ]
    return Topology(settings, ports, tuple(hosts))
