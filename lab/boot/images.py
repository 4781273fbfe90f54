"""Base images for the boot lab: a Debian root filesystem, built once and cached as a tarball.

The image plays the part of the AMI: what a cloud image has before cloud-init runs (systemd,
cloud-init, openssh-server, sudo, locales, CA certificates), and nothing the userdata installs
itself, so `packages:` really downloads HAProxy, Nginx, gunicorn... at boot. It is built with
mmdebstrap through the lab's caching proxy and stored as `<suite>-<key>.tar` in the cache folder,
where `key` is a digest of the recipe: a changed recipe builds a new image, an unchanged one is
never built twice. Containers share one extracted copy read-only, each with an overlay on top.

What the image changes from a plain Debian install, and why:
- cloud-init reads only the NoCloud seed and leaves the network alone (the container runner
  configures it, as EC2's DHCP would), so it never waits for an EC2 metadata service;
- systemd-networkd is enabled, so `network-online.target` means something;
- en_US.UTF-8 is generated, as on Ubuntu's image (cloud-init sets it as the system locale);
- the SSH host keys and the machine id are removed, so every container makes its own, as an
  instance launched from an AMI does;
- apt goes through the lab's caching proxy, which reaches only Debian's mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.boot import network
from lab.localize import LabError
from lab.processes import INSTALL, find_program, program

DEFAULT_CACHE = Path("/var/cache/web-infra/boot")
CACHE_VARIABLE = "WEB_INFRA_BOOT_CACHE"
MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "trixie")
# What an Ubuntu cloud image has before cloud-init runs; the userdata installs the rest. curl
# is there on Ubuntu's image, and the CloudWatch agent's install script uses it on every host
# (the web nodes also list it in their packages; the load balancer relies on the image's).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "ca-certificates",
    "curl",
    "iproute2",
    "netbase",
    "sudo",
    "locales",
    "openssh-server",
)
PROXY = f"http://{network.GATEWAY}:{network.APT_PROXY_PORT}"
CLOUD_CFG = """\
# The boot lab: only the NoCloud seed, never a probe for EC2's metadata service; the container
# runner configures the network (EC2's DHCP does that on AWS).
datasource_list: [ NoCloud ]
network: {config: disabled}
"""
CUSTOMIZE = (
    'chroot "$1" systemctl enable systemd-networkd.service',
    # Ubuntu's locale-gen builds the locale it is given; Debian's ignores its arguments and
    # builds what /etc/locale.gen lists, so cloud-init's locale module needs it listed.
    "sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' \"$1/etc/locale.gen\"",
    'chroot "$1" locale-gen',
    'rm -f "$1"/etc/ssh/ssh_host_*',
    ': > "$1/etc/machine-id"',
    'rm -f "$1/var/lib/dbus/machine-id"',
    f'printf %s {shlex.quote(CLOUD_CFG)} > "$1/etc/cloud/cloud.cfg.d/90_boot_lab.cfg"',
)


def cache_folder() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or DEFAULT_CACHE)


@dataclass(frozen=True)
class Recipe:
    suite: str
    packages: tuple[str, ...] = PACKAGES
    mirror: str = MIRROR
    proxy: str = PROXY
    customize: tuple[str, ...] = CUSTOMIZE

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.key}"


def recipe_for(suite: str) -> Recipe:
    if suite not in SUITES:
        raise LabError(f"unknown image {suite!r}; choose one of: {', '.join(SUITES)}")
    return Recipe(suite)


@dataclass(frozen=True)
class Image:
    recipe: Recipe
    root: Path
    """The extracted root filesystem: the read-only lower layer of every container."""
    built_seconds: float | None
    """Time to build it, or None when it came from the cache."""
    extracted_seconds: float | None
    """Time to extract the cached tarball, or None when the extracted copy was there."""


def ensure_image(recipe: Recipe, cache: Path | None = None, *, log: Path) -> Image:
    """The image for `recipe`: from the extracted cache, the tarball, or a new build.

    Builds need the caching proxy on the bridge to be running (the lab starts it first).
    """
    folder = (cache or cache_folder()) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"{recipe.name}.tar"
    root = folder / recipe.name
    built = extracted = None
    if not tarball.exists():
        started = time.monotonic()
        _build(recipe, tarball, log)
        built = time.monotonic() - started
    if not (folder / f"{recipe.name}.extracted").exists():
        started = time.monotonic()
        _extract(tarball, root)
        (folder / f"{recipe.name}.extracted").touch()
        extracted = time.monotonic() - started
    prune_older_images(folder, recipe)
    return Image(recipe, root, built, extracted)


def prune_older_images(folder: Path, current: Recipe) -> None:
    """Remove this suite's images of older recipes: nothing can use them any more (one boot
    lab runs at a time on a machine, and it uses the current recipe)."""
    for path in folder.glob(f"{current.suite}-*"):
        if path.name.split(".", 1)[0] == current.name:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _build(recipe: Recipe, tarball: Path, log: Path) -> None:
    if find_program("mmdebstrap") is None:
        raise LabError(f"mmdebstrap is not installed; {INSTALL}")
    partial = tarball.with_suffix(".partial.tar")
    command = [
        program("mmdebstrap"),
        "--variant=minbase",
        f"--include={','.join(recipe.packages)}",
        f'--aptopt=Acquire::http::Proxy "{recipe.proxy}"',
        *(f"--customize-hook={hook}" for hook in recipe.customize),
        recipe.suite,
        str(partial),
        recipe.mirror,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        result = subprocess.run(  # noqa: S603 - the recipe's fixed command
            command, stdout=output, stderr=subprocess.STDOUT, check=False, timeout=900
        )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"building the {recipe.suite} image failed; {log} ends:\n{tail}")
    partial.rename(tarball)


def _extract(tarball: Path, root: Path) -> None:
    partial = root.with_name(root.name + ".partial")
    for leftover in (partial, root):
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir()
    # Numeric owners: the image's users are not this machine's; xattrs keep file capabilities.
    result = subprocess.run(  # noqa: S603
        [
            program("tar"),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(partial),
            "-xf",
            str(tarball),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(partial)
        raise LabError(f"extracting {tarball} failed: {result.stderr.strip()}")
    partial.rename(root)


def package_versions(root: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions inside a root filesystem, read from its dpkg status file."""
    versions: dict[str, str] = {}
    status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") in packages and "installed" in fields.get("Status", ""):
            versions[fields["Package"]] = fields.get("Version", "?")
    return versions
