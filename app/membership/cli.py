"""`audiospective waitlist …`: the seats and the waitlist, for operators."""

from __future__ import annotations

import click


def _app():
    from .. import create_app

    return create_app(require_spotify=False)


@click.group()
def waitlist() -> None:
    """Seats and the waitlist: list, invite, remove; show or change the number of seats."""


@waitlist.command("list")
def waitlist_list() -> None:
    """Everyone on the waitlist, in line order, with their state."""
    from ..db import get_database
    from ..time import now
    from . import seats
    from .waitlist import entries, position

    flask_app = _app()
    with get_database(flask_app).sessionmaker() as session:
        settings = flask_app.config["SETTINGS"]
        click.echo(f"Seats: {seats.members(session)} taken of {seats.cap(session, settings.founding_member_cap)}, "
                   f"{seats.held_open(session, now())} held for invitations.")
        rows = entries(session)
        if not rows:
            click.echo("Nobody is on the waitlist.")
            return
        click.echo(f"{'id':>5}  {'email':<40} state")
        for entry in rows:
            if entry.admitted_at:
                state = f"admitted {entry.admitted_at:%Y-%m-%d}"
            elif entry.invited_at:
                state = (f"invited, until {entry.invite_expires_at:%Y-%m-%d %H:%M}" if entry.invite_expires_at > now()
                         else f"invitation expired {entry.invite_expires_at:%Y-%m-%d}")
            elif entry.confirmed_at:
                state = f"#{position(session, entry)} in line (confirmed {entry.confirmed_at:%Y-%m-%d})"
            else:
                state = "not confirmed"
            click.echo(f"{entry.id:>5}  {entry.email[:40]:<40} {state}")


@waitlist.command("invite")
@click.argument("entry_id", type=int)
def waitlist_invite(entry_id: int) -> None:
    """Invite ENTRY_ID (from `waitlist list`) now, seat free or not: the invitation lets
    them through the cap once."""
    from ..db import get_database
    from ..email.outbox import mail_context
    from ..models import WaitlistEntry
    from ..time import now
    from .waitlist import invite

    flask_app = _app()
    settings = flask_app.config["SETTINGS"]
    with mail_context(flask_app), get_database(flask_app).session() as session:
        entry = session.get(WaitlistEntry, entry_id)
        if entry is None or entry.admitted_at is not None:
            raise click.ClickException(f"no waiting entry {entry_id} (see `audiospective waitlist list`)")
        invite(session, entry, secret=settings.secret_key, now=now(), days=settings.invite_days)
        click.echo(f"Invited {entry.email}: the invitation is valid until {entry.invite_expires_at:%Y-%m-%d %H:%M} UTC.")


@waitlist.command("remove")
@click.argument("entry_id", type=int)
def waitlist_remove(entry_id: int) -> None:
    """Take ENTRY_ID off the waitlist."""
    from ..db import get_database
    from .waitlist import remove

    with get_database(_app()).session() as session:
        if not remove(session, entry_id):
            raise click.ClickException(f"no entry {entry_id} (see `audiospective waitlist list`)")
    click.echo(f"Removed entry {entry_id}.")


@waitlist.command("seats")
@click.option("--cap", type=click.IntRange(0, 10_000_000), help="Set the number of seats (overrides "
              "FOUNDING_MEMBER_CAP).")
def waitlist_seats(cap: int | None) -> None:
    """Show the seats, or change how many there are."""
    from ..db import get_database
    from ..time import now
    from . import seats

    flask_app = _app()
    settings = flask_app.config["SETTINGS"]
    with get_database(flask_app).session() as session:
        if cap is not None:
            seats.set_cap(session, cap)
        click.echo(f"{seats.cap(session, settings.founding_member_cap)} seats: {seats.members(session)} taken, "
                   f"{seats.held_open(session, now())} held for invitations, "
                   f"{seats.seats_left(session, settings.founding_member_cap, now())} free.")
