"""An export from request to download: the one implementation behind the Export page, the
job and `audiospective export`.

    create_export   an `exports` row (the period as local dates in the user's zone)
    run_export      write the file into `export_chunks` in ONE transaction (a worker killed
                    halfway leaves no half file; the retried job starts over), reading one
                    snapshot of the archive; progress goes to the `exports` row meanwhile on
                    its own connection, for the page
    expire_exports  delete exports past their expiry (a periodic job)
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Iterator

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..account.addresses import verified_email
from ..db import DATABASE_UNAVAILABLE, Database
from ..email.outbox import external_url, queue_email
from ..models import Export, ExportStatus, User
from ..signed import LinkError, sign, verify
from ..reports.report import report_period, write_report
from ..stats.periods import PeriodError, parse_dates
from ..time import Clock, zone
from . import files, storage

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
DOWNLOAD_PURPOSE = "export-download"
RUNNING = (ExportStatus.queued.value, ExportStatus.running.value)
ABANDONED = ("This export was interrupted twice while it was being written (the process writing it stopped), so it "
             "was not tried again. Try again; if it keeps failing, tell the admin.")
FAILED = "Something went wrong on our side while writing this export. Try again; if it keeps failing, tell the admin."


@dataclass(frozen=True)
class Format:
    label: str
    content_type: str
    extension: str
    gzip: bool  # stored gzip-compressed (the zip is compressed already)


FORMATS = {
    "csv": Format("CSV (spreadsheets)", "text/csv; charset=utf-8", "csv", True),
    "json": Format("JSON (complete, re-importable)", "application/json", "json", True),
    "spotify": Format("Spotify's format (extended streaming history)", "application/zip", "zip", False),
    "pdf": Format("PDF report (a year in review, or any period)", "application/pdf", "pdf", False),
    "listenbrainz": Format("ListenBrainz's format (to move to ListenBrainz or Koito)", "application/zip", "zip", False),
}


def _write_report(conn: psycopg.Connection, scope: files.Scope, out: IO[bytes], progress: files.Progress, *,
                  header: dict, database: Database) -> int:
    """The PDF report of the export's period (app/reports), read from the rollups."""
    now = datetime.fromisoformat(header["exported_at"])
    period = report_period(scope.period_from, scope.period_to, scope.timezone,
                           now.astimezone(zone(scope.timezone)).date())
    return write_report(database, scope.user_id, period, out, progress, owner=header["user"]["display_name"],
                        now=now)


WRITERS = {"csv": files.write_csv, "json": files.write_json, "spotify": files.write_spotify, "pdf": _write_report,
           "listenbrainz": files.write_listenbrainz}


class ExportError(ValueError):
    """A request that cannot be exported, with a message for the person who asked."""


def parse_period(raw_from: str | None, raw_to: str | None) -> tuple[date | None, date | None]:
    """Dates from a form or the command line ("YYYY-MM-DD", blank = unbounded)."""
    try:
        return parse_dates(raw_from, raw_to)
    except PeriodError as exc:
        raise ExportError(str(exc)) from None


def create_export(session: Session, user: User, fmt: str, period_from: date | None, period_to: date | None, *,
                  now: datetime, max_waiting: int | None = None) -> Export:
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format {fmt!r}: choose {', '.join(FORMATS)}.")
    if max_waiting is not None:
        waiting = session.scalar(sa.select(sa.func.count()).select_from(Export).where(
            Export.user_id == user.id, Export.status.in_(RUNNING)))
        if waiting >= max_waiting:
            raise ExportError(f"You already have {waiting} exports waiting or being written. Ask for more once one "
                              "has finished.")
    record = Export(user_id=user.id, format=fmt, period_from=period_from, period_to=period_to,
                    timezone=user.timezone or "UTC", status=ExportStatus.queued.value, created_at=now)
    session.add(record)
    session.flush()
    return record


