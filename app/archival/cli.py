"""`audiospective archive` (poll one user now) and `audiospective enrich`."""

from __future__ import annotations

import json
import sys

import click

from ..account.cli import user_or_fail


@click.command()
@click.option("--user", "user_ref", required=True, metavar="ID",
              help="The user's Spotify account id (or Audiospective's numeric user id).")
def archive(user_ref: str) -> None:
    """Poll one user's recently played tracks now and say what happened.

    The last line is the result as JSON. Exit status 1 if the poll failed.
    """
    from .. import create_app
    from ..db import get_database
    from .poll import Archivist, poll_user

    flask_app = create_app()
    with get_database(flask_app).sessionmaker() as session:
        user = user_or_fail(session, user_ref)
    result = poll_user(Archivist.from_app(flask_app), user.id, wait_for_lock=True)
    click.echo(describe_poll(user, result))
    click.echo(json.dumps(result.to_json()))
    if result.outcome not in ("archived", "skipped"):
        sys.exit(1)


@click.command()
@click.option("--limit", type=int, default=100_000, show_default=True, help="Most rows to look up per kind.")
def enrich(limit: int) -> None:
    """Fetch missing track, artist and album details from Spotify now.

    Workers do this in the background, a little at a time; this runs until nothing is
    missing, the request budget runs low or Spotify asks to slow down. The last line is
    a JSON summary.
    """
    from .. import create_app
    from .enrich import KINDS, Enricher

    enricher = Enricher.from_app(create_app())
    summary = {}
    for kind in KINDS:
        done = enricher.run_until_done(kind, limit)
        summary[kind] = {"updated": done.updated, "missing": done.missing, "requests": done.requests,
                         "stopped": done.stopped}
        click.echo(f"{kind}: {done.updated:,} updated, {done.missing:,} unknown to Spotify"
                   + (f" (stopped: {done.stopped})" if done.stopped else ""))
    click.echo(json.dumps(summary))


def describe_poll(user, result) -> str:
    """A poll's result in sentences, for the operator who asked for it."""
    from ..time import ms_to_datetime

    who = f"{user.display_name} ({user.spotify_id})"
    lines = []
    if result.outcome == "archived":
        lines.append(f"Polled {who}: Spotify showed {result.items} plays, {result.new_plays} of them new.")
        if result.newest:
            lines.append(f"Newest play archived: {result.newest:%Y-%m-%d %H:%M:%S} UTC.")
        if result.gap:
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
