"""``andon bench scale`` charges the server with the CPU and memory of its child processes (the
historian's insert process does a large share of its work)."""

from __future__ import annotations

import os
import subprocess
import sys

from andon.bench.scale import process_cpu_seconds, process_rss_mib

_BURN = (
    "import sys, time\n"
    "end = time.process_time() + 0.4\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def _children_cpu_seconds() -> float:
    """What the tree adds to this process's own CPU time (children live and reaped)."""
    times = os.times()
    return process_cpu_seconds(os.getpid()) - (times.user + times.system)


def test_a_child_s_cpu_and_memory_count_for_its_parent() -> None:
    before = _children_cpu_seconds()  # earlier tests' children, reaped
    child = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "burnt\n"
        assert _children_cpu_seconds() - before >= 0.35  # its 0.4 s, in 10 ms clock ticks
        assert process_rss_mib(os.getpid()) > process_rss_mib(child.pid) > 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    # Reaped: still counted (the parent's cutime), as a child that ended mid-measure must be.
    assert _children_cpu_seconds() - before >= 0.35
