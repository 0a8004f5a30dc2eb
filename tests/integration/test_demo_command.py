"""``andon demo``: the single-box architecture (A1) in one command, and its data kept between runs.

The command runs as a child process on free ports with ``--duration``: while it runs, the API
shows the 6 machines of the demo plant with values from 2 online edge nodes and the machines
page lists them; it stops by itself with exit code 0; a second run on the same directory still
serves the history of the first. With ``--source opcua`` the edges read the same simulated plant
from an OPC UA server: states and counts reach the MES, and a write from the API reaches the
simulated machine through the OPC UA server.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlencode

import pytest

from andon.demo import DEMO_GROUP, DEMO_LINES, read_credentials
from andon.edge.sources.simulator import demo_plant
from andon.storage.store import open_historian_store
from andon.testing.http_auth import forget_token, login, register_token
from andon.testing.ports import free_port
from andon.testing.processes import AndonProcess, http_get, http_get_json, wait_until

pytestmark = pytest.mark.integration

MACHINES = {m.machine_id for m in demo_plant().machines}
#: Time to start (broker, migrations, server, edges) and to stop cleanly, beyond --duration.
MARGIN_S = 25.0


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    return tmp_path / "demo"


@pytest.fixture
def processes() -> Iterator[list[AndonProcess]]:
    started: list[AndonProcess] = []
    yield started
    for process in started:
        process.stop(10.0)


def _start_demo(
    processes: list[AndonProcess],
    demo_dir: Path,
    log: Path,
    duration: float,
    extra: Sequence[str] = (),
) -> tuple[AndonProcess, str]:
    http_port, mqtt_port = free_port(), free_port()
    demo = AndonProcess(
        [
            "demo",
            "--dir",
            str(demo_dir),
            "--http-port",
            str(http_port),
            "--mqtt-port",
            str(mqtt_port),
            "--duration",
            str(duration),
            *extra,
        ],
        log,
        name="andon demo",
        cwd=log.parent,
    )
    processes.append(demo)
    demo.start()
    base_url = f"http://127.0.0.1:{http_port}"
    credentials = demo_dir / "credentials.txt"
    # The demo writes its users' passwords before it serves; log in as its operator as soon
    # as the API answers, then every http_get to it carries the token.
    wait_until(
        lambda: credentials.exists() and http_get(f"{base_url}/api/v1/health", 2.0)[0] != 0,
        30.0,
        "andon demo did not write credentials.txt and serve its API",
        processes=[demo],
    )
    password = read_credentials(credentials)["operator"]
    register_token(base_url, login(base_url, "operator", password))
    return demo, base_url


def _page_with_session(base_url: str, path: str, password: str) -> tuple[int, str]:
    """A page through the browser's way in: the login form, then the session cookie."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = urllib.parse.urlencode({"username": "admin", "password": password}).encode()
    # A browser names the page the form came from; the server refuses forms from other sites.
    request = urllib.request.Request(
        f"{base_url}/login?next={urllib.parse.quote(path)}", data=form, headers={"Origin": base_url}
    )
    with opener.open(request) as response:
        # urllib followed the 303 to ``next`` with the cookie the login set.
        assert response.url == f"{base_url}{path}", response.url
        return int(response.status), response.read().decode("utf-8")


def _check_logins(base_url: str, credentials: Path) -> str:
    """credentials.txt is private and its admin logs in through the form; the page."""
    assert credentials.stat().st_mode & 0o777 == 0o600
    known = read_credentials(credentials)
    assert set(known) == {"admin", "operator"}
    status, page = http_get(f"{base_url}/", token="")  # no login: redirected to the form
    assert status == 200
    assert 'name="password"' in page
    status, page = _page_with_session(base_url, "/", known["admin"])
    assert status == 200, page[:500]
    assert "Log out" in page
    return page


