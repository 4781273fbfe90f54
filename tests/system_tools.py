"""Finding the real tools (haproxy, nginx, cloud-init, mariadbd) the tests run.

Under CI (CI=true) a missing tool is a failure: CI installs them, so a missing one means the
install step broke. Elsewhere the test is skipped with the command that installs it.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "make setup (or bash lab/install-packages.sh)"


def require(tool: str) -> str:
    path = shutil.which(tool) or next(
        (f"{d}/{tool}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{tool}", os.X_OK)),
        None,
    )
    if path:
        return path
    message = f"{tool} is not installed; run: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
