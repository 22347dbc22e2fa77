"""Security defaults: CSP without inline code, CSRF on every state change, safe cookies."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from app.config import ROOT
from conftest import csrf_token, sign_in


class InlineCodeFinder(HTMLParser):
    """Collects anything a strict CSP would block: inline scripts, handlers, style attributes."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            if "src" not in attrs:
                self.problems.append("inline <script>")
            self._in_script = True
        if tag == "style":
            self.problems.append("inline <style>")
        for name in attrs:
            if name.startswith("on") or name.startswith("hx-on") or name == "style":
                self.problems.append(f"<{tag} {name}=…>")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    return finder.problems


@pytest.fixture
def signed_in(client, simulator):
    sign_in(client)
    return client


@pytest.mark.parametrize("path", ["/", "/dashboard", "/no-such-page"])
def test_pages_have_a_strict_csp_and_no_inline_code(signed_in, path):
    response = signed_in.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert inline_code(response.get_data(as_text=True)) == []


def test_anonymous_landing_page_has_no_inline_code(client, database_url):
    response = client.get("/")
    assert response.status_code == 200
    assert "Sign in with Spotify" in response.get_data(as_text=True)
    assert inline_code(response.get_data(as_text=True)) == []


def test_inline_code_finder_finds_inline_code():
    assert inline_code('<script>alert(1)</script><a onclick="x()">') == ["inline <script>", "<a onclick=…>"]


def test_htmx_requests_need_the_csrf_header(signed_in):
    refused = signed_in.post("/auth/logout", headers={"HX-Request": "true"})
    assert refused.status_code == 400
    body = refused.get_data(as_text=True)
    assert "This page has expired" in body and "<html" not in body  # a fragment for HTMX to swap in

    token = csrf_token(signed_in, "/dashboard")
    accepted = signed_in.post("/auth/logout", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 302


def test_session_cookie_is_http_only_and_same_site(client, simulator):
    response = sign_in(client)
    cookies = response.headers.getlist("Set-Cookie")
    session = next(c for c in cookies if c.startswith("audiospective_session="))
    assert "HttpOnly" in session and "SameSite=Lax" in session


def test_htmx_is_vendored_at_a_pinned_2_0_version(client, database_url):
    html = client.get("/").get_data(as_text=True)
    assert 'src="/static/htmx-2.0.11.min.js"' in html
    vendored = (ROOT / "static" / "htmx-2.0.11.min.js").read_text()
    assert vendored.startswith("var htmx=function()") and '"2.0.11"' in vendored
    assert client.get("/static/htmx-2.0.11.min.js").status_code == 200


def test_behind_a_trusted_proxy_https_and_client_addresses_are_recognised(database_url, simulator):
    from app import create_app
    from app.config import load_settings
    from conftest import app_environ

    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "archive.example"}
    direct = create_app({"TESTING": True}, settings=load_settings(app_environ(database_url, simulator.url)))
    assert "Strict-Transport-Security" not in direct.test_client().get("/", headers=forwarded).headers
    behind = create_app({"TESTING": True}, settings=load_settings(app_environ(database_url, simulator.url,
                                                                              TRUST_PROXY="1")))
    response = behind.test_client().get("/", headers=forwarded)
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # Served at an https address, the session and remember cookies are Secure.
    public = create_app({"TESTING": True}, settings=load_settings(app_environ(
        database_url, simulator.url, SPOTIFY_REDIRECT_URI="https://archive.example/auth/callback")))
    assert public.config["SESSION_COOKIE_SECURE"] and public.config["REMEMBER_COOKIE_SECURE"]
    assert not direct.config["SESSION_COOKIE_SECURE"]
    public.extensions["database"].dispose()
    # The client's address is the forwarded one: per-address limits count it, not the proxy.
    client = behind.test_client()
    token = csrf_token(client, "/waitlist")
    for n in range(21):  # 20 per address per hour: the 21st comes from someone else
        ip = "203.0.113.9" if n < 20 else "198.51.100.7"
        answer = client.post("/waitlist", data={"email": f"p{n}@example.org", "csrf_token": token},
                             headers={**forwarded, "X-Forwarded-For": ip, "Referer": "https://archive.example/waitlist"},
                             environ_base={"REMOTE_ADDR": "10.0.0.1"})
        assert answer.status_code == 303, (n, answer.status_code)
    over = client.post("/waitlist", data={"email": "p99@example.org", "csrf_token": token},
                       headers={**forwarded, "Referer": "https://archive.example/waitlist"},
                       environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert over.status_code == 429  # the first address is over its limit
    for app in (direct, behind):
        app.extensions["database"].dispose()


def test_every_response_has_a_request_id_and_json_logs_carry_it(app, client, simulator):
    import json
    import logging

    from conftest import freeze

    from app.logs import JsonFormatter, RequestContext

    freeze(simulator)
    fresh = client.get("/")
    assert len(fresh.headers["X-Request-ID"]) == 32
    assert client.get("/", headers={"X-Request-ID": "edge-42.a"}).headers["X-Request-ID"] == "edge-42.a"
    assert client.get("/", headers={"X-Request-ID": "bad id <script>"}).headers["X-Request-ID"] != "bad id <script>"
    sign_in(client, "sim-acct-sam")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    keep = Keep()
    keep.addFilter(RequestContext())
    keep.setFormatter(JsonFormatter())
    log = logging.getLogger("app.test")
    log.addHandler(keep)
    try:
        with app.test_request_context("/dashboard", headers={"X-Request-ID": "req-7"}):
            app.preprocess_request()  # what gives the request its id
            log.warning("something ünïcode happened")
        log.warning("outside a request")
    finally:
        log.removeHandler(keep)
    inside, outside = (json.loads(line) for line in lines)
    assert inside["request_id"] == "req-7" and inside["message"] == "something ünïcode happened"
    assert inside["level"] == "WARNING" and inside["ts"].endswith("Z") and "request_id" not in outside


def test_the_fast_path_reads_the_scheme_behind_proxies_as_flask_does():
    """security.https (the listen API's fast path, in front of ProxyFix) against werkzeug's
    ProxyFix itself (what Flask sees), for proxies trusted and not, honest and forged."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from app.security import https

    def flask_sees(scheme: str, forwarded: str | None, trusted: int) -> bool:
        seen = {}

        def inner(environ, start_response):
            seen["scheme"] = environ["wsgi.url_scheme"]
            return []
        app = ProxyFix(inner, x_proto=trusted) if trusted else inner
        environ = {"wsgi.url_scheme": scheme, "REMOTE_ADDR": "10.0.0.1"}
        if forwarded is not None:
            environ["HTTP_X_FORWARDED_PROTO"] = forwarded
        app(environ, lambda *a: None)
        return seen["scheme"] == "https"

    cases = [(scheme, forwarded, trusted) for scheme in ("http", "https")
             for forwarded in (None, "", "https", "http", "https, http", "http, https", " , https", "http,", "https,",
                               '"https", http', "HTTPS")
             for trusted in (0, 1, 2)]
    assert [https(*case) for case in cases] == [flask_sees(*case) for case in cases]
    assert https("http", "https", 1) and not https("http", "https", 0) and not https("https", "http", 1)
