"""The RDS pair's stand-in: two MariaDB servers on the bridge, GTID replication, TLS required.

The same servers as the process lab (`lab.mariadb`), bound to the bridge addresses that
`db-primary.<zone>` and `db-replica.<zone>` resolve to, with what the stack's parameter group
asks of RDS: `require_secure_transport`, certificates from the CA that the truststore stand-in
serves as the RDS bundle (so the app's chain check is real), and the replica fed over TLS. The
master user's password is the one in the RDS-managed secret's stand-in; the program's database
bootstrap code logs in with it and makes the app's user with the password of the app's secret
in the secret store's stand-in, which the app reads on its host (GetSecretValue by name).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab import mariadb
from lab.boot import network
from lab.boot.pki import CertificateAuthority
from lab.topology import Host

MYSQL_PORT = 3306

CLIENTS = f"{network.SUBNET.network_address.exploded.rsplit('.', 1)[0]}.%"  # 169.254.77.%


def servers(folder: Path) -> tuple[mariadb.Server, mariadb.Server]:
    primary = Host("db-primary", "database", network.DB_PRIMARY, MYSQL_PORT)
    replica = Host("db-replica", "database", network.DB_REPLICA, MYSQL_PORT)
    return (
        mariadb.Server(primary, folder / "db-primary", 1),
        mariadb.Server(replica, folder / "db-replica", 2),
    )


def server_command(
    server: mariadb.Server, authority: CertificateAuthority, zone: str, *, replica: bool
) -> list[str]:
    pair = authority.issue(server.host.name, [f"{server.host.name}.{zone}"], [server.host.address])
    if os.geteuid() == 0:  # mariadbd runs as Debian's mysql user and reads its key as such
        shutil.chown(pair.key, "mysql", "mysql")
    return [
        *mariadb.server_command(server, replica=replica),
        f"--ssl-ca={authority.certificate_path}",
        f"--ssl-cert={pair.certificate}",
        f"--ssl-key={pair.key}",
        "--require-secure-transport=ON",
    ]


def set_up_primary(
    primary: mariadb.Server,
    database_name: str,
    *,
    master: mariadb.Login,
    app: mariadb.Login,
    authority: CertificateAuthority,
) -> str:
    """The database and master user as RDS creates them, then the app's user as the database
    bootstrap makes it (over TLS, verified against the lab's CA); returns the replication
    password."""
    return mariadb.create_database_and_users(
        primary,
        database=database_name,
        master=master,
        app=app,
        clients=CLIENTS,
        ca_file=authority.certificate_path,
    )


def start_replication(
    replica: mariadb.Server,
    primary: mariadb.Server,
    authority: CertificateAuthority,
    replication_password: str,
) -> None:
    mariadb.sql(
        replica,
        f"""
        CHANGE MASTER TO MASTER_HOST='{primary.host.address}', MASTER_PORT={primary.host.port},
          MASTER_USER='{mariadb.REPLICATION_USER}', MASTER_PASSWORD='{replication_password}',
          MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1,
          MASTER_SSL=1, MASTER_SSL_CA='{authority.certificate_path}',
          MASTER_SSL_VERIFY_SERVER_CERT=1;
        START SLAVE;
        """,
    )
