"""The dynamic providers stored in a stack's state keep loading after a refactor.

Pulumi unpickles a resource's provider from the state for every later diff, update, refresh and
delete. `tests/fixtures/*_by_value.b64` were serialized by this code (`components.by_value`)
as `pulumi up` stores them; they must load in a fresh interpreter where `components` does not
resolve at all, as after a rename. `*_by_reference.b64` were serialized by the code before
(a reference to `components.<module>.<class>`), as stacks deployed then hold them; they must
keep loading from the project. Both are loaded the way Pulumi's dynamic-provider process does
(`dill.loads` of the base64 text) and then used.

The pickles hold Python bytecode, which only the Python minor version that wrote them reads
(a limit of Pulumi's Python dynamic providers): a failure here after a Python upgrade means a
deployed stack's gates would fail the same way.
"""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.by_value import by_value
from components.readiness_wait import ReadinessProvider

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# Runs in a fresh interpreter: loads a stored provider, uses it, prints what it answered.
LOAD_AND_USE = """
import base64, json, sys
import dill

if sys.argv[2] == "hidden":
    sys.modules["components"] = None  # `import components...` now fails, as after a rename
provider = dill.loads(base64.b64decode(open(sys.argv[1]).read()))
old = {"host": "web-3", "instance_id": "i-1", "userdata_sha256": "a", "parameter_name": "p",
       "address": "10.20.128.12", "records": {"web-3": "10.20.128.12"}, "seconds": 0}
new = {**old, "instance_id": "i-2", "address": "10.20.129.40", "records": {}}
diff = provider.diff("id", old, new)
answer = {"class": type(provider).__name__, "changes": diff.changes, "replaces": diff.replaces}
if hasattr(provider, "delete"):
    provider.delete("id", new)  # the drain's wait (0 s here); a no-op for the others
answer["components_loaded"] = sorted(m for m in sys.modules if m.startswith("components"))
print(json.dumps(answer))
"""


def run_loader(blob: Path, components: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`components`: "importable" (run in the project, as Pulumi does) or "hidden" (run
    elsewhere, and any import of `components` fails)."""
    return subprocess.run(
        [sys.executable, "-c", LOAD_AND_USE, str(blob), components],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_and_use(blob: Path, components: str, cwd: Path = ROOT) -> dict[str, object]:
    result = run_loader(blob, components, cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


EXPECTED = {
    "readiness_provider": ("ReadinessProvider", True, ["instance_id"]),
    "propagation_wait_provider": ("PropagationWaitProvider", True, []),
    "drain_provider": ("DrainProvider", True, []),
}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_a_provider_stored_by_this_code_loads_where_its_module_is_gone(
    provider: str, tmp_path: Path
) -> None:
    answer = load_and_use(FIXTURES / f"{provider}_by_value.b64", "hidden", cwd=tmp_path)
    name, changes, replaces = EXPECTED[provider]
    assert answer["class"] == name
    assert answer["changes"] is changes
    assert answer["replaces"] == replaces
    assert answer["components_loaded"] == ["components"], "only the blocked name, never loaded"


@pytest.mark.parametrize("provider", ["readiness_provider", "propagation_wait_provider"])
def test_a_provider_stored_before_still_loads_from_the_project(provider: str) -> None:
    blob = FIXTURES / f"{provider}_by_reference.b64"
    # What today's deployed stacks hold: a name, nothing else.
    assert b"components." in pickle_bytes(blob)
    answer = load_and_use(blob, "importable")
    name, changes, replaces = EXPECTED[provider]
    assert answer["class"] == name
    assert answer["changes"] is changes
    assert answer["replaces"] == replaces


def test_a_provider_stored_before_fails_where_its_module_is_gone(tmp_path: Path) -> None:
    """The risk the by-value form removes: a reference stops loading after a rename (and so
    does this check's way of hiding the module)."""
    result = run_loader(FIXTURES / "readiness_provider_by_reference.b64", "hidden", tmp_path)
    assert result.returncode != 0
    assert "No module named 'components.readiness_gate'" in result.stderr


def test_providers_are_stored_by_value_now() -> None:
    serialized = serialize_provider(by_value(ReadinessProvider)())
    assert b"components.readiness_gate" not in pickle_bytes_of(serialized)
    assert b"components.readiness_wait" not in pickle_bytes_of(serialized)
    # Deterministic within a version of the code, so a preview shows no change to the gates.
    assert serialized == serialize_provider(by_value(ReadinessProvider)())


def test_serializing_many_providers_does_not_nest_the_sdks_pickler_wrappers() -> None:
    """pulumi's serialize_provider wraps pickle's `_batch_setitems` once more on every call;
    without unwinding, the 300th gate of a process fails with RecursionError."""
    for _ in range(3):
        serialize_provider(by_value(ReadinessProvider)())
    wrapper = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
    assert wrapper.__closure__[0].cell_contents.__module__ == "pickle", "one wrapper at most"


def pickle_bytes(blob: Path) -> bytes:
    return pickle_bytes_of(blob.read_text())


def pickle_bytes_of(serialized: str) -> bytes:
    return base64.b64decode(serialized)
