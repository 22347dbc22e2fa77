"""The archive's schema (docs/architecture.md, "Data model"). Table names are a contract: operators query them.

Normalised so that a play costs a few dozen bytes: `plays` holds integer keys, a
millisecond timestamp and two small numbers; everything descriptive lives once in the
catalogue. Integer (not bigint) keys on the hot tables are deliberate: 2 billion users,
tracks or artists is plenty, and every byte in `plays` is paid a million times per user.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Millisecond precision is part of the identity of a play (docs/spotify.md: rounding
# `played_at` to seconds and re-querying creates duplicates).
TimestampMs = pg.TIMESTAMP(timezone=True, precision=3)
Timestamp = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class UserStatus(str, enum.Enum):
    active = "active"
    reauth_required = "reauth_required"
    paused = "paused"
    deactivated = "deactivated"


class Plan(str, enum.Enum):
    free = "free"
    pro = "pro"


class Role(str, enum.Enum):
    member = "member"
    admin = "admin"


class PlaySource(enum.IntEnum):
    """Where a play came from; a smallint in `plays.source`."""

    poll = 1  # recently-played API
    extended_history = 2  # Streaming_History_Audio_*.json / endsong_*.json
    account_data = 3  # StreamingHistory_music_*.json (names only, minute precision)
    listen = 4  # a scrobbler, through the ListenBrainz-compatible API (stamped at its start; plays.client_id)
    # Other services' histories (app/imports/services.py); all but Apple's stamped at the start.
    lastfm = 5
    listenbrainz = 6  # a ListenBrainz export
    maloja = 7
    apple_music = 8
    youtube_music = 9


# Spotify's own record of a play (the rest are other players' and services').
SPOTIFY_SOURCES = (PlaySource.poll, PlaySource.extended_history, PlaySource.account_data)

# How a play's source is named wherever plays are listed (history, the API's submission_client).
SOURCE_LABELS = {
    PlaySource.poll: "Spotify (recently played)",
    PlaySource.extended_history: "Spotify export",
    PlaySource.account_data: "Spotify account data",
    PlaySource.listen: "ListenBrainz API",
    PlaySource.lastfm: "Last.fm",
    PlaySource.listenbrainz: "ListenBrainz",
    PlaySource.maloja: "Maloja",
    PlaySource.apple_music: "Apple Music",
    PlaySource.youtube_music: "YouTube Music",
}


def _values(enum_cls) -> str:
    return ", ".join(f"'{m.value}'" for m in enum_cls)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_values(UserStatus)})", name="status"),
        sa.CheckConstraint(f"plan IN ({_values(Plan)})", name="plan"),
        sa.CheckConstraint(f"role IN ({_values(Role)})", name="role"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    # The identity Spotify tells us to link accounts by: `account_id` when /v1/me has
    # it, else the legacy `id`. `spotify_user_id` keeps the legacy id for reference.
    spotify_id: Mapped[str] = mapped_column(sa.Text, unique=True)
    spotify_user_id: Mapped[str | None] = mapped_column(sa.Text)
    display_name: Mapped[str] = mapped_column(sa.Text)
    avatar_url: Mapped[str | None] = mapped_column(sa.Text)
    timezone: Mapped[str] = mapped_column(sa.Text, server_default="UTC")
    plan: Mapped[str] = mapped_column(sa.Text, server_default=Plan.free.value)
    role: Mapped[str] = mapped_column(sa.Text, server_default=Role.member.value)
    founding_member: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    # The seat this person holds (app/membership): its number is their founding-member number.
    member_number: Mapped[int | None] = mapped_column(sa.Integer, unique=True)
    status: Mapped[str] = mapped_column(sa.Text, server_default=UserStatus.active.value)
    # When the user last granted consent; Spotify refresh tokens die 6 months later.
    authorized_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_login_at: Mapped[datetime | None] = mapped_column(Timestamp)
    preferences: Mapped[dict] = mapped_column(pg.JSONB, server_default=sa.text("'{}'::jsonb"))
    # Spotify gives no address with the scopes used: people enter one, and confirm it.
    email: Mapped[str | None] = mapped_column(sa.Text)
    email_verified_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now(), onupdate=sa.func.now())

    token: Mapped[SpotifyToken | None] = relationship(back_populates="user", uselist=False, passive_deletes=True)
    archive_state: Mapped[ArchiveState | None] = relationship(back_populates="user", uselist=False, passive_deletes=True)

    # flask-login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What flask-login keeps in the session and remember cookies: the token of the
        sign-in this user object was loaded through (account/sessions.py), never the user
        id, so that signing out can end exactly that sign-in, everywhere it was copied."""
        token = getattr(self, "session_token", None)
        if token is None:
            raise RuntimeError("a user object without a sign-in cannot be put in a session")
        return token


