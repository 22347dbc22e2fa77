"""`audiospective export`: the Export page's code, from a shell."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..account.cli import user_or_fail


@click.command("export")
@click.option("--user", "user_ref", required=True, metavar="ID",
              help="The user's Spotify account id (or Audiospective's numeric user id).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "spotify", "pdf", "listenbrainz"]), required=True,
              help="json: complete, re-importable; csv: one row per play; spotify: Spotify's extended-history zip; "
                   "pdf: the listening report of the period; listenbrainz: ListenBrainz's export zip (for ListenBrainz, Koito).")
@click.option("--from", "period_from", metavar="YYYY-MM-DD", help="First day (in the user's time zone).")
@click.option("--to", "period_to", metavar="YYYY-MM-DD", help="Last day, included.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (refused if it exists).")
def export_command(user_ref: str, fmt: str, period_from: str | None, period_to: str | None, output: Path) -> None:
    """Export a user's archive (or a period of it) to a file.

    The same code as the Export page's job; nothing is kept in the database afterwards.
    """
    from .. import create_app
    from ..db import get_database
    from ..email.outbox import mail_context
    from ..models import Export
    from .service import (
        ExportError,
        create_export,
        parse_period,
        run_export,
        write_file,
    )

    if output.exists():
        raise click.ClickException(f"{output} exists; choose another name or remove it first.")
    flask_app = create_app(require_spotify=False)  # an export never talks to Spotify
    database, clock = get_database(flask_app), flask_app.extensions["clock"]
    with database.session() as session:
        user = user_or_fail(session, user_ref)
        try:
            record = create_export(session, user, fmt, *parse_period(period_from, period_to), now=clock())
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
        export_id = record.id
    try:
        with mail_context(flask_app):  # a request context: the PDF report is rendered from templates
            record = run_export(database, export_id, clock=clock, expiry_days=1)
        if record is None or record.status != "done":
            raise click.ClickException(record.error if record else "the export disappeared while it was written")
        partial = output.with_name(output.name + ".part")
        try:
            with open(partial, "wb") as out:
                size = write_file(database, record, out)
            os.replace(partial, output)  # the file appears whole or not at all
        finally:
            partial.unlink(missing_ok=True)
    finally:
        with database.session() as session:
            session.query(Export).filter(Export.id == export_id).delete()
    click.echo(f"Exported {record.rows_written:,} plays of {user.display_name} to {output} ({size:,} bytes).")
