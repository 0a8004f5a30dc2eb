"""``andon cluster status|switchover``: the leases of a cluster, read and moved through its
arbiter (the database named by ``cluster.arbiter_url``, by default ``database_url``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["cluster_app"]

cluster_app = typer.Typer(
    help="Redundancy: nodes, domains of control and their leases.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file", exists=True)
]


def _fail(message: str) -> None:
    typer.echo(f"andon: error: {message}", err=True)
    raise typer.Exit(code=2)


def _open(config: Path | None) -> tuple[Any, Any]:
    """(the cluster plan, its arbiter)."""
    from andon.settings import ServerSettings, load_settings
    from andon.storage.cluster_arbiter import open_sql_arbiter

    settings = load_settings(ServerSettings, config)
    plan = settings.cluster.plan(settings.host_id, as_member=False)
    arbiter = open_sql_arbiter(
        settings.cluster.arbiter(settings.database_url),
        plan.preferences(),
        timeout_ms=max(settings.cluster.lease_ttl_ms, 1000),
    )
    return plan, arbiter


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.1f} s"


def _status(plan: Any, arbiter: Any) -> dict[str, Any]:
    now = arbiter.now_ms()
    ttl = plan.timing.ttl_ms
    leases = {lease.domain: lease for lease in arbiter.leases()}
    nodes = [
        {
            "node": m.node,
            "last_seen_ms": m.last_seen_ms,
            "alive": m.alive_at(now, ttl),
            "host": m.info.get("host"),
            "pid": m.info.get("pid"),
            "roles": m.info.get("roles", {}),
        }
        for m in arbiter.members()
    ]
    names = [d.name for d in plan.domains] + sorted(set(leases) - {d.name for d in plan.domains})
    domains = []
    for name in names:
        lease = leases.get(name)
        configured = name in {d.name for d in plan.domains}
        domains.append(
            {
                "domain": name,
                "configured": configured,
                "candidates": list(plan.domain(name).candidates) if configured else [],
                "holder": None if lease is None else lease.holder_at(now),
                "last_holder": None if lease is None else lease.node,
                "epoch": 0 if lease is None else lease.epoch,
                "expires_at_ms": None if lease is None else lease.expires_at_ms,
                "switchover_pending": lease is not None and lease.switchover_pending,
                "switchover_to": None if lease is None else lease.switchover_to,
            }
        )
    return {"arbiter_now_ms": now, "lease_ttl_ms": ttl, "nodes": nodes, "domains": domains}


def _render(status: dict[str, Any]) -> str:
    now = status["arbiter_now_ms"]
    lines = ["NODE                 SEEN        STATE  HOST / PID            ROLES"]
    for n in status["nodes"]:
        roles = ", ".join(f"{d}={r}" for d, r in sorted(n["roles"].items())) or "-"
        where = f"{n['host'] or '?'} / {n['pid'] or '?'}"
        seen = _seconds(now - n["last_seen_ms"]) + " ago"
        lines.append(
            f"{n['node']:20} {seen:11} {'up' if n['alive'] else 'DOWN':6} {where:21} {roles}"
        )
    if not status["nodes"]:
        lines.append("(no node has reported yet)")
    lines += ["", "DOMAIN               HOLDER               EPOCH  EXPIRES     SWITCHOVER"]
    for d in status["domains"]:
        if d["holder"] is not None:
            holder, expires = d["holder"], "in " + _seconds(d["expires_at_ms"] - now)
        else:
            last = d["last_holder"]
            holder, expires = "(none)", ("-" if last is None else f"(last: {last})")
        switchover = "-"
        if d["switchover_pending"]:
            switchover = f"pending -> {d['switchover_to'] or 'next candidate'}"
        lines.append(f"{d['domain']:20} {holder:20} {d['epoch']:5}  {expires:11} {switchover}")
    return "\n".join(lines)


@cluster_app.command("status")
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """Nodes (last seen, roles) and domains (holder, epoch, lease expiry, pending switchover)."""
    arbiter = None
    try:
        plan, arbiter = _open(config)
        result = _status(plan, arbiter)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    except Exception as exc:  # ArbiterError and the like: one line, no traceback
        _fail(f"cannot read the cluster state: {exc}")
        return
    finally:
        if arbiter is not None:
            arbiter.close()
    typer.echo(json.dumps(result, indent=2) if as_json else _render(result))


@cluster_app.command("switchover")
def switchover(
    domain: Annotated[str, typer.Argument(help="Domain of control to move")],
    to: Annotated[
        str | None, typer.Option("--to", help="Node to hand over to (default: the next one)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the hand-over")] = 30.0,
    config: ConfigOption = None,
) -> None:
    """Move a domain's leadership: the holder stops writing, releases, the target takes over."""
    from rich.console import Console

    from andon.cluster.model import SwitchoverError

    arbiter = None
    try:
        plan, arbiter = _open(config)
        try:
            plan.domain(domain)
        except KeyError as exc:
            raise SwitchoverError(str(exc.args[0])) from None
        before = arbiter.request_switchover(domain, to, plan.timing.ttl_ms)
        target = to or "the next candidate"
        deadline = time.monotonic() + timeout
        with Console(stderr=True).status(
            f"{domain}: waiting for {before.node} (epoch {before.epoch}) to hand over to {target}"
        ):
            after = None
            while time.monotonic() < deadline:
                now = arbiter.now_ms()
                lease = next((x for x in arbiter.leases() if x.domain == domain), None)
                if lease is not None and lease.epoch > before.epoch and lease.holder_at(now):
                    after = lease
                    break
                time.sleep(0.1)  # a CLI poll, not a test: the arbiter has no notifications
    except (OSError, ValueError, RuntimeError) as exc:  # SwitchoverError is a ValueError
        _fail(str(exc))
        return
    except Exception as exc:
        _fail(f"switchover of {domain} failed: {exc}")
        return
    finally:
        if arbiter is not None:
            arbiter.close()
    if after is None:
        _fail(
            f"{domain}: no new holder after {timeout:.0f} s (is the target running?); the"
            " request stays pending until a candidate takes over"
        )
        return
    typer.echo(
        f"{domain}: {before.node} (epoch {before.epoch}) -> {after.node} (epoch {after.epoch})"
    )
