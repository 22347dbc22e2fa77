"""The ListenBrainz-compatible API under /1/ (token-authenticated: no cookies, no CSRF)
and the Settings page where people make and revoke their tokens."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..db import get_database, get_session
from ..errors import API_PREFIX
from ..limits import Limit, Limited, Usage, hit
from ..models import User
from ..security import content_security_policy, csrf, https, response_headers
from ..time import now
from . import fastpath, http, ingest, listens, tokens

bp = Blueprint("api", __name__)


def _limit(app: Flask | None = None) -> Limit:
    """The API's rate limit, from the app's settings as they are now (tests change them)."""
    return http.api_limit((app or current_app).config["SETTINGS"].api_requests_per_10s)


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
        return jsonify(http.too_many(g.api_usage, now())), 429
    return None


@bp.after_request
def api_headers(response):
    """CORS as ListenBrainz answers it, and where the rate limit stands (http.py: the fast
    path sends the same)."""
    if request.path.startswith(API_PREFIX):
        response.headers.update(http.CORS_HEADERS)
    usage = g.get("api_usage")
    if usage is not None:
        response.headers.update(http.rate_limit_headers(usage, response.status_code, now()))
    return response


def lb_error(code: int, message: str):
    """An error in ListenBrainz's shape: {"code": …, "error": …}."""
    return jsonify(http.error(code, message)), code


def presented_token(*, in_query: bool = False) -> str | None:
    """The token as ListenBrainz's clients send it (or, for validate-token only, ?token=)."""
    token = http.token_from(request.headers.get("Authorization", ""))
    if token is None and in_query:
        return request.args.get("token") or None
    return token


@bp.post("/1/submit-listens")
@csrf.exempt  # token-authenticated: no cookie, so nothing for another site to ride on
def submit_listens():
    """What fastpath.py does not take (larger bodies, a chunked one, an error there)."""
    small = (request.content_length or http.READ_FIRST_BYTES + 1) <= http.READ_FIRST_BYTES
    answer = receiver(current_app).receive(presented_token(), request.get_data(cache=False) if small else None,
                                           lambda: request.get_data(cache=False))
    g.api_usage = answer.usage
    return jsonify(answer.body), answer.status


def install(app: Flask) -> None:
    """The web process's submit-listens: one Receiver, whose writer gathers the requests
    of all the process's threads (app/groupcommit.py), answering in the Flask view and in
    the WSGI fast path in front of it; and the ASGI application for gunicorn's `asgi`
    worker (asgi_app()), whose fast path has a writer of its own on the event loop."""
    database, clock, settings = get_database(app), app.extensions["clock"], app.config["SETTINGS"]
    receiver = app.extensions["api.receiver"] = http.Receiver(ingest.writer(database, lambda: _limit(app), clock),
                                                              database, clock)
    csp = content_security_policy(settings)
    respond = fastpath.Responder(receiver, lambda scheme, forwarded_proto: response_headers(
        csp, secure=https(scheme, forwarded_proto, settings.trust_proxy)))
    flask_wsgi = app.wsgi_app
    app.wsgi_app = fastpath.SubmitListens(flask_wsgi, receiver, respond)
    app.extensions["api.asgi"] = lambda: fastpath.SubmitListensASGI(
        flask_wsgi, receiver, ingest.AsyncWriter(database, lambda: _limit(app), clock), respond,
        threads=settings.web_threads)


def asgi_app(app: Flask) -> fastpath.SubmitListensASGI:
    """The app as gunicorn's `asgi` worker serves it (the Procfile's web process)."""
    return app.extensions["api.asgi"]()


def receiver(app: Flask) -> http.Receiver:
    return app.extensions["api.receiver"]


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
