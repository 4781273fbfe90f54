"""What stands in for AWS on the host side of the bridge, each a process the lab starts itself.

- Route 53's private zone and the VPC resolver: dnsmasq on .1:53 answers the zone's names,
  sends `*.amazonaws.com` to the stand-ins below and resolves nothing else;
- the Ubuntu mirror: apt-cacher-ng on .1:3142, which forwards only to Debian's mirror and keeps
  its cache across runs;
- RDS's, Secrets Manager's, SSM's and S3's APIs: moto's server over TLS on .2:443, seeded with
  the primary, its RDS-managed master secret, and the artifacts bucket with the files the hosts
  fetch at boot;
- the RDS CA bundle URL: `lab.boot.truststore` on .3:443, serving the lab's test CA;
- the RDS primary and replica: MariaDB on .51 and .52 (see `lab.boot.database`).

The containers reach the AWS endpoints by their real names (`rds.<region>.amazonaws.com`,
`secretsmanager.<region>.amazonaws.com`, `truststore.pki.rds.amazonaws.com`), resolved by the
lab's DNS and verified against the lab's CA, so no endpoint override is needed inside a host:
Debian 12's boto3 (1.26) does not read `AWS_ENDPOINT_URL`, and the userdata stays unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lab import processes
from lab.boot import network
from lab.boot.pki import CertificateAuthority
from lab.processes import Daemon, program

# Credentials the hosts use instead of an instance role (moto accepts any).
ACCESS_KEY_ID = "AKIABOOTLABINSTANCE0"
SECRET_ACCESS_KEY = "boot-lab-instance-role-stand-in"  # noqa: S105 - moto's dummy key
MOTO_ACCOUNT = "123456789012"


def dns_config(zone: str, records: dict[str, str], log: Path) -> str:
    """dnsmasq: authoritative for the zone, AWS names to the stand-ins, nothing else resolved."""
    lines = [
        f"listen-address={network.GATEWAY}",
        "bind-interfaces",
        "port=53",
        # No upstream: a host resolves only what AWS would answer inside the VPC and the
        # stand-ins; Debian's mirror is reached through the caching proxy, by its name there.
        "no-resolv",
        "no-hosts",
        "no-poll",
        "log-queries",
        f"log-facility={log}",
        f"local=/{zone}/",
        *(f"host-record={name}.{zone},{address}" for name, address in records.items()),
        f"address=/amazonaws.com/{network.AWS_API}",
        f"address=/truststore.pki.rds.amazonaws.com/{network.TRUSTSTORE}",
    ]
    return "\n".join(lines) + "\n"


def start_dns(folder: Path, zone: str, records: dict[str, str]) -> Daemon:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dnsmasq.conf"
    config.write_text(dns_config(zone, records, folder / "queries.log"))
    daemon = processes.start(
        "dns/dnsmasq",
        [program("dnsmasq"), "--keep-in-foreground", f"--conf-file={config}"],
        folder / "dnsmasq.log",
    )
    _wait_port(daemon, network.GATEWAY, 53, "dnsmasq")
    return daemon


def apt_proxy_config(cache: Path, logs: Path) -> str:
    """apt-cacher-ng: only Debian's mirror (and its security archive), no CONNECT tunnels."""
    return "\n".join(
        [
            f"CacheDir: {cache}",
            f"LogDir: {logs}",
            "SupportDir: /usr/lib/apt-cacher-ng",
            f"Port: {network.APT_PROXY_PORT}",
            f"BindAddress: {network.GATEWAY}",
            "ForeGround: 1",
            # Only the remapped repositories below may be fetched; anything else is refused.
            "ForceManaged: 1",
            "PassThroughPattern: ^$",
            "Remap-debrep: deb.debian.org/debian ; http://deb.debian.org/debian/",
            "Remap-secdeb: security.debian.org/debian-security deb.debian.org/debian-security"
            " ; http://deb.debian.org/debian-security/",
            "ExThreshold: 4",
            "",
        ]
    )


