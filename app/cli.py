"""`audiospective`: the one command for everything a person or an operator does.

The root group holds the process commands (`run`, `worker`) and the schema (`db`); each
area brings its own commands from its `cli.py`, composed here:

    users      app/account/cli.py
    waitlist   app/membership/cli.py
    archive, enrich   app/archival/cli.py
    import     app/imports/cli.py
    export     app/exports/cli.py
    simulator  app/simulator/cli.py

Commands import what they need inside the function, so `--help` answers at once.
"""

from __future__ import annotations

import os
import socket
import sys

import click

from .account.cli import users
from .archival.cli import archive, enrich
from .config import ConfigError, load_settings
from .exports.cli import export_command
from .imports.cli import import_command
from .membership.cli import waitlist
from .simulator.cli import simulator


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
    """Run everything: database, migrations, web and worker (and the simulator in demo mode).

    Whatever dies (web, worker, simulator, the embedded Postgres) is started again while the
    rest keeps serving. Ctrl-C stops it all."""
    from .runner import run_all

    sys.exit(run_all(demo=demo, port=port, host=host, simulator_port=simulator_port, web_workers=web_workers))


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 256), default=None,
              help="Jobs run at once in this process  [default: WORKER_CONCURRENCY, else 2].")
@click.option("--queue", "queues", multiple=True, help="Only take jobs from this queue (repeatable) [default: all].")
def worker(concurrency: int | None, queues: tuple[str, ...]) -> None:
    """Run a job worker. Start as many as you like, on as many machines as you like.

    When the database goes away, the worker waits and reconnects rather than exiting. It
    opens at most 2 x concurrency + 4 database connections (README, Connection budget)."""
    from . import create_app, db, queue

    settings = load_settings()
    concurrency = concurrency or settings.worker_concurrency
    flask_app = create_app(settings=settings, pool_size=db.worker_pool_size(concurrency))
    queue.run_worker(flask_app, concurrency=concurrency, queues=list(queues) or None,
                     name=f"{socket.gethostname()}:{os.getpid()}")


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


for command in (archive, enrich, import_command, export_command, users, waitlist, simulator):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="audiospective")
