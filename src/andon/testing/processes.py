"""``andon`` child processes for integration tests, chaos tests and benchmarks.

* :class:`AndonProcess` runs one ``andon ...`` command as a child process with its output in a
  log file, stops it with SIGTERM (SIGKILL after a timeout) and dies with the parent.
* :class:`AndonRig` is one edge agent and one server as child processes against a broker and a
  database the caller provides, configured through TOML files it writes; it knows where the
  edge's simulator records every value it produces and compares that record with the history.
* :func:`wait_until` and :func:`wait_for_http` wait on a condition with a deadline (never a
  fixed sleep) and fail early, with the log tail, when a child process died meanwhile.
* :func:`read_recorded_values` and :func:`compare_with_history` check "every value the source
  produced is in the history exactly once, with the same value".

Only the standard library and ``andon.storage`` are used, so these helpers run anywhere the
tests run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from andon.mqtt.embedded_broker import _die_with_parent
from andon.storage.store import HistorianStore, open_historian_store
from andon.storage.types import SampleValue
from andon.testing.http_auth import forget_token, login, register_token, token_for_url
from andon.testing.ports import free_port

__all__ = [
    "RIG_ADMIN_PASSWORD",
    "AndonProcess",
    "AndonRig",
    "HistoryComparison",
    "RecordedValue",
    "andon_executable",
    "compare_with_history",
    "count_recorded_lines",
    "http_get",
    "http_get_json",
    "read_recorded_values",
    "toml_text",
    "wait_for_http",
    "wait_until",
    "write_toml",
]

T = TypeVar("T")

#: Password of the ``admin`` user every ``AndonRig`` server creates (tests only).
RIG_ADMIN_PASSWORD = "rig-admin-password-0123"

#: Far enough in the future for any test: the end of a "whole history" range.
_END_OF_TIME_MS = 2**62
_POLL_S = 0.1


def andon_executable() -> str:
    """The ``andon`` script of the running interpreter's environment (then ``PATH``)."""
    candidate = Path(sys.executable).parent / "andon"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    import shutil

    found = shutil.which("andon")
    if found is None:
        raise FileNotFoundError(f"no 'andon' script next to {sys.executable} nor on PATH")
    return found


# -- TOML --------------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML settings must be finite numbers: {value!r}")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")


