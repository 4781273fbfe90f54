"""Command-line arguments checked the way stack settings are: one line per mistake, exit 2.

argparse prints a usage block and echoes a bad value whole (a 100 KB argument, a newline, a
right-to-left override). The commands of this repository (`tools.ami`, `lab`, `lab.boot`) use
`ArgumentParser` from here instead: a usage error is one line that names the argument, quotes
the value cut short with invisible characters escaped, says what is allowed, and exits with
status 2, before anything is read, started or called.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from settings.errors import escaped, shown

USAGE_ERROR = 2
_MESSAGE_LIMIT = 300  # characters of one usage error; argparse's own ones may quote a value
# Pulumi's stack names: letters, digits, hyphens, underscores and dots (an org/project/ prefix
# is not part of a stack file's name).
STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one escaped, cut-short line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        line = escaped(message, _MESSAGE_LIMIT)
        self.exit(USAGE_ERROR, f"{self.prog}: {line}; see `{self.prog} --help`\n")


def usage_error(prog: str, message: str) -> int:
    """Print a usage error found after parsing (one line) and return the exit status."""
    print(f"{prog}: {message}", file=sys.stderr)
    return USAGE_ERROR


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a plain integer from `low` to `high` (no `3_0`, `3.0`, `1e3`)."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,9}", text) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not allowed; use a whole number from {low} to {high}"
            )
        return int(text)

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds from `low` to `high` (no nan, no inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text) if re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text) else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not allowed; use a number of seconds from {low:g} to {high:g}"
            )
        return value

    return parse


def matching(pattern: re.Pattern[str], allowed: str) -> Callable[[str], str]:
    """An argparse type: text that `pattern` matches whole (no trailing newline)."""

    def parse(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(f"{shown(text)} is not allowed; use {allowed}")
        return text

    return parse


stack_name = matching(
    STACK_NAME, "a stack name of letters, digits, hyphens, underscores and dots, e.g. dev"
)
region = matching(REGION, "an AWS region such as eu-west-1")
