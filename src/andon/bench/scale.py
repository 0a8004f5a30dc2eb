"""``andon bench scale``: one server, 1,000 assets x 25 tags at 1 Hz with MES derivation.

Two paced edge processes (``paced_load``) publish a plant of ``assets`` machines whose every tag
changes once a second; ``andon server`` (its own process) ingests it with a generated plant file
binding each machine's state code and counters, so MES derivation (state intervals, count deltas,
rollups) runs for every asset. After a warm-up the server's CPU time (user + system, from
/proc, its historian insert process included) is sampled over the measured window: the figure
is the share of one core it used, against the target of half a core, beside the memory it held.
The run then checks that the historian holds every value (zero loss) and that the MES shows a
state for every asset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from andon.bench.bench_server import BenchServer, bench_server
from andon.bench.brokers import bench_broker
from andon.bench.paced_load import machine_id
from andon.bench.report import Figure
from andon.demo import demo_plant_file
from andon.storage.store import open_historian_store
from andon.testing.processes import http_get

__all__ = ["cell_path", "process_cpu_seconds", "process_rss_mib", "run_scale", "scale_plant_toml"]

Progress = Callable[[str, float, float], None]

GROUP = "Scale"
_MACHINES_PER_LINE = 20
_LINES_PER_AREA = 10


def _process_tree_files(pid: int, name: str) -> list[str]:
    """``/proc/<member>/<name>`` of ``pid`` and each live descendant (the server and its
    historian insert processes); members that exited meanwhile are left out."""
    tree, index, texts = [pid], 0, []
    while index < len(tree):
        member = tree[index]
        index += 1
        try:
            texts.append(Path(f"/proc/{member}/{name}").read_text())
            for task in Path(f"/proc/{member}/task").glob("*/children"):
                tree.extend(int(child) for child in task.read_text().split())
        except OSError:
            continue  # exited between the listing and now
    return texts


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and its descendants (Linux /proc), those
    that exited and were reaped included: the server's figure must include the work it hands
    to its child processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in _process_tree_files(pid, "stat"):
        utime, stime, cutime, cstime = stat.rsplit(")", 1)[1].split()[11:15]
        total += int(utime) + int(stime) + int(cutime) + int(cstime)
    return total / ticks


def process_rss_mib(pid: int) -> float:
    """Resident memory of a process and its live descendants (pages they share counted in each)."""
    total_kib = 0
    for status in _process_tree_files(pid, "status"):
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def _edge_of(index: int, edges: int, assets: int) -> int:
    return index * edges // assets


def cell_path(index: int) -> str:
    """The hierarchy path of machine ``index``: 20 machines a line, 10 lines an area."""
    line_no = index // _MACHINES_PER_LINE
    return f"Scale/Area{line_no // _LINES_PER_AREA:02d}/Line{line_no:03d}/{machine_id(index)}"


def scale_plant_toml(assets: int, edges: int) -> str:
    """A plant file of ``assets`` machines (20 per line, 10 lines per area) bound to the paced
    edges' tags, with the demo plant's reasons, state map and modes."""
    lines = [
        '[[asset]]\npath = "Scale"\nkind = "site"\ntimezone = "UTC"\n',
    ]
    seen: set[str] = set()
    for index in range(assets):
        cell = cell_path(index)
        line = cell.rsplit("/", 1)[0]
        area = line.rsplit("/", 1)[0]
        for path, kind in ((area, "area"), (line, "line")):
            if path not in seen:
                seen.add(path)
                lines.append(f'[[asset]]\npath = "{path}"\nkind = "{kind}"\n')
        prefix = f"{GROUP}/Edge{_edge_of(index, edges, assets) + 1}/{machine_id(index)}"
        lines.append(
            f'[[asset]]\npath = "{cell}"\nkind = "cell"\n'
            f'state_map = "simulator"\ncounter_max = 4294967295\n[asset.tags]\n'
            f'state = "{prefix}/State/Code"\nmode = "{prefix}/Mode"\n'
            f'infeed = "{prefix}/Count/Infeed"\noutfeed = "{prefix}/Count/Outfeed"\n'
            f'waste = "{prefix}/Count/Waste"\n'
        )
    example = demo_plant_file().read_text(encoding="utf-8")
    start = example.index("[[reason]]")
    end = example.index("# -- items")
    lines.append(example[start:end])
    lines.append('[[item]]\nid = "widget"\nname = "Widget"\n')
    lines.extend(
        f'[[rate]]\nitem = "widget"\nasset = "{cell_path(i)}"\nunits_per_minute = 150\n'
        for i in range(assets)
    )
    lines.append(
        '[[calendar]]\nsite = "Scale"\n[[calendar.shift]]\nname = "Day"\nstart = "06:00"\n'
        'end = "18:00"\n[[calendar.shift]]\nname = "Night"\nstart = "18:00"\nend = "06:00"\n'
    )
    return "\n".join(lines)


def run_scale(
    *,
    database_url: str | None = None,
    broker: str = "nats",
    assets: int = 1000,
    tags: int = 25,
    seconds: float = 300.0,
    warmup: float = 30.0,
    edges: int = 2,
    workdir: Path | None = None,
    progress: Progress | None = None,
) -> list[Figure]:
    if assets < edges or tags < 5:
        raise ValueError("need at least one machine per edge and 5 tags per machine")
    with tempfile.TemporaryDirectory(prefix="andon-bench-scale-") as tmp:
        work = workdir or Path(tmp)
        url = database_url or f"sqlite:///{work / 'scale.db'}"
        broker_process = bench_broker(broker, work / "broker")
        try:
            measured = _scale_run(url, broker_process.port, assets, tags, seconds, warmup, edges,
                                  work, progress)  # fmt: skip
        finally:
            broker_process.stop()
    cpu_share, rss_peak, rss_end, published, conditions = measured
    kept_up = bool(conditions["kept_up"])
    conditions.update(
        assets=assets, tags_per_asset=tags, rate_hz=1, broker=broker,
        database=url.split(":", 1)[0],
        lost=0 if kept_up else "not checked (the server fell behind)",
    )  # fmt: skip
    values_s = assets * tags
    return [
        Figure("scale", "server CPU (share of one core)", cpu_share, "cores", "<= 0.5",
               kept_up and cpu_share <= 0.5, conditions=conditions),
        Figure("scale", "server memory (peak RSS)", rss_peak, "MiB",
               conditions={"rss_end_mib": round(rss_end, 1)}),
        Figure("scale", "CPU per 1,000 values/s", cpu_share / values_s * 1000, "cores",
               conditions={"values_s": values_s, "values_published": published}),
    ]  # fmt: skip


def _scale_run(
    url: str, mqtt_port: int, assets: int, tags: int, seconds: float, warmup: float,
    edges: int, work: Path, progress: Progress | None,
) -> tuple[float, float, float, int, dict[str, object]]:  # fmt: skip
    plant = work / "plant.toml"
    plant.write_text(scale_plant_toml(assets, edges), encoding="utf-8")
    generators: list[subprocess.Popen[str]] = []
    with bench_server(work, url, mqtt_port, {"plant_file": str(plant)}) as server:
        try:
            per_edge = assets // edges
            for e in range(edges):
                count = per_edge if e < edges - 1 else assets - per_edge * (edges - 1)
                generators.append(subprocess.Popen(
                    [sys.executable, "-m", "andon.bench.paced_load", "--port", str(mqtt_port),
                     "--node", f"Edge{e + 1}", "--first-machine", str(e * per_edge),
                     "--machines", str(count), "--tags", str(tags),
                     "--seconds", str(warmup + seconds + 5)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                ))  # fmt: skip
            _wait_with_progress("warming up", warmup, progress, server)
            stored0 = _stored(url)
            cpu0, wall0 = process_cpu_seconds(server.pid), time.monotonic()
            rss_peak = _wait_with_progress("measuring the server", seconds, progress, server, True)
            window = time.monotonic() - wall0
            cpu_share = (process_cpu_seconds(server.pid) - cpu0) / window
            stored_rate = (_stored(url) - stored0) / window
            rss_end = process_rss_mib(server.pid)
            # A server that falls behind would take many minutes to drain; its CPU share is
            # then "all it could get" and the figure says so instead of waiting.
            kept_up = stored_rate >= 0.95 * assets * tags
            published = births = 0
            worst_lag = 0.0
            for generator in generators:
                out, err = generator.communicate(timeout=warmup + seconds + 120)
                if generator.returncode != 0:
                    raise RuntimeError(f"paced load generator failed: {err.strip()[-2000:]}")
                result = json.loads(out.strip().splitlines()[-1])
                published += int(result["published_values"])
                births += int(result["birth_values"])
                worst_lag = max(worst_lag, float(result["worst_lag_s"]))
            drain_s = (
                _check_everything_stored(url, published + births, server, progress)
                if kept_up
                else None
            )
            states = _assets_with_state(server)
            if states < assets:
                raise RuntimeError(f"the MES shows a state for {states} of {assets} assets")
        finally:
            for generator in generators:
                if generator.poll() is None:
                    generator.kill()
                    generator.communicate()
    conditions: dict[str, object] = {
        "measured_s": seconds, "warmup_s": warmup, "edges": edges,
        "publisher_worst_lag_s": round(worst_lag, 2),
        "stored_values_s": round(stored_rate), "kept_up": kept_up,
        "drain_after_load_s": None if drain_s is None else round(drain_s, 1),
    }  # fmt: skip
    return cpu_share, rss_peak, rss_end, published, conditions


def _wait_with_progress(
    task: str, seconds: float, progress: Progress | None, server: BenchServer,
    sample_rss: bool = False,
) -> float:  # fmt: skip
    """Let ``seconds`` of load pass (the benchmark's measuring window); return the peak RSS."""
    started = time.monotonic()
    peak = 0.0
    while (elapsed := time.monotonic() - started) < seconds:
        server.check_running()
        if sample_rss:
            peak = max(peak, process_rss_mib(server.pid))
        if progress is not None:
            progress(task, elapsed, seconds)
        time.sleep(min(1.0, seconds - elapsed))  # the window is wall time by definition
    return peak


def _stored(url: str) -> int:
    store = open_historian_store(url)
    try:
        return store.count()
    finally:
        store.close()


def _check_everything_stored(
    url: str, expected: int, server: BenchServer, progress: Progress | None
) -> float:
    """Wait until the historian holds ``expected`` values; returns how long that took (a server
    that keeps up with the plant has next to nothing left to drain)."""
    started = time.monotonic()
    store = open_historian_store(url)
    try:
        deadline = time.monotonic() + 600
        while (stored := store.count()) < expected:
            server.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored:,} of {expected:,} values stored")
            if progress is not None:
                progress("draining into the historian", stored, expected)
            time.sleep(0.5)  # sampling a count while the server drains
        if stored != expected:
            raise RuntimeError(f"{stored:,} values stored for {expected:,} published")
        return time.monotonic() - started
    finally:
        store.close()


def _assets_with_state(server: BenchServer) -> int:
    status, body = http_get(f"{server.base_url}/api/v1/assets", 30.0, token=server.token())
    if status != 200:
        raise RuntimeError(f"GET /api/v1/assets -> {status}")
    return sum(
        1 for asset in json.loads(body)
        if asset.get("kind") == "cell" and asset.get("state") is not None
    )  # fmt: skip