def toml_text(data: Mapping[str, object], _prefix: str = "") -> str:
    """A TOML document for nested mappings of str/int/float/bool/Path/lists (``None`` left out)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, object]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        name = f"{_prefix}{key}"
        lines.append(f"\n[{name}]")
        lines.append(toml_text(table, f"{name}.").rstrip("\n"))
    return "\n".join(lines) + "\n"


def write_toml(path: Path, data: Mapping[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text(data), encoding="utf-8")
    return path


# -- waiting -----------------------------------------------------------------------------------


def _dead(processes: Iterable[AndonProcess]) -> list[AndonProcess]:
    return [p for p in processes if p.started and not p.running]


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str],
    *,
    processes: Iterable[AndonProcess] = (),
    interval: float = _POLL_S,
) -> T:
    """Poll ``condition`` until it returns something truthy and return that.

    Raises ``AssertionError`` with ``message`` when ``timeout`` passes, or at once when one of
    ``processes`` (that should keep running meanwhile) has exited; the message then carries
    the tail of its log.
    """
    watched = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        dead = _dead(watched)
        text = message() if callable(message) else message
        if dead:
            raise AssertionError(
                f"{text}: {', '.join(p.name for p in dead)} exited meanwhile\n"
                + "\n".join(p.describe() for p in dead)
            )
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{text} (not within {timeout:.0f} s)\n" + "\n".join(p.describe() for p in watched)
            )
        time.sleep(interval)  # polling a condition with a deadline


def http_get(url: str, timeout: float = 5.0, *, token: str | None = None) -> tuple[int, str]:
    """``(status, body)`` of a GET; ``(0, reason)`` when nothing answered.

    Sends ``token`` as a bearer token, by default the one an ``AndonRig`` registered for the
    server (see ``andon.testing.http_auth``); ``token=""`` sends none.
    """
    token = token if token is not None else token_for_url(url)
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def http_get_json(url: str, timeout: float = 5.0, *, token: str | None = None) -> Any:
    """The decoded JSON of a GET that must answer 200."""
    status, body = http_get(url, timeout, token=token)
    if status != 200:
        raise AssertionError(f"GET {url} -> {status}: {body[:500]}")
    return json.loads(body)


def wait_for_http(
    url: str, timeout: float = 30.0, *, processes: Iterable[AndonProcess] = ()
) -> str:
    """Wait until ``url`` answers 200; return the body."""
    last: list[tuple[int, str]] = [(0, "")]

    def ready() -> str | None:
        last[0] = http_get(url, timeout=2.0)
        status, body = last[0]
        return body if status == 200 else None

    body = wait_until(
        ready,
        timeout,
        lambda: f"GET {url} never answered 200 (last: {last[0][0]} {last[0][1][:200]})",
        processes=processes,
    )
    assert body is not None
    return body


# -- child processes ---------------------------------------------------------------------------


class AndonProcess:
    """One ``andon <args>`` child process; stdout and stderr go to ``log_path``."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        name: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = [andon_executable(), *args]
        self.log_path = log_path
        self.name = name or " ".join(args[:1]) or "andon"
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> AndonProcess:
        """Start (or restart, after it exited) the child."""
        if self.running:
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n=== {' '.join(self.args)}\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 (no threads touched in the child)
            )
        return self

    def send_signal(self, signum: int) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; ``subprocess.TimeoutExpired`` if it does not in time."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """Send ``signum`` (a clean stop), SIGKILL after ``timeout`` s; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash. Nothing is flushed."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe(self, lines: int = 40) -> str:
        """Name, pid, exit code and the log tail, for assertion messages."""
        state = "running" if self.running else f"exit code {self.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {state}), last lines of {self.log_path}:\n"
            f"{self.log_tail(lines)}"
        )

    def __enter__(self) -> AndonProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the simulator's record and the history ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedValue:
    """One value the edge's simulator produced, with its full tag path."""

    tag: str
    ts_ms: int
    value: SampleValue


