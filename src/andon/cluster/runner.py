"""The lease loop: one thread drives a ``LeaseKeeper`` per domain against an ``Arbiter``.

Arbiter calls run on a single worker thread and the loop waits for each at most
``call_timeout_s``: a database cut off by a partition (whose TCP connection may hang for
minutes) is then just an arbiter error, and the loop keeps ticking, so the holder still demotes
on its own clock before its lease can expire. A call that timed out keeps the worker busy; later
calls fail at once until it returns, and a lease it granted late is released straight away.

``on_promote(domain, epoch)`` and ``on_demote(domain, reason)`` run on the loop thread and must
be quick: the watchdog kills a process whose loop stalls (``andon.cluster.watchdog``).
``token(domain)`` may be called from any thread; it checks the local deadline at the moment of
the call, not only at ticks.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from andon.cluster.arbiter import Arbiter
from andon.cluster.lease_keeper import (
    Demote,
    KeeperAction,
    LeaseKeeper,
    Promote,
    Release,
    Renew,
    TryAcquire,
)
from andon.cluster.model import ArbiterError, FencingToken, Lease, Role
from andon.cluster.plan import ClusterPlan

__all__ = ["LeaseRunner"]

log = logging.getLogger(__name__)

T = TypeVar("T")
PromoteCallback = Callable[[str, int], None]
DemoteCallback = Callable[[str, str], None]


def _ignore_promote(_domain: str, _epoch: int) -> None:
    """Default callback: nothing to switch on."""


def _ignore_demote(_domain: str, _reason: str) -> None:
    """Default callback: nothing to switch off."""


class LeaseRunner:
    """Leads (or waits to lead) every domain of ``plan`` this node is a candidate of."""

    def __init__(
        self,
        arbiter: Arbiter,
        plan: ClusterPlan,
        *,
        on_promote: PromoteCallback = _ignore_promote,
        on_demote: DemoteCallback = _ignore_demote,
        monotonic: Callable[[], float] = time.monotonic,
        info: Callable[[], Mapping[str, Any]] | None = None,
        call_timeout_s: float | None = None,
        max_wait_s: float = 0.25,
        holdoff_ms: int | None = None,
    ) -> None:
        self._arbiter = arbiter
        self._plan = plan
        self._node = plan.node_id
        self._timing = plan.timing
        self._on_promote = on_promote
        self._on_demote = on_demote
        self._monotonic = monotonic
        self._info = info
        self._renew_interval_s = plan.timing.renew_interval_ms / 1000
        self._call_timeout_s = call_timeout_s or self._renew_interval_s
        self._max_wait_s = max_wait_s
        now = monotonic()
        self._keepers = {
            domain.name: LeaseKeeper(
                self._node,
                domain.name,
                plan.timing,
                now=now,
                # Nodes started together first see each other's heartbeats, so that the
                # preferred one wins; pointless for a sole or unranked candidate. Counted from
                # the runner's construction (default: one renew interval).
                holdoff_ms=(
                    (plan.timing.renew_interval_ms if holdoff_ms is None else holdoff_ms)
                    if len(domain.candidates) > 1
                    else 0
                ),
            )
            for domain in plan.led_domains()
        }
        self._lock = threading.Lock()  # guards the keepers (token() reads them from any thread)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arbiter-call")
        self._busy: Future[Any] | None = None
        self._next_heartbeat = now
        self._progress = now
        self._arbiter_down = False
        self._started_ms = time.time_ns() // 1_000_000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shut_down = False

    # -- what the rest of the node asks -----------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node

    @property
    def last_progress(self) -> float:
        """Monotonic time the loop last completed a step or an arbiter call (for the watchdog)."""
        return self._progress

    def token(self, domain: str) -> FencingToken | None:
        """The fencing token for a write to ``domain`` now; None unless this node leads it."""
        with self._lock:
            keeper = self._keepers.get(domain)
            if keeper is None or not keeper.may_write(self._monotonic()):
                return None
            epoch = keeper.epoch
        assert epoch is not None
        return FencingToken(domain, epoch, self._node, self._plan.fence_timeout_ms)

    def role(self, domain: str) -> Role:
        with self._lock:
            keeper = self._keepers.get(domain)
            return Role.PASSIVE if keeper is None else keeper.role

    def roles(self) -> dict[str, Role]:
        """Role per configured domain (passive where this node is no candidate)."""
        with self._lock:
            return {
                d.name: (self._keepers[d.name].role if d.name in self._keepers else Role.PASSIVE)
                for d in self._plan.domains
            }

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("lease runner already started")
        self._thread = threading.Thread(target=self._run, name="lease-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Demote and release every domain led, then end the loop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._shutdown()
        self._executor.shutdown(wait=False)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                due = self.step()
                self._stop.wait(min(max(0.0, due - self._monotonic()), self._max_wait_s))
        except BaseException:
            log.exception("lease loop failed")
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        for keeper in self._keepers.values():
            with self._lock:
                actions = keeper.stop(self._monotonic())
            self._carry_out(keeper, actions)

    # -- one iteration -----------------------------------------------------------------------

    def step(self) -> float:
        """Heartbeat if due, tick every keeper and carry out what they ask; returns the
        monotonic time something is next due (the loop sleeps at most until then)."""
        now = self._monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._renew_interval_s
            self._heartbeat()
        for keeper in self._keepers.values():
            with self._lock:
                actions = keeper.tick(self._monotonic())
            self._carry_out(keeper, actions)
            self._progress = self._monotonic()
        self._progress = self._monotonic()
        dues = [self._next_heartbeat]
        with self._lock:
            dues.extend(due for k in self._keepers.values() if (due := k.due_at()) is not None)
        return min(dues)

    def _heartbeat(self) -> None:
        info: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at_ms": self._started_ms,
            "roles": {name: role.value for name, role in self.roles().items()},
        }
        if self._info is not None:
            info.update(self._info())
        try:
            self._call(self._arbiter.heartbeat, self._node, info)
        except Exception as error:
            self._arbiter_failed("heartbeat", error)

    def _carry_out(self, keeper: LeaseKeeper, actions: list[KeeperAction]) -> None:
        pending = deque(actions)
        domain = keeper.domain
        ttl_ms = self._timing.ttl_ms
        while pending:
            action = pending.popleft()
            if isinstance(action, TryAcquire):
                try:
                    lease = self._call(
                        self._arbiter.try_acquire, domain, self._node, ttl_ms, late_release=True
                    )
                except Exception as error:
                    self._arbiter_failed(f"acquire {domain}", error)
                    with self._lock:
                        pending.extend(keeper.on_error(self._monotonic(), str(error)))
                    continue
                with self._lock:
                    pending.extend(keeper.on_acquire(self._monotonic(), lease))
            elif isinstance(action, Renew):
                try:
                    lease = self._call(
                        self._arbiter.renew, domain, self._node, action.epoch, ttl_ms
                    )
                except Exception as error:
                    self._arbiter_failed(f"renew {domain}", error)
                    with self._lock:
                        pending.extend(keeper.on_error(self._monotonic(), str(error)))
                    continue
                with self._lock:
                    pending.extend(keeper.on_renew(self._monotonic(), lease))
            elif isinstance(action, Promote):
                log.warning("node %s is now ACTIVE for domain %s (epoch %d)",
                            self._node, domain, action.epoch)  # fmt: skip
                self._callback(self._on_promote, domain, action.epoch)
            elif isinstance(action, Demote):
                log.warning("node %s is now PASSIVE for domain %s: %s",
                            self._node, domain, action.reason)  # fmt: skip
                self._callback(self._on_demote, domain, action.reason)
            elif isinstance(action, Release):
                try:
                    self._call(self._arbiter.release, domain, self._node, action.epoch)
                except Exception as error:  # it expires by itself
                    self._arbiter_failed(f"release {domain}", error)
        self._arbiter_answered()

    def _callback(self, callback: Callable[[str, Any], None], domain: str, value: Any) -> None:
        try:
            callback(domain, value)
        except Exception:
            # Writes stay safe (token() already answers for the new role); say it loudly.
            log.exception("cluster callback %s failed for domain %s", callback, domain)

    # -- arbiter calls -----------------------------------------------------------------------

    def _call(self, function: Callable[..., T], *args: Any, late_release: bool = False) -> T:
        busy = self._busy
        if busy is not None and not busy.done():
            raise ArbiterError("an earlier arbiter call has not returned yet")
        future = self._executor.submit(function, *args)
        self._busy = future
        try:
            return future.result(timeout=self._call_timeout_s)
        except FutureTimeout:
            if late_release:
                future.add_done_callback(self._release_late_grant)
            raise ArbiterError(
                f"arbiter did not answer within {self._call_timeout_s:.2f} s"
            ) from None
        finally:
            self._progress = self._monotonic()

    def _release_late_grant(self, future: Future[Any]) -> None:
        """A takeover granted after the caller gave up: nobody uses it, so give it back."""
        if future.cancelled() or future.exception() is not None:
            return
        lease = future.result()
        if isinstance(lease, Lease) and lease.node == self._node:
            try:
                self._arbiter.release(lease.domain, self._node, lease.epoch)
            except Exception as error:
                log.warning("could not release a late lease of %s: %s", lease.domain, error)

    def _arbiter_failed(self, what: str, error: Exception) -> None:
        if not self._arbiter_down:
            self._arbiter_down = True
            log.error("cluster arbiter unavailable (%s): %s", what, error)
        else:
            log.debug("cluster arbiter still unavailable (%s): %s", what, error)

    def _arbiter_answered(self) -> None:
        busy = self._busy
        if self._arbiter_down and busy is not None and busy.done() and busy.exception() is None:
            self._arbiter_down = False
            log.warning("cluster arbiter available again")
