"""Finding the real tools (haproxy, nginx, cloud-init, mariadbd) the tests run.

Under CI (CI=true) a missing tool or capability is a failure: CI installs the tools and runs as
root, so a missing one means the install step broke. Elsewhere the test is skipped with what
to do about it.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from lab.processes import INSTALL, find_program


def require(tool: str) -> str:
    path = find_program(tool)
    if not path:
        unavailable(f"{tool} is not installed; {INSTALL}")
    return path


def unavailable(message: str) -> NoReturn:
    """A test cannot run here: a failure under CI (CI=true), a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
