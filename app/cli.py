"""`audiospective`: the one command for everything a person or an operator does."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

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
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from . import create_app, queue

    # A poll holds up to two connections at once (its advisory lock, its transaction).
    flask_app = create_app(pool_size=2 * concurrency + 2)
    settings = flask_app.config["SETTINGS"]
    queue_app = queue.bind(flask_app)

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

    flask_app = create_app()
    with get_database(flask_app).sessionmaker() as session:
        user = _user_or_fail(session, user_ref)
    result = poll_user(Archivist.from_app(flask_app), user.id, wait_for_lock=True)
    click.echo(_describe_poll(user, result))
    click.echo(json.dumps(result.to_json()))
    if result.outcome not in ("archived", "skipped"):
        sys.exit(1)


@cli.command()
@click.option("--limit", type=int, default=100_000, show_default=True, help="Most rows to look up per kind.")
def enrich(limit: int) -> None:
    """Fetch missing track, artist and album details from Spotify now.

    Workers do this in the background, a little at a time; this runs until nothing is
    missing, the request budget runs low or Spotify asks to slow down. The last line is
    a JSON summary.
    """
    import json

    from . import create_app
    from .archival.enrich import KINDS, Enricher

    enricher = Enricher.from_app(create_app())
    summary = {}
    for kind in KINDS:
        done = {"updated": 0, "missing": 0, "requests": 0, "stopped": None}
        while done["updated"] + done["missing"] < limit:
            result = enricher.run(kind, max_items=min(1000, limit))
            for key in ("updated", "missing", "requests"):
                done[key] += getattr(result, key)
            if result.stopped or not (result.updated or result.missing):
                done["stopped"] = result.stopped
                break
        summary[kind] = done
        click.echo(f"{kind}: {done['updated']:,} updated, {done['missing']:,} unknown to Spotify"
                   + (f" (stopped: {done['stopped']})" if done["stopped"] else ""))
    click.echo(json.dumps(summary))


@cli.command("import")
@click.option("--user", "user_ref", required=True, metavar="ID",
              help="The user's Spotify account id (or Audiospective's numeric user id).")
@click.option("--rule", type=click.Choice(["default", "finished"]), default="default", show_default=True,
              help="default: plays of 30 s or more outside private sessions; finished: only plays that ran to the end.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(user_ref: str, rule: str, files: tuple[Path, ...]) -> None:
    """Import Spotify data-export FILES (my_spotify_data.zip, or the JSON files in it) for a user.

    The same code as the web page's import; the last line is the report as JSON. Exit status
    1 if the import was refused (the message says why; nothing was written).
    """
    import json

    from . import create_app
    from .db import get_database
    from .imports.service import Source, create_import, limits_from, run_import
    from .imports.sources import InputError

    flask_app = create_app()
    database = get_database(flask_app)
    with database.session() as session:
        user = _user_or_fail(session, user_ref)
        streams: list = []
        try:
            streams = [(path.name, open(path, "rb")) for path in files]
            record = create_import(session, user.id, streams, rule, store=False)
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            for _, stream in streams:
                stream.close()
        import_id = record.id
    record = run_import(database, import_id, sources=[Source(p.name, p) for p in files],
                        limits=limits_from(flask_app.config["SETTINGS"]))
    if record.status != "done":
        click.echo(f"Import refused: {record.error}", err=True)
        click.echo(json.dumps({"import_id": import_id, "status": record.status, "error": record.error}))
        sys.exit(1)
    report = record.report
    click.echo(f"Imported {report['imported']:,} of {report['rows']:,} rows for {user.display_name} "
               f"({report['already_in_archive']:,} already archived, {report['duplicate_in_upload']:,} duplicates, "
               f"{sum(report['skipped'].values()):,} skipped).")
    click.echo(json.dumps({"import_id": import_id, "status": record.status, "report": report}))


@cli.group()
def users() -> None:
    """Users: list them, or add one who has not signed in yet."""


@users.command("add")
@click.option("--spotify-id", required=True, help="Their Spotify account id (as Spotify's /v1/me reports it).")
@click.option("--name", required=True, help="Display name until they sign in.")
def users_add(spotify_id: str, name: str) -> None:
    """Create a user ahead of their first sign-in (to import their history first, say).

    When they sign in with Spotify, the account and everything imported into it is theirs.
    """
    from . import create_app
    from .db import get_database
    from .models import User
    from .account.users import find_user

    flask_app = create_app()
    with get_database(flask_app).session() as session:
        if find_user(session, spotify_id) is not None:
            raise click.ClickException(f"a user with Spotify id {spotify_id!r} already exists")
        user = User(spotify_id=spotify_id, display_name=name)
        session.add(user)
        session.flush()
        click.echo(f"Added user {user.id}: {name} ({spotify_id}). Import with: audiospective import --user "
                   f"{spotify_id} my_spotify_data.zip")


@users.command("list")
def users_list() -> None:
    """Every user, with archive status and size."""
    import sqlalchemy as sa

    from . import create_app
    from .db import get_database

    flask_app = create_app()
    with get_database(flask_app).engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT u.id, u.spotify_id, u.display_name, u.status, u.authorized_at,
                   (SELECT count(*) FROM plays p WHERE p.user_id = u.id) AS plays, a.last_success_at
              FROM users u LEFT JOIN archive_state a ON a.user_id = u.id ORDER BY u.id
        """)).all()
    if not rows:
        click.echo("No users yet.")
        return
    click.echo(f"{'id':>5}  {'spotify id':<24} {'name':<24} {'status':<16} {'plays':>9}  last poll")
    for row in rows:
        status = row.status if row.authorized_at else "not signed in"
        last = f"{row.last_success_at:%Y-%m-%d %H:%M}" if row.last_success_at else "-"
        click.echo(f"{row.id:>5}  {row.spotify_id[:24]:<24} {row.display_name[:24]:<24} {status:<16} "
                   f"{row.plays:>9,}  {last}")


def _user_or_fail(session, user_ref: str):
    from .account.users import find_user

    user = find_user(session, user_ref)
    if user is None:
        raise click.ClickException(f"no user {user_ref!r} (see `audiospective users list`)")
    return user


def _describe_poll(user, result) -> str:
    who = f"{user.display_name} ({user.spotify_id})"
    lines = []
    if result.outcome == "archived":
        lines.append(f"Polled {who}: Spotify showed {result.items} plays, {result.new_plays} of them new.")
        if result.newest:
            lines.append(f"Newest play archived: {result.newest:%Y-%m-%d %H:%M:%S} UTC.")
        if result.gap:
            from .time import ms_to_datetime

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
