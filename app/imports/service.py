"""An import from upload to report: the one implementation behind the web page, the job
and `audiospective import`.

    create_import   an `imports` row, and the uploaded bytes in `import_chunks`
    run_import      read every file (stream-parsed), stage its plays with COPY, merge with
                    set-based SQL, fill the report: ONE transaction, so an import lands whole
                    or not at all; a worker killed halfway leaves nothing, and the retried
                    job starts over cleanly. Progress goes to the `imports` row meanwhile,
                    on its own connection, for the page to show.

Never calls Spotify: plays land at once, enrichment resolves imported tracks later.
Every input row ends in exactly one bucket of the report; the buckets sum to the rows.
"""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..db import DATABASE_UNAVAILABLE, Database
from ..models import Import, ImportChunk, ImportStatus
from ..time import iso_from_ms
from . import formats, native, services
from .merge import AccountGone, Stager, merge
from .sources import InputError, Limits, Member, Meter, Upload, rows

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
PROGRESS_EVERY_S = 0.5
# A few broken rows are skipped and counted; a file that is mostly broken is not a Spotify
# export, and the whole import is refused instead.
MALFORMED_TOLERANCE = (10, 0.01)
STAGED = "staged"  # rows that became plays to merge
ABANDONED = ("This import was interrupted twice while it was being read (the process reading it stopped), so it was "
             "not tried again; nothing was saved. Upload the files exactly as Spotify sent them; if that fails too, "
             "tell the admin.")


@dataclass(frozen=True)
class Source:
    """One uploaded file on local disk, under the name the user gave it."""

    name: str
    path: Path


def limits_from(settings) -> Limits:
    return Limits(max_uncompressed_bytes=settings.import_max_expanded_bytes)


def create_import(session: Session, user_id: int, uploads: Iterable[tuple[str, IO[bytes]]], rule: str, *,
                  store: bool = True) -> Import:
    """The row that tracks an import, and (with `store`) the uploaded bytes, streamed into
    chunks. The CLI passes store=False and hands run_import the files on its own disk."""
    if rule not in formats.RULES:
        raise InputError(f"unknown counting rule {rule!r}; choose {' or '.join(formats.RULES)}")
    record = Import(user_id=user_id, rule=rule, status=ImportStatus.queued.value)
    session.add(record)
    session.flush()
    files, total = [], 0
    for file_no, (name, stream) in enumerate(uploads):
        size, seq = 0, 0
        while chunk := stream.read(CHUNK_BYTES):
            if store:
                session.add(ImportChunk(import_id=record.id, file_no=file_no, seq=seq, data=chunk))
                session.flush()  # one chunk in memory at a time
            size += len(chunk)
            seq += 1
        files.append({"name": name, "bytes": size})
        total += size
    if not files:
        raise InputError("no files were uploaded")
    record.files = files
    record.bytes_total = total
    return record


def waiting_imports(session: Session, user_id: int) -> int:
    """The person's imports queued or running."""
    return session.scalar(sa.select(sa.func.count()).select_from(Import).where(
        Import.user_id == user_id, Import.status.in_([ImportStatus.queued.value, ImportStatus.running.value])))


def queue_import(session: Session, record: Import) -> None:
    """Defer the import's job in the upload's transaction. One import per user runs at a
    time: their merges would otherwise race over the same plays."""
    queue.defer(queue.IMPORT, session, {"import_id": record.id}, lock=f"import-user-{record.user_id}")


def run_import(database: Database, import_id: int, *, sources: list[Source] | None = None,
               limits: Limits = Limits()) -> Import | None:
    """Process an import (from its stored chunks, or from `sources` already on disk).
    None when the import is gone (its owner deleted their account)."""
    with database.connection(autocommit=True) as progress_conn:
        return _run_import(database, import_id, _Progress(progress_conn, import_id), sources, limits)


