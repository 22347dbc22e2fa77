"""The ListenBrainz-compatible API under /1/ (token-authenticated: no cookies, no CSRF)
and the Settings page where people make and revoke their tokens."""

from __future__ import annotations

import math
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..db import get_database, get_session
from ..errors import API_PREFIX
from ..limits import Limit, Limited, Usage, hit
from ..models import User
from ..security import csrf
from ..time import now
from . import ingest, listens, submit, tokens

bp = Blueprint("api", __name__)
RATE_WINDOW = timedelta(seconds=10)


def _limit() -> Limit:
    return Limit("api", current_app.config["SETTINGS"].api_requests_per_10s, RATE_WINDOW)


def _too_many(usage: Usage):
    wait = max(1, math.ceil((usage.resets_at - now()).total_seconds()))
    return lb_error(429, f"Too many requests: at most {usage.limit} in {int(RATE_WINDOW.total_seconds())} seconds. "
                         f"Wait {wait} s (X-RateLimit-Reset-In) and try again.")


@bp.before_request
def rate_limit():
    """ListenBrainz's rate limit, per token (or address): counted for every API request,
    told in X-RateLimit-* headers, 429 in its shape over the limit. (submit-listens
    counts its own, in the statement that checks its token.)"""
    if not request.path.startswith(API_PREFIX) or request.method == "OPTIONS" or \
            request.endpoint == "api.submit_listens":
        return None  # a browser's CORS preflight is not a use
    limit = _limit()
    token = presented_token(in_query=request.endpoint == "api.validate_token")
    subject = tokens.rate_subject(token) if token else f"ip:{request.remote_addr or 'unknown'}"
    try:
        g.api_usage = hit(get_session(), limit, subject, now=now(), durable=False)
    except Limited as exc:
        g.api_usage = Usage(limit.hits, limit.hits + 1, now() + exc.retry_after)
        return _too_many(g.api_usage)
    return None


@bp.after_request
def api_headers(response):
    """CORS as ListenBrainz answers it (any origin: a token, never a cookie, authenticates),
    so players that are web pages can scrobble; and where the rate limit stands."""
    if request.path.startswith(API_PREFIX):
        response.headers.update({
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Expose-Headers": "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset-In, "
                                             "X-RateLimit-Reset, Retry-After",
        })
    usage = g.get("api_usage")
    if usage is not None:
        reset_in = max(0, math.ceil((usage.resets_at - now()).total_seconds()))
        response.headers.update({"X-RateLimit-Limit": str(usage.limit),
                                 "X-RateLimit-Remaining": str(usage.remaining),
                                 "X-RateLimit-Reset-In": str(reset_in),
                                 "X-RateLimit-Reset": str(int(usage.resets_at.timestamp()))})
        if response.status_code == 429:
            response.headers["Retry-After"] = str(max(1, reset_in))
    return response


def lb_error(code: int, message: str):
    """An error in ListenBrainz's shape: {"code": …, "error": …}."""
    return jsonify({"code": code, "error": message}), code


