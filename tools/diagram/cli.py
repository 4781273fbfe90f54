"""Draw the architecture diagram (`docs/architecture.png`) from the Pulumi program itself.

The command: which stack it draws (the dev stack's config, with an optional node count), where
the image and its model fingerprint (`docs/architecture.model.json`) are written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from settings.keys import DB_MODES, EC2_DATABASE_KEYS, RDS_ONLY_KEYS
from tools.diagram.drawing import render
from tools.diagram.registrations import architecture_model
from tools.mocked_program import ROOT, run_program

DEFAULT_OUTPUT = ROOT / "docs" / "architecture.png"
STACK = "dev"


def stack_config(
    stack: str = STACK, web_nodes: int | None = None, db_mode: str | None = None
) -> dict[str, Any]:
    """The stack's `web-infra:` config from Pulumi.<stack>.yaml, with optional overrides; a
    `db_mode` other than the file's drops the other mode's keys (the settings refuse them)."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    namespace = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"] + ":"
    config = {
        key.removeprefix(namespace): value
        for key, value in (document.get("config") or {}).items()
        if key.startswith(namespace)
    }
    if web_nodes is not None:
        config["webNodeCount"] = web_nodes
    if db_mode is not None and db_mode != config.get("dbMode", "rds"):
        other = {
            "rds": EC2_DATABASE_KEYS,
            "ec2": RDS_ONLY_KEYS,
            "colocated": (*RDS_ONLY_KEYS, *EC2_DATABASE_KEYS),
        }[db_mode]
        config = {key: value for key, value in config.items() if key not in other}
        config["dbMode"] = db_mode
    return config


def fingerprint_path(image: Path) -> Path:
    """docs/architecture.png -> docs/architecture.model.json"""
    return image.with_suffix(".model.json")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.diagram", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--web-nodes", type=int, help="web nodes to draw (default: the dev stack's)"
    )
    parser.add_argument(
        "--db-mode", choices=DB_MODES, help="the database to draw (default: the dev stack's)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if shutil.which("dot") is None:
        print(
            "Graphviz `dot` is not installed; run: sudo apt-get install graphviz (or `make setup`)",
            file=sys.stderr,
        )
        return 1
    model = architecture_model(
        run_program(stack_config(web_nodes=args.web_nodes, db_mode=args.db_mode), stack=STACK)
    )
    image = render(model, args.output)
    fingerprint = fingerprint_path(image)
    fingerprint.write_text(model.to_json())
    for path in (image, fingerprint):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0