class UserSession(Base):
    """One sign-in: what a session cookie and a remember cookie stand for. Ending it
    (sign-out, sign-out everywhere, expiry) makes every copy of those cookies worthless."""

    __tablename__ = "user_sessions"
    __table_args__ = (sa.Index("ix_user_sessions_user_id", "user_id"),)

    token_hash: Mapped[bytes] = mapped_column(sa.LargeBinary, primary_key=True)  # sha256 of the token
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    last_seen_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    ended_at: Mapped[datetime | None] = mapped_column(Timestamp)
    user_agent: Mapped[str | None] = mapped_column(sa.Text)


class SpotifyToken(Base):
    """OAuth tokens, encrypted (app/crypto.py); never logged, never rendered."""

    __tablename__ = "spotify_tokens"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    access_token_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    refresh_token_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    scope: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now(), onupdate=sa.func.now())

    user: Mapped[User] = relationship(back_populates="token")


class ArchiveState(Base):
    """Per-user polling state: cursor, schedule, failures and the circuit breaker."""

    __tablename__ = "archive_state"
    __table_args__ = (
        # The dispatcher's query: due users, soonest first.
        sa.Index("ix_archive_state_next_poll_at", "next_poll_at"),
    )

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    cursor_played_at: Mapped[datetime | None] = mapped_column(TimestampMs)  # newest play archived
    next_poll_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    poll_interval_s: Mapped[int | None] = mapped_column(sa.Integer)
    last_poll_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_success_at: Mapped[datetime | None] = mapped_column(Timestamp)
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_failure_kind: Mapped[str | None] = mapped_column(sa.Text)
    last_failure_at: Mapped[datetime | None] = mapped_column(Timestamp)
    last_failure_message: Mapped[str | None] = mapped_column(sa.Text)
    circuit_open_until: Mapped[datetime | None] = mapped_column(Timestamp)
    notifications_sent: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_notified_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Cadence memory (app/archival/cadence.py): the fastest listening seen, and when
    # plays last arrived late.
    peak_per_hour: Mapped[float | None] = mapped_column(sa.Float)
    peak_observed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    late_seen_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Set when the dispatcher hands the user to a poll job; a lease against re-dispatch.
    dispatched_at: Mapped[datetime | None] = mapped_column(Timestamp)

    user: Mapped[User] = relationship(back_populates="archive_state")


# --- catalogue ---------------------------------------------------------------------------


class CatalogueItem:
    """What artists, albums and tracks share. Spotify ids are unique when known. Rows
    created by an import before enrichment may carry names only (spotify_id NULL) and are
    merged once enrichment resolves them; `enriched_at` is when Spotify last described
    the item in full, `missing_at` when Spotify said there is no such item."""

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True, sort_order=-3)
    spotify_id: Mapped[str | None] = mapped_column(sa.Text, unique=True, sort_order=-2)
    name: Mapped[str] = mapped_column(sa.Text, sort_order=-1)
    enriched_at: Mapped[datetime | None] = mapped_column(Timestamp, sort_order=1)
    missing_at: Mapped[datetime | None] = mapped_column(Timestamp, sort_order=2)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now(), sort_order=3)


