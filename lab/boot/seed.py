"""What each container gets instead of EC2's metadata: everything that differs from AWS.

The userdata goes into the NoCloud seed byte for byte; nothing in it is rewritten. What AWS
provides around it is given here, as files in the container's own layer:

- `meta-data`: the instance id (the one the EC2 stand-in gave the host's instance, as the
  metadata stand-in does: stable across reboots, so cloud-init's per-instance modules run
  once, as on EC2) and the host name;
- a systemd-networkd file with the host's address on the bridge and the lab's DNS (on AWS:
  DHCP and the VPC resolver), and `/etc/resolv.conf` naming that DNS;
- the lab's test CA as a system CA (on AWS: Amazon's public CAs), so the AWS API and the
  truststore stand-ins are verified like the real endpoints.

No AWS credentials: as on EC2, botocore gets the instance role's from the metadata service
(`lab.boot.metadata`).
"""

from __future__ import annotations

from pathlib import Path

from lab.boot import network

SEED = Path("var/lib/cloud/seed/nocloud")
CA_NAME = "web-infra-boot-lab-ca.crt"
SYSTEM_BUNDLE = Path("etc/ssl/certs/ca-certificates.crt")


def write(
    layer: Path,
    *,
    host: str,
    instance_id: str,
    address: str,
    userdata: bytes,
    ca_pem: bytes,
    base: Path,
) -> None:
    """Write the seed and the host's /etc files into `layer`, the container's upper layer."""
    seed = layer / SEED
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "user-data").write_bytes(userdata)
    (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {host}\n")

    networkd = layer / "etc/systemd/network"
    networkd.mkdir(parents=True, exist_ok=True)
    (networkd / "10-bridge.network").write_text(
        "# The host's address on the boot lab's bridge (EC2's DHCP on AWS); no default route.\n"
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={address}/{network.PREFIX}\nDNS={network.GATEWAY}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    (layer / "etc").mkdir(exist_ok=True)
    (layer / "etc/resolv.conf").write_text(f"nameserver {network.GATEWAY}\n")

    local_cas = layer / "usr/local/share/ca-certificates"
    local_cas.mkdir(parents=True, exist_ok=True)
    (local_cas / CA_NAME).write_bytes(ca_pem)
    # What update-ca-certificates would add; a later run inside (a package's trigger) keeps it,
    # because the certificate is in /usr/local/share/ca-certificates too.
    bundle = layer / SYSTEM_BUNDLE
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes((base / SYSTEM_BUNDLE).read_bytes() + ca_pem)
