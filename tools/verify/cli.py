"""The command line of `tools.verify`: read the outputs, run the checks, print the report.

Exit status 0 when every check passes, 1 when one fails, 2 for a usage error (a bad argument,
or outputs that cannot be read), argparse style."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, NoReturn

from tools.verify.aws import (
    aws_session,
    check_database,
    check_load_balancer,
    check_security_groups,
    check_web_nodes,
)
from tools.verify.certificate import check_certificate
from tools.verify.database_hosts import check_database_hosts
from tools.verify.http_checks import check_http
from tools.verify.monitoring import check_monitoring
from tools.verify.outputs import Outputs, OutputsError, on_rds, parse_outputs
from tools.verify.report import MAX_VALUE_CHARS, Check, cut, render_table, shorten, summary

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

MAX_TIMEOUT_SECONDS = 300.0
MAX_READ_BACK_SECONDS = 3600.0
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
""" An AWS region name: eu-west-1, us-gov-west-1, ap-southeast-4."""


def check_aws(outputs: Outputs, session: Any) -> list[Check]:
    """Every AWS check, in report order. An AWS API error fails the checks it stopped."""
    from botocore.config import Config  # noqa: PLC0415

    # Fail in seconds, not minutes, when AWS (or AWS_ENDPOINT_URL) does not answer.
    config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3})
    ec2 = session.client("ec2", config=config)
    rds = session.client("rds", config=config)
    checks: list[Check] = []
    checks += _guarded("load balancer", lambda: check_load_balancer(ec2, outputs))
    checks += _guarded("web nodes", lambda: check_web_nodes(ec2, outputs))
    checks += _guarded("security groups", lambda: check_security_groups(ec2, outputs))
    if on_rds(outputs):
        checks += _guarded("database", lambda: check_database(rds, outputs))
    else:
        checks += _guarded("database", lambda: check_database_hosts(ec2, outputs))
    checks += _guarded("monitoring", lambda: check_monitoring(session, config, outputs))
    return checks


def _guarded(what: str, run: Callable[[], list[Check]]) -> list[Check]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        return run()
    except (BotoCoreError, ClientError) as error:
        return [Check(what, "AWS answers", f"AWS error: {error}", False)]


def run_checks(
    outputs: Outputs,
    *,
    session: Any | None = None,
    skip_aws: bool = False,
    skip_http: bool = False,
    timeout: float = 5.0,
    read_back_seconds: float = 5.0,
) -> list[Check]:
    checks: list[Check] = []
    if not skip_aws:
        checks += check_aws(outputs, session if session is not None else aws_session(outputs))
    if not skip_http:
        checks += check_http(outputs, timeout=timeout, read_back_seconds=read_back_seconds)
        if outputs.https_enabled:
            checks.append(check_certificate(outputs.https_url, timeout=timeout))
    return checks


class _Parser(argparse.ArgumentParser):
    """argparse, with any long value in an error cut short (a 100 KB argument would bury the
    message that names it)."""

    def error(self, message: str) -> NoReturn:
        long_token = rf"\S{{{MAX_VALUE_CHARS + 1},}}"
        super().error(re.sub(long_token, lambda m: cut(m[0]), message))


def _seconds(*, above_zero: bool, at_most: float) -> Callable[[str], float]:
    """An argparse type for a duration: a finite number in range. `nan` or `inf` would make the
    read-back loop wait forever, and a zero or negative timeout fails every request, which the
    report would blame on the site."""
    rule = f"above 0 and at most {at_most:g}" if above_zero else f"from 0 to {at_most:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > at_most or value < 0 or (above_zero and value == 0):
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds {rule}, got {shorten(text)}"
            )
        return value

    return parse


def _region(text: str) -> str:
    if not _REGION.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected an AWS region name like eu-west-1, got {shorten(text)}"
        )
    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m tools.verify",
        description="Check a deployed web-infra stack against the design.",
        epilog=(
            "Exit status: 0 all checks pass, 1 a check failed, 2 a usage error (bad arguments "
            "or unusable outputs)."
        ),
    )
    parser.add_argument(
        "--outputs",
        required=True,
        metavar="FILE",
        help="JSON of `pulumi stack output --json`; `-` reads standard input",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--skip-aws", action="store_true", help="do not call the AWS APIs")
    parser.add_argument("--skip-http", action="store_true", help="do not call the site")
    parser.add_argument(
        "--region", type=_region, help="AWS region (default: environment, then RDS endpoint)"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds(above_zero=True, at_most=MAX_TIMEOUT_SECONDS),
        default=5.0,
        metavar="S",
        help=f"per HTTP request, above 0 and at most {MAX_TIMEOUT_SECONDS:g} (default 5)",
    )
    parser.add_argument(
        "--read-back-seconds",
        type=_seconds(above_zero=False, at_most=MAX_READ_BACK_SECONDS),
        default=5.0,
        metavar="S",
        help=(
            f"how long to poll for a written message, 0 to {MAX_READ_BACK_SECONDS:g} (default 5)"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns its exit status (argparse's usage errors and `--help`
    included, so that callers and tests get a status, not an exception)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.skip_aws and args.skip_http:
            parser.error("--skip-aws and --skip-http together leave nothing to check")
        try:
            if args.outputs == "-":
                text = sys.stdin.read()
            else:
                with open(args.outputs, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError, ValueError) as error:
            parser.error(f"argument --outputs: cannot read the outputs: {error}")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_BAD_INPUT
    try:
        outputs = parse_outputs(text)
    except OutputsError as error:
        print(f"tools.verify: {cut(args.outputs)}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    session = None
    if not args.skip_aws:
        session = aws_session(outputs, args.region)
    checks = run_checks(
        outputs,
        session=session,
        skip_aws=args.skip_aws,
        skip_http=args.skip_http,
        timeout=args.timeout,
        read_back_seconds=args.read_back_seconds,
    )
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render_table(checks))
        print(summary(checks))
    return EXIT_OK if ok else EXIT_FAILED