def _run_import(database: Database, import_id: int, progress: _Progress, sources: list[Source] | None,
                limits: Limits) -> Import | None:
    with database.sessionmaker() as session:
        record = session.get(Import, import_id)
        if record is None:
            return None
        if record.status in (ImportStatus.done.value, ImportStatus.failed.value):
            return record  # a finished import is never run twice
        user_id, rule, files = record.user_id, record.rule, record.files
    progress.start()
    workdir = Path(tempfile.mkdtemp(prefix=f"audiospective-import-{import_id}-"))
    try:
        if sources is None:
            sources = _materialise(database, import_id, files, workdir)
        report = _process(database, user_id, rule, sources, limits, progress)
    except AccountGone:
        log.info("import %s dropped: its owner deleted their account meanwhile", import_id)
    except InputError as exc:
        progress.finish(ImportStatus.failed, error=str(exc))
        log.info("import %s refused: %s", import_id, exc)
    except DATABASE_UNAVAILABLE as exc:
        # Not the upload's fault and nothing of it was kept (one transaction): the job runs
        # again when the database is back (queue.DATABASE_RETRY), with the stored upload.
        log.warning("import %s interrupted by the database: %s", import_id, str(exc).splitlines()[0])
        raise
    except Exception:
        log.exception("import %s failed", import_id)
        progress.finish(ImportStatus.failed, error="Something went wrong on our side while importing; nothing was "
                                                   "saved. Please try again; if it keeps failing, tell the admin.")
    else:
        progress.finish(ImportStatus.done, report=report)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with database.sessionmaker() as session:
        session.execute(sa.delete(ImportChunk).where(ImportChunk.import_id == import_id))
        session.commit()
        return session.get(Import, import_id)


def abandon_import(database: Database, import_id: int) -> None:
    """The import's job was failed because workers kept dying on it: say so on its page."""
    with database.session() as session:
        session.execute(sa.update(Import).where(
            Import.id == import_id, Import.status.in_([ImportStatus.queued.value, ImportStatus.running.value])
        ).values(status=ImportStatus.failed.value, stage=None, finished_at=sa.func.now(), error=ABANDONED))
        session.execute(sa.delete(ImportChunk).where(ImportChunk.import_id == import_id))
    log.error("import %s abandoned: its worker died twice while running it", import_id)


