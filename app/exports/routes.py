"""The Export page: ask for an export, follow it (HTMX polling), download, retry, delete."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from ..db import get_database, get_session
from ..errors import problem, too_many
from ..limits import EXPORTS_PER_USER, Limited, hit
from ..models import Export, ExportStatus
from ..signed import LinkError
from ..time import now
from .service import (
    FORMATS,
    RUNNING,
    ExportError,
    check_download_link,
    create_export,
    downloadable,
    file_bytes,
    file_name,
    parse_period,
    queue_export,
    retry_export,
)

bp = Blueprint("exports", __name__, url_prefix="/export")
LISTED = 20


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("")
@login_required
def request_export():
    session = get_session()
    try:
        hit(session, EXPORTS_PER_USER, str(current_user.id), now=now())
    except Limited as exc:
        return too_many(exc.retry_after_s, f"You asked for {EXPORTS_PER_USER.hits} exports today, the most there can "
                                           "be in a day.")
    try:
        period_from, period_to = parse_period(request.form.get("from"), request.form.get("to"))
        record = create_export(session, current_user, request.form.get("format", ""), period_from, period_to,
                               now=now(), max_waiting=current_app.config["SETTINGS"].export_max_waiting)
    except ExportError as exc:
        session.rollback()
        return _page(str(exc), status=400)
    queue_export(session, record)
    session.commit()
    return redirect(url_for("exports.index"), code=303)


@bp.get("/<id:export_id>/row")
@login_required
def row(export_id: int):
    """One export's row of the list; it polls itself while the export is being written."""
    return render_template("exports/_row.html", record=_own_export(export_id), **_context())


@bp.get("/<id:export_id>/download")
@login_required
def download(export_id: int):
    """The owner's file. From a mailed link (`t`), the link must be intact and unexpired too;
    signed out, login_required takes the person through sign-in and back here."""
    if "t" in request.args:
        try:
            check_download_link(current_app.config["SETTINGS"].secret_key, request.args["t"], export_id, now())
        except LinkError as exc:
            return problem("This download link cannot be used",
                           "The export it pointed to has expired and was deleted; ask for a new one on the Export "
                           "page." if exc.expired else "The link is incomplete or was changed. Open it again from the "
                           "email, or download from the Export page.", status=410 if exc.expired else 400,
                           action=("Export page", url_for("exports.index")))
    record = _own_export(export_id)
    if not downloadable(record, now()):
        return _page("That export has expired or is not ready yet; ask for a new one below.", status=410)
    name = file_name(record, current_user.spotify_id)
    response = Response(file_bytes(get_database(), record), content_type=FORMATS[record.format].content_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Content-Length"] = str(record.bytes_file)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/<id:export_id>/retry")
@login_required
def retry(export_id: int):
    session = get_session()
    if retry_export(session, _own_export(export_id)):
        session.commit()
    return redirect(url_for("exports.index"), code=303)


@bp.post("/<id:export_id>/delete")
@login_required
def delete(export_id: int):
    session = get_session()
    session.delete(_own_export(export_id))
    session.commit()
    return redirect(url_for("exports.index"), code=303)


def _own_export(export_id: int) -> Export:
    record = get_session().get(Export, export_id)
    if record is None or record.user_id != current_user.id:
        abort(404)
    return record


def _page(error: str | None = None, status: int = 200):
    exports = get_session().query(Export).filter(Export.user_id == current_user.id) \
        .order_by(Export.created_at.desc(), Export.id.desc()).limit(LISTED).all()
    return render_template("exports/index.html", exports=exports, error=error, form=request.form,
                           **_context()), status


def _context() -> dict:
    return {"formats": FORMATS, "running": RUNNING, "done": ExportStatus.done.value, "now": now(),
            "expiry_days": current_app.config["SETTINGS"].export_expiry_days}
