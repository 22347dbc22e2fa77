"""Sign-in with Spotify: the OAuth authorization-code flow (authlib) and sessions
(flask-login).

    routes.py   /auth/login -> Spotify's consent page -> /auth/callback; /auth/logout
    signin.py   what a completed sign-in does (account, tokens, collection resumed)
"""

from __future__ import annotations

from datetime import timedelta

from authlib.integrations.flask_client import OAuth
from flask import Flask
from flask_login import LoginManager

from ..account import sessions
from ..config import Settings
from ..db import get_session
from ..models import User
from ..time import now
from .routes import bp

# The one scope archival needs; asking for less than everything is a courtesy users notice.
SCOPES = "user-read-recently-played"


def init_app(app: Flask, settings: Settings) -> None:
    login_manager = LoginManager(app)
    login_manager.login_view = "public.landing"
    login_manager.login_message = "Sign in with Spotify to see your archive."
    login_manager.login_message_category = "info"

    # The cookies hold a sign-in's token, checked server-side on every request.
    @login_manager.user_loader
    def load_user(token: str) -> User | None:
        return sessions.resume(get_session(), token, now=now())

    # A signed-out visitor sent to sign in (a download link from a mail, say) comes back to
    # where they were going: flask-login keeps that path in the session, the callback uses it.
    app.config["USE_SESSION_FOR_NEXT"] = True
    app.config["REMEMBER_COOKIE_DURATION"] = timedelta(days=settings.session_days)
    app.config["REMEMBER_COOKIE_HTTPONLY"] = True

    # One OAuth registry per app, so tests can run apps pointed at different simulators.
    oauth = OAuth(app)
    oauth.register(
        name="spotify",
        client_id=settings.spotify_client_id,
        client_secret=settings.spotify_client_secret,
        authorize_url=f"{settings.spotify_accounts_url}/authorize",
        access_token_url=f"{settings.spotify_accounts_url}/api/token",
        client_kwargs={"scope": SCOPES, "token_endpoint_auth_method": "client_secret_basic", "timeout": 20},
    )
    app.extensions["spotify_oauth"] = oauth
    app.register_blueprint(bp)