def start_apt_proxy(folder: Path, cache: Path) -> Daemon:
    config = folder / "apt-cacher-ng"
    logs = folder / "apt-cacher-ng-logs"
    for path in (config, logs, cache):
        path.mkdir(parents=True, exist_ok=True)
    (config / "acng.conf").write_text(apt_proxy_config(cache, logs))
    daemon = processes.start(
        "apt-proxy/apt-cacher-ng",
        [program("apt-cacher-ng"), "-c", str(config)],
        folder / "apt-cacher-ng.log",
    )
    _wait_port(daemon, network.GATEWAY, network.APT_PROXY_PORT, "apt-cacher-ng")
    return daemon


def start_truststore(folder: Path, authority: CertificateAuthority) -> Daemon:
    pair = authority.issue("truststore", ["truststore.pki.rds.amazonaws.com"], [network.TRUSTSTORE])
    daemon = processes.start(
        "truststore/https",
        [
            sys.executable,
            "-m",
            "lab.boot.truststore",
            "--address",
            network.TRUSTSTORE,
            "--certificate",
            str(pair.certificate),
            "--key",
            str(pair.key),
            "--bundle",
            str(authority.certificate_path),
        ],
        folder / "truststore.log",
        cwd=Path(__file__).resolve().parents[2],
    )
    _wait_port(daemon, network.TRUSTSTORE, 443, "the truststore stand-in")
    return daemon


def start_aws_api(folder: Path, authority: CertificateAuthority, region: str) -> Daemon:
    pair = authority.issue(
        "aws-api",
        # S3 names its buckets as hosts: <bucket>.s3.<region>.amazonaws.com
        [f"*.{region}.amazonaws.com", "*.amazonaws.com", f"*.s3.{region}.amazonaws.com"],
        [network.AWS_API],
    )
    daemon = processes.start(
        "aws-api/moto",
        [
            sys.executable,
            "-m",
            "moto.server",
            "--host",
            network.AWS_API,
            "--port",
            "443",
            "--ssl-cert",
            str(pair.certificate),
            "--ssl-key",
            str(pair.key),
        ],
        folder / "moto.log",
    )
    _wait_port(daemon, network.AWS_API, 443, "moto")
    return daemon


def aws_client(service: str, region: str, authority: CertificateAuthority) -> Any:
    import boto3  # noqa: PLC0415 - only the lab's host side needs it

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=f"https://{network.AWS_API}",
        verify=str(authority.certificate_path),
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def publish_artifacts(
    region: str, authority: CertificateAuthority, bucket: str, files: dict[str, bytes]
) -> None:
    """The artifacts bucket and its objects (key -> content), as the program's Artifacts
    component creates them before any instance boots."""
    s3 = aws_client("s3", region, authority)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for key, content in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=content)


def create_rds_primary(
    region: str,
    authority: CertificateAuthority,
    *,
    identifier: str,
    database_name: str,
    master_username: str,
) -> tuple[str, str]:
    """The primary as RDS knows it, with its managed master secret; returns (user, password).

    The app finds the secret exactly as on AWS (DescribeDBInstances, then GetSecretValue);
    the lab then gives MariaDB the password moto generated.
    """
    rds = aws_client("rds", region, authority)
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="mysql",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        DBName=database_name,
        MasterUsername=master_username,
        ManageMasterUserPassword=True,
    )
    described = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    arn = described["MasterUserSecret"]["SecretArn"]
    secrets = aws_client("secretsmanager", region, authority)
    secret = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    return secret["username"], secret["password"]


def _wait_port(daemon: Daemon, address: str, port: int, what: str) -> None:
    processes.wait_until(
        lambda: processes.port_is_open(address, port),
        daemon,
        what=f"{what} on {address}:{port}",
        timeout=30,
    )