def _machines_with_values(base_url: str) -> set[str]:
    """Devices of the demo plant with at least one online tag holding a value."""
    status, _ = http_get(f"{base_url}/api/v1/health", timeout=2.0)
    if status == 0:
        return set()
    tags = http_get_json(f"{base_url}/api/v1/tags?prefix={DEMO_GROUP}/")
    # group/node/device/metric; node metrics (group/node/Andon/Spool/...) name no machine
    return {
        device
        for tag in tags
        if (device := tag["path"].split("/")[2]) in MACHINES
        and tag["value"] is not None
        and tag["online"]
    }


def _online_edges(base_url: str) -> set[str]:
    return {n["edge_node_id"] for n in http_get_json(f"{base_url}/api/v1/edges") if n["online"]}


def _served_history(base_url: str, query: str) -> list[tuple[int, object]] | None:
    status, body = http_get(f"{base_url}/api/v1/tags/history?{query}", timeout=2.0)
    if status != 200:
        return None
    return [(s["ts_ms"], s["value"]) for s in json.loads(body)["samples"]]


def _wait_exit(demo: AndonProcess, started: float, duration: float) -> float:
    try:
        code = demo.wait(max(0.0, started + duration + MARGIN_S - time.monotonic()))
    except Exception as exc:
        raise AssertionError(
            f"andon demo --duration {duration} still running after {duration + MARGIN_S} s\n"
            f"{demo.describe()}"
        ) from exc
    elapsed = time.monotonic() - started
    assert code == 0, f"andon demo exited with {code}\n{demo.describe()}"
    return elapsed


def test_demo_runs_the_plant_stops_by_itself_and_keeps_its_data(
    processes: list[AndonProcess], demo_dir: Path, tmp_path: Path
) -> None:
    # -- first run --------------------------------------------------------------------------
    started = time.monotonic()
    demo, base_url = _start_demo(processes, demo_dir, tmp_path / "demo-1.log", 20.0)
    seen = wait_until(
        lambda: (found := _machines_with_values(base_url)) >= MACHINES and found,
        15.0,
        lambda: f"the API does not show values of all 6 machines {sorted(MACHINES)}",
        processes=[demo],
    )
    assert seen == MACHINES
    credentials = demo_dir / "credentials.txt"
    first_credentials = read_credentials(credentials)
    page = _check_logins(base_url, credentials)
    assert all(machine in page for machine in MACHINES), f"machines page lacks machines\n{page}"
    online = wait_until(
        lambda: (nodes := _online_edges(base_url)) == set(DEMO_LINES) and nodes,
        15.0,
        lambda: f"/api/v1/edges does not show {DEMO_LINES} online",
        processes=[demo],
    )
    assert online == set(DEMO_LINES)
    first_elapsed = _wait_exit(demo, started, 20.0)
    banner = (tmp_path / "demo-1.log").read_text(encoding="utf-8")
    assert f"log in as      : admin / {first_credentials['admin']}" in banner
    assert f"log in as      : operator / {first_credentials['operator']}" in banner
    forget_token(base_url)

    store = open_historian_store(f"sqlite:///{demo_dir / 'andon.db'}")
    try:
        first_rows = store.count()
        tag = f"{DEMO_GROUP}/Line1/Filler1/Process/Temperature"
        first_history = [(s.ts_ms, s.value) for s in store.history(tag, 0, 2**62, limit=100_000)]
    finally:
        store.close()
    assert first_rows > 0
    assert first_history, f"no history of {tag} after the first run"
    end_ms = first_history[-1][0] + 1

    # -- second run on the same directory ------------------------------------------------------
    started = time.monotonic()
    demo, base_url = _start_demo(processes, demo_dir, tmp_path / "demo-2.log", 8.0)
    query = urlencode({"path": tag, "start": 0, "end": end_ms, "limit": 100_000})
    served = wait_until(
        lambda: _served_history(base_url, query),
        15.0,
        "the second run does not serve history",
        processes=[demo],
    )
    assert served == first_history, "the second run does not serve the first run's history"
    second_elapsed = _wait_exit(demo, started, 8.0)
    forget_token(base_url)
    assert read_credentials(credentials) == first_credentials, "the second run made new users"

    store = open_historian_store(f"sqlite:///{demo_dir / 'andon.db'}")
    try:
        second_rows = store.count()
        kept = [(s.ts_ms, s.value) for s in store.history(tag, 0, end_ms, limit=100_000)]
    finally:
        store.close()
    print(
        f"demo: first run {first_elapsed:.1f} s, {first_rows} history rows; second run "
        f"{second_elapsed:.1f} s, {second_rows} rows; {len(first_history)} samples of {tag} kept"
    )
    assert kept == first_history
    assert second_rows > first_rows


