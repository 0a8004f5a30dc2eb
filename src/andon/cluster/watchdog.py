"""Kills the process when its lease loop stalls (R-16).

A node whose lease loop cannot run would not call ``on_demote`` on time and could keep acting as
leader in ways no database fence covers (publishing to the broker, commanding equipment). Its
writes already stop at the deadline (``LeaseRunner.token`` checks the clock at each call); the
watchdog ends everything else by ending the process, which a supervisor restarts as passive.

A process that was frozen as a whole (SIGSTOP, a suspended VM) is not killed for it: the
watchdog's own wake-up then comes late as well, and after such a gap it gives the loop a fresh
stall limit. Resumed, the loop sees its deadline passed and demotes, and the node rejoins as
passive.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

__all__ = ["LeaseWatchdog", "kill_this_process"]

log = logging.getLogger(__name__)


def kill_this_process() -> None:
    """SIGKILL: no clean-up handler of a stuck process gets to run (or to hang)."""
    os.kill(os.getpid(), signal.SIGKILL)


class LeaseWatchdog:
    """Calls ``kill`` once ``progress()`` (monotonic) is older than ``stall_limit_s``."""

    def __init__(
        self,
        progress: Callable[[], float],
        stall_limit_s: float,
        *,
        kill: Callable[[], None] = kill_this_process,
        monotonic: Callable[[], float] = time.monotonic,
        check_interval_s: float | None = None,
    ) -> None:
        if stall_limit_s <= 0:
            raise ValueError("the watchdog's stall limit must be positive")
        self._progress = progress
        self._stall_limit_s = stall_limit_s
        self._kill = kill
        self._monotonic = monotonic
        self._check_interval_s = check_interval_s or min(0.1, stall_limit_s / 10)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check = monotonic()
        self._grace_from = self._last_check  # a fresh limit after a whole-process freeze
        self.fired = threading.Event()

    def check(self) -> bool:
        """One check; True if it fired. The thread calls this every ``check_interval_s``."""
        now = self._monotonic()
        if now - self._last_check > self._stall_limit_s:
            log.warning(
                "process was not scheduled for %.1f s (frozen?); lease loop gets a fresh limit",
                now - self._last_check,
            )
            self._grace_from = now
        self._last_check = now
        stalled_for = now - max(self._progress(), self._grace_from)
        if stalled_for <= self._stall_limit_s:
            return False
        log.critical(
            "lease loop stalled for %.1f s (limit %.1f s): killing the process so that it"
            " cannot act as a leader it may no longer be",
            stalled_for,
            self._stall_limit_s,
        )
        self.fired.set()
        self._kill()
        return True

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("watchdog already started")
        self._last_check = self._grace_from = self._monotonic()
        self._thread = threading.Thread(target=self._run, name="lease-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._check_interval_s):
            if self.check():
                return
