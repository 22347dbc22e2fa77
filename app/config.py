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

import math
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
class FailureRule:
    """How one class of failure opens a user's circuit (see app/archival/failures.py)."""

    base_s: int  # cooldown after the circuit opens
    cap_s: int  # cooldown never grows beyond this
    deactivate_after: int  # consecutive failures of this class that deactivate the user


@dataclass(frozen=True)
class ArchivalSettings:
    # Poll-interval bounds per plan, in seconds, and a floor no plan goes below.
    free_interval_s: tuple[int, int] = (5 * 60, 60 * 60)
    pro_interval_s: tuple[int, int] = (2 * 60, 30 * 60)
    global_min_interval_s: int = 2 * 60
    failures: dict[str, FailureRule] = field(default_factory=lambda: dict(DEFAULT_FAILURE_RULES))
    max_cooldown_multiplier: int = 8
    # App-wide Spotify request budget over Spotify's rolling 30 s window, and the share of
    # it that enrichment may never touch (polling comes first).
    requests_per_30s: int = 150
    polling_reserve: float = 0.3
    users_per_job: int = 25


DEFAULT_FAILURE_RULES = {
    "auth": FailureRule(30 * 60, 4 * 3600, 3),
    "network": FailureRule(10 * 60, 3600, 8),
    "spotify_5xx": FailureRule(10 * 60, 3600, 15),
    "bad_data": FailureRule(15 * 60, 2 * 3600, 10),
    "unknown": FailureRule(20 * 60, 3 * 3600, 7),
}


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
    log_format: str = "text"  # or "json": one object per line (app/logs.py)
    generated_secrets: tuple[str, ...] = field(default=())
    archival: ArchivalSettings = field(default_factory=ArchivalSettings)
    import_max_upload_bytes: int = 512 * 1024**2
    import_max_waiting: int = 2  # a person's imports queued or running at once
    import_max_expanded_bytes: int = 4 * 1024**3
    export_expiry_days: float = 7.0
    # Email (app/email): None = no SMTP, mail stays in the outbox (readable in the app).
    smtp: SmtpSettings | None = None
    mail_from: str = "Audiospective <audiospective@localhost>"
    export_max_waiting: int = 2  # a person's exports queued or being written at once
    # Membership (app/membership): seats for founding members (an admin can raise it), and
    # how long an invitation from the waitlist stays valid.
    # The bearer token a Prometheus scraper sends to GET /metrics (unset: no /metrics).
    metrics_token: str | None = None
    api_requests_per_10s: int = 100  # per API token (or address, without one); ListenBrainz's X-RateLimit-*
    # How many proxies in front of the app set X-Forwarded-* (0: trust none of them).
    trust_proxy: int = 0
    # Spotify account ids (or legacy ids) made admins when they sign in (app/admin).
    admin_spotify_ids: frozenset[str] = frozenset()
    email_max_per_hour: int = 200  # messages sent per hour at most; over it they wait (alerts first)
    founding_member_cap: int = 100
    invite_days: float = 7.0
    # Worker liveness: heartbeat period, and how long silence means a worker is gone.
    worker_heartbeat_s: float = 10.0
    stalled_after_s: float = 60.0
    # How long a sign-in lasts without signing in again (server-side, and the remember cookie).
    session_days: float = 30.0
    # The connection budget (README): a web process's request threads and a worker's jobs
    # at once size their connection pools (app/db.py). 3 threads: a web process's 3 + 1
    # pooled connections and its listen writer's fit two processes and a worker in 20.
    web_threads: int = 3
    worker_concurrency: int = 2

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

    @property
    def public_url(self) -> str:
        """Where people reach this instance, for links in emails: the origin of the
        Spotify redirect URI, which must be that address for sign-in to work at all."""
        parts = urlsplit(self.spotify_redirect_uri)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str  # "ssl" (implicit TLS), "starttls" (required), "opportunistic" (STARTTLS when offered), "none"
    username: str | None = None
    password: str | None = None


