"""``andon``: a thin shell over the runtime objects. Errors are one clear line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from andon.cli.cluster import cluster_app
from andon.cli.outbox import outbox_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="andon",
    help="Andon MES: edge agent, server, embedded broker, demo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Measure performance figures (DESIGN.md §9) on this machine.", no_args_is_help=True
)
edge_app = typer.Typer(help="The edge agent.", no_args_is_help=True, invoke_without_command=True)
user_app = typer.Typer(help="Users, roles and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(bench_app, name="bench")
app.add_typer(cluster_app, name="cluster")
app.add_typer(outbox_app, name="outbox")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file", exists=True)
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # asyncua logs every request and notification at INFO: only its warnings by default.
    logging.getLogger("asyncua").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _fail(message: str) -> None:
    typer.echo(f"andon: error: {message}", err=True)
    raise typer.Exit(code=2)


def _wait_for_stop(duration: float | None) -> None:
    """Block until Ctrl-C, SIGTERM or the duration has passed."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()
        # A second Ctrl-C (or SIGTERM) ends the process at once, should the clean stop hang.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    stop.wait(timeout=duration)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its data (kept between runs)")
    ] = Path("andon-demo"),
    http_port: Annotated[int, typer.Option(help="Port of the web UI and API")] = 8080,
    mqtt_port: Annotated[int, typer.Option(help="Port of the embedded MQTT broker")] = 1884,
    duration: Annotated[
        float | None, typer.Option(help="Stop by itself after this many seconds")
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            help="simulator: the edges simulate the plant; opcua: they read it from an OPC UA "
            "server serving the same simulated plant"
        ),
    ] = "simulator",
    opcua_port: Annotated[
        int, typer.Option(help="Port of the plant's OPC UA server (--source opcua)")
    ] = 4840,
    verbose: VerboseOption = False,
) -> None:
    """Run everything on one box: embedded broker, server on SQLite, simulated plant, web UI."""
    _logging(verbose)
    from andon.demo import DEMO_SOURCES, DemoPlant
    from andon.server.long_lived import collect_young_less_often, freeze_long_lived_objects

    if source not in DEMO_SOURCES:
        _fail(f"--source must be {' or '.join(DEMO_SOURCES)}, not {source!r}")
        return
    try:
        plant = DemoPlant(
            directory,
            http_port=http_port,
            mqtt_port=mqtt_port,
            source="opcua" if source == "opcua" else "simulator",
            opcua_port=opcua_port,
        )
        plant.start()
    except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
        return
    freeze_long_lived_objects()
    collect_young_less_often()
    logins = "".join(
        f"  log in as      : {name} / {password}\n" for name, password in plant.credentials
    )
    typer.echo(
        f"Andon demo running.\n"
        f"  web UI and API : http://127.0.0.1:{http_port}/  (OpenAPI at /docs)\n"
        f"{logins}"
        f"  (passwords kept in {plant.credentials_path.resolve()})\n"
        f"  MQTT broker    : mqtt://127.0.0.1:{mqtt_port}  (Sparkplug B, any client)\n"
        + (f"  plant (OPC UA) : {plant.plc.endpoint}\n" if plant.plc is not None else "")
        + f"  data           : {directory.resolve()}\n"
        f"Press Ctrl-C to stop."
    )
    try:
        _wait_for_stop(duration)
    finally:
        typer.echo("Stopping the demo...")
        plant.stop()
        typer.echo("Stopped; data kept for the next run.")


