"""`audiospective users …`: list users, add one who has not signed in yet, delete one."""

from __future__ import annotations

import click


@click.group()
def users() -> None:
    """Users: list them, add one who has not signed in yet, or delete one."""


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