def load_settings(environ: Mapping[str, str] | None = None, *, require_spotify: bool = True) -> Settings:
    """Read and validate the whole configuration; raise ConfigError on the first problem.

    `require_spotify=False` is for commands that never talk to Spotify (migrations,
    imports, adding users): they must work before anyone has registered a Spotify app.
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

    archival = ArchivalSettings(
        free_interval_s=_parse_minutes_range("POLL_INTERVAL_FREE", get("POLL_INTERVAL_FREE"), (5, 60)),
        pro_interval_s=_parse_minutes_range("POLL_INTERVAL_PRO", get("POLL_INTERVAL_PRO"), (2, 30)),
        global_min_interval_s=int(_parse_number("POLL_INTERVAL_MIN_MINUTES", get("POLL_INTERVAL_MIN_MINUTES"), 2,
                                                minimum=0.1) * 60),
        failures={kind: _parse_failure_rule(kind, get(f"FAILURE_{kind.upper()}"), rule)
                  for kind, rule in DEFAULT_FAILURE_RULES.items()},
        max_cooldown_multiplier=int(_parse_number("FAILURE_MAX_MULTIPLIER", get("FAILURE_MAX_MULTIPLIER"), 8,
                                                  minimum=1)),
        requests_per_30s=int(_parse_number("SPOTIFY_REQUESTS_PER_30S", get("SPOTIFY_REQUESTS_PER_30S"), 150,
                                           minimum=1)),
        polling_reserve=_parse_number("SPOTIFY_POLLING_RESERVE", get("SPOTIFY_POLLING_RESERVE"), 0.3,
                                      minimum=0, maximum=1),
        users_per_job=int(_parse_number("POLL_USERS_PER_JOB", get("POLL_USERS_PER_JOB"), 25, minimum=1)),
    )

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
        log_format=_parse_log_format(get("LOG_FORMAT")),
        generated_secrets=tuple(generated),
        archival=archival,
        import_max_upload_bytes=int(_parse_number("IMPORT_MAX_UPLOAD_MB", get("IMPORT_MAX_UPLOAD_MB"), 512,
                                                  minimum=1) * 1024**2),
        import_max_waiting=int(_parse_number("IMPORT_MAX_WAITING", get("IMPORT_MAX_WAITING"), 2, minimum=1,
                                             maximum=100)),
        import_max_expanded_bytes=int(_parse_number("IMPORT_MAX_EXPANDED_MB", get("IMPORT_MAX_EXPANDED_MB"), 4096,
                                                    minimum=1) * 1024**2),
        export_expiry_days=_parse_number("EXPORT_EXPIRY_DAYS", get("EXPORT_EXPIRY_DAYS"), 7, minimum=0.01,
                                         maximum=366),
        export_max_waiting=int(_parse_number("EXPORT_MAX_WAITING", get("EXPORT_MAX_WAITING"), 2, minimum=1,
                                             maximum=100)),
        metrics_token=(get("METRICS_TOKEN") or "").strip() or None,
        api_requests_per_10s=int(_parse_number("API_REQUESTS_PER_10S", get("API_REQUESTS_PER_10S"), 100, minimum=1,
                                               maximum=1_000_000)),
        trust_proxy=int(_parse_number("TRUST_PROXY", get("TRUST_PROXY"), 0, minimum=0, maximum=5)),
        admin_spotify_ids=frozenset(i.strip() for i in (get("ADMIN_SPOTIFY_IDS") or "").split(",") if i.strip()),
        email_max_per_hour=int(_parse_number("EMAIL_MAX_PER_HOUR", get("EMAIL_MAX_PER_HOUR"), 200, minimum=1,
                                             maximum=1_000_000)),
        founding_member_cap=int(_parse_number("FOUNDING_MEMBER_CAP", get("FOUNDING_MEMBER_CAP"), 100, minimum=0,
                                              maximum=10_000_000)),
        invite_days=_parse_number("INVITE_DAYS", get("INVITE_DAYS"), 7, minimum=0.01, maximum=366),
        smtp=_parse_smtp_url(get("SMTP_URL"), get("SMTP_USERNAME"), get("SMTP_PASSWORD")),
        mail_from=_parse_mail_from(get("MAIL_FROM")),
        worker_heartbeat_s=_parse_number("WORKER_HEARTBEAT_SECONDS", get("WORKER_HEARTBEAT_SECONDS"), 10, minimum=0.5),
        stalled_after_s=_parse_number("WORKER_STALLED_AFTER_SECONDS", get("WORKER_STALLED_AFTER_SECONDS"), 60,
                                      minimum=1),
        session_days=_parse_number("SESSION_DAYS", get("SESSION_DAYS"), 30, minimum=0.01, maximum=366),
        web_threads=int(_parse_number("WEB_THREADS", get("WEB_THREADS"), 3, minimum=1, maximum=256)),
        worker_concurrency=int(_parse_number("WORKER_CONCURRENCY", get("WORKER_CONCURRENCY"), 2, minimum=1,
                                             maximum=256)),
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
    """Fernet keys, comma-separated; the first encrypts. A key not in Fernet form but of at
    least 32 characters (a platform's generated secret: Heroku's is 64 hex digits) is a
    passphrase the key is derived from, the same on every start; a Fernet key is used as
    it is, so tokens encrypted under existing keys stay readable."""
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    hint = (
        "expected one or more comma-separated Fernet keys (32 url-safe base64 bytes) or random secrets of at "
        "least 32 characters; generate one with "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
    if not keys:
        raise ConfigError(f"TOKEN_ENCRYPTION_KEY is malformed: {hint}")
    return tuple(_fernet_key(key, hint) for key in keys)


def _fernet_key(key: str, hint: str) -> str:
    try:
        Fernet(key)
        return key
    except (ValueError, TypeError):
        pass
    if len(key) < 32:
        raise ConfigError(f"TOKEN_ENCRYPTION_KEY is malformed: {hint}")
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    # HKDF, not a bare hash: the secret is high-entropy already; the fixed `info` keeps
    # this key apart from anything else ever derived from the same secret.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"audiospective token encryption key").derive(key.encode())
    return base64.urlsafe_b64encode(derived).decode()


def _parse_base_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{name} is malformed: expected an http(s) URL such as {SPOTIFY_ACCOUNTS_DEFAULT}")
    return raw.rstrip("/")


def _parse_smtp_url(raw: str | None, username: str | None, password: str | None) -> SmtpSettings | None:
    """smtp://[user:password@]host[:port][?starttls=required|off] or smtps://…; credentials
    may instead come from SMTP_USERNAME and SMTP_PASSWORD."""
    if not raw:
        return None
    from urllib.parse import parse_qs, unquote

    example = "expected smtp://user:password@mail.example.com:587 or smtps://…:465"
    parts = urlsplit(raw)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ConfigError(f"SMTP_URL is malformed: {example}")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 587)
    except ValueError:
        raise ConfigError(f"SMTP_URL is malformed: its port is not a number ({example})") from None
    starttls = (parse_qs(parts.query).get("starttls") or ["auto"])[0]
    if starttls not in {"auto", "required", "off"}:
        raise ConfigError("SMTP_URL is malformed: starttls= takes required, off or (the default) auto")
    tls = "ssl" if parts.scheme == "smtps" else {"auto": "opportunistic", "required": "starttls", "off": "none"}[starttls]
    return SmtpSettings(host=parts.hostname, port=port, tls=tls,
                        username=unquote(parts.username) if parts.username else username,
                        password=unquote(parts.password) if parts.password else password)


def _parse_mail_from(raw: str | None) -> str:
    from email.headerregistry import Address
    from email.utils import parseaddr

    if not raw:
        return Settings.mail_from
    name, address = parseaddr(raw)
    if "@" not in address or any(c in raw for c in "\r\n"):
        raise ConfigError("MAIL_FROM is malformed: expected an address such as 'Audiospective <archive@example.com>'")
    return str(Address(display_name=name, addr_spec=address)) if name else address


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


def _parse_log_format(raw: str | None) -> str:
    value = (raw or "text").strip().lower()
    if value not in {"text", "json"}:
        raise ConfigError("LOG_FORMAT is malformed: use text or json")
    return value


def _parse_number(name: str, raw: str | None, default: float, *, minimum: float | None = None,
                  maximum: float | None = None) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} is malformed: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} is malformed: {raw!r} is not a number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} is malformed: must be {bounds}")
    return value


def _parse_minutes_range(name: str, raw: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """'5-60' (minutes) -> (300, 3600)."""
    if raw is None:
        low, high = default
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*", raw)
        if not match or not 0 < float(match.group(1)) <= float(match.group(2)):
            raise ConfigError(f"{name} is malformed: expected MIN-MAX in minutes, such as 5-60")
        low, high = float(match.group(1)), float(match.group(2))
    return int(low * 60), int(high * 60)


_DURATION = re.compile(r"^(\d+)([smh])$")


def _duration_s(text: str) -> int | None:
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def _parse_failure_rule(kind: str, raw: str | None, default: FailureRule) -> FailureRule:
    """'30m/4h/3': cooldown base / cooldown cap / deactivate after N consecutive failures."""
    if raw is None:
        return default
    name = f"FAILURE_{kind.upper()}"
    parts = raw.split("/")
    if len(parts) == 3:
        base, cap = _duration_s(parts[0]), _duration_s(parts[1])
        if base and cap and base <= cap and parts[2].strip().isdigit() and int(parts[2]) >= 1:
            return FailureRule(base, cap, int(parts[2]))
    raise ConfigError(f"{name} is malformed: expected BASE/CAP/DEACTIVATE_AFTER such as 10m/1h/8")


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