def read_recorded_values(path: Path, group_id: str, edge_node_id: str) -> list[RecordedValue]:
    """The JSON lines ``[device, name, ts_ms, value]`` of ``simulator.record_path``.

    A last line without its newline is being written right now and is left out.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    out: list[RecordedValue] = []
    for line in lines[:-1]:  # the part after the last newline is incomplete (or empty)
        if not line:
            continue
        device, name, ts_ms, value = json.loads(line)
        out.append(RecordedValue(f"{group_id}/{edge_node_id}/{device}/{name}", ts_ms, value))
    return out


def count_recorded_lines(path: Path) -> int:
    """Complete lines in a record file (cheap; for waiting until enough were produced)."""
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _same_value(recorded: SampleValue, stored: SampleValue) -> bool:
    if isinstance(stored, bytes):
        return recorded == stored.hex()  # the record keeps bytes as hex
    if type(recorded) is not type(stored):
        return False
    if isinstance(recorded, float) and isinstance(stored, float):
        return recorded == stored or (math.isnan(recorded) and math.isnan(stored))
    return recorded == stored


@dataclass(frozen=True, slots=True)
class HistoryComparison:
    """The record of a source against the historian's rows of the same tags."""

    recorded_values: int
    #: Distinct (tag, ts_ms) in the record: the rows the history must hold.
    distinct_keys: int
    recorded_tags: int
    #: Rows of the recorded tags found in the history.
    stored_rows: int
    #: Every row in the history (also of tags the record does not name).
    total_rows: int
    missing: list[tuple[str, int]] = field(default_factory=list)
    mismatched: list[tuple[str, int, SampleValue, SampleValue]] = field(default_factory=list)
    #: Rows of recorded tags at a timestamp the record does not have.
    unexpected: list[tuple[str, int]] = field(default_factory=list)
    #: (tag, ts_ms) recorded more than once with different values: a source bug.
    conflicting: list[tuple[str, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every recorded (tag, ts_ms) has a row (values not checked)."""
        return not self.missing

    @property
    def exact(self) -> bool:
        """Every recorded value is stored exactly once, with the same value, and nothing else."""
        return (
            not self.missing
            and not self.mismatched
            and not self.unexpected
            and not self.conflicting
            and self.stored_rows == self.distinct_keys
            and self.total_rows == self.distinct_keys
        )

    def summary(self) -> str:
        def first(items: Sequence[object]) -> str:
            return f" e.g. {list(items[:5])}" if items else ""

        return (
            f"recorded values {self.recorded_values}, distinct (tag, ts) {self.distinct_keys}, "
            f"tags {self.recorded_tags}; history rows of those tags {self.stored_rows}, "
            f"all history rows {self.total_rows}; missing {len(self.missing)}"
            f"{first(self.missing)}; mismatched {len(self.mismatched)}{first(self.mismatched)}; "
            f"unexpected {len(self.unexpected)}{first(self.unexpected)}; "
            f"conflicting in the record {len(self.conflicting)}{first(self.conflicting)}"
        )


def compare_with_history(
    store: HistorianStore, recorded: Sequence[RecordedValue]
) -> HistoryComparison:
    """Compare the multiset of recorded (tag, ts_ms, value) with the store's rows."""
    expected: dict[str, dict[int, SampleValue]] = {}
    conflicting: list[tuple[str, int]] = []
    for item in recorded:
        values = expected.setdefault(item.tag, {})
        if item.ts_ms in values:
            if not _same_value(values[item.ts_ms], item.value):
                conflicting.append((item.tag, item.ts_ms))
            continue
        values[item.ts_ms] = item.value
    missing: list[tuple[str, int]] = []
    mismatched: list[tuple[str, int, SampleValue, SampleValue]] = []
    unexpected: list[tuple[str, int]] = []
    stored_rows = 0
    for tag, values in sorted(expected.items()):
        rows = store.history(tag, 0, _END_OF_TIME_MS, limit=len(values) + 1000)
        stored_rows += len(rows)
        seen: set[int] = set()
        for row in rows:
            seen.add(row.ts_ms)
            if row.ts_ms not in values:
                unexpected.append((tag, row.ts_ms))
            elif not _same_value(values[row.ts_ms], row.value):
                mismatched.append((tag, row.ts_ms, values[row.ts_ms], row.value))
        missing.extend((tag, ts) for ts in sorted(values) if ts not in seen)
    return HistoryComparison(
        recorded_values=len(recorded),
        distinct_keys=sum(len(v) for v in expected.values()),
        recorded_tags=len(expected),
        stored_rows=stored_rows,
        total_rows=store.count(),
        missing=missing,
        mismatched=mismatched,
        unexpected=unexpected,
        conflicting=conflicting,
    )


# -- one edge and one server -------------------------------------------------------------------


class AndonRig:
    """``andon server`` and ``andon edge`` as child processes, configured by TOML files.

    The broker and the database belong to the caller. The edge runs the built-in simulator
    with ``simulator.record_path`` set, so :meth:`compare` can check the history against every
    value produced. Everything lives in ``workdir``: configs, spool, record, logs.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        mqtt_port: int,
        database_url: str,
        http_port: int | None = None,
        host_id: str = "andon-test",
        group_id: str = "Plant1",
        edge_node_id: str = "Edge1",
        primary_host: bool = True,
        poll_interval_s: float = 0.2,
        simulator: Mapping[str, object] | None = None,
        server_extra: Mapping[str, object] | None = None,
        edge_extra: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = mqtt_port
        self.database_url = database_url
        self.http_port = http_port if http_port is not None else free_port()
        self.host_id = host_id
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.record_path = workdir / "edge-record.jsonl"
        #: The server creates ``admin`` with this password on an empty database; the rig logs
        #: in as admin after every ``start_server`` and keeps the bearer token in ``token``.
        self.admin_password = RIG_ADMIN_PASSWORD
        self.token: str | None = None
        self.server_config = write_toml(
            workdir / "server.toml",
            {
                "host_id": host_id,
                "database_url": database_url,
                "http_port": self.http_port,
                "initial_admin_password": self.admin_password,
                **(server_extra or {}),
                "mqtt": {"port": mqtt_port},
            },
        )
        self.edge_config = write_toml(
            workdir / "edge.toml",
            {
                "group_id": group_id,
                "edge_node_id": edge_node_id,
                "primary_host_id": host_id if primary_host else None,
                "poll_interval_s": poll_interval_s,
                **(edge_extra or {}),
                "mqtt": {"port": mqtt_port},
                "spool": {"path": self.spool_path},
                "simulator": {**(simulator or {}), "record_path": self.record_path},
            },
        )
        self.server = AndonProcess(
            ["server", "--config", str(self.server_config)],
            workdir / "server.log",
            name="andon server",
            cwd=workdir,
        )
        self.edge = AndonProcess(
            ["edge", "--config", str(self.edge_config)],
            workdir / "edge.log",
            name="andon edge",
            cwd=workdir,
        )
        self._store: HistorianStore | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def processes(self) -> list[AndonProcess]:
        return [self.server, self.edge]

    def running(self) -> list[AndonProcess]:
        return [p for p in self.processes if p.running]

    def start_server(self, timeout: float = 30.0) -> None:
        """Start the server; wait until its API answers and its host session is online."""
        self.server.start()

        def host_online() -> bool:
            status, body = http_get(f"{self.base_url}/api/v1/health", timeout=2.0)
            if status != 200:  # 503 while a component (e.g. the MQTT session) is not up
                return False
            return bool(json.loads(body)["components"]["mqtt"]["ok"])

        wait_until(
            host_online,
            timeout,
            f"server API on {self.base_url} with its MQTT session online",
            processes=[self.server],
        )
        self.token = login(self.base_url, "admin", self.admin_password)
        register_token(self.base_url, self.token)

    def start_edge(self) -> None:
        self.edge.start()

    def stop_server(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """A clean stop (SIGTERM by default); SIGKILL after ``timeout``. Returns the exit code."""
        return self.server.stop(timeout, signum)

    def stop_edge(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """A clean stop (SIGTERM by default); SIGKILL after ``timeout``. Returns the exit code."""
        return self.edge.stop(timeout, signum)

    # -- the record and the history -------------------------------------------------------------

    def recorded(self) -> list[RecordedValue]:
        return read_recorded_values(self.record_path, self.group_id, self.edge_node_id)

    def recorded_count(self) -> int:
        return count_recorded_lines(self.record_path)

    def wait_for_recorded(self, count: int, timeout: float) -> int:
        """Wait until the simulator has produced at least ``count`` values."""
        return wait_until(
            lambda: (n := self.recorded_count()) >= count and n,
            timeout,
            lambda: f"the edge produced {self.recorded_count()} of {count} values",
            processes=self.running(),
        )

    @property
    def spool_path(self) -> Path:
        return self.workdir / "edge-spool.db"

    def edge_status(self) -> dict[str, object]:
        """What ``andon edge status`` shows: backlog in the spool, drops, bdSeq."""
        from andon.edge.status import read_edge_status

        return read_edge_status(self.spool_path)

    @property
    def store(self) -> HistorianStore:
        """The historian store on the server's database, opened by the test (for reads)."""
        if self._store is None:
            self._store = open_historian_store(self.database_url)
        return self._store

    def compare(self) -> HistoryComparison:
        return compare_with_history(self.store, self.recorded())

    def wait_for_history(self, timeout: float) -> HistoryComparison:
        """Wait until the history holds at least as many rows as distinct recorded values,
        then compare them one by one."""
        recorded = self.recorded()
        keys = len({(r.tag, r.ts_ms) for r in recorded})
        wait_until(
            lambda: self.store.count() >= keys,
            timeout,
            lambda: f"the history holds {self.store.count()} of {keys} recorded values",
            processes=self.running(),
        )
        return compare_with_history(self.store, recorded)

    def describe(self) -> str:
        """Log tails of both children, for assertion messages."""
        return "\n".join(p.describe() for p in self.processes if p.started)

    def close(self) -> None:
        """Stop both children (SIGTERM, SIGKILL after 10 s) and close the store."""
        for process in (self.edge, self.server):
            process.stop(10.0)
        forget_token(self.base_url)  # the port may serve another test's server next
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> AndonRig:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
