"""Finding the real tools (haproxy, nginx, cloud-init, mariadbd) the tests run.

Under CI (CI=true) a missing tool is a failure: CI installs them, so a missing one means the
install step broke. Elsewhere the test is skipped with the command that installs it.
"""

from __future__ import annotations

import os

import pytest

from lab.processes import INSTALL, find_program


def require(tool: str) -> str:
    path = find_program(tool)
    if path:
        return path
    message = f"{tool} is not installed; {INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
