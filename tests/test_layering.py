"""No import runs upward: the layering is settings and the metric catalogue at the bottom, then
`userdata/`, then `components/`, with `tools/` and `lab/` outside the program.

Guards against the cycle the catalogue once made (settings and userdata importing it from
`components/`, which imports them): an upward import makes a low module load the Pulumi
components, and a change to a component can then break the settings loader or the userdata
builders that the lab and the tools use on their own. Imports are read with `ast`, so a test
that fails names the file, the line and the import.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("components", "userdata", "tools", "lab", "settings", "tests", "examples")

# Which modules may not import which top-level packages of this project.
FORBIDDEN = [
    ("settings", ("components", "tools", "lab")),
    ("userdata", ("components", "tools", "lab")),
    ("components", ("tools", "lab")),
]
CATALOGUE = "userdata/metric_catalog"
APP = "userdata/web_app"
# What a web node's Python has besides the standard library: Ubuntu's python3-pymysql and
# python3-boto3 (userdata.web_node_config.WEB_NODE_PACKAGES).
APP_MAY_IMPORT = frozenset({"pymysql", "boto3", "botocore"})


def python_files(where: str) -> list[Path]:
    path = ROOT / where
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `path`, including ones inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            # `from userdata import cloud_config` imports the submodule.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def upward_imports(where: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in python_files(where):
        for line, module in imports(path):
            if any(module == f or module.startswith(f"{f}.") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize(("where", "forbidden"), FORBIDDEN, ids=[w for w, _ in FORBIDDEN])
def test_no_import_runs_upward(where: str, forbidden: tuple[str, ...]) -> None:
    assert python_files(where), f"{where}: no Python files found; update FORBIDDEN"
    assert upward_imports(where, forbidden) == []


def test_the_catalogue_imports_nothing_of_the_project_but_itself() -> None:
    """The catalogue is the bottom layer: settings, userdata, components and tools all read it."""
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in python_files(CATALOGUE)
        for line, module in imports(path)
        if module.split(".")[0] in PROJECT_PACKAGES
        and not module.startswith("userdata.metric_catalog")
    ]
    assert found == []


def foreign_imports(path: Path) -> list[str]:
    """The modules `path` imports absolutely that are neither the standard library's nor in
    APP_MAY_IMPORT (relative imports, the app's own, are not listed)."""
    allowed = sys.stdlib_module_names | APP_MAY_IMPORT
    return [module for _, module in imports(path) if module.split(".")[0] not in allowed]


def test_the_app_imports_its_own_modules_relatively_and_nothing_of_the_project() -> None:
    """The app ships alone, as the package `web_app` in /opt/web-app: `userdata.web_app.database`
    imports in the tests and fails on a web node, as would a package only pip installs."""
    assert len(python_files(APP)) > 1, f"{APP}: the app's modules not found; update APP"
    found = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in python_files(APP)
        for module in foreign_imports(path)
    ]
    assert found == []


def test_the_check_sees_an_import_the_app_cannot_make_on_a_web_node(tmp_path: Path) -> None:
    module = tmp_path / "routes.py"
    module.write_text(
        "import json\nimport pymysql\nfrom . import database\n"
        "from userdata.web_app import failures\nimport requests\n",
        encoding="utf-8",
    )
    assert foreign_imports(module) == [
        "userdata.web_app",
        "userdata.web_app.failures",
        "requests",
    ]


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an import of components/ from a low module is found, in any form."""
    module = tmp_path / "low.py"
    module.write_text(
        "import json\n"
        "from components.monitoring import Monitoring\n"
        "def late():\n"
        "    import tools.verify\n"
        "from userdata import cloud_config\n",
        encoding="utf-8",
    )
    found = [m for _, m in imports(module)]
    assert "components.monitoring" in found
    assert "tools.verify" in found
    assert "userdata.cloud_config" in found
