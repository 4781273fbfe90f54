"""Pytest fixtures. The AWS-like Pulumi mocks live in `tools/mocked_program.py`, shared with
`make diagram`, and are re-exported here for the tests."""

from __future__ import annotations

import pytest

from tools.mocked_program import (
    REGION,
    AwsMocks,
    ProgramRun,
    Registration,
    run_program,
)

__all__ = ["REGION", "AwsMocks", "ProgramRun", "Registration", "run_program"]


@pytest.fixture(scope="session")
def default_run() -> ProgramRun:
    """The program with the dev stack's defaults, run once for the tests that only read it."""
    return run_program()
