"""One database server as a worker process sees it: its idle connections (reused, so a call
needs no new TLS handshake), a bulkhead (a few request threads at a time) and a breaker (after
repeated failures the server is skipped for a while). Changes when the app's policy for a slow
or failing server does; which server answers what is `database`'s business.
"""

import logging
import threading
from contextlib import suppress

from .failures import NotTried

log = logging.getLogger("web_app")

BREAKER_FAILURES, BREAKER_OPEN_SECONDS = 3, 2.0
# A request that finds every slot of a host taken waits up to SLOT_WAIT_SECONDS for one, but
# only while the oldest call holding a slot is younger than HUNG_AFTER_SECONDS: on a saturated
# machine healthy calls take tens of milliseconds (busy, not hung: when any call older than
# 0.1 s counted as hung, about 1 write in 100 was refused under the benchmark's load); behind a
# call that old the host may hang, and the request does not wait. The wait stays short because
# a waiting request holds one of gunicorn's threads, which /health needs too.
SLOT_WAIT_SECONDS, HUNG_AFTER_SECONDS = 0.1, 0.5


def close(connection):
    with suppress(Exception):  # a broken connection may fail to say goodbye
        connection.close()


class Host:
    """One server: idle connections, a bulkhead (`slots` request threads; another waits
    only while their calls are young: busy, not hung) and a breaker, which only the upkeep
    thread probes once open, so that no request waits on a hung host."""

    def __init__(self, name, slots, clock):
        self.name, self.clock = name, clock
        self.slots, self.pool_size = threading.BoundedSemaphore(slots), slots + 1
        self.lock = threading.Lock()
        self.calls = []  # when each call holding a slot started
        self.idle = []  # (connection, when it was given back), newest last
        self.failed, self.open_until, self.probing = 0, None, False

    def enter(self, probe):
        with self.lock:
            if self.open_until is not None:
                if not (probe and not self.probing and self.clock() >= self.open_until):
                    raise NotTried(f"{self.name} failed repeatedly and is skipped for now")
                self.probing = True
            young = self.calls and self.clock() - min(self.calls) < HUNG_AFTER_SECONDS
        if probe:
            return None
        if not self.slots.acquire(blocking=False) and not (
            young and self.slots.acquire(timeout=SLOT_WAIT_SECONDS)
        ):
            raise NotTried(f"{self.name} is busy with slow calls")
        with self.lock:
            self.calls.append(self.clock())
            return self.calls[-1]

    def leave(self, slot, ok):
        with self.lock:
            self.probing = False
            if slot is not None:
                self.calls.remove(slot)
                self.slots.release()
            if ok:
                if self.open_until is not None:
                    log.warning("%s answers again", self.name)
                self.failed, self.open_until = 0, None
                return
            self.failed += 1
            if self.open_until is None and self.failed >= BREAKER_FAILURES:
                log.warning("%s failed %d times in a row; skipped for now", self.name, self.failed)
            if self.open_until is not None or self.failed >= BREAKER_FAILURES:
                self.open_until = self.clock() + BREAKER_OPEN_SECONDS

    def take(self):
        with self.lock:
            return self.idle.pop() if self.idle else (None, 0.0)

    def give_back(self, connection):
        with self.lock:
            if len(self.idle) < self.pool_size:
                self.idle.append((connection, self.clock()))
                return
        close(connection)
