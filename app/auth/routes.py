"""/auth/login → Spotify's consent page → /auth/callback → dashboard; /auth/logout.

Every way the round trip can go wrong ends on a page that says what happened and what
to do, never a traceback: consent denied, a stale or forged `state`, a code Spotify will
not exchange, an account missing from a development-mode app's allow-list, Spotify down.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from flask import Blueprint, current_app, redirect, request, url_for
from flask import session as flask_session
from flask_login import current_user, login_required, login_user, logout_user

from ..account import sessions
from ..db import get_session
from ..errors import problem, too_many
from ..limits import SIGN_INS_PER_IP, Limited, hit
from ..membership import seats
from ..membership.routes import invite_in_session
from ..spotify.errors import NotAllowListed, RateLimited, SpotifyError
from ..time import now
from .signin import sign_in

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.get("/login")
def login():
    if current_user.is_authenticated and request.args.get("reauthorise") != "1":
        return redirect(url_for("stats.dashboard"))
    settings = current_app.config["SETTINGS"]
    try:
        hit(get_session(), SIGN_INS_PER_IP, request.remote_addr or "unknown", now=now())
    except Limited as exc:
        return too_many(exc.retry_after_s, "Too many sign-ins were started from here.")
    # A full instance sends newcomers to the waitlist before Spotify, not after a consent
    # for nothing. Members say they are (`member=1`: the waitlist page's sign-in link);
    # the callback checks it, and whoever is not a member lands on the waitlist anyway.
    if not current_user.is_authenticated and request.args.get("member") != "1" and invite_in_session() is None \
            and seats.seats_left(get_session(), settings.founding_member_cap, now()) == 0:
        return redirect(url_for("membership.index", full=1))
    oauth_client = current_app.extensions["spotify_oauth"].spotify
    return oauth_client.authorize_redirect(redirect_uri=settings.spotify_redirect_uri)


@bp.get("/callback")
def callback():
    error = request.args.get("error")
    if error == "access_denied":
        return problem(
            "You chose not to connect Spotify",
            "Audiospective needs permission to read your recently played tracks to build your archive. "
            "Nothing was saved. You can try again whenever you like.",
            status=200,
            action=("Try again", url_for("auth.login")),
        )
    if error:
        return problem("Spotify did not complete the sign-in",
                       f"Spotify answered “{error}”. Please try again.", status=400,
                       action=("Try again", url_for("auth.login")))

    oauth_client = current_app.extensions["spotify_oauth"].spotify
    try:
        token = oauth_client.authorize_access_token()
    except MismatchingStateError:
        return problem(
            "This sign-in link has expired",
            "The answer from Spotify does not match a sign-in started in this browser. This happens when "
            "the sign-in was started in another tab or browser, or took too long. Please start again.",
            status=400,
            action=("Sign in again", url_for("auth.login")),
        )
    except OAuthError as exc:
        log.warning("code exchange rejected: %s", exc.error)
        return problem("Spotify did not accept the sign-in",
                       "Spotify refused to complete the sign-in (the code may have been used already). "
                       "Please start again.", status=400, action=("Sign in again", url_for("auth.login")))
    except requests.RequestException:
        return _spotify_unavailable()

    if not token.get("refresh_token") or not token.get("access_token"):
        return problem("Spotify did not complete the sign-in",
                       "Spotify's answer lacked the tokens needed to archive your plays. Please try again.",
                       status=502, action=("Try again", url_for("auth.login")))

    spotify = current_app.extensions["spotify"]
    try:
        profile = spotify.me(token["access_token"])
    except NotAllowListed:
        return problem(
            "This account is not on the allow-list",
            "This instance's Spotify app only serves allow-listed accounts; ask its admin to add your "
            "Spotify account in the Spotify Developer Dashboard (development-mode apps are limited to a "
            "handful of named users).",
            status=403,
        )
    except RateLimited:
        return _spotify_unavailable("Spotify is asking this instance to slow down. Please try again in a few minutes.")
    except SpotifyError:
        return _spotify_unavailable()

    session = get_session()
    try:
        seats.admit(session, profile, default_cap=current_app.config["SETTINGS"].founding_member_cap,
                    invite_id=invite_in_session(), now=now())
    except seats.Full:
        session.rollback()
        log.info("sign-in refused: no seat left for a new account")
        return redirect(url_for("membership.index", full=1))
    user = sign_in(
        session,
        profile,
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_in=int(token.get("expires_in") or 3600),
        scope=token.get("scope"),
        cipher=current_app.extensions["token_cipher"],
        now=now(),
        admin_ids=current_app.config["SETTINGS"].admin_spotify_ids,
    )
    settings = current_app.config["SETTINGS"]
    if current_user.is_authenticated:  # signing in again (to re-authorise): this browser's old sign-in ends
        sessions.end(session, current_user.get_id(), now=now())
    sessions.start(session, user, now=now(), lifetime=timedelta(days=settings.session_days),
                   user_agent=request.headers.get("User-Agent"))
    session.commit()
    going_to = _local_path(flask_session.get("next"))
    flask_session.clear()  # nothing from before the sign-in carries over (fixation)
    login_user(user, remember=True)
    log.info("user %s signed in", user.id)
    return redirect(going_to or url_for("stats.dashboard"))


def _local_path(value) -> str | None:
    """A path on this site (never another site's address: an open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 for c in value) or len(value) > 2000:
        return None
    return value


@bp.post("/logout")
@login_required
def logout():
    """Ends this sign-in server-side: the session and remember cookies stop working
    wherever they are, not only in this browser."""
    session = get_session()
    sessions.end(session, current_user.get_id(), now=now())
    session.commit()
    logout_user()
    return redirect(url_for("public.landing"))


def _spotify_unavailable(message: str = "Spotify is not answering right now. Please try again in a minute."):
    return problem("Spotify is unavailable", message, status=503, action=("Try again", url_for("auth.login")))
