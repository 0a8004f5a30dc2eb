"""``andon outbox status|resync`` against a site's SQLite database named in a config."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from andon.cli.main import app
from andon.domain import ProductionOrder
from andon.storage.mes import MesRepository
from andon.storage.mes_runs import RunRepository
from andon.storage.migrate import upgrade_database
from andon.storage.outbox import OutboxRepository


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["outbox", *args, "--config", str(config)])
    return result.exit_code, result.output


def _config(tmp_path: Path, enabled: bool) -> Path:
    path = tmp_path / f"server-{enabled}.toml"
    url = f"sqlite:///{tmp_path / 'site.db'}"
    path.write_text(
        f'database_url = "{url}"\n[outbox]\nenabled = {str(enabled).lower()}\nsite = "North"\n',
        encoding="utf-8",
    )
    return path


def test_status_and_resync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    upgrade_database(url)
    mes = MesRepository(url)
    RunRepository(mes.engine).add_order(ProductionOrder("PO1", "item", 10))  # no outbox yet
    config = _config(tmp_path, enabled=True)

    code, out = _run(config, "status")
    assert (code, out) == (0, "site North (forwarding on): 0 waiting\n")
    code, out = _run(config, "resync")
    assert (code, out) == (0, "site North: 1 records queued for the enterprise\n")
    code, out = _run(config, "status", "--json")
    status = json.loads(out)
    assert (code, status["site"], status["depth"]) == (0, "North", 1)
    (entry,) = OutboxRepository(mes.engine).pending(10)
    assert (entry.site, entry.key) == ("North", 'order:["PO1"]')
    mes.close()


def test_resync_refuses_when_forwarding_is_off(tmp_path: Path) -> None:
    upgrade_database(f"sqlite:///{tmp_path / 'site.db'}")
    code, out = _run(_config(tmp_path, enabled=False), "resync")
    assert code == 2
    assert out.strip() == (
        "andon: error: [outbox] enabled is false in these settings: nothing would publish the "
        "records"
    )
