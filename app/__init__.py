"""Audiospective: a complete, permanent archive of Spotify listening history.

`create_app()` wires the Flask application from validated configuration. The same
factory serves gunicorn (wsgi.py), the CLI, the worker (which uses its extensions:
database, token service, templates) and tests (which pass their own settings).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from htmx_flask import Htmx

from . import db, logs, security, templating
from .config import ROOT, Settings, load_settings
from .crypto import TokenCipher
from .spotify.client import SpotifyClient
from .spotify.tokens import TokenService
from .time import Clock, utcnow


def create_app(test_config: dict[str, Any] | None = None, *, settings: Settings | None = None,
               pool_size: int | None = None, clock: Clock = utcnow, require_spotify: bool = True) -> Flask:
    """`clock` is every "now" the app asks for (time.now()); tests pass the simulator's.
    `pool_size` is the most database connections this process opens; by default a web
    process's pool (WEB_THREADS + 1; README, Connection budget).
    `require_spotify=False` is for commands that never talk to Spotify (an import, adding a
    user): they must not refuse to start for want of a Spotify app."""
    settings = settings or load_settings(require_spotify=require_spotify)
    configure_logging(settings.log_level, settings.log_format)

    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="audiospective_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # Lax, not Strict: the OAuth callback is a cross-site navigation
        SESSION_COOKIE_SECURE=settings.spotify_redirect_uri.startswith("https://"),
        REMEMBER_COOKIE_SECURE=settings.spotify_redirect_uri.startswith("https://"),
        REMEMBER_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        SETTINGS=settings,
    )
    if test_config:
        app.config.update(test_config)
    database = db.Database(db.resolve_database_url(settings),
                           pool_size=pool_size or db.web_pool_size(settings.web_threads))
    db.init_app(app, database)
    cipher = TokenCipher(settings.token_encryption_keys)
    spotify = SpotifyClient.from_settings(settings)
    app.extensions["token_cipher"] = cipher
    app.extensions["spotify"] = spotify
    app.extensions["clock"] = clock
    app.extensions["tokens"] = TokenService(database=database, client=spotify, cipher=cipher, clock=clock)

    Htmx(app)
    logs.init_app(app)
    security.init_app(app, settings)
    templating.init_app(app, demo_mode=settings.demo_mode)

    from . import auth, errors, healthz, metrics
    from .account import routes as account
    from .api import routes as api
    from .email import routes as mail
    from .exports import routes as exports
    from .admin import routes as admin
    from .alerts import routes as alerts
    from .membership import routes as membership
    from .reports import routes as reports
    from .shares import routes as shares
    from .imports import routes as imports
    from .public import routes as public
    from .stats import routes as stats_routes

    app.register_blueprint(errors.bp)
    app.register_blueprint(public.bp)
    auth.init_app(app, settings)
    app.register_blueprint(account.bp)
    app.register_blueprint(imports.bp)
    app.register_blueprint(exports.bp)
    app.register_blueprint(mail.bp)
    app.register_blueprint(shares.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(membership.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(admin.bp)
    security.csrf.exempt(admin.bp)  # checked by admin.bp itself, after the 404 for non-admins
    stats_routes.init_app(app)
    app.register_blueprint(healthz.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(api.bp)
    if settings.trust_proxy:
        # Behind TRUST_PROXY proxies (Heroku's router, a TLS-terminating nginx): the client's
        # address (per-address limits), scheme (HSTS, secure links) and host from their headers.
        # (The fast path in front reads the scheme the same way: security.https.)
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trust_proxy
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    api.install(app)  # submit-listens' fast path, in front of Flask
    return app


def configure_logging(level: str, fmt: str = "text") -> None:
    logs.configure(level, fmt)