def presented_token(*, in_query: bool = False) -> str | None:
    """The token as ListenBrainz's clients send it: `Authorization: Token <token>` (or,
    for validate-token only, ?token=)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "token" and value.strip():
        return value.strip()
    return (request.args.get("token") or None) if in_query else None


# A body this small (a single listen, playing_now) is read before the token is checked,
# so that checking the token, counting the request and writing the listen are one
# statement; a larger one is read only for a live token within its limit.
READ_FIRST_BYTES = 16 * 1024


@bp.post("/1/submit-listens")
@csrf.exempt  # token-authenticated: no cookie, so nothing for another site to ride on
def submit_listens():
    """The API's busiest path, kept lean: on one pooled psycopg connection in autocommit,
    not the ORM (which cost three times the rest of the request). Answered in ListenBrainz's
    order: the token, the rate limit, then the body; nothing is written for a refused request."""
    token = presented_token()
    if token is None:
        return lb_error(401, "You need to provide an Authorization header.")
    submission = problem = None
    if (request.content_length or READ_FIRST_BYTES + 1) <= READ_FIRST_BYTES:
        submission, problem = _submission()
    with get_database().connection(autocommit=True) as conn:
        listens = submission if submission is not None and submission.listen_type != submit.PLAYING_NOW else None
        who = ingest.authorise(conn, token, _limit(), now=now(), submission=listens)
        g.api_usage = who.usage
        if who.user_id is None:
            return lb_error(401, "Invalid authorization token.")
        if who.usage.used > who.usage.limit:
            return _too_many(who.usage)
        if submission is None and problem is None:
            submission, problem = _submission()
        if problem is not None:
            return lb_error(400, problem)
        ingest.accept(conn, who, submission, now=now())
    return jsonify({"status": "ok"})


def _submission() -> tuple[submit.Submission | None, str | None]:
    """(the request's listens, checked; or what is wrong with them)."""
    try:
        return submit.parse(request.get_data(cache=False), now_s=int(now().timestamp())), None
    except submit.SubmitError as exc:
        return None, str(exc)


@bp.get("/1/validate-token")
def validate_token():
    token = presented_token(in_query=True)
    if token is None:
        return lb_error(400, "You need to provide an Authorization token.")
    session = get_session()
    user = tokens.user_for(session, token, now=now())
    session.commit()  # last_used_at
    if user is None:
        return jsonify({"code": 200, "message": "Token invalid.", "valid": False})
    return jsonify({"code": 200, "message": "Token valid.", "valid": True, "user_name": user.spotify_id})


def _readable(name: str):
    """(the user whose listens `name` names, or an error response): listens are private,
    so only their owner's token reads them; anyone else meets ListenBrainz's 404."""
    session = get_session()
    reader = tokens.user_for(session, presented_token(), now=now())
    user = None if "\x00" in name or len(name) > 200 else listens.owner(session, name, reader)
    session.commit()  # the token's last use
    if user is None:
        return None, lb_error(404, f"Cannot find user: {name}")
    return user, None


@bp.get("/1/user/<name>/listens")
def user_listens(name: str):
    try:
        win = listens.window(request.args)
    except listens.QueryError as exc:
        return lb_error(400, str(exc))
    user, error = _readable(name)
    if error:
        return error
    session = get_session()
    items = listens.listens(session, user, win)
    return jsonify({"payload": {"count": len(items), "latest_listen_ts": listens.latest_ts(session, user),
                                "listens": items, "user_id": user.spotify_id}})


@bp.get("/1/user/<name>/listen-count")
def listen_count(name: str):
    user, error = _readable(name)
    if error:
        return error
    return jsonify({"payload": {"count": listens.listen_count(get_session(), user)}})


@bp.get("/1/user/<name>/playing-now")
def playing_now(name: str):
    """What the user's player said is playing (submit-listens' playing_now), until it ends."""
    user, error = _readable(name)
    if error:
        return error
    current = ingest.playing_now(get_session(), user.id, now=now())
    items = [{"track_metadata": listens.playing_now_metadata(current), "playing_now": True}] if current else []
    return jsonify({"payload": {"count": len(items), "listens": items, "playing_now": True,
                                "user_id": user.spotify_id}})


@bp.get("/dashboard/playing-now")
@login_required
def now_playing():
    """The dashboard's "Playing now" line, which refreshes itself."""
    return render_template("api/_playing_now.html", current=ingest.playing_now(get_session(), current_user.id,
                                                                                 now=now()))


@bp.route("/settings/api", methods=["GET", "POST"])
@login_required
def tokens_page():
    session = get_session()
    made, error = None, None
    if request.method == "POST":
        try:
            made, _ = tokens.create(session, current_user, request.form.get("label", ""), now=now())
            session.commit()
        except tokens.TokenError as exc:
            error = str(exc)
    # The new token is in this response only: never in a redirect, the session or a log.
    response = render_template("api/tokens.html", tokens=tokens.listed(session, current_user.id), made=made,
                               error=error, api_root=request.host_url.rstrip("/"),
                               public=listens.is_public(current_user))
    return response, 400 if error else 200, {"Cache-Control": "no-store"}


@bp.post("/settings/api/privacy")
@login_required
def privacy():
    """Who may read the person's listens through the API: only their tokens (the default),
    or anyone who knows their Spotify account id, as on ListenBrainz."""
    choice = request.form.get("listens")
    if choice not in ("private", "public"):
        abort(400)
    session = get_session()
    user = session.get(User, current_user.id)
    user.preferences = {**(user.preferences or {}), listens.PUBLIC: choice == "public"}
    session.commit()
    flash("Your listens can now be read by anyone who knows your Spotify account id." if choice == "public"
          else "Your listens are private again: only your own tokens read them.", "info")
    return redirect(url_for("api.tokens_page"), code=303)


@bp.post("/settings/api/<id:token_id>/revoke")
@login_required
def revoke(token_id: int):
    session = get_session()
    if not tokens.revoke(session, current_user.id, token_id, now=now()):
        abort(404)
    session.commit()
    flash("Token revoked: clients using it are refused from now on.", "info")
    return redirect(url_for("api.tokens_page"), code=303)
