"""Configuration: read from environment variables only, validated once at start-up.

Every problem is reported as a `ConfigError` whose message is one line naming the
variable, so an operator sees exactly what to fix instead of a traceback.

Two modes decide what "missing" means:

* **Local** (`DATABASE_URL` unset): the app runs its own embedded Postgres under
  `AUDIOSPECTIVE_DATA_DIR`, and secrets it is not given are generated once and kept in
  `<data dir>/secrets.env` so a newcomer sets nothing and sessions survive restarts.
* **Deployed** (`DATABASE_URL` set): secrets must come from the environment.

Spotify credentials are required unless the Spotify URLs point somewhere other than
Spotify's real hosts, i.e. at the simulator (demo mode), which accepts its own built-in
demo client.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

# The project checkout: templates/, static/ and migrations/ live beside app/.
ROOT = Path(__file__).resolve().parent.parent

SPOTIFY_ACCOUNTS_DEFAULT = "https://accounts.spotify.com"
SPOTIFY_API_DEFAULT = "https://api.spotify.com"

# The simulator's built-in client; only ever accepted when the URLs point away from Spotify.
DEMO_CLIENT_ID = "audiospective-demo"
DEMO_CLIENT_SECRET = "audiospective-demo-secret"

CALLBACK_PATH = "/auth/callback"


class ConfigError(Exception):
    """A missing or malformed environment variable; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None  # None: use the embedded Postgres
    secret_key: str
    token_encryption_keys: tuple[str, ...]  # first one encrypts; all of them decrypt
    spotify_client_id: str
    spotify_client_secret: str
    spotify_redirect_uri: str
    spotify_accounts_url: str
    spotify_api_url: str
    port: int
    data_dir: Path
    log_level: str = "INFO"
    generated_secrets: tuple[str, ...] = field(default=())

    @property
    def demo_mode(self) -> bool:
        """True when talking to the simulator rather than Spotify itself."""
        return (
            self.spotify_accounts_url != SPOTIFY_ACCOUNTS_DEFAULT
            or self.spotify_api_url != SPOTIFY_API_DEFAULT
        )

    @property
    def uses_embedded_db(self) -> bool:
        return self.database_url is None


