"""`audiospective import`: the Import page's code, from a shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..account.cli import user_or_fail


@click.command("import")
@click.option("--user", "user_ref", required=True, metavar="ID",
              help="The user's Spotify account id (or Audiospective's numeric user id).")
@click.option("--rule", type=click.Choice(["default", "finished"]), default="default", show_default=True,
              help="default: plays of 30 s or more outside private sessions; finished: only plays that ran to the end.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(user_ref: str, rule: str, files: tuple[Path, ...]) -> None:
    """Import history FILES for a user: Spotify's data export (my_spotify_data.zip, or the JSON
    files in it), an Audiospective export, or another service's (Last.fm CSV/JSON, ListenBrainz
    zip/JSON, maloja_export_*.json, Apple Music Play Activity.csv, Google Takeout's
    watch-history.json; docs/imports.md).

    The same code as the web page's import; the last line is the report as JSON. Exit status
    1 if the import was refused (the message says why; nothing was written).
    """
    from .. import create_app
    from ..db import get_database
    from .service import Source, create_import, limits_from, run_import
    from .sources import InputError

    flask_app = create_app(require_spotify=False)  # an import never talks to Spotify
    database = get_database(flask_app)
    with database.session() as session:
        user = user_or_fail(session, user_ref)
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
    if record is None:
        raise click.ClickException(f"user {user_ref!r} was deleted during the import; nothing was imported")
    if record.status != "done":
        click.echo(f"Import refused: {record.error}", err=True)
        click.echo(json.dumps({"import_id": import_id, "status": record.status, "error": record.error}))
        sys.exit(1)
    report = record.report
    click.echo(f"Imported {report['imported']:,} of {report['rows']:,} rows for {user.display_name} "
               f"({report['already_in_archive']:,} already archived, {report['duplicate_in_upload']:,} duplicates, "
               f"{sum(report['skipped'].values()):,} skipped).")
    click.echo(json.dumps({"import_id": import_id, "status": record.status, "report": report}))
