"""Pin the stack's images: Canonical's current Ubuntu 24.04 AMI for each CPU architecture it uses.

The image is an explicit input of the stack (`web-infra:amiIds`, one AMI per architecture), so an
image bump is a reviewed change: this command looks up Canonical's current image in the stack's
region (from Canonical's public SSM parameters, as the program does for unpinned architectures),
prints what is pinned and what is current, and with `--write` pins the current ones in
`Pulumi.<stack>.yaml`. The pull request that carries that change shows, in its preview, a rolling
replacement of exactly the instances of that architecture.

    uv run python -m tools.ami --stack dev            # compare
    uv run python -m tools.ami --stack dev --write    # pin (edits only the amiIds block)

Needs AWS credentials that may call ssm:GetParameter (any account: the parameters are public).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from components.hardened_instance import UBUNTU_AMI_PARAMETER
from settings import SettingsError, load_stack_file, read_stack_config
from settings.errors import escaped, shown
from settings.instance_types import cpu_architecture
from settings.keys import NAMESPACE
from tools import arguments

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m tools.ami"
KEY = f"{NAMESPACE}:amiIds"


def architectures_in_use(stack_file: Path) -> list[str]:
    settings = load_stack_file(stack_file)
    return sorted(
        {
            cpu_architecture(settings.instance_type),
            cpu_architecture(settings.load_balancer_instance_type),
        }
    )


def current_images(ssm: Any, architectures: list[str]) -> dict[str, str]:
    """Canonical's current Ubuntu 24.04 image per architecture, in the client's region."""
    return {
        arch: ssm.get_parameter(Name=UBUNTU_AMI_PARAMETER.format(arch=arch))["Parameter"]["Value"]
        for arch in architectures
    }


def pin(stack_text: str, images: dict[str, str]) -> str:
    """The stack file with its amiIds block set to `images` and every other line kept."""
    lines = stack_text.splitlines()
    block = [f"  {KEY}:"] + [f"    {arch}: {ami}" for arch, ami in sorted(images.items())]
    start = next((i for i, line in enumerate(lines) if line.startswith(f"  {KEY}:")), None)
    if start is not None:
        end = start + 1
        while end < len(lines) and re.match(r"^ {4,}\S", lines[end]):
            end += 1
        lines[start:end] = block
    else:
        if not any(line.rstrip() == "config:" for line in lines):
            lines.append("config:")
        config = next(i for i, line in enumerate(lines) if line.rstrip() == "config:")
        end = config + 1
        while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
            end += 1
        lines[end:end] = block
    text = "\n".join(lines) + "\n"
    written = (yaml.safe_load(text) or {}).get("config", {}).get(KEY)
    if written != images:
        raise ValueError(f"could not write {KEY} into the stack file; set it by hand")
    return text


def region_of(stack_file: Path) -> str | None:
    region = read_stack_config(stack_file).get("aws:region")
    return str(region) if region else None


def table(pinned: dict[str, str], current: dict[str, str]) -> str:
    rows = [("ARCH", "PINNED", "CANONICAL'S CURRENT", "STATE")]
    for arch, ami in sorted(current.items()):
        state = (
            "not pinned: follows Canonical (replaces on every new image)"
            if arch not in pinned
            else "up to date"
            if pinned[arch] == ami
            else "a newer image exists"
        )
        rows.append((arch, pinned.get(arch, "-"), ami, state))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    )


class Failure(Exception):
    """What stops the command: one line for the user and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def is_file(path: Path) -> bool:
    """Path.is_file, also False for a name too long or with a NUL byte (which raise)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def fetch_current(ssm: Any, region: str, architectures: list[str]) -> dict[str, str]:
    """`current_images`, with AWS's failures as one line each instead of a traceback."""
    try:
        client = ssm or boto3.client("ssm", region_name=region)
        return current_images(client, architectures)
    except NoCredentialsError:
        raise Failure(
            "no AWS credentials found; set AWS_PROFILE (or run `aws configure` or "
            "`aws sso login`): reading Canonical's public image parameters needs credentials "
            "of any account"
        ) from None
    except ClientError as error:
        raise Failure(f"AWS refused: {escaped(str(error), 300)}") from None
    except BotoCoreError as error:
        raise Failure(f"cannot reach AWS in {region}: {escaped(str(error), 300)}") from None


def main(argv: list[str] | None = None, ssm: Any = None) -> int:
    parser = arguments.ArgumentParser(
        prog="python -m tools.ami", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--stack",
        default="dev",
        type=arguments.stack_name,
        help="reads and writes Pulumi.<stack>.yaml",
    )
    parser.add_argument("--region", type=arguments.region, help="default: the stack's aws:region")
    parser.add_argument("--write", action="store_true", help="pin the current images")
    parser.add_argument("--file", type=Path, help="the stack file (default: Pulumi.<stack>.yaml)")
    args = parser.parse_args(argv)
    try:
        run(args, ssm)
    except Failure as failure:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return failure.status
    return 0


def run(args: argparse.Namespace, ssm: Any) -> None:
    stack_file = args.file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not is_file(stack_file):
        raise Failure(
            f"{shown(str(stack_file))} does not exist or is not a file; pass --stack or --file",
            arguments.USAGE_ERROR,
        )
    try:
        settings = load_stack_file(stack_file)
        architectures = architectures_in_use(stack_file)
        region = args.region or region_of(stack_file)
    except SettingsError as error:
        raise Failure(str(error), arguments.USAGE_ERROR) from None
    if not region:
        raise Failure("the stack sets no aws:region; pass --region", arguments.USAGE_ERROR)
    current = fetch_current(ssm, region, architectures)
    print(f"stack {args.stack}, region {region}")
    print(table(settings.ami_ids, current))
    if args.write:
        images = {**settings.ami_ids, **current}
        try:
            stack_file.write_text(pin(stack_file.read_text(), images))
        except (OSError, ValueError) as error:
            raise Failure(f"{stack_file.name} not written: {error}") from None
        print(f"pinned in {stack_file.name}; review the rolling replacement with `pulumi preview`")


if __name__ == "__main__":
    sys.exit(main())