def load_settings(environ: Mapping[str, str] | None = None, *, require_spotify: bool = True) -> Settings:
    """Read and validate the whole configuration; raise ConfigError on the first problem.

    `require_spotify=False` is for commands that never talk to Spotify (migrations): they
    must work before anyone has registered a Spotify app.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    data_dir = Path(get("AUDIOSPECTIVE_DATA_DIR") or "var").resolve()
    database_url = get("DATABASE_URL")
    if database_url is not None:
        database_url = normalise_database_url(database_url)

    port = _parse_port(get("PORT"))

    local_secrets: dict[str, str] = {}
    generated: list[str] = []
    if database_url is None:
        local_secrets = _load_local_secrets(data_dir)

    def secret(name: str, make) -> str:
        value = get(name)
        if value is not None:
            return value
        if database_url is not None:
            raise ConfigError(
                f"{name} is not set (required when DATABASE_URL is set; see README, Configuration)"
            )
        if name not in local_secrets:
            local_secrets[name] = make()
            generated.append(name)
        return local_secrets[name]

    secret_key = secret("SECRET_KEY", lambda: secrets.token_urlsafe(48))
    if len(secret_key) < 16:
        raise ConfigError("SECRET_KEY is malformed: use at least 16 random characters")
    token_keys = _parse_token_keys(
        secret("TOKEN_ENCRYPTION_KEY", lambda: Fernet.generate_key().decode())
    )
    if generated:
        _save_local_secrets(data_dir, local_secrets)

    accounts_url = _parse_base_url("SPOTIFY_ACCOUNTS_URL", get("SPOTIFY_ACCOUNTS_URL") or SPOTIFY_ACCOUNTS_DEFAULT)
    api_url = _parse_base_url("SPOTIFY_API_URL", get("SPOTIFY_API_URL") or SPOTIFY_API_DEFAULT)
    demo = accounts_url != SPOTIFY_ACCOUNTS_DEFAULT or api_url != SPOTIFY_API_DEFAULT

    client_id = get("SPOTIFY_CLIENT_ID") or (DEMO_CLIENT_ID if demo else None)
    client_secret = get("SPOTIFY_CLIENT_SECRET") or (DEMO_CLIENT_SECRET if demo else None)
    if not require_spotify:
        client_id, client_secret = client_id or "", client_secret or ""
    if client_id is None:
        raise ConfigError(
            "SPOTIFY_CLIENT_ID is not set (register an app at developer.spotify.com, "
            "or try the app without one: audiospective run --demo)"
        )
    if client_secret is None:
        raise ConfigError("SPOTIFY_CLIENT_SECRET is not set (it is shown next to the client id in Spotify's dashboard)")

    redirect_uri = _parse_redirect_uri(get("SPOTIFY_REDIRECT_URI") or f"http://127.0.0.1:{port}{CALLBACK_PATH}")

    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL is malformed: use DEBUG, INFO, WARNING or ERROR")

    return Settings(
        database_url=database_url,
        secret_key=secret_key,
        token_encryption_keys=token_keys,
        spotify_client_id=client_id,
        spotify_client_secret=client_secret,
        spotify_redirect_uri=redirect_uri,
        spotify_accounts_url=accounts_url,
        spotify_api_url=api_url,
        port=port,
        data_dir=data_dir,
        log_level=log_level,
        generated_secrets=tuple(generated),
    )


def normalise_database_url(url: str) -> str:
    """Accept Heroku's `postgres://` and plain `postgresql://`; return `postgresql://…`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        rest = url.split("://", 1)[1]
        if not rest or (rest.startswith("?") and "host=" not in rest):
            raise ConfigError("DATABASE_URL is malformed: it names no server")
        return "postgresql://" + rest
    raise ConfigError(
        "DATABASE_URL is malformed: expected postgres://user:password@host:port/dbname"
    )


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy needs the driver spelled out; psycopg itself takes the plain form."""
    return "postgresql+psycopg://" + database_url.split("://", 1)[1]


def _parse_port(raw: str | None) -> int:
    if raw is None:
        return 5000
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"PORT is malformed: {raw!r} is not a TCP port number (1-65535)")
    return int(raw)


def _parse_token_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    hint = (
        "expected one or more comma-separated Fernet keys (32 url-safe base64 bytes); generate one with "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
    if not keys:
        raise ConfigError(f"TOKEN_ENCRYPTION_KEY is malformed: {hint}")
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(f"TOKEN_ENCRYPTION_KEY is malformed: {hint}") from None
    return keys


def _parse_base_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name} is malformed: expected an http(s) URL such as {SPOTIFY_ACCOUNTS_DEFAULT}")
    return raw.rstrip("/")


def _parse_redirect_uri(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("SPOTIFY_REDIRECT_URI is malformed: expected http://127.0.0.1:5000/auth/callback or an https URL")
    if parts.hostname == "localhost":
        raise ConfigError(
            "SPOTIFY_REDIRECT_URI is malformed: Spotify rejects 'localhost'; use http://127.0.0.1:PORT/auth/callback"
        )
    if parts.path.rstrip("/") != CALLBACK_PATH:
        raise ConfigError(f"SPOTIFY_REDIRECT_URI is malformed: its path must be {CALLBACK_PATH}")
    return raw


# --- locally generated secrets ---------------------------------------------------------

_LINE = re.compile(r"^([A-Z_]+)=(.*)$")


def _secrets_path(data_dir: Path) -> Path:
    return data_dir / "secrets.env"


def _load_local_secrets(data_dir: Path) -> dict[str, str]:
    path = _secrets_path(data_dir)
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = _LINE.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _save_local_secrets(data_dir: Path, values: dict[str, str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = _secrets_path(data_dir)
    tmp = path.with_suffix(".tmp")
    body = "# Generated by Audiospective for local runs. Keep private; losing\n" \
           "# TOKEN_ENCRYPTION_KEY means every user has to sign in again.\n"
    body += "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    # Written 0600 and renamed into place, so a crash never leaves half a key file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)
