"""What a visitor sees when something goes wrong: one friendly page (or, for an HTMX
request, a fragment) for every error, never a traceback.

`problem()` is also how views answer a failure they expected (a refused sign-in, a bad
upload): a title, a sentence saying what happened and what to do, and at most one action.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .db import DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)

API_PREFIX = "/1/"  # the ListenBrainz-compatible API (app/api)
MESSAGES = {
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not allowed", "That action cannot be done from here."),
    413: ("Upload too large", "The file is larger than this server accepts."),
}


def problem(title: str, message: str, *, status: int, action: tuple[str, str] | None = None):
    """A friendly page, or fragment for HTMX, explaining what went wrong; (body, status)."""
    if request.path.startswith(API_PREFIX):  # ListenBrainz's clients read its error shape
        return jsonify({"code": status, "error": message or title}), status
    template = "errors/_problem.html" if getattr(request, "htmx", False) else "errors/problem.html"
    return render_template(template, title=title, message=message, action=action), status


def too_many(retry_after_s: int, what: str):
    """429 for a limit reached (app/limits.py), with Retry-After."""
    wait = f"{-(-retry_after_s // 60)} minute{'s' if retry_after_s > 60 else ''}" if retry_after_s >= 60 \
        else f"{retry_after_s} seconds"
    body, status = problem("Too many attempts", f"{what} Please try again in {wait}.", status=429)
    return body, status, {"Retry-After": str(retry_after_s)}


@bp.app_errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    return problem("This page has expired",
                   "For your safety the form could not be sent (its security token is missing or stale). "
                   "Reload the page and try again.", status=400)


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    title, message = MESSAGES.get(exc.code or 500, (exc.name, exc.description or ""))
    return problem(title, message, status=exc.code or 500)


RETRY_AFTER_S = 15


def database_unavailable(exc: Exception):
    log.warning("database unavailable on %s %s: %s", request.method, request.path, str(exc).splitlines()[0][:200])
    # The page must not ask the database who is signed in: it would fail again.
    g._login_user = current_app.login_manager.anonymous_user()
    body, status = problem("Audiospective is unavailable for a moment",
                           "Its database is not answering (it may be restarting). Nothing you have saved is lost. "
                           "Please try again in a few seconds.", status=503)
    return body, status, {"Retry-After": str(RETRY_AFTER_S)}


for _kind in DATABASE_UNAVAILABLE:
    bp.app_errorhandler(_kind)(database_unavailable)


@bp.app_errorhandler(Exception)
def unexpected_error(exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem("Something went wrong on our side",
                   "The error has been logged. Please try again; if it keeps happening, tell the admin of this instance.",
                   status=500)
