"""What the simulated Spotify services share: the `World` of the app serving the request,
Spotify's error body, added latency, and injected faults."""

from __future__ import annotations

import time

from flask import Response, current_app, jsonify, request

from .world import World


def world() -> World:
    return current_app.config["WORLD"]


def base_url() -> str:
    return request.host_url.rstrip("/")


def api_error(status: int, message: str, headers: dict | None = None) -> Response:
    """The Web API's error shape: {"error": {"status", "message"}}."""
    response = jsonify({"error": {"status": status, "message": message}})
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def latency() -> None:
    if world().config.latency_ms:
        time.sleep(world().config.latency_ms / 1000)


def apply_fault(account_key: str | None, endpoint: str) -> Response | None:
    """The response an injected fault stands in for, or None to answer normally."""
    rule = world().fault_for(account_key, endpoint)
    if rule is None:
        return None
    if rule.kind == "rate_limit":
        return api_error(429, "API rate limit exceeded", {"Retry-After": str(rule.retry_after)})
    if rule.kind == "server_error":
        return api_error(rule.status, "Service unavailable")
    if rule.kind == "timeout":
        time.sleep(rule.delay_s)
        return api_error(504, "Gateway timeout")
    if rule.kind == "slow":
        time.sleep(rule.delay_s)
        return None
    if rule.kind == "malformed":
        return Response('{"items": [{"track": ', status=200, mimetype="application/json")
    if rule.kind == "unauthorized":
        return api_error(401, "Invalid access token")
    return None