def _process(database: Database, user_id: int, rule: str, sources: list[Source], limits: Limits,
             progress: _Progress) -> dict:
    started = time.monotonic()
    uploads = []
    try:
        for source in sources:
            uploads.append(Upload(source.path, source.name, limits))
        # Extended history first: its podcast episodes name the shows that older account-data
        # files list as artists.
        members = sorted((m for u in uploads for m in u.members), key=lambda m: m.kind != formats.EXTENDED)
        readable = [m for m in members if m.kind != formats.IGNORED]
        if not readable:
            names = ", ".join(sorted({m.name.rsplit("/", 1)[-1] for m in members})[:5])
            raise InputError(f"No listening history found in what was uploaded ({names}). Spotify's export holds "
                             "Streaming_History_Audio_*.json (extended history) or StreamingHistory_music_*.json "
                             "(account data); an Audiospective export is audiospective-*.json; a ListenBrainz export "
                             "holds listens/<year>/<month>.jsonl; Google Takeout's YouTube history is "
                             "watch-history.json; Apple's is Apple Music Play Activity.csv; Maloja's is "
                             "maloja_export_*.json.")
        progress.total_bytes(sum(m.size for m in readable))

        counts: Counter = Counter()
        file_reports = []
        # Only needed when account data must be matched against skipped extended rows.
        keep_skipped = any(m.kind == formats.ACCOUNT for m in readable) and any(
            m.kind == formats.EXTENDED for m in readable)
        shows: set[str] = set()  # podcast shows the extended history names, in lower case
        natives = [m for m in readable if m.kind == formats.NATIVE]
        with database.connection() as conn:  # the import's one transaction
            if natives:  # their catalogues first: plays point into them
                native.create_tables(conn)
                for file_no, member in enumerate(natives):
                    native.check(member)
                    native.stage_catalogue(conn, member, file_no)
            row_no = 0
            with Stager(conn) as stager:
                for member in members:
                    if member.kind == formats.IGNORED:
                        file_reports.append({"name": member.name, "kind": "ignored", "reason": member.reason})
                        continue
                    read, add, prefix = _reader(member, natives, stager)
                    file_counts: Counter = Counter()
                    first_problem = None
                    meter = Meter()
                    for row in rows(member, meter, prefix):
                        row_no += 1
                        verdict = read(row, rule)
                        if shows and member.kind == formats.ACCOUNT and type(verdict) is formats.Play \
                                and verdict.artist_name.lower() in shows:
                            verdict = formats.as_episode(verdict)  # an episode listed as music, the show as artist
                        if member.kind == formats.EXTENDED and type(verdict) is not formats.Play:
                            show = formats.show_of(row)  # episodes name the shows older account data lists as artists
                            if show:
                                shows.add(show)
                        if isinstance(verdict, str):
                            file_counts[verdict] += 1
                            if verdict == formats.MALFORMED:
                                first_problem = first_problem or file_counts.total()
                            elif keep_skipped and member.kind == formats.EXTENDED and verdict != formats.EPISODE:
                                identity = formats.identify(row)
                                if identity:
                                    stager.add_skipped(row_no, *identity)
                        elif type(verdict) is formats.EpisodePlay:
                            file_counts[STAGED] += 1
                            stager.add_episode(row_no, verdict)
                        else:
                            file_counts[STAGED] += 1
                            add(row_no, verdict)
                        if row_no % 2000 == 0:
                            progress.rows(row_no, meter.bytes, lambda: counts + file_counts)
                    if member.kind == formats.NATIVE:  # its podcast and audiobook plays, after the music
                        for verdict in native.episode_plays(member):
                            row_no += 1
                            if isinstance(verdict, str):
                                file_counts[verdict] += 1
                            else:
                                file_counts[STAGED] += 1
                                stager.add_episode(row_no, verdict)
                    _refuse_if_mostly_broken(member.name, member.kind, file_counts, first_problem)
                    counts += file_counts
                    progress.file_done(member.size)
                    file_reports.append({"name": member.name, "kind": member.kind, "rows": file_counts.total()})
            read_s = time.monotonic() - started
            if natives:
                unknown_track = native.resolve(conn)  # plays of a track the file does not describe
                counts[STAGED] -= unknown_track
                counts[formats.MALFORMED] += unknown_track
                stager.staged -= unknown_track
                native.add_catalogue(conn)
            merged = merge(conn, user_id, stager.staged, stage=progress.stage)
            gaps_restored = native.restore_gaps(conn, user_id) if natives else 0
            conn.commit()
        log.info("import for user %s: %s rows read and staged in %.1f s, merged in %.1f s", user_id,
                 row_no, read_s, time.monotonic() - started - read_s)
    finally:
        for upload in uploads:
            upload.close()

    skipped = {reason: counts[reason] for reason in formats.SKIP_REASONS if counts[reason]}
    total = counts.total()
    assert counts[STAGED] == stager.staged
    report = {
        "rows": total,
        "imported": merged.imported,
        "episodes": merged.episodes,
        "duplicate_in_upload": merged.duplicate_in_upload,
        "already_in_archive": merged.already_in_archive,
        "skipped": skipped,
        "rule": rule,
        "rule_text": formats.RULES[rule],
        "period": {"from": iso_from_ms(merged.first_ms), "to": iso_from_ms(merged.last_ms)},
        "new_tracks": merged.new_tracks,
        "name_only_tracks": merged.name_only_tracks,
        "gaps_filled": merged.gaps_filled,
        "gaps_restored": gaps_restored,
        "files": file_reports,
        "seconds": round(time.monotonic() - started, 2),
    }
    accounted = (report["imported"] + report["episodes"] + report["duplicate_in_upload"] + report["already_in_archive"]
                 + sum(skipped.values()))
    assert accounted == total, f"report buckets sum to {accounted}, not {total} rows"
    notes = []
    if rule == "finished" and any(f["kind"] == formats.ACCOUNT for f in file_reports):
        notes.append("Account-data files carry no end reason, so the 30-second rule was applied to them.")
    if natives:
        notes.append("Audiospective exports hold plays that were counted when they were archived: no counting "
                     "rule was applied to them.")
    if notes:
        report["notes"] = notes
    return report


