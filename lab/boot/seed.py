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

One difference is not AWS's but the container's: keepalived's `vrrp_track_process` needs the
kernel's process events connector, which answers only the initial network and PID namespaces,
so in a container keepalived cannot watch HAProxy and stays in FAULT. A load balancer's layer
gets a keepalived drop-in (`write_keepalived_substitute`) that runs keepalived from a copy of
the config the userdata wrote, with each tracked process checked by `pgrep -x` every second
instead (keepalived 2.2's shortest script interval), falling after the tracked process's
`delay` (2 s); nothing else of the config changes, and the userdata's own
`keepalived --config-test` checks the original.

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


KEEPALIVED_DROP_IN = Path("etc/systemd/system/keepalived.service.d/zz-boot-lab-track-script.conf")
KEEPALIVED_SUBSTITUTE = Path("usr/local/lib/web-infra-boot-lab/keepalived_track_script.py")
KEEPALIVED_LAB_CONFIG = "/run/keepalived-boot-lab.conf"
SUBSTITUTE_SCRIPT = """\
# The boot lab's copy of keepalived's config: vrrp_track_process (the kernel's process events,
# which a container does not get) becomes a vrrp_script that asks pgrep. See lab/boot/seed.py.
import re
import sys

text = open(sys.argv[1]).read()


def script(match):
    name, body = match.group(1), match.group(2)
    process = re.search(r"^\\s*process\\s+(\\S+)", body, re.M).group(1)
    delay = re.search(r"^\\s*delay\\s+([\\d.]+)", body, re.M)
    fall = max(1, round(float(delay.group(1)))) if delay else 1
    return (
        f"vrrp_script {name} {{\\n    script \\"/usr/bin/pgrep -x {process}\\"\\n"
        f"    interval 1\\n    fall {fall}\\n    rise 1\\n}}"
    )


text = re.sub(r"vrrp_track_process\\s+(\\S+)\\s*\\{([^}]*)\\}", script, text)
text = re.sub(r"\\btrack_process\\s*\\{", "track_script {", text)
with open(sys.argv[2], "w") as output:
    output.write(text)
"""


def write_keepalived_substitute(layer: Path) -> None:
    """A load balancer's keepalived runs with `pgrep` checks for its tracked processes."""
    script = layer / KEEPALIVED_SUBSTITUTE
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SUBSTITUTE_SCRIPT)
    convert = (
        f"/usr/bin/python3 /{KEEPALIVED_SUBSTITUTE} /etc/keepalived/keepalived.conf "
        f"{KEEPALIVED_LAB_CONFIG}"
    )
    drop_in = layer / KEEPALIVED_DROP_IN
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(
        "# The boot lab's: keepalived without the kernel's process events (lab/boot/seed.py).\n"
        "[Service]\n"
        f"ExecStartPre={convert}\n"
        "ExecStart=\n"
        f"ExecStart=/usr/sbin/keepalived --dont-fork --use-file={KEEPALIVED_LAB_CONFIG}\n"
        "ExecReload=\n"
        f"ExecReload={convert}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
    )
