"""Which local "hosts" a lab runs, on which loopback address and port.

Every lab has a loopback network of its own (`127.0.<n>.0/24`), so the lab a user runs, the one
the tests run and the one the benchmark runs can all be up at once. Inside it every host of the
AWS architecture gets its own address, so the hosts keep their real ports (80, 3306) when the
lab runs as root; a normal user cannot bind ports below 1024, so the lab then moves HTTP to 8080
and MySQL to 13306 on the same addresses.

Like AWS, the lab gives each new host (a replacement, a scale-out) a new address, and the
public address of the load balancers (their "Elastic IP") is neither's own: it points at the one
that holds it (`load-balancer-1` at first) and the lab moves it to the other. `load-balancer`
names whichever holds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from settings import Settings

# One /24 per lab; the names are what `Lab(name)` and `python -m lab --lab` accept.
LAB_NETWORKS = {
    "dev": "127.0.10",
    "test": "127.0.20",
    "test-ops": "127.0.21",
    "test-scale": "127.0.22",
    "test-errors": "127.0.23",
    "test-https": "127.0.24",
    "test-readme": "127.0.25",
    "test-faults": "127.0.26",
    "bench": "127.0.30",
}
PUBLIC = 10  # the "Elastic IP": what users connect to
AWS = 5  # the stand-in for the AWS APIs the hosts call (SSM)
DNS = 53  # the private zone's DNS server
DB_PRIMARY = 51
DB_REPLICA = 52
LOAD_BALANCER_FIRST = 11  # load balancer instances: .11 and .12 (the pair), then .13 ... (.19)
LOAD_BALANCER_LAST = 19
WEB_FIRST = 101  # every web host ever started takes the next address: .101, .102, ...
WEB_LAST = 250
HOLDER = "load-balancer"
"""What the lab calls the load balancer that holds the public address, whichever it is."""


@dataclass(frozen=True)
class Ports:
    http: int
    """The load balancer's and every web node's Nginx port."""
    mysql: int
    stats: int
    """HAProxy's stats page, on the load balancer's own address."""
    dns: int
    aws: int
    https: int
    """The load balancer's HTTPS port."""
    status: int
    """Nginx's stub_status on each web node's own address (loopback-only on AWS)."""

    @staticmethod
    def for_user(is_root: bool) -> Ports:
        if is_root:
            return Ports(http=80, mysql=3306, stats=8404, dns=53, aws=5000, status=8080, https=443)
        return Ports(
            http=8080, mysql=13306, stats=18404, dns=10053, aws=5000, status=18080, https=8443
        )


@dataclass(frozen=True)
class Network:
    prefix: str
    """The lab's /24, e.g. 127.0.10."""

    def address(self, last_octet: int) -> str:
        return f"{self.prefix}.{last_octet}"

    @property
    def public(self) -> str:
        return self.address(PUBLIC)

    def load_balancer(self, generation: int) -> str:
        """The address of the `generation`-th load balancer instance the lab started."""
        octet = LOAD_BALANCER_FIRST + generation - 1
        if octet > LOAD_BALANCER_LAST:
            raise ValueError("this lab has replaced its load balancers too often; recreate it")
        return self.address(octet)

    def web(self, serial: int) -> str:
        """The address of the `serial`-th web host the lab started (1-based)."""
        octet = WEB_FIRST + serial - 1
        if octet > WEB_LAST:
            raise ValueError("this lab has started too many web hosts; recreate it")
        return self.address(octet)


def network_of(name: str) -> Network:
    if name not in LAB_NETWORKS:
        raise KeyError(f"no lab named {name!r}; labs are: {', '.join(LAB_NETWORKS)}")
    return Network(LAB_NETWORKS[name])


@dataclass(frozen=True)
class Host:
    name: str
    """As in the AWS stack: load-balancer-1 (and -2), web-1 ... web-N, db-primary, db-replica."""
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
    network: Network
    hosts: tuple[Host, ...]
    public_address: str
    """Where users connect: the Elastic IP's stand-in (or the first load balancer itself)."""
    holder: str = ""
    """The load balancer the public address leads to (`load-balancer-1` ...)."""

    @property
    def url(self) -> str:
        suffix = "" if self.ports.http == 80 else f":{self.ports.http}"
        return f"http://{self.public_address}{suffix}/"

    @property
    def https_url(self) -> str:
        """The site over HTTPS: its domain when it has one (the lab's DNS server resolves it to
        the public address), else the public address (a self-signed certificate)."""
        suffix = "" if self.ports.https == 443 else f":{self.ports.https}"
        return f"https://{self.settings.domain or self.public_address}{suffix}/"

    @property
    def stats_url(self) -> str:
        """HAProxy's stats page on the load balancer that holds the public address."""
        return self.stats_url_of(HOLDER)

    def stats_url_of(self, load_balancer: str) -> str:
        return f"http://{self.host(load_balancer).address}:{self.ports.stats}/stats"

    def host(self, name: str) -> Host:
        """The host `name`; `load-balancer` is the one that holds the public address."""
        if name == HOLDER and self.holder:
            name = self.holder
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise KeyError(f"no host {name!r} in the lab; hosts are: {names}")

    @property
    def load_balancers(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "load-balancer"]

    @property
    def web_nodes(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "web"]
