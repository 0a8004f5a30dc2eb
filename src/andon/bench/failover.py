"""``andon bench failover``: kill -9 of the active node during a steady stream, N times.

A redundant pair of ``andon server`` nodes (one configuration; the arbiter is the historian
database: a SQLite file shared by nodes on one host by default, or PostgreSQL), a broker, and an
``andon edge`` whose simulator records every value it produces, waiting for the domain's
primary host. Each trial kills the active node with SIGKILL, measures the time until the
standby holds the lease and until it is active (spool written, MES re-derived, primary host
online), then restarts the killed node, which rejoins as passive. At the end the edge stops and
every recorded value is looked up in the history: values lost and values duplicated are counted,
never estimated. Lease timings are the defaults (ttl 3 s, renewals every second) unless given.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from andon.bench.brokers import bench_broker
from andon.bench.report import Figure
from andon.testing.cluster_rig import ClusterRig, EdgeSpec
from andon.testing.processes import wait_until

__all__ = ["run_failover"]

Progress = Callable[[str, float, float], None]

#: Target of DESIGN.md §9.
TARGET_S = 5.0
#: 10 machines x 20 tags, states compressed 30x: about a hundred values a second.
SIMULATOR = {"machines": 10, "tags_per_machine": 20, "time_scale": 30.0, "seed": 21}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_failover(
    *,
    trials: int = 10,
    database_url: str | None = None,
    broker: str = "nats",
    lease_ttl_ms: int | None = None,
    values_between: int = 300,
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> list[Figure]:
    if trials < 1:
        raise ValueError("trials must be at least 1")
    with tempfile.TemporaryDirectory(prefix="andon-bench-failover-") as tmp:
        work = workdir or Path(tmp)
        url = database_url or f"sqlite:///{work / 'failover.db'}"
        broker_process = bench_broker(broker, work / "broker")
        try:
            rig = ClusterRig(
                work / "cluster",
                mqtt_port=broker_process.port,
                database_url=url,
                nodes=["a", "b"],
                edges=[EdgeSpec(simulator=SIMULATOR, poll_interval_s=0.1)],
                lease_ttl_ms=lease_ttl_ms,
                renew_interval_ms=None,
                demote_margin_ms=None,
            )
            with rig:
                to_lease, to_active, produced = _trials(rig, trials, values_between, progress)
                if rig.stop_edges() != [0]:
                    raise RuntimeError(f"the edge did not stop cleanly\n{rig.describe()}")
                result = rig.wait_for_history(timeout=300)
        finally:
            broker_process.stop()
    lost = len(result.missing)
    duplicated = result.total_rows - (result.distinct_keys - lost)
    conditions: dict[str, object] = {
        "trials": trials,
        "database": url.split(":", 1)[0],
        "broker": broker,
        "lease_ttl_ms": lease_ttl_ms or 3000,
        "values": result.recorded_values,
        "values_during_trials": produced,
    }
    active_max = max(to_active)
    return [
        Figure("failover", "kill -9 to standby active, median", statistics.median(to_active),
               "s", f"<= {TARGET_S:g} s", statistics.median(to_active) <= TARGET_S,
               conditions=conditions),
        Figure("failover", "kill -9 to standby active, max", active_max, "s",
               f"<= {TARGET_S:g} s", active_max <= TARGET_S, conditions=conditions),
        Figure("failover", "kill -9 to lease taken, median", statistics.median(to_lease), "s",
               conditions=conditions),
        Figure("failover", "values lost", lost, "values", "0", lost == 0,
               conditions=conditions),
        Figure("failover", "values duplicated", duplicated, "values", "0", duplicated == 0,
               conditions={**conditions, "mismatched": len(result.mismatched)}),
    ]  # fmt: skip


def _trials(
    rig: ClusterRig, trials: int, values_between: int, progress: Progress | None
) -> tuple[list[float], list[float], int]:
    rig.start_nodes()
    rig.wait_active(timeout=60)
    rig.start_edges()
    start = rig.wait_recorded(values_between, timeout=120)
    to_lease: list[float] = []
    to_active: list[float] = []
    for trial in range(trials):
        active = rig.wait_active(timeout=60)
        standby = next(name for name in rig.nodes if name != active)
        _wait_role(rig, standby, "passive", f"{standby} is not standing by")
        before = rig.lease()
        killed_ms, killed = _now_ms(), time.monotonic()
        rig.kill(active)
        _wait_role(rig, standby, "active", f"trial {trial + 1}: {standby} never became active")
        to_active.append(time.monotonic() - killed)
        lease = rig.lease()
        if lease is None or before is None or lease.epoch != before.epoch + 1:
            raise RuntimeError(f"trial {trial + 1}: unexpected lease {lease} after {before}")
        to_lease.append((lease.acquired_at_ms - killed_ms) / 1000)
        rig.wait_recorded(rig.recorded_count() + values_between, timeout=120)
        rig.start_nodes([active])  # back as a standby (a node never starts active)
        if progress is not None:
            progress("failover trials", trial + 1, trials)
    return to_lease, to_active, rig.recorded_count() - start


def _wait_role(rig: ClusterRig, node: str, role: str, message: str) -> None:
    wait_until(lambda: rig.node(node).role("plant") == role, 60, message, interval=0.02)
