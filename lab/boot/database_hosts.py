"""`dbMode: ec2` in the boot lab: database-1 and database-2 boot their real cloud-configs;
with `dbMode: colocated`, web-1 and web-2 boot theirs, the web node's with the same database.

Instead of the MariaDB stand-ins it runs for RDS, the lab makes what the program makes before
the database hosts boot, and boots each host from the userdata the program renders for it
(`components.rendered_hosts.database_host_userdata`, the pure function the program calls
once AWS and pulumi-tls have made what it names):

- the users' secrets (admin, replication, the app's) and each host's TLS key, in the secret
  store's moto, under the program's names; the userdata names their ARNs as moto made them;
- a CA of the stack's own (not the lab's, which signs the stand-ins) and each host's
  certificate for `database-N.<zone>` and `db-primary|db-replica.<zone>`, as the program's;
- the backup bucket, versioned, in the S3 stand-in;
- with `colocated`, web-1's and web-2's userdata is theirs
  (`components.rendered_hosts.colocated_web_userdata`), and `db-primary`/`db-replica` name
  their addresses;
- each host's data volume: a sparse file on this machine attached to a loop device, handed to
  the container as `/dev/xvdf` (the attachment's name on a Xen instance, which the host
  script looks for when the Nitro by-id link is absent). The script finds, formats (blank
  only), mounts and uses it as on EC2; a replaced host gets the same device, so its data
  survives it. The loop devices are detached by `down`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.database_bootstrap import app_secret_name
from components.rendered_hosts import (
    APP_USERNAME,
    MASTER_USERNAME,
    REPLICATION_USERNAME,
    DatabaseHostResources,
    backup_bucket_name,
    colocated_web_userdata,
    database_host_userdata,
)
from lab.boot import network, standins
from lab.boot.pki import CertificateAuthority
from lab.localize import LabError
from lab.processes import program
from settings import Settings, colocated_database
from settings.database_hosts import HOSTS
from userdata.database_host import DatabaseSecrets

ROLE = "database"
PORT = 3306
ADDRESSES = {"database-1": network.DATABASE_1, "database-2": network.DATABASE_2}
ALIASES = {"database-1": "db-primary", "database-2": "db-replica"}
COLOCATED_ALIASES = {"web-1": "db-primary", "web-2": "db-replica"}
USERNAMES = {"admin": MASTER_USERNAME, "replication": REPLICATION_USERNAME, "app": APP_USERNAME}
VOLUME_BYTES = 2 << 30
"""Sparse: only what MariaDB writes takes room."""
DEVICE_IN_CONTAINER = "/dev/xvdf"


@dataclass(frozen=True)
class Volume:
    image: str
    loop: str
    volume_id: str


def secret_names(prefix: str) -> dict[str, str]:
    """The program's secret names (components.database_hosts)."""
    return {
        "admin": f"{prefix}/database/admin-user",
        "replication": f"{prefix}/database/replication-user",
        "app": app_secret_name(prefix),
    }


def attach_volume(folder: Path, host: str) -> Volume:
    """A blank sparse file on a free loop device: the host's EBS volume."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{host}.img"
    with image.open("wb") as f:
        f.truncate(VOLUME_BYTES)
    result = subprocess.run(  # noqa: S603 - fixed program
        [program("losetup"), "--find", "--show", str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"no loop device for {host}'s data volume: {result.stderr.strip()}")
    number = (*HOSTS, *colocated_database.HOSTS).index(host) + 1
    return Volume(str(image), result.stdout.strip(), f"vol-0b00710b0000000{number}")


def detach_volume(loop: str, image: str) -> bool:
    """Detach `loop` if it still holds `image`; whether it did."""
    shown = subprocess.run(  # noqa: S603 - fixed program
        [program("losetup"), "--noheadings", "--output", "BACK-FILE", loop],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0 or shown.stdout.strip() != image:
        return False
    subprocess.run([program("losetup"), "--detach", loop], check=False)  # noqa: S603
    return True


def bind_arguments(volume: dict[str, str] | None) -> list[str]:
    """systemd-nspawn's arguments that attach the host's volume: as `/dev/xvdf`, and under
    its own name, which is what /proc/partitions lists (no udev runs in a container to make
    the /dev/disk/by-uuid link that mount's `UUID=` would otherwise find it by)."""
    if not volume:
        return []
    return [f"--bind={volume['loop']}:{DEVICE_IN_CONTAINER}", f"--bind={volume['loop']}"]


def provision(
    folder: Path,
    settings: Settings,
    region: str,
    authority: CertificateAuthority,
    volumes: dict[str, Volume],
) -> tuple[dict[str, bytes], bytes]:
    """What the program makes before the database hosts (with `colocated`: web-1 and web-2)
    boot; each host's userdata and the stack's database CA (the web nodes verify the hosts
    with it)."""
    prefix, zone = settings.name_prefix, settings.internal_zone
    colocated = settings.db_mode == "colocated"
    aliases = COLOCATED_ALIASES if colocated else ALIASES
    client = standins.aws_client("secretsmanager", region, authority)
    arns = {}
    for user, name in secret_names(prefix).items():
        value = {"username": USERNAMES[user], "password": secrets.token_urlsafe(24)}
        arns[user] = client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
    database_ca = CertificateAuthority(folder / "database-pki")
    database_ca.create()
    s3 = standins.aws_client("s3", region, authority)
    bucket = backup_bucket_name(settings, standins.MOTO_ACCOUNT, region)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    userdata = {}
    for host in aliases:
        pair = database_ca.issue(host, [f"{host}.{zone}", f"{aliases[host]}.{zone}"], [])
        key_arn = client.create_secret(
            Name=f"{prefix}/{host}/tls-key", SecretString=pair.key.read_text()
        )["ARN"]
        made = DatabaseHostResources(
            volume_id=volumes[host].volume_id,
            secrets=DatabaseSecrets(arns["admin"], arns["replication"], arns["app"]),
            key_secret=key_arn,
            ca_pem=database_ca.pem.decode(),
            cert_pem=pair.certificate.read_text(),
        )
        render = colocated_web_userdata if colocated else database_host_userdata
        rendered, _ = render(settings, region, standins.MOTO_ACCOUNT, made, host)
        userdata[host] = rendered.encode()
    return userdata, database_ca.pem


def app_login(region: str, authority: CertificateAuthority, prefix: str) -> dict[str, Any]:
    """The app's user as its secret holds it (the tests log in with it)."""
    client = standins.aws_client("secretsmanager", region, authority)
    value = client.get_secret_value(SecretId=app_secret_name(prefix))["SecretString"]
    return dict(json.loads(value))
