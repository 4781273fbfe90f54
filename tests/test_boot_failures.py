"""First boot while the RDS CA bundle URL and the secret store are out of reach.

On AWS a web node can boot before its NAT route, its VPC endpoints or RDS are ready. The
boot lab takes the truststore and the AWS API stand-ins off the bridge before the hosts boot
(their addresses removed: a container's connection fails with "no route to host" after ARP
gives up, as an unreachable endpoint does) and checks that:

- no boot step blocks for more than BOUND_SECONDS: every web node finishes cloud-init within
  NORMAL_BOOT_SECONDS + BOUND_SECONDS of its start;
- the node then is in a defined state: its services active, `/health` 200, reads 503 with a
  JSON reason (through the load balancer too);
- when the stand-ins come back, the tier serves again (round robin, a write read back from the
  replica) within RECOVERY_SECONDS, without a reboot.

Run on trixie, the image on which the whole database path works (see test_boot_e2e).
"""

from __future__ import annotations

import time

import pytest
from boot_support import TEST_STATE, boot_lab, require_boot_capabilities

from components.web_infrastructure import userdata_for
from lab import checks
from lab.boot import inspect
from lab.boot.bootlab import BootLab
from lab.boot.standins import MOTO_ACCOUNT
from userdata.cloud_config import RDS_CA_URL, parse

BOUND_SECONDS = 120.0
"""The longest any boot step may wait for an AWS endpoint."""
NORMAL_BOOT_SECONDS = 75.0
"""A web node's first boot with everything reachable (about 55 s here, warm apt cache)."""
RECOVERY_SECONDS = 60.0
STAND_INS = ("truststore", "aws-api")
IMAGE = "trixie"


def ca_download_is_bounded(userdata: str) -> bool:
    """False while runcmd downloads the RDS CA bundle with curl retries but no time limit."""
    for command in parse(userdata).get("runcmd", []):
        words = command if isinstance(command, list) else str(command).split()
        if RDS_CA_URL in words and "curl" in words[0]:
            limits = {"--max-time", "-m", "--retry-max-time", "--connect-timeout"}
            return bool(limits & set(words)) or words[0] == "timeout"
    return True  # no such download in runcmd any more: the timing check below decides


def wait_until_web_nodes_finish_cloud_init(lab: BootLab, deadline_after: float) -> list[str]:
    """Web nodes whose cloud-init is still running `deadline_after` s after their start."""
    state = lab.load()
    web = [host for host in state.hosts if host.role == "web"]
    while True:
        running = []
        for host in web:
            container = lab.container(host)
            if inspect.cloud_init_status(container) not in ("done", "error"):
                running.append(host.name)
        started = min(host.started_at or 0 for host in web)
        if not running or time.time() - started > deadline_after:
            return running
        time.sleep(2)


def blocked_step(lab: BootLab, name: str) -> str:
    """What cloud-init is waiting for on host `name`: its youngest descendants' commands."""
    container = lab.container(lab.load().host(name))
    table = container.execute("ps", "-eo", "pid=,ppid=,etimes=,args=").stdout
    rows = [line.split(None, 3) for line in table.splitlines() if len(line.split(None, 3)) == 4]
    parents = {pid: ppid for pid, ppid, _, _ in rows}

    def under_cloud_init(pid: str) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if any(p == pid and "cloud-init" in args for p, _, _, args in rows):
                return True
        return False

    leaves = [
        f"{args} (for {seconds} s)"
        for pid, _, seconds, args in rows
        if under_cloud_init(pid)
        and pid not in parents.values()
        # cloud-init's own plumbing: its log's tee and cloud-init 25's stage sockets
        and not args.startswith(("tee ", "nc -U", "/bin/sh -c tee"))
        and args != "sh"
    ]
    return "; ".join(leaves) or "(no step of cloud-init is running)"


def test_stand_ins_back_during_boot_the_node_serves() -> None:
    """The endpoints come back 20 s into the boot: the retries pick them up."""
    require_boot_capabilities()
    with boot_lab(TEST_STATE / "failures-back", image=IMAGE, withhold=STAND_INS, wait=False) as lab:
        time.sleep(20)
        for name in STAND_INS:
            lab.restore(name)
        still = wait_until_web_nodes_finish_cloud_init(lab, NORMAL_BOOT_SECONDS + BOUND_SECONDS)
        assert not still, f"still booting: {still}: {blocked_step(lab, still[0])}"
        state = lab.load()
        nodes = [h.name for h in state.hosts if h.role == "web"]
        result = checks.wait_for(
            lambda: checks.check_round_robin(lab.url().rstrip("/"), nodes, 5), RECOVERY_SECONDS
        )
        assert result.ok, result.found


def test_stand_ins_away_past_the_bound_boot_ends_defined_and_recovers(
    request: pytest.FixtureRequest,
) -> None:
    require_boot_capabilities()
    with boot_lab(TEST_STATE / "failures-away", image=IMAGE, withhold=STAND_INS, wait=False) as lab:
        state = lab.load()
        _, web_userdata = userdata_for(state.settings_object(), state.region, MOTO_ACCOUNT)
        if not ca_download_is_bounded(next(iter(web_userdata.values()))):
            request.applymarker(
                pytest.mark.xfail(
                    strict=True,
                    reason="the web nodes' runcmd retries the RDS CA download with curl "
                    "--retry 10 --retry-all-errors and no time limit: it blocks boot ~1,023 s",
                )
            )
        still = wait_until_web_nodes_finish_cloud_init(lab, NORMAL_BOOT_SECONDS + BOUND_SECONDS)
        assert not still, (
            f"cloud-init still running {NORMAL_BOOT_SECONDS + BOUND_SECONDS:.0f} s after boot "
            f"on {', '.join(still)}; blocked in: {blocked_step(lab, still[0])}"
        )

        nodes = [h for h in state.hosts if h.role == "web"]
        for host in nodes:
            container = lab.container(host)
            services = inspect.services(container, "web")
            assert inspect.services_ok(services), f"{host.name}: {services}"
            defined = checks.check_database_unavailable(f"http://{host.address}")
            assert defined.ok, f"{host.name}: {defined.found}"
        through_lb = checks.check_database_unavailable(lab.url())
        assert through_lb.ok, through_lb.found

        for name in STAND_INS:
            lab.restore(name)
        names = [h.name for h in nodes]
        serving = checks.wait_for(
            lambda: checks.check_round_robin(lab.url().rstrip("/"), names, 5), RECOVERY_SECONDS
        )
        assert serving.ok, f"not serving {RECOVERY_SECONDS:.0f} s after recovery: {serving.found}"
        written = checks.check_read_back_from_replica(lab.url())
        assert written.ok, written.found
