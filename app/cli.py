"""`audiospective`: the one command for everything a person or an operator does."""

from __future__ import annotations

import os
import socket
import sys

import click

from .config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ConfigError, load_settings


class _Group(click.Group):
    """Turns configuration problems into one clear line and exit status 2, everywhere."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"audiospective: configuration error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Audiospective: a complete, permanent archive of your Spotify listening history.

    Configuration comes from environment variables (see README, Configuration). With
    DATABASE_URL unset, commands use an embedded Postgres in
    $AUDIOSPECTIVE_DATA_DIR/pg (default ./var/pg).
    """


@cli.command()
@click.option("--demo", is_flag=True, help="Use the built-in Spotify simulator instead of Spotify (automatic when "
              "SPOTIFY_CLIENT_ID is not set).")
@click.option("--port", type=int, default=None, help="Web port [default: $PORT or 5000].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--simulator-port", type=int, default=None, help="Simulator port in demo mode [default: web port + 1].")
@click.option("--web-workers", type=int, default=2, show_default=True, help="gunicorn worker processes.")
def run(demo: bool, port: int | None, host: str, simulator_port: int | None, web_workers: int) -> None:
    """Run everything: database, migrations, web and worker (and the simulator in demo mode)."""
    from .runner import run_all

    sys.exit(run_all(demo=demo, port=port, host=host, simulator_port=simulator_port, web_workers=web_workers))


@cli.command()
@click.option("--concurrency", type=int, default=8, show_default=True, help="Jobs run at once in this process.")
@click.option("--queue", "queues", multiple=True, help="Only take jobs from this queue (repeatable) [default: all].")
def worker(concurrency: int, queues: tuple[str, ...]) -> None:
    """Run a job worker. Start as many as you like, on as many machines as you like."""
    import jobs

    from . import create_app

    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    # A poll holds up to two connections at once (its advisory lock, its transaction).
    flask_app = create_app(pool_size=2 * concurrency + 2)
    settings = flask_app.config["SETTINGS"]
    queue_app = jobs.bind(flask_app)

    async def work() -> None:
        # Our tasks are synchronous: procrastinate runs them on the loop's default thread
        # pool, which asyncio sizes by CPU count, not by --concurrency.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
        async with queue_app.open_async():
            await queue_app.run_worker_async(
                concurrency=concurrency,
                queues=list(queues) or None,
                name=f"{socket.gethostname()}:{os.getpid()}",
                update_heartbeat_interval=settings.worker_heartbeat_s,
                stalled_worker_timeout=settings.stalled_after_s,
            )

    asyncio.run(work())


@cli.command()
@click.option("--user", "user_ref", required=True, metavar="ID",
              help="The user's Spotify account id (or Audiospective's numeric user id).")
def archive(user_ref: str) -> None:
    """Poll one user's recently played tracks now and say what happened.

    The last line is the result as JSON. Exit status 1 if the poll failed.
    """
    import json

    from . import create_app
    from .archival.poll import Archivist, poll_user
    from .db import get_database
    from .users import find_user

    flask_app = create_app()
    with get_database(flask_app).sessionmaker() as session:
        user = find_user(session, user_ref)
    if user is None:
        raise click.ClickException(f"no user {user_ref!r} (use the Spotify account id shown on their dashboard)")
    result = poll_user(Archivist.from_app(flask_app), user.id, wait_for_lock=True)
    click.echo(_describe_poll(user, result))
    click.echo(json.dumps(result.to_json()))
    if result.outcome not in ("archived", "skipped"):
        sys.exit(1)


def _describe_poll(user, result) -> str:
    who = f"{user.display_name} ({user.spotify_id})"
    lines = []
    if result.outcome == "archived":
        lines.append(f"Polled {who}: Spotify showed {result.items} plays, {result.new_plays} of them new.")
        if result.newest:
            lines.append(f"Newest play archived: {result.newest:%Y-%m-%d %H:%M:%S} UTC.")
        if result.gap:
            from .archival.page import ms_to_datetime

            lines.append(f"Gap: plays between {ms_to_datetime(result.gap.starts_ms):%Y-%m-%d %H:%M} and "
                         f"{ms_to_datetime(result.gap.ends_ms):%Y-%m-%d %H:%M} UTC may be missing; importing the "
                         "Spotify data export fills it.")
        for reason, count in result.skipped_items.items():
            lines.append(f"Skipped {count} item(s): {reason}.")
    elif result.outcome == "skipped":
        lines.append(f"Did not poll {who}: {result.message}.")
    else:
        lines.append(f"Poll of {who} {result.outcome.replace('_', ' ')}: {result.message}")
    if result.next_poll_at:
        lines.append(f"Next poll: {result.next_poll_at:%Y-%m-%d %H:%M:%S} UTC.")
    return "\n".join(lines)


@cli.command()
@click.option("--port", type=int, default=5001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed, same catalogue and listening.")
@click.option("--rotate-refresh-tokens", is_flag=True, help="Issue a new refresh token on every refresh and revoke the old.")
@click.option("--dev-mode", is_flag=True, help="Behave like a development-mode Spotify app: batch catalogue "
              "endpoints answer 403, no genres or popularity.")
@click.option("--latency-ms", type=int, default=0, show_default=True, help="Added to every response.")
@click.option("--accounts", "extra_accounts", type=int, default=0, show_default=True,
              help="Also generate this many listeners of mixed profiles (for load tests).")
@click.option("--client-id", default=DEMO_CLIENT_ID, show_default=True)
@click.option("--client-secret", default=DEMO_CLIENT_SECRET, show_default=True)
def simulator(port: int, host: str, seed: int, rotate_refresh_tokens: bool, dev_mode: bool, latency_ms: int,
              extra_accounts: int, client_id: str, client_secret: str) -> None:
    """Serve the Spotify simulator (a fake Spotify for demos and tests)."""
    from werkzeug.serving import make_server

    from .simulator import World, create_simulator, default_accounts, generated_accounts

    world = World(seed=seed, client_id=client_id, client_secret=client_secret,
                  accounts=default_accounts() + generated_accounts(extra_accounts, seed))
    world.config.rotate_refresh_tokens = rotate_refresh_tokens
    world.config.batch_endpoints = not dev_mode
    world.config.dev_mode_fields = dev_mode
    world.config.latency_ms = latency_ms
    server = make_server(host, port, create_simulator(world), threaded=True)
    click.echo(f"Spotify simulator listening on http://{host}:{port} (seed {seed}, "
               f"{len(world.accounts)} accounts); control API under /_sim", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@cli.group()
def db() -> None:
    """Database schema migrations."""


def _database_url() -> str:
    from .db import resolve_database_url

    return resolve_database_url(load_settings(require_spotify=False))


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from . import migrate

    url = _database_url()
    migrate.upgrade(url, revision)
    click.echo(f"database at {migrate.current(url)}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes everything, data included)."""
    from . import migrate

    url = _database_url()
    migrate.downgrade(url, revision)
    click.echo(f"database at {migrate.current(url)}")


@db.command("current")
def db_current() -> None:
    """Show the revision the database is at."""
    from . import migrate

    click.echo(migrate.current(_database_url()))


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does.")
def db_revision(message: str) -> None:
    """Create a new, empty migration file in migrations/versions (for developers)."""
    from . import migrate

    migrate.revision(_database_url(), message)


def main() -> None:
    cli(prog_name="audiospective")