def _post_json(url: str, body: dict[str, object], token: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15.0) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _states_and_counts(base_url: str) -> tuple[set[str], set[str], set[str]]:
    """Machines whose MES state is known, whose infeed count has history, and whose count
    moved (a machine in a long stop does not count)."""
    states, counts, moving = set(), set(), set()
    end = time.time_ns() // 1_000_000 + 60_000
    for asset in http_get_json(f"{base_url}/api/v1/assets"):
        name = asset["name"]
        if name not in MACHINES:
            continue
        if asset["state"] is not None:
            states.add(name)
        tag = f"{DEMO_GROUP}/{_LINE_OF[name]}/{name}/Count/Infeed"
        query = urlencode({"path": tag, "start": 0, "end": end, "limit": 1000})
        values = {value for _, value in _served_history(base_url, query) or []}
        if values:
            counts.add(name)
        if len(values) >= 2:
            moving.add(name)
    return states, counts, moving


_LINE_OF = {m.machine_id: m.line for m in demo_plant().machines}


def test_demo_from_an_opc_ua_server_reaches_the_mes(
    processes: list[AndonProcess], demo_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "demo-opcua.log"
    opcua_port = free_port()
    started = time.monotonic()
    demo, base_url = _start_demo(
        processes, demo_dir, log, 25.0, ["--source", "opcua", "--opcua-port", str(opcua_port)]
    )
    endpoint = f"opc.tcp://127.0.0.1:{opcua_port}/andon/"
    assert f"plant (OPC UA) : {endpoint}" in log.read_text(encoding="utf-8")
    wait_until(
        lambda: _machines_with_values(base_url) >= MACHINES,
        20.0,
        lambda: f"the API does not show values of all 6 machines {sorted(MACHINES)}",
        processes=[demo],
    )
    wait_until(
        lambda: _online_edges(base_url) == set(DEMO_LINES),
        15.0,
        lambda: f"/api/v1/edges does not show {DEMO_LINES} online",
        processes=[demo],
    )
    # The MES derives states and counts from what the edges read over OPC UA.
    wait_until(
        lambda: (found := _states_and_counts(base_url))[:2] == (MACHINES, MACHINES) and found[2],
        20.0,
        lambda: f"MES states, counts, moving counts only for {_states_and_counts(base_url)}",
        processes=[demo],
    )
    text = log.read_text(encoding="utf-8")
    for machine in MACHINES:
        assert f"opc ua device {machine} connected to {endpoint}" in text
    # A write from the API goes through the edge and the OPC UA server to the simulated machine.
    token = login(base_url, "admin", read_credentials(demo_dir / "credentials.txt")["admin"])
    setpoint = f"{DEMO_GROUP}/Line1/Filler1/Setpoint/Speed"
    status, body = _post_json(
        f"{base_url}/api/v1/tags/write", {"path": setpoint, "value": 100.0}, token
    )
    assert status == 200, body
    assert (body["result"], body["value"]) == ("written", 100.0)
    refused_status, refused = _post_json(
        f"{base_url}/api/v1/tags/write", {"path": setpoint, "value": 500.0}, token
    )
    assert refused_status == 200, refused
    assert refused["result"] == "rejected"
    assert "BadOutOfRange" in str(refused["error"])
    _wait_exit(demo, started, 25.0)
    forget_token(base_url)
