"""`dbMode: colocated`: MariaDB on the web nodes themselves, the architecture's own layout.

web-1 runs the primary next to its app and web-2 the replica; every node writes to web-1's
database (`db-primary`) and reads from web-2's (`db-replica`). The database is the one of
`dbMode: ec2` (`components.database_hosts`), made the same way: the users' generated
passwords and each node's TLS key in Secrets Manager, the stack's CA and a certificate per
node for its own name and the app's name for it, an encrypted, protected gp3 data volume per
node that outlives every instance, an explicit subnet CIDR reservation holding each node's
fixed address, the backup bucket. Only the launch differs: the web tier launches web-1 and
web-2 (`components.web_tier.NodeDatabase`), each with that address and volume, its role the
web node's plus the database host's `database` policy, its userdata the web node's plus the
database host's parts (`userdata.colocated_web_node`), and readiness that waits for the app
and the database. The web tier's rollout already replaces web-1 (the canary) alone and web-2
only after web-1's gate, which is the order the replica needs.

`db-primary` and `db-replica` are A records at the two fixed addresses, made here before
either node boots: the replica finds the primary by name as soon as it starts, and the app
finds both. (`web-1` and `web-2` keep their records from their readiness gates, as every web
node: HAProxy sends a node traffic only once it serves.)

Security groups: 3306 between the web nodes, in the web tier's own group
(components/firewall.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from components.database import DatabaseLaunch
from components.database_hosts import (
    PORT,
    RECORD_TTL_SECONDS,
    DatabaseHosts,
    DatabaseHostsArgs,
    HostIdentity,
)
from components.web_tier import NodeDatabase

ALIASES = {"primary": "db-primary", "replica": "db-replica"}


class ColocatedDatabase(DatabaseHosts):
    """The database hosts' secrets, CA, volumes, reservations and bucket (made at once, as
    `DatabaseHosts` makes them), for hosts that are web nodes; `launch` makes what those nodes
    boot with, before the web tier."""

    component_type = "web-infra:colocated_database:ColocatedDatabase"

    def __init__(
        self, name: str, args: DatabaseHostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        self._nodes: dict[str, NodeDatabase] = {}
        self._identities: dict[str, HostIdentity] = {}

    @property
    def aliases(self) -> Mapping[str, pulumi.Input[str]]:
        """None for the private zone to add: `launch` made them, before the nodes boot."""
        return {}

    def web_user_data(self, node: str, rendered: str) -> pulumi.Input[str]:
        """web-1's and web-2's own (the database's parts in them); every other node's verifies
        the databases with the stack's CA, as with the database hosts."""
        self._check_launched()
        if node in self._identities:
            return self._identities[node].user_data
        return super().web_user_data(node, rendered)

    def web_node_database(self, node: str) -> NodeDatabase | None:
        self._check_launched()
        return self._nodes.get(node)

    def _check_launched(self) -> None:
        if not self._nodes:
            raise RuntimeError("web-1 and web-2 boot with what `launch` makes: launch it first")

    def _endpoint(self, index: int) -> pulumi.Output[str]:
        """host:port; the web tier's gates say when the node serves."""
        return pulumi.Output.from_input(f"{self._names[index]}:{PORT}")

    def launch(self, launch: DatabaseLaunch) -> None:
        """Each node's key, certificate, policy and userdata, and the database's names at the
        nodes' fixed addresses; the web tier boots the nodes."""
        args = self._args
        records = [
            aws.route53.Record(
                f"{args.name_prefix}-{ALIASES[host.role]}-record",
                zone_id=launch.zone_id,
                name=f"{ALIASES[host.role]}.{args.zone_name}",
                type="A",
                ttl=RECORD_TTL_SECONDS,
                records=[host.private_ip],
                opts=self._child,
            )
            for host in args.hosts
        ]
        for host in args.hosts:
            identity = self._identity(host)
            self._identities[host.name] = identity
            self._nodes[host.name] = NodeDatabase(
                private_ip=host.private_ip,
                volume_id=self._volumes[host.name].id,
                policy=identity.policy,
                boot_after=[self._reservations[host.name], *records],
            )
        self.register_outputs(
            {
                "primary_endpoint": self.primary_endpoint,
                "replica_endpoint": self.replica_endpoint,
                "ca_pem": self.ca_pem,
            }
        )
