"""Enrichment: filling in what recently-played does not carry (artist images and genres,
album labels), and refreshing it, since Spotify's terms treat metadata as a cache; and
resolving tracks that an import knew only by id and names (album, artists, duration).

Runs as low-priority jobs, one at a time app-wide, on an app token (client-credentials
grant), spending only the part of the request budget that polling leaves (budget.py).

* Batch endpoints when they work. Development-mode apps get 403 from them: then single
  items are fetched instead, and the app remembers (`app_flags`) for a day before
  trying the batch endpoint again.
* Only Spotify saying so makes a row "missing" (404, or null in a batch answer). A
  timeout, a 5xx or a 429 leaves the rows exactly as they were, to be tried again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from ..db import Database
from ..spotify.client import SpotifyClient
from ..spotify.errors import Forbidden, RateLimited, SpotifyError
from ..time import Clock, utcnow
from .budget import Budget, Priority
from .page import parse_track
from .store import upsert_tracks

log = logging.getLogger(__name__)

KINDS = ("tracks", "artists", "albums")  # tracks first: resolving them brings new artists and albums
BATCH_SIZE = {"tracks": 50, "artists": 50, "albums": 20}  # Spotify's limits per batch request
REFRESH_AFTER = timedelta(days=30)
RECHECK_MISSING_AFTER = timedelta(days=30)
RECHECK_BATCH_AFTER = timedelta(days=1)
BATCH_FLAG = "catalogue_batch_forbidden"


@dataclass
class EnrichResult:
    kind: str
    updated: int = 0
    missing: int = 0
    requests: int = 0
    used_batch: bool = False
    stopped: str | None = None  # why it stopped early: budget, paused, or a transient error

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class Enricher:
    database: Database
    spotify: SpotifyClient
    budget: Budget
    clock: Clock = utcnow
    _token: tuple[str, datetime] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_app(cls, app: Flask) -> Enricher:
        database = app.extensions["database"]
        return cls(database=database, spotify=app.extensions["spotify"],
                   budget=Budget(database, app.config["SETTINGS"].archival), clock=app.extensions["clock"])

    def pending(self, kind: str) -> int:
        with self.database.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM ({_CANDIDATES[kind]}) c"),
                                self._window(limit=1_000_000)).scalar_one()

    def run_until_done(self, kind: str, limit: int = 100_000) -> EnrichResult:
        """`run` again and again (for an operator, not a job): until nothing of `kind` is
        missing, `limit` rows are done, the budget runs low or Spotify asks to slow down."""
        total = EnrichResult(kind)
        while total.updated + total.missing < limit:
            result = self.run(kind, max_items=min(1000, limit - total.updated - total.missing))
            total.updated += result.updated
            total.missing += result.missing
            total.requests += result.requests
            total.used_batch |= result.used_batch
            if result.stopped or not (result.updated or result.missing):
                total.stopped = result.stopped
                break
        return total

    def run(self, kind: str, max_items: int = 200) -> EnrichResult:
        """Enrich up to `max_items` rows of `kind` that need it; stops early, harmlessly,
        when the budget runs low or Spotify falters."""
        result = EnrichResult(kind)
        with self.database.engine.connect() as conn:
            rows = conn.execute(sa.text(_CANDIDATES[kind]), self._window(limit=max_items)).all()
        for start in range(0, len(rows), BATCH_SIZE[kind]):
            chunk = {spotify_id: row_id for row_id, spotify_id in rows[start:start + BATCH_SIZE[kind]]}
            if not self._enrich_chunk(kind, chunk, result):
                break
        if result.updated or result.missing or result.stopped:
            log.info("enrichment of %s: %s", kind, result.to_json())
        return result

    def _enrich_chunk(self, kind: str, chunk: dict[str, int], result: EnrichResult) -> bool:
        if self._batch_allowed():
            if not self._spend(result):
                return False
            try:
                items = self.spotify.catalogue_batch(self._app_token(), kind, list(chunk))
            except Forbidden:
                self._remember_batch_forbidden()
            except RateLimited as exc:
                self.budget.pause(exc.retry_after, exc.reason)
                result.stopped = "paused"
                return False
            except SpotifyError as exc:
                result.stopped = f"{exc.kind}: {exc}"
                return False
            else:
                result.used_batch = True
                found = {item["id"]: item for item in items if isinstance(item, dict) and item.get("id") in chunk}
                self._apply(kind, chunk, found, missing=[s for s in chunk if s not in found], result=result)
                return True
        for spotify_id, row_id in chunk.items():
            if not self._spend(result):
                return False
            try:
                item = self.spotify.catalogue_item(self._app_token(), kind, spotify_id)
            except RateLimited as exc:
                self.budget.pause(exc.retry_after, exc.reason)
                result.stopped = "paused"
                return False
            except SpotifyError as exc:
                if exc.status in (400, 404):  # Spotify's own word that there is no such item
                    self._apply(kind, {spotify_id: row_id}, {}, missing=[spotify_id], result=result)
                    continue
                result.stopped = f"{exc.kind}: {exc}"
                return False
            self._apply(kind, {spotify_id: row_id}, {spotify_id: item}, missing=[], result=result)
        return True

    def _spend(self, result: EnrichResult) -> bool:
        grant = self.budget.try_take(Priority.ENRICH)
        if grant.granted:
            result.requests += 1
            return True
        result.stopped = "paused" if grant.paused_until else "budget"
        return False

    def _apply(self, kind: str, chunk: dict[str, int], found: dict[str, dict], *, missing: list[str],
               result: EnrichResult) -> None:
        now = self.clock()
        with self.database.session() as session:
            if kind == "tracks":
                upsert_tracks(session, [parse_track(item) for item in found.values()])
            for spotify_id, item in found.items() if kind != "tracks" else ():
                session.execute(sa.text(_UPDATE[kind]), {"id": chunk[spotify_id], "now": now, **_fields(kind, item)})
            if missing:
                session.execute(sa.text(f"UPDATE {kind} SET missing_at = :now WHERE id = ANY(:ids)"),
                                {"now": now, "ids": [chunk[s] for s in missing]})
        result.updated += len(found)
        result.missing += len(missing)

    def _app_token(self) -> str:
        with self._lock:
            if self._token is None or self._token[1] - self.clock() < timedelta(minutes=5):
                grant = self.spotify.app_token()
                self._token = (grant.access_token, self.clock() + timedelta(seconds=grant.expires_in))
            return self._token[0]

    def _batch_allowed(self) -> bool:
        with self.database.engine.connect() as conn:
            since = conn.execute(sa.text("SELECT updated_at FROM app_flags WHERE key = :key"),
                                 {"key": BATCH_FLAG}).scalar()
        return since is None or self.clock() - since > RECHECK_BATCH_AFTER

    def _remember_batch_forbidden(self) -> None:
        log.warning("Spotify answers 403 to batch catalogue requests (a development-mode app): "
                    "using single-item requests for the next day")
        with self.database.session() as session:
            session.execute(sa.text("""
                INSERT INTO app_flags (key, value, updated_at) VALUES (:key, '{"status": 403}', :now)
                ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at
            """), {"key": BATCH_FLAG, "now": self.clock()})

    def _window(self, *, limit: int) -> dict[str, Any]:
        now = self.clock()
        return {"stale": now - REFRESH_AFTER, "recheck": now - RECHECK_MISSING_AFTER, "limit": limit}


_CANDIDATES = {
    kind: f"""
        SELECT id, spotify_id FROM {kind}
         WHERE spotify_id IS NOT NULL
           AND (enriched_at IS NULL OR enriched_at < :stale)
           AND (missing_at IS NULL OR missing_at < :recheck)
         ORDER BY enriched_at NULLS FIRST, id
         LIMIT :limit"""
    for kind in ("artists", "albums")
} | {
    # Tracks need resolving once; their details (not images) do not go stale.
    "tracks": """
        SELECT id, spotify_id FROM tracks
         WHERE spotify_id IS NOT NULL AND enriched_at IS NULL AND :stale IS NOT NULL
           AND (missing_at IS NULL OR missing_at < :recheck)
         ORDER BY id
         LIMIT :limit""",
}

_UPDATE = {
    "artists": """
        UPDATE artists SET name = coalesce(:name, name), image_url = coalesce(:image_url, image_url),
               genres = :genres, enriched_at = :now, missing_at = NULL
         WHERE id = :id""",
    "albums": """
        UPDATE albums SET name = coalesce(:name, name), image_url = coalesce(:image_url, image_url),
               label = coalesce(:label, label), album_type = coalesce(:album_type, album_type),
               release_date = coalesce(:release_date, release_date),
               release_date_precision = coalesce(:release_date_precision, release_date_precision),
               total_tracks = coalesce(:total_tracks, total_tracks), enriched_at = :now, missing_at = NULL
         WHERE id = :id""",
}


def _fields(kind: str, item: dict) -> dict[str, Any]:
    def text(key):
        value = item.get(key)
        return value if isinstance(value, str) and value else None

    images = [i for i in item.get("images") or [] if isinstance(i, dict) and isinstance(i.get("url"), str)]
    image_url = max(images, key=lambda i: i.get("width") or 0)["url"] if images else None
    if kind == "artists":
        genres = item.get("genres")
        # An empty list is an answer (development-mode apps get no genres); None means unknown.
        return {"name": text("name"), "image_url": image_url,
                "genres": [g for g in genres if isinstance(g, str)] if isinstance(genres, list) else None}
    total = item.get("total_tracks")
    return {"name": text("name"), "image_url": image_url, "label": text("label"), "album_type": text("album_type"),
            "release_date": text("release_date"), "release_date_precision": text("release_date_precision"),
            "total_tracks": total if isinstance(total, int) and not isinstance(total, bool) else None}