@app.command()
def server(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Run the MES server: Sparkplug host application, historian, API and web UI."""
    _logging(verbose)
    from andon.server.long_lived import collect_young_less_often, freeze_long_lived_objects
    from andon.server.mes_server import MesServer
    from andon.settings import ServerSettings, load_settings

    try:
        settings = load_settings(ServerSettings, config)
        mes = MesServer(settings)
        mes.start()
    except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
        return
    freeze_long_lived_objects()
    collect_young_less_often()
    typer.echo(
        f"Andon server {settings.host_id} on http://{settings.http_host}:{settings.http_port}/"
    )
    try:
        _wait_for_stop(None)
    finally:
        mes.stop()


@edge_app.callback()
def edge(ctx: typer.Context, config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Run the edge agent (or use a subcommand such as `andon edge status`)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    _logging(verbose)
    from andon.edge.agent import EdgeAgent
    from andon.settings import EdgeSettings, load_settings

    try:
        settings = load_settings(EdgeSettings, config)
        agent = EdgeAgent(settings)
        agent.start()
    except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
        return
    typer.echo(
        f"Andon edge {settings.group_id}/{settings.edge_node_id} -> "
        f"{settings.mqtt.host}:{settings.mqtt.port}"
    )
    try:
        _wait_for_stop(None)
    finally:
        agent.stop()


@edge_app.command("status")
def edge_status(ctx: typer.Context) -> None:
    """Spool depth, dropped data and session state of an edge, read from its spool file."""
    from andon.edge.status import read_edge_status
    from andon.settings import EdgeSettings, load_settings

    config: Path | None = ctx.obj
    try:
        settings = load_settings(EdgeSettings, config)
        status = read_edge_status(settings.spool.path)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
        return
    for key, value in status.items():
        typer.echo(f"{key:24} {value}")


@edge_app.command("discover")
def edge_discover(
    endpoint: Annotated[str, typer.Argument(help="OPC UA server, opc.tcp://host:port/path")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the TOML here (default: stdout)")
    ] = None,
    depth: Annotated[int, typer.Option(help="How deep to browse below each object")] = 6,
) -> None:
    """Browse an OPC UA server and write a tag configuration ([[opcua]] tables) to review."""
    from andon.edge.sources.opcua_discover import discover

    try:
        text = discover(endpoint, depth=depth)
    except Exception as exc:  # unreachable server, refused session: say so, no traceback
        _fail(f"cannot browse {endpoint}: {exc or type(exc).__name__}")
        return
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}; review it, then add it to the edge configuration")


app.add_typer(edge_app, name="edge")


@app.command()
def broker(
    directory: Annotated[Path, typer.Option("--dir", help="Data directory (JetStream)")] = Path(
        "andon-data/broker"
    ),
    mqtt_port: Annotated[int, typer.Option(help="MQTT listener port")] = 1883,
    nats_port: Annotated[int | None, typer.Option(help="NATS client port")] = None,
    host: Annotated[str, typer.Option(help="Listen address")] = "127.0.0.1",
    verbose: VerboseOption = False,
) -> None:
    """Run the embedded broker: the NATS server with its MQTT listener and JetStream."""
    _logging(verbose)
    from andon.mqtt.embedded_broker import EmbeddedNatsBroker

    nats = EmbeddedNatsBroker(directory, mqtt_port=mqtt_port, nats_port=nats_port, host=host)
    try:
        nats.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"Embedded broker: mqtt://{host}:{mqtt_port} (data in {directory})")
    try:
        _wait_for_stop(None)
    finally:
        nats.stop()


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option(help="Database URL (overrides the settings)")] = None,
) -> None:
    """Create or migrate the database schema to the newest version."""
    from andon.settings import ServerSettings, load_settings
    from andon.storage.migrate import upgrade_database

    try:
        settings = load_settings(ServerSettings, config)
        target = url or settings.database_url
        upgrade_database(target)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    typer.echo("Database schema is up to date.")


@app.command("settings-doc")
def settings_doc(
    readme: Annotated[
        Path | None,
        typer.Option(help="Also regenerate the reference section of this README file"),
    ] = None,
) -> None:
    """Print the configuration reference (Markdown), generated from the declared settings."""
    from andon.settings_doc import render_settings_reference, update_readme

    if readme is not None:
        readme.write_text(update_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    sys.stdout.write(render_settings_reference())


PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of stdin (for scripts); otherwise a "
        "hidden prompt asks for it. There is no --password: it would land in shell history.",
    ),
]


def _user_service(config: Path | None) -> Any:
    from andon.server.auth import UserService
    from andon.settings import ServerSettings, load_settings
    from andon.storage.migrate import upgrade_database
    from andon.storage.users import UserRepository

    settings = load_settings(ServerSettings, config)
    upgrade_database(settings.database_url)
    return UserService(
        UserRepository(settings.database_url),
        token_ttl_ms=round(settings.token_ttl_days * 86_400_000),
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _cli_actor() -> str:
    """Audit name of a CLI change: whoever has shell access to the server's configuration."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name (lower case)")],
    role: Annotated[str, typer.Option(help="operator, supervisor, engineer or admin")],
    display_name: Annotated[str, typer.Option(help="Name shown in the UI")] = "",
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a user with a role."""
    from andon.domain.errors import DomainError
    from andon.domain.users import Role

    try:
        service = _user_service(config)
        parsed = Role.parse(role)
        password = _read_password(password_stdin)
        user = service.create_user(_cli_actor(), username, password, parsed, display_name)
    except (OSError, ValueError, RuntimeError) as exc:  # DomainError is a ValueError
        _fail(str(exc) if isinstance(exc, DomainError) else f"cannot add user: {exc}")
        return
    typer.echo(f"User {user.username} created with role {user.role.value}.")


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """Every user with role and status."""
    try:
        users = _user_service(config).repository.list_users()
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    for user in users:
        status = "disabled" if user.disabled else "active"
        typer.echo(f"{user.username:24} {user.role.value:11} {status:9} {user.display_name}")


@user_app.command("passwd")
def user_passwd(
    username: Annotated[str, typer.Argument(help="Whose password")],
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
) -> None:
    """Set a new password; every session and token of the user ends."""
    try:
        service = _user_service(config)
        service.change_password(_cli_actor(), username, _read_password(password_stdin))
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    typer.echo(f"Password of {username} changed; their sessions and tokens were revoked.")


@user_app.command("token")
def user_token(
    username: Annotated[str, typer.Argument(help="Whose token")],
    ttl_days: Annotated[
        float | None, typer.Option(help="Lifetime (default: the token_ttl_days setting)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print a new API token for scripts (send it as `Authorization: Bearer <token>`)."""
    try:
        service = _user_service(config)
        user = service.repository.get_user(username)
        if user is None or user.disabled:
            _fail(f"no active user {username!r}")
            return
        ttl_ms = None if ttl_days is None else round(ttl_days * 86_400_000)
        issued = service.issue(user, "api", ttl_ms)
    except (OSError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
        return
    # Only the token on stdout, so `TOKEN=$(andon user token x)` works.
    sys.stdout.write(issued.token + "\n")


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
DatabaseOption = Annotated[
    str | None, typer.Option(help="Database URL (default: a new SQLite file)")
]
BrokerOption = Annotated[str, typer.Option(help="nats (embedded) or mosquitto")]


def _print_figures(figures: list[Any], as_json: bool) -> None:
    from andon.bench.report import render_json, render_table

    typer.echo(render_json(figures) if as_json else render_table(figures))


def _run_bench(run: Callable[..., Any], as_json: bool, **options: Any) -> None:
    """Run one benchmark with a progress bar, then print its figures (or one error line)."""
    from rich.progress import Progress

    logging.basicConfig(level=logging.WARNING)
    progress = Progress(transient=True)
    tasks: dict[str, Any] = {}

    def report(task: str, done: float, total: float) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total)
        progress.update(tasks[task], completed=done, total=total)

    try:
        with progress:
            figures = run(progress=report, **options)
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        _fail(str(exc))
        return
    _print_figures(list(figures), as_json)


@bench_app.command("replay")
def bench_replay(
    database: DatabaseOption = None,
    broker: BrokerOption = "nats",
    minutes: Annotated[int, typer.Option(help="Length of the backlog at 1 Hz")] = 60,
    machines: Annotated[int, typer.Option(help="Machines of 25 tags")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Drain one hour of a 500-tag plant from an edge spool into the historian."""
    from andon.bench.replay import run_replay

    _run_bench(
        run_replay,
        as_json,
        database_url=database,
        broker=broker,
        minutes=minutes,
        machines=machines,
    )


@bench_app.command("ingest")
def bench_ingest(
    database: DatabaseOption = None,
    broker: BrokerOption = "nats",
    seconds: Annotated[float, typer.Option(help="How long the load generator publishes")] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Sparkplug DDATA through a real broker into the historian, against the database's limit."""
    from andon.bench.ingest import run_ingest

    _run_bench(run_ingest, as_json, database_url=database, broker=broker, seconds=seconds)


@bench_app.command("query")
def bench_query(
    database: DatabaseOption = None,
    days: Annotated[int, typer.Option(help="Length of the derived history")] = 365,
    repeat: Annotated[int, typer.Option(help="Timed calls of the OEE query")] = 50,
    site_assets: Annotated[int, typer.Option(help="Assets of the site-wide daily OEE")] = 500,
    as_json: JsonOption = False,
) -> None:
    """OEE of one asset over a year, its hourly trend, and the site's daily OEE (p50/p99)."""
    from andon.bench.query import run_query_bench

    _run_bench(
        run_query_bench,
        as_json,
        database_url=database,
        days=days,
        repeat=repeat,
        site_machines=site_assets,
    )


@bench_app.command("all")
def bench_all(
    postgres: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL server URL for the PostgreSQL ingest figure (a new "
            "database is created on it and dropped)"
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Seconds instead of minutes: a smoke run")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every benchmark in turn (under 15 minutes): replay, ingest, query, latency, scale,
    failover."""
    from andon.bench.all import run_all

    _run_bench(run_all, as_json, postgres_url=postgres, quick=quick)


@bench_app.command("latency")
def bench_latency(
    database: DatabaseOption = None,
    broker: BrokerOption = "nats",
    capacity: Annotated[
        float | None,
        typer.Option(help="The server's capacity in values/s (default: measured first)"),
    ] = None,
    load: Annotated[float, typer.Option(help="Background load as a share of capacity")] = 0.2,
    seconds: Annotated[float, typer.Option(help="Measured window")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Edge change to a live-feed client (server-sent events) under load: p50, p99, max."""
    from andon.bench.latency import run_latency

    _run_bench(
        run_latency,
        as_json,
        database_url=database,
        broker=broker,
        capacity=capacity,
        load_fraction=load,
        seconds=seconds,
    )


@bench_app.command("scale")
def bench_scale(
    database: DatabaseOption = None,
    broker: BrokerOption = "nats",
    assets: Annotated[
        int, typer.Option(help="Machines, each with its own state and counters")
    ] = 1000,
    tags: Annotated[int, typer.Option(help="Tags per machine, all changing once a second")] = 25,
    seconds: Annotated[float, typer.Option(help="Measured window after the warm-up")] = 300.0,
    warmup: Annotated[float, typer.Option(help="Seconds of load before measuring")] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """The server's CPU share and memory for a plant at 1 Hz with MES derivation."""
    from andon.bench.scale import run_scale

    _run_bench(
        run_scale,
        as_json,
        database_url=database,
        broker=broker,
        assets=assets,
        tags=tags,
        seconds=seconds,
        warmup=warmup,
    )


@bench_app.command("failover")
def bench_failover(
    trials: Annotated[int, typer.Option(help="kill -9 trials")] = 10,
    database: Annotated[
        str | None,
        typer.Option(help="Database URL, historian and arbiter (default: a new SQLite file)"),
    ] = None,
    broker: BrokerOption = "nats",
    as_json: JsonOption = False,
) -> None:
    """Kill -9 the active node of a redundant pair under a steady stream: time to active,
    values lost and duplicated (default lease timings)."""
    from andon.bench.failover import run_failover

    _run_bench(run_failover, as_json, trials=trials, database_url=database, broker=broker)


def main() -> None:
    app()
