"""``andon outbox status|resync``: a site's MES outbox, read and refilled in its database."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["outbox_app"]

outbox_app = typer.Typer(
    help="Site -> enterprise forwarding: the MES outbox of this site.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file", exists=True)
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"andon: error: {message}", err=True)
    raise typer.Exit(code=2)


def _open(config: Path | None) -> tuple[Any, Any]:
    """(the settings, the outbox repository on their database)."""
    from andon.settings import ServerSettings, load_settings
    from andon.storage.engine import create_engine_for
    from andon.storage.outbox import OutboxRepository

    try:
        settings = load_settings(ServerSettings, config)
    except ValueError as exc:
        _fail(str(exc))
    return settings, OutboxRepository(create_engine_for(settings.database_url))


@outbox_app.command("status")
def outbox_status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text")] = False,
) -> None:
    """Rows waiting for the broker and the age of the oldest."""
    settings, outbox = _open(config)
    try:
        stats = outbox.stats()
    except Exception as exc:
        _fail(f"cannot read the outbox: {exc}")
    finally:
        outbox.engine.dispose()
    oldest = stats.oldest_created_ms
    age_s = None if oldest is None else max(0, time.time_ns() // 1_000_000 - oldest) / 1000
    status = {
        "enabled": settings.outbox.enabled,
        "site": settings.outbox.site,
        "depth": stats.depth,
        "oldest_created_ms": oldest,
        "oldest_age_s": age_s,
    }
    if as_json:
        typer.echo(json.dumps(status))
        return
    state = "on" if settings.outbox.enabled else "off"
    age = "" if age_s is None else f", oldest {age_s:.1f} s old"
    typer.echo(f"site {settings.outbox.site} (forwarding {state}): {stats.depth} waiting{age}")


@outbox_app.command("resync")
def outbox_resync(config: ConfigOption = None) -> None:
    """Queue every current MES record of this site again, e.g. for an enterprise that lost its
    copy or subscribed after the site started forwarding (duplicates are harmless)."""
    settings, outbox = _open(config)
    if not settings.outbox.enabled:
        outbox.engine.dispose()
        _fail("[outbox] enabled is false in these settings: nothing would publish the records")
    try:
        queued = outbox.resync(settings.outbox.site)
    except Exception as exc:
        _fail(f"cannot queue the records: {exc}")
    finally:
        outbox.engine.dispose()
    typer.echo(f"site {settings.outbox.site}: {queued} records queued for the enterprise")