def queue_export(session: Session, record: Export) -> None:
    """Defer the export's job in the caller's transaction; one export per user is written
    at a time (each reads their whole archive)."""
    queue.defer(queue.EXPORT, session, {"export_id": record.id}, lock=f"export-user-{record.user_id}")


def retry_export(session: Session, record: Export) -> bool:
    if record.status != ExportStatus.failed.value:
        return False
    record.status, record.error, record.rows_written, record.expires_at = ExportStatus.queued.value, None, 0, None
    queue_export(session, record)
    return True


def run_export(database: Database, export_id: int, *, clock: Clock, expiry_days: float,
               mail_secret: str | None = None) -> Export | None:
    """Write the export's file. Returns the finished row, or None if it was deleted. With
    `mail_secret` (the job's), the owner is mailed a signed download link if they have a
    confirmed address (needs a request context for the link: email.outbox.mail_context)."""
    with database.sessionmaker() as session:
        record = session.get(Export, export_id)
        if record is None:
            return None
        if record.status not in RUNNING:
            return record  # a finished export is never written twice
        user = session.get(User, record.user_id)
        scope = files.Scope(record.user_id, record.timezone, record.period_from, record.period_to)
        fmt = record.format
        header = {"exported_at": clock().isoformat(), "generator": "Audiospective",
                  "user": {"spotify_id": user.spotify_id, "display_name": user.display_name,
                           "timezone": record.timezone},
                  "period": {"from": record.period_from and record.period_from.isoformat(),
                             "to": record.period_to and record.period_to.isoformat(), "timezone": record.timezone}}
    with database.connection(autocommit=True) as status_conn:
        status_conn.execute("UPDATE exports SET status = 'running', started_at = %s, rows_written = 0, error = NULL "
                            "WHERE id = %s", (clock(), export_id))
        try:
            rows, written, stored = _write(database, export_id, scope, fmt, header, status_conn)
        except DATABASE_UNAVAILABLE as exc:
            # The job runs again when the database is back (queue.DATABASE_RETRY); the rows
            # of this attempt go when the next one starts writing.
            log.warning("export %s interrupted by the database: %s", export_id, str(exc).splitlines()[0])
            raise
        except Exception:
            log.exception("export %s failed", export_id)
            failed = clock()
            status_conn.execute("UPDATE exports SET status = 'failed', error = %s, finished_at = %s, expires_at = %s "
                                "WHERE id = %s", (FAILED, failed, failed + timedelta(days=expiry_days), export_id))
        else:
            with database.session() as session:  # the outcome and its mail, in one transaction
                record = session.get(Export, export_id)
                if record is not None:  # else deleted while it was written
                    finished = clock()
                    record.status, record.rows_total, record.rows_written = ExportStatus.done.value, rows, rows
                    record.bytes_file, record.bytes_stored = written, stored
                    record.finished_at, record.expires_at = finished, finished + timedelta(days=expiry_days)
                    if mail_secret is not None:
                        try:  # a mail that cannot be written never leaves the export unfinished
                            with session.begin_nested():
                                announce_ready(session, record, secret=mail_secret, now=finished)
                        except Exception:
                            log.exception("export %s is done but its mail could not be written", export_id)
            log.info("export %s (%s): %s plays, %s bytes (%s stored)", export_id, fmt, rows, written, stored)
    with database.sessionmaker() as session:
        return session.get(Export, export_id)