class Artist(CatalogueItem, Base):
    __tablename__ = "artists"
    __table_args__ = (
        # Name-only rows (from imports, before enrichment) are unique by name.
        sa.Index("uq_artists_name_only", sa.text("lower(name)"), unique=True,
                 postgresql_where=sa.text("spotify_id IS NULL")),
        # The history search's "contains" matches (migration 0016).
        sa.Index("ix_artists_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )

    image_url: Mapped[str | None] = mapped_column(sa.Text)
    genres: Mapped[list[str] | None] = mapped_column(pg.ARRAY(sa.Text))


class Album(CatalogueItem, Base):
    __tablename__ = "albums"
    __table_args__ = (
        sa.Index("uq_albums_name_only", sa.text("lower(name)"), sa.text("lower(artist_name)"), unique=True,
                 postgresql_where=sa.text("spotify_id IS NULL")),
        sa.Index("ix_albums_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
    )

    # For name-only rows: the album artist as the export names it ("" when unknown).
    artist_name: Mapped[str | None] = mapped_column(sa.Text)
    album_type: Mapped[str | None] = mapped_column(sa.Text)
    release_date: Mapped[str | None] = mapped_column(sa.Text)  # "1998", "1998-07" or "1998-07-14"
    release_date_precision: Mapped[str | None] = mapped_column(sa.Text)
    total_tracks: Mapped[int | None] = mapped_column(sa.Integer)
    image_url: Mapped[str | None] = mapped_column(sa.Text)
    label: Mapped[str | None] = mapped_column(sa.Text)


class Track(CatalogueItem, Base):
    __tablename__ = "tracks"
    __table_args__ = (
        # Name-only tracks: by name and artist, or when none is known (Apple's play activity)
        # by name and album (migration 0025).
        sa.Index("uq_tracks_name_only", sa.text("lower(name)"), sa.text("lower(artist_name)"), unique=True,
                 postgresql_where=sa.text("spotify_id IS NULL AND artist_name <> ''")),
        sa.Index("uq_tracks_name_only_no_artist", sa.text("lower(name)"), sa.text("coalesce(album_id, 0)"), unique=True,
                 postgresql_where=sa.text("spotify_id IS NULL AND artist_name = ''")),
        # Album counts read (id, album_id) from the index alone (migration 0004).
        sa.Index("ix_tracks_id_album", "id", postgresql_include=["album_id"]),
        sa.Index("ix_tracks_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}),
        sa.Index("ix_tracks_artist_name_trgm", "artist_name", postgresql_using="gin", postgresql_ops={"artist_name": "gin_trgm_ops"}),
    )

    album_id: Mapped[int | None] = mapped_column(sa.ForeignKey("albums.id"), index=True)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    explicit: Mapped[bool | None] = mapped_column(sa.Boolean)
    isrc: Mapped[str | None] = mapped_column(sa.Text, index=True)
    # For name-only rows (account-data imports): the artist as the export names it.
    artist_name: Mapped[str | None] = mapped_column(sa.Text)


class TrackArtist(Base):
    """Ordered many-to-many: position 0 is the primary artist."""

    __tablename__ = "track_artists"

    track_id: Mapped[int] = mapped_column(sa.ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    artist_id: Mapped[int] = mapped_column(sa.ForeignKey("artists.id"), index=True)


class Play(Base):
    """One play. The primary key (user_id, played_at, track_id) is the uniqueness rule
    *and* the index for range scans by (user_id, played_at): one index, not two.

    Immutable (insert and delete only), and without foreign keys: triggers (migration
    0004) keep the listening rollups exact, delete a user's plays with the user, and
    refuse to delete catalogue tracks."""

    __tablename__ = "plays"

    # Column order is storage order: the 8-byte timestamp first avoids alignment padding.
    played_at: Mapped[datetime] = mapped_column(TimestampMs)
    user_id: Mapped[int] = mapped_column(sa.Integer)  # users.id
    track_id: Mapped[int] = mapped_column(sa.Integer)  # tracks.id
    ms_played: Mapped[int | None] = mapped_column(sa.Integer)
    source: Mapped[int] = mapped_column(sa.SmallInteger)
    client_id: Mapped[int | None] = mapped_column(sa.SmallInteger)  # play_clients.id, for listens

    __table_args__ = (sa.PrimaryKeyConstraint("user_id", "played_at", "track_id", name="pk_plays"),)


class Gap(Base):
    """An interval in which plays may have been lost (more than 50 between two polls)."""

    __tablename__ = "gaps"
    __table_args__ = (sa.Index("ix_gaps_user_id_starts_at", "user_id", "starts_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime] = mapped_column(TimestampMs)  # cursor before the poll
    ends_at: Mapped[datetime] = mapped_column(TimestampMs)  # oldest play the poll returned
    reason: Mapped[str] = mapped_column(sa.Text)
    detected_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    filled_at: Mapped[datetime | None] = mapped_column(Timestamp)  # set when an import covers it


class ApiBudget(Base):
    """The app-wide Spotify request budget, one row shared by every worker process: a
    token bucket refilled at SPOTIFY_REQUESTS_PER_30S per 30 s, and the pause a 429 orders."""

    __tablename__ = "api_budget"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    tokens: Mapped[float] = mapped_column(sa.Float, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    paused_until: Mapped[datetime | None] = mapped_column(Timestamp)
    pause_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Since the instance began, for /metrics (migration 0017).
    requests_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    rate_limited_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")


class AppFlag(Base):
    """Facts the app learns about its Spotify app and keeps, e.g. that batch catalogue
    endpoints answer 403 (development mode)."""

    __tablename__ = "app_flags"

    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    value: Mapped[dict] = mapped_column(pg.JSONB, server_default=sa.text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now(), onupdate=sa.func.now())


class ImportStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Import(Base):
    """One upload of Spotify data-export files and what became of it."""

    __tablename__ = "imports"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_values(ImportStatus)})", name="status"),
        sa.Index("ix_imports_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.Text, server_default=ImportStatus.queued.value)
    stage: Mapped[str | None] = mapped_column(sa.Text)  # what it is doing now, for the progress view
    rule: Mapped[str] = mapped_column(sa.Text, server_default="default")  # counting rule
    files: Mapped[list] = mapped_column(pg.JSONB, server_default=sa.text("'[]'::jsonb"))  # [{name, bytes}]
    bytes_total: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    bytes_read: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    rows_read: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    counts: Mapped[dict] = mapped_column(pg.JSONB, server_default=sa.text("'{}'::jsonb"))  # live, by reason
    report: Mapped[dict | None] = mapped_column(pg.JSONB)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=sa.func.now())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ImportChunk(Base):
    """Uploaded bytes, kept in Postgres (so any worker on any machine can process them)
    in pieces (so neither side ever holds a whole file in memory). Deleted once processed."""

    __tablename__ = "import_chunks"

    import_id: Mapped[int] = mapped_column(sa.ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    file_no: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


ExportStatus = ImportStatus  # the same lifecycle: queued, running, then done or failed


class Export(Base):
    """One export of a user's archive (app/exports): what was asked for, its progress, and
    where its bytes are (`export_chunks`) until it expires."""

    __tablename__ = "exports"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_values(ExportStatus)})", name="status"),
        sa.CheckConstraint("format IN ('json', 'csv', 'spotify', 'pdf', 'listenbrainz')", name="format"),
        sa.Index("ix_exports_user_id_created_at", "user_id", "created_at"),
        sa.Index("ix_exports_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(sa.Text)
    # The period, as local dates in `timezone` (inclusive); NULL = from the first / to the last play.
    period_from: Mapped[date | None] = mapped_column(sa.Date)
    period_to: Mapped[date | None] = mapped_column(sa.Date)
    timezone: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.Text, server_default=ExportStatus.queued.value)
    rows_total: Mapped[int | None] = mapped_column(sa.Integer)
    rows_written: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    bytes_stored: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")  # compressed, as kept
    bytes_file: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")  # as downloaded
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)  # set when done


class ExportChunk(Base):
    """An export's file, compressed (gzip; the Spotify-shape zip as is), in pieces so that
    neither the job nor a download ever holds it whole."""

    __tablename__ = "export_chunks"

    export_id: Mapped[int] = mapped_column(sa.ForeignKey("exports.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class Share(Base):
    """A share snapshot (app/shares): chosen panels of one period, frozen as JSON when it
    was made, published at an unguessable URL until revoked, expired or deleted."""

    __tablename__ = "shares"
    __table_args__ = (
        sa.CheckConstraint("rank_by IN ('plays', 'minutes')", name="rank_by"),
        sa.Index("ix_shares_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(sa.Text, unique=True)  # the URL's secret: 192 random bits
    # The period, as local dates in `timezone` (inclusive); first_day NULL = from the first play.
    first_day: Mapped[date | None] = mapped_column(sa.Date)
    last_day: Mapped[date] = mapped_column(sa.Date)
    timezone: Mapped[str] = mapped_column(sa.Text)
    panels: Mapped[list[str]] = mapped_column(pg.ARRAY(sa.Text))
    rank_by: Mapped[str] = mapped_column(sa.Text)
    display_name: Mapped[str | None] = mapped_column(sa.Text)  # shown only if the owner chose to
    snapshot: Mapped[dict] = mapped_column(pg.JSONB)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)
    views: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_viewed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class OutboxMessage(Base):
    """An email, written in the same transaction as what caused it and delivered by a job
    (app/email). `key` names the message, so a retried job or request never queues it twice."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_user_id_created_at", "user_id", "created_at"),
                      sa.Index("ix_outbox_unsent", "priority", "next_attempt_at",
                               postgresql_where=sa.text("sent_at IS NULL AND failed_at IS NULL")),
                      sa.Index("ix_outbox_sent_at", "sent_at", postgresql_where=sa.text("sent_at IS NOT NULL")))

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(sa.Text, unique=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str] = mapped_column(sa.Text)
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    headers: Mapped[dict | None] = mapped_column(pg.JSONB)  # extra headers (List-Unsubscribe)
    priority: Mapped[int] = mapped_column(sa.SmallInteger, server_default="5")  # lower goes first (alerts: 0)
    failed_at: Mapped[datetime | None] = mapped_column(Timestamp)  # refused for good (5xx): not tried again
    # When its DATA began: from then on it may have arrived, so it is never sent again.
    handed_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AdminAudit(Base):
    """What an admin did, kept after the admin's own account is gone (app/admin)."""

    __tablename__ = "admin_audit"
    __table_args__ = (sa.Index("ix_admin_audit_at", "at"),)

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    admin_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    admin_name: Mapped[str] = mapped_column(sa.Text)
    action: Mapped[str] = mapped_column(sa.Text)
    target: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict | None] = mapped_column(pg.JSONB)


class ApiToken(Base):
    """A token for the ListenBrainz-compatible API (app/api): its SHA-256 digest only; the
    token itself is shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(sa.Text, unique=True)
    hint: Mapped[str] = mapped_column(sa.Text)  # its last characters, to tell tokens apart in Settings
    label: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AlertIncident(Base):
    """A time collection was at risk for a user (app/alerts): at most three mails, at 0 h,
    48 h and 120 h, until it is resolved; a new incident starts a new series."""

    __tablename__ = "alert_incidents"
    __table_args__ = (sa.Index("uq_alert_incidents_open", "user_id", unique=True,
                               postgresql_where=sa.text("resolved_at IS NULL")),)

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    reason: Mapped[str] = mapped_column(sa.Text)
    mails_sent: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    resolved_at: Mapped[datetime | None] = mapped_column(Timestamp)


class WaitlistEntry(Base):
    """A person waiting for a seat (app/membership): confirmed by a mailed link, then in
    line by confirmation time until invited; an invite admits them once before it expires."""

    __tablename__ = "waitlist"
    __table_args__ = (
        sa.Index("uq_waitlist_email", sa.text("lower(email)"), unique=True),
        sa.Index("ix_waitlist_queue", "confirmed_at", "id",
                 postgresql_where=sa.text("invited_at IS NULL AND confirmed_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    invited_at: Mapped[datetime | None] = mapped_column(Timestamp)
    invite_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    admitted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class RateLimit(Base):
    """Hits on one limited action in the current window (app/limits.py): in Postgres, so a
    limit holds across web processes and machines."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(Timestamp)
    hits: Mapped[int] = mapped_column(sa.Integer)


# --- listening rollups (migration 0004: written only by triggers on plays and users) -------
# Read by app/stats; never written by application code.


class Counted:
    """What every rollup counts: plays, and milliseconds listened (the track's length
    where the source did not say, as for polled plays)."""

    plays: Mapped[int] = mapped_column(sa.Integer, sort_order=1)
    ms: Mapped[int] = mapped_column(sa.BigInteger, sort_order=2)


class ListeningHour(Counted, Base):
    """Listening per local day and hour, in the user's time zone (rebuilt when it changes)."""

    __tablename__ = "listening_hours"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    hour: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    estimated: Mapped[int] = mapped_column(sa.Integer, sort_order=3)  # plays whose ms is the track's length


class TrackMonth(Counted, Base):
    __tablename__ = "track_months"
    __table_args__ = (sa.Index("ix_track_months_user_track", "user_id", "track_id", "month"),)

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    month: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)  # UTC month start
    track_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class TrackYear(Counted, Base):
    __tablename__ = "track_years"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    year: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)  # UTC year start
    track_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class TrackTotal(Counted, Base):
    __tablename__ = "track_totals"
    __table_args__ = (sa.Index("ix_track_totals_first", "user_id", "first_played_at"),
                      sa.Index("ix_track_totals_track", "track_id"))

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    first_played_at: Mapped[datetime] = mapped_column(TimestampMs, sort_order=3)
    last_played_at: Mapped[datetime] = mapped_column(TimestampMs, sort_order=4)


class LeadCounted(Counted):
    lead_plays: Mapped[int] = mapped_column(sa.Integer, sort_order=3)  # plays where the artist is credited first


class ArtistMonth(LeadCounted, Base):
    """Every credited artist's plays per UTC month: the sum of their tracks' (migration 0015)."""

    __tablename__ = "artist_months"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    month: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    artist_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class ArtistYear(LeadCounted, Base):
    __tablename__ = "artist_years"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    year: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    artist_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class ArtistTotal(LeadCounted, Base):
    __tablename__ = "artist_totals"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    artist_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class AlbumMonth(Counted, Base):
    __tablename__ = "album_months"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    month: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    album_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class AlbumYear(Counted, Base):
    __tablename__ = "album_years"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    year: Mapped[datetime] = mapped_column(Timestamp, primary_key=True)
    album_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class AlbumTotal(Counted, Base):
    __tablename__ = "album_totals"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    album_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)


class ListeningSession(Counted, Base):
    """A run of plays with at most 10 minutes between one's end and the next's start."""

    __tablename__ = "listening_sessions"
    __table_args__ = (sa.Index("ix_listening_sessions_end", "user_id", "ended_at"),)

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(TimestampMs, primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(TimestampMs)


class ArchiveVersion(Base):
    """Bumped by every change to a user's plays: what makes cached statistics exact."""

    __tablename__ = "archive_versions"

    user_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)


class PlayClient(Base):
    """A program that submitted listens ("Web Scrobbler", "Pano Scrobbler", …): plays
    name theirs by this small id, so a name is stored once, not once per play."""

    __tablename__ = "play_clients"

    id: Mapped[int] = mapped_column(sa.SmallInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)


class ListenInbox(Base):
    """Listens accepted by the API and not yet merged into plays (app/api/ingest.py): the
    request answers at once, a worker job merges them set-based, as imports are."""

    __tablename__ = "listen_inbox"
    __table_args__ = (sa.Index("ix_listen_inbox_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    client_name: Mapped[str | None] = mapped_column(sa.Text)  # made a play_clients id by the merge
    listened_at: Mapped[int] = mapped_column(sa.BigInteger)  # Unix seconds: the play's start
    track_name: Mapped[str] = mapped_column(sa.Text)
    artist_name: Mapped[str] = mapped_column(sa.Text)
    release_name: Mapped[str | None] = mapped_column(sa.Text)
    spotify_id: Mapped[str | None] = mapped_column(sa.Text)
    isrc: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    received_at: Mapped[datetime] = mapped_column(Timestamp)


class ListenLengths(Base):
    """The longest listen a user's archive holds, and whether one has no known length:
    how wide matching (app/matching.py) must look around a play. Only grows."""

    __tablename__ = "listen_lengths"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    longest_ms: Mapped[int | None] = mapped_column(sa.Integer)
    unknown_length: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())


class PlayingNow(Base):
    """What a player says is playing now (submit-listens' playing_now): shown until it
    expires, never a play."""

    __tablename__ = "playing_now"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    track_name: Mapped[str] = mapped_column(sa.Text)
    artist_name: Mapped[str] = mapped_column(sa.Text)
    release_name: Mapped[str | None] = mapped_column(sa.Text)
    client: Mapped[str | None] = mapped_column(sa.Text)
    spotify_id: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class ShowKind(str, enum.Enum):
    podcast = "podcast"
    audiobook = "audiobook"


class Show(Base):
    """A podcast or an audiobook, as Spotify's exports name it (they carry no show id)."""

    __tablename__ = "shows"
    __table_args__ = (
        sa.CheckConstraint(f"kind IN ({_values(ShowKind)})", name="kind"),
        sa.Index("uq_shows_kind_name", "kind", sa.text("lower(name)"), unique=True),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.Text)
    name: Mapped[str] = mapped_column(sa.Text)


class Episode(Base):
    """A podcast episode or an audiobook chapter: by Spotify id when the export gives one,
    else by its name within its show."""

    __tablename__ = "episodes"
    __table_args__ = (
        sa.Index("uq_episodes_name_only", "show_id", sa.text("lower(name)"), unique=True,
                 postgresql_where=sa.text("spotify_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(), primary_key=True)
    spotify_id: Mapped[str | None] = mapped_column(sa.Text, unique=True)
    show_id: Mapped[int] = mapped_column(sa.ForeignKey("shows.id"), index=True)
    name: Mapped[str] = mapped_column(sa.Text)


class EpisodePlay(Base):
    """Listening to an episode or chapter (app/podcasts): kept apart from `plays`, so music
    statistics and their rollups never count it. Imports only: Spotify's recently played
    lists no episodes."""

    __tablename__ = "episode_plays"
    __table_args__ = (sa.PrimaryKeyConstraint("user_id", "played_at", "episode_id", name="pk_episode_plays"),)

    played_at: Mapped[datetime] = mapped_column(TimestampMs)  # the end, as Spotify stamps it
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    episode_id: Mapped[int] = mapped_column(sa.ForeignKey("episodes.id"), index=True)
    ms_played: Mapped[int] = mapped_column(sa.Integer)
    source: Mapped[int] = mapped_column(sa.SmallInteger)
