"""What an operator watching the surviving node sees (issue 6, "done means"): after the active
node goes away during a steady stream, the survivor's system page shows it active with the new
epoch, and the tag history it serves has every value of the stream, no gap."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _cluster_rig import TAG, Edge, Rig
from fastapi.testclient import TestClient

from andon.domain.users import Role
from andon.testing.auth import authenticated_client
from andon.testing.processes import wait_until


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


class _Tables(HTMLParser):
    """Every table of a page as rows of {header: cell text}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[dict[str, str]]] = []
        self._headers: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self._headers, self.tables = [], [*self.tables, []]
        elif self._depth == 1 and tag == "tr":
            self._row = []
        elif self._depth == 1 and tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth -= 1
        elif self._depth == 1 and tag in ("th", "td") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            if tag == "th":
                self._headers.append(text)
            elif self._row is not None:
                self._row.append(text)
            self._cell = None
        elif self._depth == 1 and tag == "tr" and self._row:
            self.tables[-1].append(dict(zip(self._headers, self._row, strict=False)))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _domain_row(page: str) -> dict[str, str]:
    parser = _Tables()
    parser.feed(page)
    rows = [row for table in parser.tables for row in table if row.get("domain") == "plant"]
    assert len(rows) == 1, parser.tables
    return rows[0]


def _system(client: TestClient) -> dict[str, str]:
    page = client.get("/system")
    assert page.status_code == 200
    return _domain_row(page.text)


def test_the_survivor_shows_the_failover_and_a_trend_without_a_gap(rig: Rig) -> None:
    rig.start("a")
    b = rig.start("b")
    rig.wait_role("a", "active")
    engineer = authenticated_client(b.api, Role.ENGINEER)
    wait_until(lambda: _system(engineer).get("holder") == "a", 10, lambda: str(_system(engineer)))
    before = _system(engineer)
    assert (before["role"], before["epoch"], before["my_epoch"]) == ("passive", "1", "None")

    edge = Edge(rig.broker)
    born = edge.ts
    edge.birth()
    edge.send(50)
    rig.stop("a")  # the active node goes away while the edge keeps sending
    edge.send(50)
    rig.wait_role("b", "active")
    edge.send(50)

    wait_until(lambda: _system(engineer).get("holder") == "b", 10, lambda: str(_system(engineer)))
    after = _system(engineer)
    assert (after["role"], after["epoch"], after["my_epoch"]) == ("active", "2", "2")

    expected = [born, *edge.sent]
    query = {"path": TAG, "start": str(born), "end": str(edge.ts + 1), "limit": "10000"}

    def history() -> list[int]:
        answer = engineer.get("/api/v1/tags/history", params=query)
        assert answer.status_code == 200, answer.text
        return [s["ts_ms"] for s in answer.json()["samples"]]

    wait_until(lambda: len(history()) >= len(expected), 10, lambda: f"{len(history())} samples")
    assert history() == expected  # every value of the stream, once, in order
