"""How far a benchmarked server's historian has got, without loading the database to find out.

The benchmarks used to poll ``SELECT count(*)`` on the sample table several times a second. On
SQLite that scans the whole table: with millions of rows each count took a good part of a core
from the server being measured. The server's own counter of committed samples (``/metrics``)
costs it nothing; the exact count runs once, at the end, to prove that nothing was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from andon.storage.store import open_historian_store
from andon.testing.processes import AndonProcess, http_get

__all__ = ["committed_samples", "wait_until_stored"]

_COMMITTED = "andon_historian_committed_total"

Progress = Callable[[str, float, float], None]


def committed_samples(http_port: int, host: str = "127.0.0.1") -> int | None:
    """Samples the server's historian writer has committed (duplicates included); None if the
    server did not answer."""
    status, body = http_get(f"http://{host}:{http_port}/metrics", timeout=5.0, token="")
    if status != 200:
        return None
    for line in body.splitlines():
        if line.startswith(_COMMITTED + " "):
            return int(float(line.split()[1]))
    return None


def wait_until_stored(
    database_url: str,
    http_port: int,
    expected: int,
    *,
    server: AndonProcess,
    already_stored: int = 0,
    timeout_s: float = 600.0,
    progress: Progress | None = None,
    also_running: Sequence[AndonProcess] = (),
) -> float:
    """Wait until the historian holds exactly ``expected`` rows; returns ``time.monotonic()``
    of the moment they were all committed.

    The server's commit counter (of this server run, so ``already_stored`` rows are not in it)
    is sampled until it accounts for ``expected``; then the rows are counted in the database.
    Re-sent duplicates make the counter run ahead of the rows, so a short count goes on being
    counted (less often) until it matches or the time is up. Every process of
    ``also_running`` must stay up meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    processes = [server, *also_running]
    while True:
        committed = already_stored + (committed_samples(http_port) or 0)
        if committed >= expected:
            break
        if not all(process.running for process in processes):
            raise RuntimeError(
                "a process died while the historian drained:\n"
                + "\n".join(process.describe() for process in processes)
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {committed:,} of {expected:,} values committed\n{server.describe()}"
            )
        if progress is not None:
            progress("draining into the historian", committed, expected)
        time.sleep(0.1)  # sampling a counter of another process, not waiting for a test
    finished = time.monotonic()
    store = open_historian_store(database_url)
    try:
        while (stored := store.count()) < expected:
            if time.monotonic() > deadline or not server.running:
                raise RuntimeError(
                    f"only {stored:,} of {expected:,} values stored\n{server.describe()}"
                )
            time.sleep(1.0)  # a full count is expensive: seldom
            finished = time.monotonic()
        if stored != expected:
            raise RuntimeError(f"{stored:,} values stored for {expected:,} published")
    finally:
        store.close()
    return finished
