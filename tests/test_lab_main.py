"""What `python -m lab` prints for a person: the scale-in steps, from the lab's own events.

The line must follow the events (not say "drained" for a node that was stopped without being
drained), or it would hide the very regression the drain guards against. And what `release`
takes: the app's package folder, whose every module ships.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.__main__ import drained, parser, usage_problem
from lab.state import Event
from userdata import web_node_config

ROOT = Path(__file__).resolve().parent.parent


def test_a_scaled_in_node_shows_its_record_removal_haproxy_letting_go_and_its_stop() -> None:
    events = [
        Event(10.0, "switched", "web-3", "lab-web-3-1"),
        Event(15.5, "followed", "web-3", "lab-web-3-1"),
        Event(15.75, "drained", "web-3", "lab-web-3-1"),
        Event(17.0, "retired", "web-3", "lab-web-3-1"),
    ]
    assert drained(events) == [
        "web-3: record removed; HAProxy let go after 5.5 s, its sessions ended after 5.8 s, "
        "stopped after 7.0 s"
    ]


def test_a_replaced_node_is_not_reported_as_drained() -> None:
    events = [
        Event(1.0, "ready", "web-1", "lab-web-1-2"),
        Event(1.1, "switched", "web-1", "lab-web-1-2"),
        Event(2.0, "followed", "web-1", "lab-web-1-2"),
        Event(3.0, "retired", "web-1", "lab-web-1-1"),
    ]
    assert drained(events) == []


def test_release_takes_the_apps_package_folder_and_ships_each_of_its_modules(
    tmp_path: Path,
) -> None:
    """A release of one module alone would leave the others at their old version, or missing."""
    app = tmp_path / "my_web_app"
    shutil.copytree(ROOT / "userdata" / "web_app", app)
    (app / "routes.py").write_text((app / "routes.py").read_text() + "# changed\n")
    assert usage_problem(parser().parse_args(["release", str(app)])) is None
    modules = web_node_config.app_files(app)
    assert set(modules) == {p.name for p in (ROOT / "userdata" / "web_app").glob("*.py")}
    assert modules["routes.py"].endswith(b"# changed\n")


@pytest.mark.parametrize("what", ["a module", "a folder without __init__.py"])
def test_release_refuses_anything_but_the_apps_package_folder(tmp_path: Path, what: str) -> None:
    (tmp_path / "web_app.py").write_text("application = None\n")
    app = tmp_path / "web_app.py" if what == "a module" else tmp_path
    problem = usage_problem(parser().parse_args(["release", str(app)]))
    assert problem is not None
    assert problem.startswith("argument app: ")
    assert "is not the app's package folder" in problem
