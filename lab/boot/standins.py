"""What stands in for AWS on the host side of the bridge, each a process the lab starts itself.

- Route 53's private zone and the VPC resolver: dnsmasq on .1:53 answers the zone's names,
  sends `*.amazonaws.com` to the stand-ins below and resolves nothing else;
- the Ubuntu mirror: apt-cacher-ng on .1:3142, which forwards only to Debian's mirror and keeps
  its cache across runs;
- S3's and SSM's APIs (and any other AWS API a host asks for): moto's server over TLS on .2:443,
  with the artifacts bucket and the files the hosts fetch at boot, and the hosts' readiness
  parameters;
- the secret store, Secrets Manager's and RDS's APIs: a second moto server on .4:443, seeded with
  the primary and its RDS-managed master secret, and the app's own secret. It has an address of
  its own so that it can be unreachable while S3 and SSM are not (and the other way round), as
  separate endpoints on AWS;
- the RDS CA bundle URL: `lab.boot.truststore` on .3:443, serving the lab's test CA;
- the instance metadata service: `lab.boot.metadata` on 169.254.169.254:80, handing each host
  its role's temporary credentials through IMDSv2, as EC2 does;
- the RDS primary and replica: MariaDB on .51 and .52 (see `lab.boot.database`);
- EC2's API is the main moto's too (the instances, the Elastic IP the load-balancer pair moves),
  and the packets that follow the Elastic IP are `lab.boot.elastic_ip`'s.

The containers reach the AWS endpoints by their real names (`<bucket>.s3.<region>.amazonaws.com`,
`ssm.<region>.amazonaws.com`, `rds.<region>.amazonaws.com`, `secretsmanager.<region>...`,
`truststore.pki.rds.amazonaws.com`), resolved by the lab's DNS and verified against the lab's
CA, so no endpoint override is needed inside a host: Debian 12's boto3 (1.26) does not read
`AWS_ENDPOINT_URL`, and the userdata stays unchanged. Both moto servers run behind a recorder
(`lab.boot.aws_api`) that writes every call with the host and role whose credentials signed
it, for the IAM check (`tests/test_boot_e2e.py`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lab import processes
from lab.boot import metadata, network
from lab.boot.pki import CertificateAuthority
from lab.mariadb import Login
from lab.processes import Daemon, program

# The lab's own credentials, for what the program (the deployer) does before the hosts boot:
# the bucket's objects, the RDS primary, the parameters. The hosts get theirs from the metadata
# stand-in; moto accepts any key, and the recorder names this one's calls as nobody's host.
ACCESS_KEY_ID = "AKIABOOTLABDEPLOYER0"
SECRET_ACCESS_KEY = "boot-lab-deployer-stand-in"  # noqa: S105 - moto's dummy key
MOTO_ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parents[2]
# The APIs the secret store's moto answers; every other service is the main moto's.
SECRET_STORE_SERVICES = ("rds", "secretsmanager")


def secret_store_names(region: str) -> list[str]:
    return [f"{service}.{region}.amazonaws.com" for service in SECRET_STORE_SERVICES]


def dns_config(
    zone: str,
    records: dict[str, str],
    log: Path,
    region: str,
    names: dict[str, str] | None = None,
) -> str:
    """dnsmasq: authoritative for the zone, AWS names to the stand-ins, nothing else resolved
    (but `names`, full names: the site's domain and its ACME CA with `up --https`)."""
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
        *(f"host-record={name},{address}" for name, address in (names or {}).items()),
        # dnsmasq answers from the longest matching domain: these before *.amazonaws.com.
        f"address=/amazonaws.com/{network.AWS_API}",
        f"address=/truststore.pki.rds.amazonaws.com/{network.TRUSTSTORE}",
        *(f"address=/{name}/{network.SECRET_STORE}" for name in secret_store_names(region)),
    ]
    return "\n".join(lines) + "\n"


def start_dns(
    folder: Path,
    zone: str,
    records: dict[str, str],
    region: str,
    names: dict[str, str] | None = None,
) -> Daemon:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dnsmasq.conf"
    config.write_text(dns_config(zone, records, folder / "queries.log", region, names))
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
    """S3 and SSM, and whatever else a host asks of AWS (the agent's bucket, say)."""
    return _start_moto(
        folder,
        authority,
        "aws-api",
        network.AWS_API,
        # S3 names its buckets as hosts: <bucket>.s3.<region>.amazonaws.com
        [f"*.{region}.amazonaws.com", "*.amazonaws.com", f"*.s3.{region}.amazonaws.com"],
    )