def _write(database: Database, export_id: int, scope: files.Scope, fmt: str, header: dict,
           status_conn: psycopg.Connection) -> tuple[int, int, int]:
    last = [0.0]

    def progress(rows: int) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            status_conn.execute("UPDATE exports SET rows_written = %s WHERE id = %s", (rows, export_id))

    with database.connection() as conn:
        # One snapshot for the count, the catalogue and the plays.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("DELETE FROM export_chunks WHERE export_id = %s", (export_id,))  # a retried job's leftovers
        total = files.count_plays(conn, scope)
        status_conn.execute("UPDATE exports SET rows_total = %s WHERE id = %s", (total, export_id))
        sink = storage.ChunkWriter(conn, export_id, gzip=FORMATS[fmt].gzip)
        extra = {"header": header} if fmt in ("json", "listenbrainz") else \
            {"header": header, "database": database} if fmt == "pdf" else {}
        rows = WRITERS[fmt](conn, scope, sink, progress, **extra)
        sink.finish()
        # The export may have been deleted meanwhile: then its chunks must not outlive it.
        if conn.execute("SELECT 1 FROM exports WHERE id = %s", (export_id,)).fetchone() is None:
            conn.rollback()
            return rows, 0, 0
        conn.commit()
    return rows, sink.bytes_in, sink.bytes_stored


def announce_ready(session: Session, record: Export, *, secret: str, now: datetime) -> bool:
    """Mail the owner a link to the finished export, if they have a confirmed address."""
    user = session.get(User, record.user_id)
    address = verified_email(user)
    if address is None:
        return False
    from jinja2.filters import do_filesizeformat

    return queue_email(session, key=f"export-ready:{record.id}", user_id=user.id, to=address,
                       subject=f"Your Audiospective export is ready ({record.rows_written:,} plays)",
                       template="export_ready", now=now, name=user.display_name,
                       format_label=FORMATS[record.format].label, plays=record.rows_written,
                       size=do_filesizeformat(record.bytes_file), expires=f"{record.expires_at:%Y-%m-%d %H:%M} UTC",
                       link=external_url("exports.download", export_id=record.id,
                                         t=sign(secret, DOWNLOAD_PURPOSE, {"e": record.id}, record.expires_at)))


def check_download_link(secret: str, token: str, export_id: int, now: datetime) -> None:
    """LinkError unless `token` is this export's, intact and unexpired."""
    if verify(secret, DOWNLOAD_PURPOSE, token, now).get("e") != export_id:
        raise LinkError(expired=False)


def abandon_export(database: Database, export_id: int) -> None:
    """The export's job was failed because workers kept dying on it: say so on the page."""
    with database.session() as session:
        session.execute(sa.update(Export).where(Export.id == export_id, Export.status.in_(RUNNING))
                        .values(status=ExportStatus.failed.value, error=ABANDONED))
        session.execute(sa.text("DELETE FROM export_chunks WHERE export_id = :id"), {"id": export_id})


def expire_exports(database: Database, now: datetime) -> int:
    """Delete exports (and their files) whose expiry has passed."""
    with database.session() as session:
        deleted = session.execute(sa.delete(Export).where(Export.expires_at < now)).rowcount
    if deleted:
        log.info("deleted %s expired exports", deleted)
    return deleted


def downloadable(record: Export, now: datetime) -> bool:
    return record.status == ExportStatus.done.value and record.expires_at is not None and record.expires_at > now


def file_name(record: Export, spotify_id: str) -> str:
    period = "all" if not (record.period_from or record.period_to) else \
        f"{record.period_from or 'start'}_to_{record.period_to or 'now'}"
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", spotify_id)[:64] or "user"
    suffix = {"spotify": "-spotify-format", "listenbrainz": "-listenbrainz-format"}.get(record.format, "")
    return f"audiospective-{safe_id}-{period}{suffix}.{FORMATS[record.format].extension}"


def file_bytes(database: Database, record: Export) -> Iterator[bytes]:
    """The file as downloaded, streamed from its chunks on a connection of its own (a
    response body outlives the request's database session)."""
    with database.connection(autocommit=True) as conn:
        chunks = storage.stored_chunks(conn, record.id)
        yield from storage.gunzipped(chunks) if FORMATS[record.format].gzip else chunks


def write_file(database: Database, record: Export, out: IO[bytes]) -> int:
    size = 0
    for data in file_bytes(database, record):
        out.write(data)
        size += len(data)
    return size

