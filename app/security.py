"""Security defaults applied to every response and every state-changing request.

* CSRF: Flask-WTF checks a token on every POST/PUT/PATCH/DELETE. Forms carry it as a
  hidden field; HTMX requests carry it in the `X-CSRFToken` header, which base.html
  sets for the whole page with `hx-headers`. Tokens live as long as the session rather
  than Flask-WTF's default hour, so a page left open overnight still works.
* Same-origin: a state-changing request that says it comes from another site (its
  `Origin`, or the browser's `Sec-Fetch-Site: cross-site`) is refused before any view
  runs, even with a valid CSRF token: a token can leak, the browser's word cannot be
  forged by a page.
* A NUL in any parameter or form field is refused with a 400 on every route.
* Content Security Policy without 'unsafe-inline' for scripts or styles: the templates
  load only /static files, and htmx is configured (meta tag) not to inject its own style
  element or evaluate strings.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, has_app_context, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from htmx_flask.requests import HtmxAwareRequest
from werkzeug.http import parse_list_header

from .config import Settings
from .errors import API_PREFIX, problem
from .images import image_origins

csrf = CSRFProtect()

def content_security_policy(settings: Settings) -> str:
    img_src = " ".join(["'self' data:", *image_origins(settings)])
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {img_src}",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class LimitedRequest(HtmxAwareRequest):
    """Request bodies are capped at MAX_CONTENT_LENGTH, except where an endpoint declares a
    bigger limit (`BODY_LIMITS`, endpoint -> config key). Decided when the body is parsed,
    which is before any view runs (the CSRF check reads the form first)."""

    BODY_LIMITS = {"imports.upload": "IMPORT_MAX_UPLOAD_BYTES", "api.submit_listens": "API_MAX_BODY_BYTES"}

    @property
    def max_content_length(self) -> int | None:
        key = self.BODY_LIMITS.get(self.endpoint or "")
        if key and has_app_context():
            return current_app.config[key]
        return super().max_content_length


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Checks that must answer before a request's body is read (endpoint -> check returning a
# response to refuse with, or None): a large upload is refused before the server spends
# its disk on it. They run ahead of the CSRF check, which reads the body.
_BEFORE_BODY: dict[str, Callable[[], object]] = {}


def before_body(endpoint: str):
    """Register `check` to run for `endpoint` before its body is read."""
    def register(check: Callable[[], object]) -> Callable[[], object]:
        _BEFORE_BODY[endpoint] = check
        return check
    return register


def cross_site(req) -> bool:
    """Whether a request says it was sent by a page of another site."""
    if req.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = req.headers.get("Origin")
    if origin is None:
        return False  # older browsers and non-browser clients: the CSRF token decides
    # Hosts, not schemes: behind a proxy that ends TLS the app sees http for an https page.
    return urlsplit(origin).netloc.lower() != req.host.lower()


def response_headers(csp: str, *, secure: bool) -> dict[str, str]:
    """The headers every response carries (a view's own value of one wins)."""
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def https(scheme: str, forwarded_proto: str | None, trusted_proxies: int) -> bool:
    """Whether the client's request came over https: by the scheme the server saw, or,
    behind TRUST_PROXY proxies, by what they say in X-Forwarded-Proto, read as werkzeug's
    ProxyFix reads it for Flask (the value the farthest trusted proxy added)."""
    if trusted_proxies and forwarded_proto:
        values = parse_list_header(forwarded_proto)
        if len(values) >= trusted_proxies and values[-trusted_proxies]:
            return values[-trusted_proxies] == "https"
    return scheme == "https"


def token_authenticated(req) -> bool:
    """The ListenBrainz-compatible API (/1/): its clients send a token, never a cookie, so a
    page of another site cannot act with a visitor's session there; players that are web
    pages or browser extensions (web-scrobbler) call it from other origins by design."""
    return req.path.startswith(API_PREFIX)


class SessionInterface(SecureCookieSessionInterface):
    """The signed-cookie session, except on the token-authenticated API: a player's
    request never reads or sets the cookie (nothing there may depend on a browser's
    session), and opening one was a tenth of what a single listen cost the web process."""

    def open_session(self, app, req):
        return None if token_authenticated(req) else super().open_session(app, req)


def init_app(app: Flask, settings: Settings) -> None:
    app.request_class = LimitedRequest
    app.session_interface = SessionInterface()
    app.config["IMPORT_MAX_UPLOAD_BYTES"] = settings.import_max_upload_bytes
    # ListenBrainz's own: 1,000 listens of 10,240 bytes (app/api/submit.py), and room for the envelope.
    app.config["API_MAX_BODY_BYTES"] = 1000 * 10240 + 64 * 1024
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session's lifetime

    @app.before_request
    def check_before_body():
        check = _BEFORE_BODY.get(request.endpoint or "")
        return check() if check and request.method in UNSAFE_METHODS else None

    csrf.init_app(app)  # after check_before_body: Flask runs before_request hooks in order
    csp = content_security_policy(settings)

    @app.before_request
    def refuse_unusable_input():
        """NUL cannot be stored in or compared with Postgres text: whatever route a NUL is
        sent to, it is the sender's mistake (or probe), answered before any view runs."""
        if token_authenticated(request):
            return None  # its JSON body is its own to check (and must not be read as a form)
        fields = request.args if request.method not in UNSAFE_METHODS else request.values
        if any("\x00" in key or any("\x00" in value for value in fields.getlist(key)) for key in fields):
            return problem("That request cannot be used",
                           "It contains a NUL character, which no search, date or name can hold.", status=400)

    # Runs after Flask-WTF's token check (registered first): a foreign request with a bad
    # token gets the expired-form page, one with a good token this.
    @app.before_request
    def refuse_cross_site_changes():
        if request.method in UNSAFE_METHODS and cross_site(request) and not token_authenticated(request):
            return problem("This request came from another site",
                           "For your safety, changes can only be made from Audiospective's own pages. "
                           "Go back to Audiospective and try again there.", status=403)

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in response_headers(csp, secure=request.is_secure).items():
            headers.setdefault(name, value)
        if response.mimetype == "text/html":
            # Pages show personal data: never let a shared cache keep them.
            headers.setdefault("Cache-Control", "no-store")
        return response
