"""What `python -m lab` prints for a person: the scale-in steps, from the lab's own events.

The line must follow the events (not say "drained" for a node that was stopped without being
drained), or it would hide the very regression the drain guards against.
"""

from __future__ import annotations

from lab.__main__ import drained
from lab.state import Event


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
