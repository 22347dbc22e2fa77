"""`audiospective users …`: list, add (ahead of a first sign-in), delete, promote, plan, pause, resume."""

from __future__ import annotations

import click


@click.group()
def users() -> None:
    """Users: list, add (ahead of their first sign-in), delete, promote, plan, pause, resume."""


@users.command("add")
@click.option("--spotify-id", required=True, help="Their Spotify account id (as Spotify's /v1/me reports it).")
@click.option("--name", required=True, help="Display name until they sign in.")
def users_add(spotify_id: str, name: str) -> None:
    """Create a user ahead of their first sign-in (to import their history first, say).

    When they sign in with Spotify, the account and everything imported into it is theirs.
    """
    from .. import create_app
    from ..db import get_database
    from .users import UserExists, add_user

    with get_database(create_app(require_spotify=False)).session() as session:
        try:
            user = add_user(session, spotify_id, name)
        except UserExists as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"Added user {user.id}: {name} ({spotify_id}). Import with: audiospective import --user "
                   f"{spotify_id} my_spotify_data.zip")


@users.command("list")
def users_list() -> None:
    """Every user, with archive status and size."""
    from .. import create_app
    from ..db import get_database
    from .users import list_users

    with get_database(create_app(require_spotify=False)).sessionmaker() as session:
        rows = list_users(session)
    if not rows:
        click.echo("No users yet.")
        return
    click.echo(f"{'id':>5}  {'spotify id':<24} {'name':<24} {'status':<16} {'plays':>9}  last poll")
    for row in rows:
        last = f"{row.last_success_at:%Y-%m-%d %H:%M}" if row.last_success_at else "-"
        click.echo(f"{row.id:>5}  {row.spotify_id[:24]:<24} {row.display_name[:24]:<24} {row.status:<16} "
                   f"{row.plays:>9,}  {last}")


def user_or_fail(session, user_ref: str):
    """The user an operator named (Spotify account id or numeric id), or a clear error."""
    from .users import find_user

    user = find_user(session, user_ref)
    if user is None:
        raise click.ClickException(f"no user {user_ref!r} (see `audiospective users list`)")
    return user


@users.command("delete")
@click.argument("user_ref", metavar="USER")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def users_delete(user_ref: str, yes: bool) -> None:
    """Delete USER (Spotify account id or numeric id) and everything of theirs: plays,
    statistics, tokens, imports, exports, shares, mail and sign-ins, in one transaction.

    The shared catalogue (tracks, albums, artists) stays. This cannot be undone."""
    from .. import create_app
    from ..db import get_database
    from .leaving import delete_account, holdings

    with get_database(create_app(require_spotify=False)).session() as session:
        user = user_or_fail(session, user_ref)
        held = holdings(session, user.id)
        what = (f"user {user.id} ({user.display_name}, {user.spotify_id}): {held.plays:,} plays, "
                f"{held.imports} imports, {held.exports} exports, {held.shares} shares")
        if not yes:
            click.confirm(f"Delete {what}?", abort=True)
        delete_account(session, user.id)
    click.echo(f"Deleted {what}.")


def _change_user(user_ref: str, change, done: str) -> None:
    """Apply `change(session, user)` to one user in one transaction and say what was done."""
    from .. import create_app
    from ..db import get_database

    with get_database(create_app(require_spotify=False)).session() as session:
        user = user_or_fail(session, user_ref)
        try:
            change(session, user)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{user.display_name} ({user.spotify_id}): {done}.")


@users.command("promote")
@click.argument("user_ref", metavar="USER")
@click.option("--demote", is_flag=True, help="Take the admin role away instead.")
def users_promote(user_ref: str, demote: bool) -> None:
    """Give USER the admin role (the admin area), or take it away with --demote."""
    from .users import set_role

    role = "member" if demote else "admin"
    _change_user(user_ref, lambda session, user: set_role(user, role), f"role {role}")


@users.command("plan")
@click.argument("user_ref", metavar="USER")
@click.argument("plan", type=click.Choice(["free", "pro"]))
def users_plan(user_ref: str, plan: str) -> None:
    """Put USER on the free or pro plan (pro users are polled first)."""
    from .users import set_plan

    _change_user(user_ref, lambda session, user: set_plan(user, plan), f"plan {plan}")


@users.command("pause")
@click.argument("user_ref", metavar="USER")
def users_pause(user_ref: str) -> None:
    """Stop polling USER (everything is kept) until resumed."""
    from .leaving import pause_archiving

    _change_user(user_ref, pause_archiving, "collection paused")


@users.command("resume")
@click.argument("user_ref", metavar="USER")
def users_resume(user_ref: str) -> None:
    """Poll USER again, soon."""
    from ..time import now
    from .leaving import resume_archiving

    _change_user(user_ref, lambda session, user: resume_archiving(session, user, now=now()), "collection resumed")


@users.command("token")
@click.argument("user_ref", metavar="[USER]", required=False)
@click.option("--spotify-id", "spotify_id", help="The user's Spotify account id (instead of USER).")
@click.option("--label", default="command line", show_default=True, help="What the token is for.")
def users_token(user_ref: str | None, spotify_id: str | None, label: str) -> None:
    """Make a new API token for USER (for scrobblers and scripts using the
    ListenBrainz-compatible API) and print it. It is shown only this once."""
    from .. import create_app
    from ..api.tokens import TokenError, create
    import sqlalchemy as sa

    from ..db import get_database
    from ..models import User
    from ..time import now

    if bool(user_ref) == bool(spotify_id):
        raise click.UsageError("name the user: USER or --spotify-id ID")
    with get_database(create_app(require_spotify=False)).session() as session:
        if spotify_id:  # exactly that account id, even one made of digits
            user = session.scalar(sa.select(User).where(User.spotify_id == spotify_id))
            if user is None:
                raise click.ClickException(f"no user with Spotify id {spotify_id!r} (see `audiospective users list`)")
        else:
            user = user_or_fail(session, user_ref)
        try:
            token, _ = create(session, user, label, now=now())
        except TokenError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(token)
