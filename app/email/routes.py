"""/outbox: the signed-in person's mail, as it was sent or, with no SMTP server configured
(local and demo runs), as it would have been: a newcomer sees exactly what mail says."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, render_template
from flask_login import current_user, login_required

from ..db import get_session
from ..models import OutboxMessage
from .outbox import messages_for

bp = Blueprint("mail", __name__, url_prefix="/outbox")
# The HTML part is our template's output, but it is shown as a document of its own with
# nothing allowed beyond inline styles: mail HTML never runs in the app's pages.
HTML_PART_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; sandbox"


@bp.get("")
@login_required
def outbox():
    return render_template("email/outbox.html", messages=messages_for(get_session(), current_user.id),
                           smtp=current_app.config["SETTINGS"].smtp is not None)


@bp.get("/<id:message_id>")
@login_required
def message(message_id: int):
    return render_template("email/message.html", message=_own_message(message_id),
                           smtp=current_app.config["SETTINGS"].smtp is not None)


@bp.get("/<id:message_id>/html")
@login_required
def html_part(message_id: int):
    response = Response(_own_message(message_id).body_html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = HTML_PART_CSP
    return response


def _own_message(message_id: int) -> OutboxMessage:
    record = get_session().get(OutboxMessage, message_id)
    if record is None or record.user_id != current_user.id:
        abort(404)
    return record
