"""Pure builders of the `#cloud-config` documents that turn Ubuntu into each kind of host.

Each builder returns the document as a dict; `render` serialises it. Nothing here calls AWS or
reads a Pulumi output: every value is known before `pulumi preview` runs, so a pull request's
preview shows the real configuration diff. Hosts find each other by stable names in the stack's
private Route 53 zone (`web-1.<zone>`, `db-primary.<zone>`, ...), never by addresses AWS assigns.

Files that belong to a package (HAProxy's and Nginx's configs) are written with `defer: true`,
i.e. after cloud-init has installed the packages, so the package cannot overwrite them. The last
step of every host's first boot reports that the host serves (`scripts/report_ready.py`); the
program waits for that report before it sends traffic to the host.

This module holds what every host's document shares: its base, file entries, templates, the
readiness report, and the serialisation (`render`, `parse`). Each kind of host has a builder
of its own, which changes for its own reasons: `load_balancer_config` (HAProxy, HTTPS, the
pair) and `web_node_config` (Nginx, gunicorn, the app).
"""

from __future__ import annotations

import base64
import gzip
import io
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
REPORT_READY_SOURCE = HERE / "scripts" / "report_ready.py"

# The ports hosts reach each other on, which both kinds of host's documents name.
HTTP_PORT = 80  # the load balancer's public ports
HTTPS_PORT = 443
WEB_PORT = 80  # Nginx on every web node; only the load balancer's group may reach it
MYSQL_PORT = 3306
EC2_USERDATA_LIMIT = 16 * 1024  # bytes, before base64

REPORT_READY = "/usr/local/lib/web-infra/report_ready.py"
# How long a host's first boot waits for its own service before it gives up reporting ready.
# Fixed here rather than a setting: it is part of every host's userdata.
REPORT_READY_TIMEOUT_SECONDS = 1200


class _Template(string.Template):
    """`@@{name}` placeholders: `$` belongs to Nginx and `%` to HAProxy."""

    delimiter = "@@"


def render_template(name: str, **values: object) -> str:
    return _Template((TEMPLATES / name).read_text()).substitute(values)


def host_name(host: str, zone: str) -> str:
    """The stable DNS name of a host in the stack's private zone."""
    return f"{host}.{zone}"


@dataclass(frozen=True)
class ReadinessReport:
    """Where each host reports that it serves: an SSM parameter per host, known at preview."""

    parameter_prefix: str
    """e.g. /web-infra-dev/ready; the host `web-1` writes /web-infra-dev/ready/web-1."""
    region: str

    def parameter(self, host: str) -> str:
        return f"{self.parameter_prefix}/{host}"

    def steps(self, host: str, check_url: str) -> tuple[dict[str, Any], list[str]]:
        """The script to ship and the runcmd step that runs it, last, on `host`."""
        script = file_entry(REPORT_READY, REPORT_READY_SOURCE.read_text(), permissions="0755")
        command = [
            "python3",
            REPORT_READY,
            "--parameter",
            self.parameter(host),
            "--region",
            self.region,
            "--check-url",
            check_url,
            "--timeout",
            str(REPORT_READY_TIMEOUT_SECONDS),
        ]
        return script, command


def compressed_file(path: str, data: bytes, permissions: str = "0644") -> dict[str, Any]:
    """A shipped source file, gzip-compressed to stay under EC2's 16 KiB."""
    return {
        "path": path,
        "owner": "root:root",
        "permissions": permissions,
        "encoding": "gz+b64",
        "content": _gzip_b64(data),
    }


def file_entry(
    path: str, content: str, *, permissions: str = "0644", defer: bool = False
) -> dict[str, Any]:
    """A `write_files` entry, as readable text (`defer`: after the packages are installed)."""
    entry: dict[str, Any] = {
        "path": path,
        "owner": "root:root",
        "permissions": permissions,
        "content": content,
    }
    if defer:
        entry["defer"] = True
    return entry


def base_document(hostname: str, zone: str, packages: list[str]) -> dict[str, Any]:
    """What every host's document starts with: its names, and its packages, up to date."""
    return {
        "hostname": hostname,
        "fqdn": host_name(hostname, zone),
        "prefer_fqdn_over_hostname": False,
        "package_update": True,
        "package_upgrade": True,
        "packages": packages,
        # A mirror hiccup at first boot (or the Elastic IP replacing the launch address
        # mid-download) must not leave a host without its packages.
        "apt": {"conf": 'Acquire::Retries "5";\n'},
    }


def report_ready_last(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its readiness report moved to the end of runcmd, after whatever was
    merged in: a host reports that it serves once everything of its first boot is done."""
    steps = document.get("runcmd", [])
    report = [s for s in steps if s[:2] == ["python3", REPORT_READY]]
    rest = [s for s in steps if s[:2] != ["python3", REPORT_READY]]
    return {**document, "runcmd": rest + report}


def _gzip_b64(data: bytes) -> str:
    """Deterministic gzip: no timestamp, no file name, OS byte "unknown" on every platform.

    `gzip.compress` lets zlib write the header, whose OS byte differs between Linux and
    macOS; that would change the userdata, and so replace every web node, depending on who
    runs `pulumi up`. The deflate stream itself is zlib's: deploy from machines with the
    same zlib (CI does), since a different implementation (zlib-ng) compresses differently.
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(data)
    return base64.b64encode(buffer.getvalue()).decode()


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so config files read (and diff) as files."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str_representer)


def render(document: dict[str, Any]) -> str:
    """The userdata text: the `#cloud-config` header, then the document as YAML."""
    body = yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=100)
    text = "#cloud-config\n" + body
    if len(text.encode()) > EC2_USERDATA_LIMIT:
        raise ValueError(
            f"userdata is {len(text.encode())} bytes, over EC2's {EC2_USERDATA_LIMIT}; "
            "shrink the shipped files"
        )
    return text


def parse(userdata: str) -> dict[str, Any]:
    """The document back from userdata text (tests and the local lab read it this way)."""
    if not userdata.startswith("#cloud-config\n"):
        raise ValueError("userdata must start with '#cloud-config'")
    document: dict[str, Any] = yaml.safe_load(userdata)
    return document


def file_content(entry: dict[str, Any]) -> bytes:
    """The bytes cloud-init writes for a `write_files` entry."""

    content = str(entry["content"])
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(content))
    return content.encode()
