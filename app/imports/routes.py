"""The Import page: upload, live progress (HTMX polling), reports of past imports."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from werkzeug.utils import secure_filename

from ..db import get_session
from ..errors import too_many
from ..limits import IMPORTS_PER_USER, Limited, hit
from ..time import now
from ..models import Import, ImportStatus
from ..security import before_body
from . import formats, services
from .service import create_import, queue_import, waiting_imports
from .sources import EMPTY_ZIP_MAGIC, WHAT_TO_UPLOAD, ZIP_MAGIC, InputError, looks_like_csv

bp = Blueprint("imports", __name__, url_prefix="/import")
HISTORY = 20


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("")
@login_required
def upload():
    # The body limit here is IMPORT_MAX_UPLOAD_MB (security.LimitedRequest); werkzeug spools
    # uploads to disk, not memory.
    files = [f for f in request.files.getlist("files") if f.filename]
    rule = request.form.get("rule", "default")
    if not files:
        return _page("Choose your my_spotify_data.zip, or the JSON files from inside it.", status=400)
    for file in files:
        problem = _quick_check(file)
        if problem:
            return _page(problem, status=400)
    session = get_session()
    try:
        hit(session, IMPORTS_PER_USER, str(current_user.id), now=now())
    except Limited as exc:
        return too_many(exc.retry_after_s, f"You uploaded {IMPORTS_PER_USER.hits} imports today, the most there can "
                                           "be in a day.")
    try:
        record = create_import(session, current_user.id,
                               [(_display_name(f.filename), f.stream) for f in files], rule)
    except InputError as exc:
        session.rollback()
        return _page(str(exc), status=400)
    queue_import(session, record)
    session.commit()
    return redirect(url_for("imports.show", import_id=record.id), code=303)


@before_body("imports.upload")
def _upload_allowed():
    """Refusals that need no byte of the upload: its size unknown (a chunked body would be
    spooled to disk until the limit), or this person already waiting for imports."""
    if not current_user.is_authenticated:
        return None  # login_required answers
    if request.content_length is None:
        return _page("Your browser did not say how large the upload is; upload the file from the Import page.",
                     status=411)
    settings = current_app.config["SETTINGS"]
    waiting = waiting_imports(get_session(), current_user.id)
    if waiting >= settings.import_max_waiting:
        return _page(f"You already have {waiting} imports waiting or running. Upload more once one has finished "
                     "(this page follows their progress).", status=429)
    return None


@bp.get("/<id:import_id>")
@login_required
def show(import_id: int):
    return render_template("imports/show.html", record=_own_import(import_id), **_context())


@bp.get("/<id:import_id>/progress")
@login_required
def progress(import_id: int):
    """The progress fragment; it stops polling itself once the import has finished."""
    return render_template("imports/_progress.html", record=_own_import(import_id), **_context())


def _own_import(import_id: int) -> Import:
    record = get_session().get(Import, import_id)
    if record is None or record.user_id != current_user.id:
        abort(404)
    return record


def _page(error: str | None = None, status: int = 200):
    imports = get_session().query(Import).filter(Import.user_id == current_user.id) \
        .order_by(Import.created_at.desc()).limit(HISTORY).all()
    return render_template("imports/index.html", imports=imports, error=error, **_context()), status


def _context() -> dict:
    settings = current_app.config["SETTINGS"]
    return {
        "rules": formats.RULES,
        "skip_labels": SKIP_LABELS,
        "kind_labels": KIND_LABELS,
        "running": (ImportStatus.queued.value, ImportStatus.running.value),
        "max_upload_mb": settings.import_max_upload_bytes // 1024**2,
        "demo_export_url": f"{settings.spotify_api_url}/_sim/export/{current_user.spotify_id}.zip"
        if settings.demo_mode else None,
    }


def _quick_check(file) -> str | None:
    """Refuse at once what is plainly not an export (the job checks everything else)."""
    head = file.stream.read(4096)
    file.stream.seek(0)
    if head[:4] in (ZIP_MAGIC, EMPTY_ZIP_MAGIC) or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") \
            or looks_like_csv(head, file.filename or ""):
        return None
    return f"{_display_name(file.filename)} is not a zip, JSON or CSV file. {WHAT_TO_UPLOAD}"


def _display_name(filename: str) -> str:
    return secure_filename(filename) or "upload"


KIND_LABELS = {"extended": "extended streaming history", "account": "account data",
               "account_podcast": "account data: podcasts",
               "audiospective": "Audiospective export", **services.NAMES}
SKIP_LABELS = {
    "short_play": "Short plays (under 30 seconds)",
    "not_finished": "Not played to the end",
    "podcast_episode": "Podcast episodes that name no show or episode",
    "audiobook": "Audiobook rows that name no book or chapter",
    "private_session": "Private sessions",
    "no_track_id": "Neither a Spotify track id nor a name (local files, removed tracks)",
    "malformed_row": "Rows that could not be read",
    "not_music": "Not music (videos, YouTube outside YouTube Music, Apple Music events without a song)",
}