def _reader(member: Member, natives: list[Member], stager: Stager) -> tuple[Callable, Callable, str]:
    """How a member's rows are read: (row, rule) -> verdict, how a play is staged, and
    where its rows are (ijson's path)."""
    if member.kind == formats.NATIVE:
        file_no = next(n for n, m in enumerate(natives) if m is member)
        return (lambda row, rule: native.read_play(row, file_no)), stager.add_native, member.prefix
    if member.kind == services.YOUTUBE_MUSIC:  # its titles' wording first, from the file's first entries
        wording = services.title_wording(itertools.islice(rows(member), services.WORDING_SAMPLE))
        return functools.partial(services.read_youtube_music, wording=wording), stager.add, member.prefix
    if member.kind in services.READERS:
        return services.READERS[member.kind], stager.add, member.prefix
    if member.kind == formats.ACCOUNT_PODCAST:
        return formats.read_account_podcast, stager.add_episode, member.prefix
    read = formats.read_extended if member.kind == formats.EXTENDED else formats.read_account
    return read, stager.add, member.prefix


def _refuse_if_mostly_broken(name: str, kind: str, counts: Counter, first_problem: int | None) -> None:
    broken, rows_in_file = counts[formats.MALFORMED], counts.total()
    absolute, share = MALFORMED_TOLERANCE
    if broken > absolute and broken > share * rows_in_file:
        raise InputError(f"{name}: {broken} of {rows_in_file} rows are not plays in {_format_name(kind)}'s format "
                         f"(the first at row {first_problem}); is this really a {_format_name(kind)} history?")


def _format_name(kind: str) -> str:
    return services.NAMES.get(kind, "Audiospective" if kind == formats.NATIVE else "Spotify").split(" (")[0]


def _materialise(database: Database, import_id: int, files: list[dict], workdir: Path) -> list[Source]:
    """Stored chunks back into files on this worker's disk (zips need to seek)."""
    sources = []
    with database.engine.connect() as conn:
        for file_no, meta in enumerate(files):
            path = workdir / f"{file_no}.upload"
            with open(path, "wb") as out:
                seq = 0
                while True:  # one chunk at a time: memory stays flat whatever the upload's size
                    data = conn.execute(sa.select(ImportChunk.data).where(
                        ImportChunk.import_id == import_id, ImportChunk.file_no == file_no,
                        ImportChunk.seq == seq)).scalar()
                    if data is None:
                        break
                    out.write(data)
                    seq += 1
            sources.append(Source(meta["name"], path))
    return sources


class _Progress:
    """Writes progress to the `imports` row on its own autocommit connection, so the page
    sees it while the import's transaction is still open."""

    def __init__(self, conn: psycopg.Connection, import_id: int):
        self.import_id = import_id
        self.conn = conn
        self._last = 0.0
        self._bytes_done = 0

    def start(self) -> None:
        self.conn.execute("UPDATE imports SET status = 'running', stage = 'opening files', started_at = now(), "
                          "rows_read = 0, bytes_read = 0, counts = '{}', error = NULL WHERE id = %s",
                          (self.import_id,))

    def total_bytes(self, total: int) -> None:
        self.conn.execute("UPDATE imports SET bytes_total = %s, stage = 'reading files' WHERE id = %s",
                          (total, self.import_id))

    def rows(self, rows_read: int, member_bytes: int, counts: Callable[[], Counter]) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        self.conn.execute("UPDATE imports SET rows_read = %s, bytes_read = %s, counts = %s WHERE id = %s",
                          (rows_read, self._bytes_done + member_bytes, psycopg.types.json.Jsonb(dict(counts())),
                           self.import_id))

    def file_done(self, size: int) -> None:
        self._bytes_done += size
        self.conn.execute("UPDATE imports SET bytes_read = %s WHERE id = %s", (self._bytes_done, self.import_id))

    def stage(self, name: str) -> None:
        self.conn.execute("UPDATE imports SET stage = %s WHERE id = %s", (name, self.import_id))

    def finish(self, status: ImportStatus, *, report: dict | None = None, error: str | None = None) -> None:
        self.conn.execute(
            "UPDATE imports SET status = %s, stage = NULL, report = %s, error = %s, finished_at = now(), "
            "rows_read = COALESCE((%s::jsonb ->> 'rows')::int, rows_read) WHERE id = %s",
            (status.value, psycopg.types.json.Jsonb(report) if report else None, error,
             psycopg.types.json.Jsonb(report or {}), self.import_id))