def start_secret_store(folder: Path, authority: CertificateAuthority, region: str) -> Daemon:
    """Secrets Manager and RDS, in one moto: RDS keeps the managed master secret there."""
    return _start_moto(
        folder, authority, "secret-store", network.SECRET_STORE, secret_store_names(region)
    )


def _start_moto(
    folder: Path, authority: CertificateAuthority, name: str, address: str, names: list[str]
) -> Daemon:
    pair = authority.issue(name, names, [address])
    daemon = processes.start(
        f"{name}/moto",
        [
            sys.executable,
            "-m",
            "lab.boot.aws_api",
            "--host",
            address,
            "--port",
            "443",
            "--ssl-cert",
            str(pair.certificate),
            "--ssl-key",
            str(pair.key),
            "--credentials",
            str(credentials_file(folder)),
            "--record",
            str(call_log(folder, name)),
        ],
        folder / f"moto-{name}.log",
        cwd=ROOT,
    )
    _wait_port(daemon, address, 443, f"moto ({name})")
    return daemon


def credentials_file(folder: Path) -> Path:
    """Every host's instance-role credentials, shared by the metadata and API stand-ins."""
    return folder / "metadata" / metadata.CREDENTIALS_FILE


def call_log(folder: Path, name: str) -> Path:
    """Where the moto stand-in `name` records every call (`lab.boot.aws_api`)."""
    return folder / f"calls-{name}.jsonl"


def call_logs(folder: Path) -> list[Path]:
    return [call_log(folder, name) for name in ("aws-api", "secret-store")]


def metadata_log(folder: Path) -> Path:
    return folder / "metadata" / "requests.jsonl"


def start_metadata(
    folder: Path, region: str, identities: list[metadata.HostIdentity], account: str
) -> Daemon:
    """The instance metadata service at 169.254.169.254 (on the bridge) for every host."""
    metadata.save_identities(credentials_file(folder), identities)
    daemon = processes.start(
        "metadata/imds",
        [
            sys.executable,
            "-m",
            "lab.boot.metadata",
            "--credentials",
            str(credentials_file(folder)),
            "--region",
            region,
            "--account",
            account,
            "--log",
            str(metadata_log(folder)),
        ],
        folder / "metadata.log",
        cwd=ROOT,
    )
    _wait_port(daemon, metadata.ADDRESS, metadata.PORT, "the instance metadata stand-in")
    return daemon


def start_elastic_ip(folder: Path, authority: CertificateAuthority, region: str) -> Daemon:
    """The public address's follower (`lab.boot.elastic_ip`), once the Elastic IP exists."""
    daemon = processes.start(
        "elastic-ip/follower",
        [
            sys.executable,
            "-m",
            "lab.boot.elastic_ip",
            "--folder",
            str(folder),
            "--region",
            region,
            "--pki",
            str(authority.certificate_path.parent),
        ],
        folder / "elastic-ip.log",
        cwd=ROOT,
    )
    processes.wait_until(
        (folder / "public-address.json").exists,
        daemon,
        what="the public address follower",
        timeout=30,
    )
    return daemon


def endpoint(service: str) -> str:
    """The address of the moto that answers `service`."""
    return network.SECRET_STORE if service in SECRET_STORE_SERVICES else network.AWS_API


def aws_client(service: str, region: str, authority: CertificateAuthority) -> Any:
    import boto3  # noqa: PLC0415 - only the lab's host side needs it

    return boto3.client(
        service,
        region_name=region,
        endpoint_url=f"https://{endpoint(service)}",
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


def put_parameters(region: str, authority: CertificateAuthority, values: dict[str, str]) -> None:
    """SSM parameters (name -> value), as strings."""
    ssm = aws_client("ssm", region, authority)
    for name, value in values.items():
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def create_rds_primary(
    region: str,
    authority: CertificateAuthority,
    *,
    identifier: str,
    database_name: str,
    master_username: str,
) -> Login:
    """The primary as RDS knows it, with its managed master secret; returns its login.

    The lab reads the secret as the database bootstrap does on AWS and gives MariaDB the
    password moto generated; no host reads it.
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
    return Login(secret["username"], secret["password"])


def create_app_secret(
    region: str, authority: CertificateAuthority, *, name: str, login: Login
) -> None:
    """The app's secret under the name the program gives it, which the web nodes read."""
    secrets = aws_client("secretsmanager", region, authority)
    secrets.create_secret(
        Name=name,
        SecretString=json.dumps({"username": login.username, "password": login.password}),
    )


def _wait_port(daemon: Daemon, address: str, port: int, what: str) -> None:
    processes.wait_until(
        lambda: processes.port_is_open(address, port),
        daemon,
        what=f"{what} on {address}:{port}",
        timeout=30,
    )
