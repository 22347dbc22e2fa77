"""The accounts service (accounts.spotify.com): the consent page and the token endpoint
(authorization-code, refresh and client-credentials grants)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, jsonify, redirect, render_template, request

from .serving import apply_fault, latency, world
from .world import SPOTIFY_SCOPES

bp = Blueprint("accounts", __name__)


@bp.get("/authorize")
def authorize():
    params = request.args
    problem = None
    if params.get("client_id") != world().config.client_id:
        problem = "INVALID_CLIENT: Invalid client"
    elif params.get("response_type") != "code":
        problem = "unsupported_response_type: response_type must be code"
    elif urlsplit(params.get("redirect_uri", "")).scheme not in ("http", "https"):
        problem = "INVALID_CLIENT: Invalid redirect URI"
    else:
        unknown = set(params.get("scope", "").split()) - SPOTIFY_SCOPES
        if unknown:
            problem = f"invalid_scope: {', '.join(sorted(unknown))}"
    if problem:
        return render_template("simulator/error.html", message=problem), 400
    return render_template(
        "simulator/authorize.html",
        accounts=list(world().accounts.values()),
        params=params,
        scopes=params.get("scope", "").split(),
    )


@bp.post("/authorize")
def authorize_decision():
    form = request.form
    redirect_uri = form.get("redirect_uri", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or form.get("client_id") != world().config.client_id:
        return render_template("simulator/error.html", message="INVALID_CLIENT: Invalid redirect URI"), 400
    query: dict[str, str] = {}
    if form.get("decision") != "accept":
        query["error"] = "access_denied"
    else:
        account = world().account(form.get("account", ""))
        if account is None:
            return render_template("simulator/error.html", message="Choose an account to continue."), 400
        query["code"] = world().issue_code(account, redirect_uri, form.get("scope", ""))
    if form.get("state"):
        query["state"] = form["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{separator}{urlencode(query)}")


@bp.post("/api/token")
def token():
    latency()
    sim = world()
    sim.count("token")
    client_id, client_secret = _client_credentials()
    if client_id != sim.config.client_id or client_secret != sim.config.client_secret:
        return _oauth_error(401, "invalid_client", "Invalid client")
    grant_type = request.form.get("grant_type")
    if grant_type == "authorization_code":
        sim.count("token:authorization_code")
        body, error = sim.redeem_code(request.form.get("code", ""), request.form.get("redirect_uri", ""))
    elif grant_type == "client_credentials":
        sim.count("token:client_credentials")
        body, error = sim.app_token(), None
    elif grant_type == "refresh_token":
        sim.count("token:refresh")
        fault = apply_fault(None, "token")
        if fault is not None:
            return fault
        body, error = sim.refresh(request.form.get("refresh_token", ""))
    else:
        return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if error:
        return _oauth_error(400, "invalid_grant", error)
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _oauth_error(status: int, error: str, description: str) -> Response:
    """OAuth's error shape: {"error", "error_description"}."""
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def _client_credentials() -> tuple[str | None, str | None]:
    """Basic auth (what Spotify documents), or client_id/client_secret in the form."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, client_secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return request.form.get("client_id"), request.form.get("client_secret")
