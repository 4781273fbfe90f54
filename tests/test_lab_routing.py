"""Reading HAProxy's admin socket: when the lab may stop a node it scaled away.

`scale` stops a removed node only once HAProxy has let go of it. Misreading `show servers
state` (a column off, a flag taken for another) would stop a node HAProxy still sends to, and
users would see failed requests; these cases come from a real HAProxy's answers.
"""

from __future__ import annotations

from lab.routing import ServerSlot, parse_server_states

HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port\n"
)
SERVING = (
    "3 web 1 web-1 127.0.22.101 2 0 1 1 1 1 0 2 6 0 0 0 web-1.dev.web-infra.internal 80 - 0 0 - - 0"
)
# web-3's record deleted: HAProxy dropped the address and put the slot in maintenance (0x20).
LET_GO = "3 web 3 web-3 - 0 32 1 1 6 1 0 0 14 0 0 0 web-3.dev.web-infra.internal 80 - 0 0 - - 0"
# A node that is down (its health check fails) but still has its address: not let go.
DOWN = (
    "3 web 2 web-2 127.0.22.102 0 0 1 1 3 7 2 0 6 0 0 0 web-2.dev.web-infra.internal 80 - 0 0 - - 0"
)
# An operator's maintenance (0x01) keeps the address: HAProxy could be told to use it again.
FORCED = (
    "3 web 4 web-4 127.0.22.104 0 1 1 1 3 7 2 0 6 0 0 0 web-4.dev.web-infra.internal 80 - 0 0 - - 0"
)


def test_each_slot_is_read_by_its_column_names() -> None:
    slots = parse_server_states(HEADER + "\n".join((SERVING, LET_GO, DOWN, FORCED)) + "\n")
    assert slots == {
        "web-1": ServerSlot("127.0.22.101", 2, 0),
        "web-3": ServerSlot("-", 0, 32),
        "web-2": ServerSlot("127.0.22.102", 0, 0),
        "web-4": ServerSlot("127.0.22.104", 0, 1),
    }


def test_only_a_slot_whose_name_stopped_resolving_counts_as_let_go() -> None:
    slots = parse_server_states(HEADER + "\n".join((SERVING, LET_GO, DOWN, FORCED)))
    assert [name for name, slot in slots.items() if slot.unresolved] == ["web-3"]
    assert [name for name, slot in slots.items() if slot.serves] == ["web-1"]


def test_an_answer_without_rows_has_no_slots() -> None:
    assert parse_server_states("") == {}
    assert parse_server_states(HEADER) == {}
